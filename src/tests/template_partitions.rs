//! Partitioned tables, inheritance and typed tables in the template: copies,
//! and backups restored after a drop, are the template's object by object.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// Range, list, hash and default partitions, a sub-partitioned
    /// partition, a partition attached later with keys and indexes of its own
    /// names, a partitioned index and primary key, foreign keys to and from a
    /// partitioned table, a trigger and row-level security on one, an
    /// inheriting table and a typed table.
    const PARTITIONED_TEMPLATE: &str = r#"
SET LOCAL search_path = tenant_template;
CREATE TABLE accounts (id int PRIMARY KEY, name text);
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, account int REFERENCES accounts, kind text, v int,
                     CONSTRAINT events_v_check CHECK (v >= 0), PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY RANGE (id);
CREATE TABLE events_2024_low PARTITION OF events_2024 FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE events_2024_rest PARTITION OF events_2024 DEFAULT;
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_kind ON events (kind);
CREATE TABLE events_2025 (id bigint NOT NULL, at date NOT NULL, account int, kind text, v int,
                          CONSTRAINT events_v_check CHECK (v >= 0), CONSTRAINT events_2025_key PRIMARY KEY (id, at));
CREATE INDEX events_2025_by_kind ON events_2025 (kind);
ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE hashed (id int PRIMARY KEY, note text) PARTITION BY HASH (id);
CREATE TABLE hashed_0 PARTITION OF hashed FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE hashed_1 PARTITION OF hashed FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE by_kind (kind text NOT NULL, n int) PARTITION BY LIST (kind);
CREATE TABLE by_kind_ab PARTITION OF by_kind FOR VALUES IN ('a', 'b');
CREATE TABLE by_kind_c PARTITION OF by_kind FOR VALUES IN ('c');
CREATE TABLE notes (event_id bigint, event_at date, FOREIGN KEY (event_id, event_at) REFERENCES events);
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := coalesce(NEW.v, 0); RETURN NEW; END $$;
CREATE TRIGGER events_stamp BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE TABLE animals (name text NOT NULL, CHECK (name <> ''));
CREATE TABLE dogs (breed text) INHERITS (animals);
CREATE TYPE point2 AS (x int, y int);
CREATE TABLE points OF point2 (PRIMARY KEY (x, y));
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON events USING (true);
COMMENT ON TABLE events IS 'partitioned';
RESET search_path;
"#;

    fn same_as_template(schema: &str) {
        let template = structure_of("tenant_template", "tenant_template_owner");
        let copy = structure_of(schema, &format!("{schema}_owner"));
        let only_template: Vec<_> = template.iter().filter(|line| !copy.contains(line)).collect();
        let only_copy: Vec<_> = copy.iter().filter(|line| !template.contains(line)).collect();
        assert!(
            only_template.is_empty() && only_copy.is_empty(),
            "template only: {only_template:#?}\ncopy only: {only_copy:#?}"
        );
        // The catalogs say the same about partitions and inheritance.
        let layout = |schema: &str| {
            one::<String>(&format!(
                "SELECT string_agg(c.relname || '<' || p.relname || ':' || COALESCE(pg_get_expr(c.relpartbound, c.oid), 'inherits')
                                   || ':' || c.relkind::text, ', ' ORDER BY c.relname)
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                  WHERE c.relnamespace = '{schema}'::regnamespace"
            ))
        };
        assert_eq!(layout(schema), layout("tenant_template"));
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                  WHERE c.relnamespace = '{schema}'::regnamespace AND NOT x.indisvalid"
            )),
            Some(0),
            "every partitioned index of the copy is complete"
        );
    }

    fn fill(schema: &str) {
        Spi::run(&format!(
            "INSERT INTO {schema}.accounts VALUES (1, 'a');
             INSERT INTO {schema}.events (id, at, account, kind)
                  SELECT g, date '2024-01-01' + g, 1, 'k' || (g % 3) FROM generate_series(1, 900) g;
             INSERT INTO {schema}.notes SELECT id, at FROM {schema}.events WHERE id % 100 = 0;
             INSERT INTO {schema}.hashed SELECT g, 'n' FROM generate_series(1, 20) g;
             INSERT INTO {schema}.animals VALUES ('cat');
             INSERT INTO {schema}.dogs VALUES ('rex', 'lab');
             INSERT INTO {schema}.points VALUES (1, 2);
             INSERT INTO {schema}.by_kind VALUES ('a', 1), ('c', 2), ('c', 3)"
        ))
        .unwrap();
    }

    /// Rows per partition, and what inheritance and the keys do.
    fn contents(schema: &str) -> Option<String> {
        one::<String>(&format!(
            "SELECT (SELECT string_agg(tableoid::regclass::text || '=' || n, ' ' ORDER BY tableoid::regclass::text)
                       FROM (SELECT tableoid, count(*) AS n FROM {schema}.events GROUP BY 1) e)
                    || ' v=' || (SELECT sum(v) FROM {schema}.events)
                    || ' notes=' || (SELECT count(*) FROM {schema}.notes)
                    || ' hashed_0=' || (SELECT count(*) FROM {schema}.hashed_0)
                    || ' animals=' || (SELECT count(*) FROM {schema}.animals)
                    || ' only=' || (SELECT count(*) FROM ONLY {schema}.animals)
                    || ' points=' || (SELECT count(*) FROM {schema}.points)
                    || ' by_kind_c=' || (SELECT count(*) FROM {schema}.by_kind_c)"
        ))
    }

    #[pg_test]
    fn partitioned_inheriting_and_typed_tables_are_copied() {
        Spi::run(PARTITIONED_TEMPLATE).unwrap();
        let (status, message, _, _) = create("0e0e0e0e-0000-4000-8000-000000000001", Some("parted_a"));
        assert_eq!(status, "SUCCESS", "{message}");
        same_as_template("parted_a");
        fill("parted_a");
        assert_eq!(
            contents("parted_a").as_deref(),
            Some("parted_a.events_2024_low=365 parted_a.events_2025=365 parted_a.events_default=170 v=0 notes=9 hashed_0=8 animals=2 only=1 points=1 by_kind_c=2")
        );
        // The keys hold across partitions, from and to the partitioned table.
        for statement in [
            "INSERT INTO parted_a.events (id, at, account) VALUES (1, '2024-01-02', 1)",
            "INSERT INTO parted_a.events (id, at, account) VALUES (5000, '2025-03-01', 2)",
            "INSERT INTO parted_a.notes VALUES (1, '2030-01-01')",
            "INSERT INTO parted_a.events (id, at, v) VALUES (7000, '2025-03-01', -1)",
        ] {
            let failed = Spi::run(&format!(
                "DO $$ BEGIN {statement}; RAISE 'accepted'; EXCEPTION WHEN unique_violation OR foreign_key_violation
                       OR check_violation THEN NULL; END $$"
            ));
            assert!(failed.is_ok(), "{statement} must be refused: {failed:?}");
        }
    }

    #[pg_test]
    fn partitioned_tables_survive_backup_drop_and_restore() {
        Spi::run(PARTITIONED_TEMPLATE).unwrap();
        let (status, message, id, _) = create("0e0e0e0e-0000-4000-8000-000000000002", Some("parted_b"));
        assert_eq!(status, "SUCCESS", "{message}");
        fill("parted_b");
        let before = contents("parted_b");
        let (status, message, backup_id, _) = take_backup(&id.unwrap(), true);
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run("DROP SCHEMA parted_b CASCADE").unwrap();
        let status =
            one::<String>(&format!("SELECT status FROM tenant.restore_institution_schema('{}')", backup_id.unwrap()));
        assert_eq!(status.as_deref(), Some("SUCCESS"));
        same_as_template("parted_b");
        assert_eq!(contents("parted_b"), before);
    }

    #[pg_test]
    fn a_partition_of_a_table_outside_the_template_is_refused_with_a_hint() {
        Spi::run(
            "CREATE TABLE public.shared_log (at date) PARTITION BY RANGE (at);
             CREATE TABLE tenant_template.my_log PARTITION OF public.shared_log FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        )
        .unwrap();
        let (status, message, _, sqlstate) = create("0e0e0e0e-0000-4000-8000-000000000003", Some("parted_c"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("0A000")), "{message}");
        assert!(message.contains("table inherited from outside the template tenant_template.my_log"), "{message}");
    }
}
