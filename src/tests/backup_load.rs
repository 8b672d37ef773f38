//! `#[pg_test]` unit tests: how a backup or a restore moves the rows (copy/bulk.rs)
//! and creates the foreign keys (copy/trusted_keys.rs).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// A tenant whose tables have a dropped column, out-of-line values, a
    /// stored generated column, identity, a validated key, a key added NOT
    /// VALID over rows that break it, and a key on a partitioned table.
    fn raw_tenant(institution: &str, schema: &str) -> String {
        let (status, message, id, _) = create(institution, Some(schema));
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run(&format!(
            "SET LOCAL ROLE {schema}_owner;
             SET LOCAL search_path = {schema};
             CREATE TABLE kinds (id int PRIMARY KEY);
             CREATE TABLE items (gone int, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                 kind int NOT NULL REFERENCES kinds, loose int, blob text,
                                 doubled bigint GENERATED ALWAYS AS (id * 2) STORED);
             ALTER TABLE items ALTER blob SET STORAGE EXTERNAL;
             ALTER TABLE items DROP COLUMN gone;
             INSERT INTO kinds SELECT g FROM generate_series(1, 3) g;
             INSERT INTO items (kind, loose, blob)
             SELECT 1 + g % 3, g, CASE WHEN g % 100 = 0 THEN repeat(md5(g::text), 200) END
               FROM generate_series(1, 5000) g;
             ALTER TABLE items ADD CONSTRAINT items_loose FOREIGN KEY (loose) REFERENCES kinds NOT VALID;
             CREATE TABLE events (kind int REFERENCES kinds, at int) PARTITION BY RANGE (at);
             CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100);
             INSERT INTO events SELECT 1, g FROM generate_series(0, 99) g;
             RESET ROLE"
        ))
        .unwrap();
        id.unwrap()
    }

    /// Each foreign key of `schema` with whether it is validated, by table and name.
    fn keys(schema: &str) -> Vec<(String, bool)> {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT t.relname || '.' || c.conname, c.convalidated FROM pg_constraint c
                           JOIN pg_class t ON t.oid = c.conrelid
                          WHERE t.relnamespace = '{schema}'::regnamespace AND c.contype = 'f' ORDER BY 1"
                    ),
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| (row.get::<String>(1).unwrap().unwrap(), row.get::<bool>(2).unwrap().unwrap()))
                .collect()
        })
    }

    /// What the rows of `schema` hold, in one string.
    fn contents(schema: &str) -> Option<String> {
        one(&format!(
            "SELECT concat_ws(' ', count(*), sum(id), sum(doubled), sum(loose), count(blob), sum(length(blob)),
                    (SELECT count(*) FROM {schema}.events_low), (SELECT count(*) FROM {schema}.kinds))
               FROM {schema}.items"
        ))
    }

    /// The integrity check's findings for a tenant, other than its extra objects.
    fn findings(id: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT concat_ws(' ', check_name, object, detail) FROM tenant.check_integrity('{id}')
                          WHERE check_name <> 'extra_object' ORDER BY 1"
                    ),
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect()
        })
    }

    #[pg_test]
    fn a_backup_copies_the_rows_as_they_are_and_keeps_each_key_validated_or_not() {
        let id = raw_tenant("b0000000-0000-4000-8000-000000000031", "bk_raw");
        let (status, message, backup_id, _) = take_backup(&id, true);
        assert_eq!(status, "SUCCESS", "{message}");
        let backup: String = one(&format!(
            "SELECT backup_schema FROM tenant.backups WHERE backup_id = '{}' AND verified",
            backup_id.unwrap()
        ))
        .unwrap();
        let source = keys("bk_raw");
        assert_eq!(
            source,
            vec![
                ("events.events_kind_fkey".to_string(), true),
                ("events_low.events_kind_fkey".to_string(), true),
                ("items.items_kind_fkey".to_string(), true),
                ("items.items_loose".to_string(), false),
            ]
        );
        assert_eq!(keys(&backup), source);
        assert_eq!(contents(&backup), contents("bk_raw"));
        assert_eq!(contents(&backup).as_deref(), Some("5000 12502500 25005000 12502500 50 320000 100 3"));
        // Each key of the copy has its triggers, as in the source.
        let triggers = |schema: &str| {
            one::<i64>(&format!(
                "SELECT count(*) FROM pg_trigger g JOIN pg_constraint c ON c.oid = g.tgconstraint
                  WHERE c.connamespace = '{schema}'::regnamespace AND c.contype = 'f'"
            ))
        };
        assert_eq!(triggers(&backup), triggers("bk_raw"));
    }

    #[pg_test]
    fn a_restore_copies_the_rows_as_they_are_and_keeps_each_key_validated_or_not() {
        let id = raw_tenant("b0000000-0000-4000-8000-000000000032", "bk_raw_back");
        Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        let before = (keys("bk_raw_back"), contents("bk_raw_back"), findings(&id));
        let (status, message, backup_id, _) = take_backup(&id, false);
        assert_eq!(status, "SUCCESS", "{message}");
        let backup_id = backup_id.unwrap();
        Spi::run("DELETE FROM bk_raw_back.items WHERE id > 10").unwrap();
        let (status, message): (Option<String>, Option<String>) =
            Spi::get_two(&format!("SELECT status, message FROM tenant.restore_institution_schema('{backup_id}')"))
                .unwrap();
        assert_eq!(status.as_deref(), Some("SUCCESS"), "{message:?}");
        // The integrity check finds the same: the rows breaking the NOT VALID key, nothing more.
        assert_eq!((keys("bk_raw_back"), contents("bk_raw_back"), findings(&id)), before);
        assert!(before.2.iter().any(|f| f.starts_with("orphaned_rows items.items_loose")), "{:?}", before.2);
        assert_eq!(
            one::<bool>(&format!("SELECT bool_and(matches) FROM tenant.verify_backup('{backup_id}', true)")),
            Some(true)
        );
        // Identity continues after the restored rows; the generated column is computed again.
        assert_eq!(
            one::<String>("INSERT INTO bk_raw_back.items (kind) VALUES (2) RETURNING id || ' ' || doubled"),
            Some("5001 10002".into())
        );
        // The restored key is enforced.
        Spi::run(
            "DO $$ BEGIN INSERT INTO bk_raw_back.items (kind) VALUES (42); RAISE EXCEPTION 'key not enforced';
                  EXCEPTION WHEN foreign_key_violation THEN NULL; END $$",
        )
        .unwrap();
    }

    /// Tenant code that runs during a copy (here a CHECK of a table with a
    /// column of the tenant's own enum, loaded as the tenant's role) could
    /// break a key in the copy: then the copy trusts no key, and the
    /// validation it runs refuses the copy.
    #[pg_test]
    fn a_key_broken_by_tenant_code_during_the_load_fails_the_backup() {
        let (status, message, id, _) = create("b0000000-0000-4000-8000-000000000033", Some("bk_raw_trap"));
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run(
            "SET LOCAL ROLE bk_raw_trap_owner;
             SET LOCAL search_path = bk_raw_trap;
             CREATE TYPE mood AS ENUM ('ok');
             CREATE TABLE armed (on_ boolean);
             CREATE TABLE kinds (id int PRIMARY KEY);
             CREATE TABLE items (kind int REFERENCES kinds);
             CREATE FUNCTION zap() RETURNS boolean LANGUAGE plpgsql AS $f$
                 BEGIN DELETE FROM kinds WHERE EXISTS (SELECT FROM armed); RETURN true; END $f$;
             CREATE TABLE moods (m mood CHECK (zap()));
             INSERT INTO kinds VALUES (1);
             INSERT INTO items VALUES (1);
             INSERT INTO moods VALUES ('ok');
             INSERT INTO armed VALUES (true);
             RESET ROLE",
        )
        .unwrap();
        let id = id.unwrap();
        let (status, message, _, sqlstate) = take_backup(&id, false);
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("23503")), "{message}");
        assert_eq!(one::<i64>("SELECT count(*) FROM bk_raw_trap.kinds"), Some(1));
    }

    /// A table whose only column of the tenant's own type is generated goes
    /// the staged way too: its values must be of the copy's own type.
    #[pg_test]
    fn a_generated_column_of_the_tenants_own_type_is_backed_up_and_restored() {
        let (status, message, id, _) = create("b0000000-0000-4000-8000-000000000034", Some("bk_raw_gen"));
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run(
            "SET LOCAL ROLE bk_raw_gen_owner;
             SET LOCAL search_path = bk_raw_gen;
             CREATE TYPE mood AS ENUM ('sad', 'ok');
             CREATE TABLE tagged (n int, m mood GENERATED ALWAYS AS (CASE WHEN n > 1 THEN 'ok'::mood ELSE 'sad'::mood END) STORED);
             INSERT INTO tagged (n) SELECT g FROM generate_series(1, 3) g;
             RESET ROLE",
        )
        .unwrap();
        let id = id.unwrap();
        let (status, message, backup_id, _) = take_backup(&id, true);
        assert_eq!(status, "SUCCESS", "{message}");
        let (status, message): (Option<String>, Option<String>) = Spi::get_two(&format!(
            "SELECT status, message FROM tenant.restore_institution_schema('{}')",
            backup_id.unwrap()
        ))
        .unwrap();
        assert_eq!(status.as_deref(), Some("SUCCESS"), "{message:?}");
        assert_eq!(
            one::<String>("SELECT string_agg(n || ' ' || m, ', ' ORDER BY n) FROM bk_raw_gen.tagged"),
            Some("1 sad, 2 ok, 3 ok".into())
        );
    }
}
