//! `#[pg_test]` unit tests: properties that CREATE statements leave out and a
//! copy must keep all the same (issue 12). Each test sets one property in the
//! template, then reads it back from the template, from a copy, and from that
//! copy brought back by backup -> drop -> restore. The whole schemas are
//! compared with pg_dump in pgrx-tests/tests/fidelity.rs.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// `probe` (a query giving one text, `{s}` standing for the schema) read
    /// from `schema`, with the name of the schema's role written `ROLE`.
    fn read(probe: &str, schema: &str, role: &str) -> String {
        one::<String>(&probe.replace("{s}", schema)).unwrap_or_default().replace(role, "ROLE")
    }

    /// Run `setup` in the template, then check that `probe` gives `expected`
    /// in the template, in a new tenant `schema`, and in that tenant after a
    /// backup, a drop and a restore of the backup. Returns the tenant's id.
    fn kept(institution: &str, schema: &str, setup: &str, probe: &str, expected: &str) -> String {
        Spi::run(&format!("SET LOCAL search_path = tenant_template; {setup}; RESET search_path")).unwrap();
        assert_eq!(read(probe, "tenant_template", "tenant_template_owner"), expected, "in the template");
        let role = format!("{schema}_owner");
        let (status, message, id, _) = create(institution, Some(schema));
        assert_eq!(status, "SUCCESS", "{message}");
        let id = id.unwrap();
        assert_eq!(read(probe, schema, &role), expected, "in the copy");
        round_trip(&id);
        assert_eq!(read(probe, schema, &role), expected, "after backup, drop and restore");
        id
    }

    /// Back a tenant up, drop it, restore the backup.
    fn round_trip(id: &str) {
        let (status, message, backup, _) = take_backup(id, false);
        assert_eq!(status, "SUCCESS", "{message}");
        let (status, message, _, _) = status_row(&format!(
            "SELECT status, message, backup_schema, sqlstate FROM tenant.drop_institution_schema('{id}')"
        ));
        assert_eq!(status, "SUCCESS", "{message}");
        let (status, message, _, _) = status_row(&format!(
            "SELECT status, message, schema_id::text, sqlstate FROM tenant.restore_institution_schema('{}')",
            backup.unwrap()
        ));
        assert_eq!(status, "SUCCESS", "{message}");
    }

    #[pg_test]
    fn storage_parameters_of_key_indexes_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000001",
            "fid_keys",
            "CREATE TABLE t (id int PRIMARY KEY WITH (fillfactor = 70), email text,
                             CONSTRAINT t_email_key UNIQUE (email) WITH (fillfactor = 80, deduplicate_items = off))",
            "SELECT string_agg(c.relname || ':' || array_to_string(c.reloptions, ','), ' ' ORDER BY c.relname)
               FROM pg_class c WHERE c.relnamespace = '{s}'::regnamespace AND c.relkind = 'i'",
            "t_email_key:fillfactor=80,deduplicate_items=off t_pkey:fillfactor=70",
        );
    }

    #[pg_test]
    fn cluster_on_is_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000002",
            "fid_cluster",
            "CREATE TABLE t (id int PRIMARY KEY, note text); CREATE INDEX t_note ON t (note);
             ALTER TABLE t CLUSTER ON t_note",
            "SELECT string_agg(c.relname, ' ') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indisclustered AND c.relnamespace = '{s}'::regnamespace",
            "t_note",
        );
    }

    #[pg_test]
    fn toast_storage_parameters_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000003",
            "fid_toast",
            "CREATE TABLE t (id int, body text) WITH (fillfactor = 90, toast.autovacuum_enabled = false,
                                                     toast.vacuum_truncate = false);
             CREATE MATERIALIZED VIEW m WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)
                 AS SELECT id, body FROM t",
            "SELECT string_agg(c.relname || ':' || array_to_string(c.reloptions, ',') || '/' || array_to_string(t.reloptions, ','),
                               ' ' ORDER BY c.relname)
               FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relnamespace = '{s}'::regnamespace",
            "m:autovacuum_enabled=false/autovacuum_enabled=false \
             t:fillfactor=90/autovacuum_enabled=false,vacuum_truncate=false",
        );
    }

    #[pg_test]
    fn column_storage_compression_and_options_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000004",
            "fid_storage",
            "CREATE TABLE t (id int, body text, doc jsonb, code text);
             ALTER TABLE t ALTER COLUMN body SET STORAGE EXTERNAL, ALTER COLUMN doc SET STORAGE MAIN,
                           ALTER COLUMN code SET COMPRESSION pglz, ALTER COLUMN id SET (n_distinct = -0.5)",
            "SELECT string_agg(format('%s:%s:%s:%s', attname, attstorage, attcompression,
                                      (SELECT string_agg(o, ',') FROM unnest(attoptions) o WHERE NOT starts_with(o, 'pg_attver='))),
                               ' ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = '{s}.t'::regclass AND attnum > 0",
            "id:p::n_distinct=-0.5 body:e:: doc:m:: code:x:p:",
        );
    }

    #[pg_test]
    fn statistics_targets_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000005",
            "fid_statistics",
            "CREATE TABLE t (id int, note text); ALTER TABLE t ALTER COLUMN note SET STATISTICS 500;
             CREATE INDEX t_expr ON t ((id + 1)); ALTER INDEX t_expr ALTER COLUMN 1 SET STATISTICS 300",
            "SELECT string_agg(attstattarget::text, ',' ORDER BY attrelid = '{s}.t'::regclass DESC, attnum)
               FROM pg_attribute WHERE attrelid IN ('{s}.t'::regclass, '{s}.t_expr'::regclass) AND attnum > 0",
            "-1,500,300",
        );
    }

    #[pg_test]
    fn replica_identity_is_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000006",
            "fid_replica",
            "CREATE TABLE a (id int, email text NOT NULL CONSTRAINT a_email_key UNIQUE); ALTER TABLE a REPLICA IDENTITY USING INDEX a_email_key;
             CREATE TABLE b (id int); ALTER TABLE b REPLICA IDENTITY FULL;
             CREATE TABLE c (id int); ALTER TABLE c REPLICA IDENTITY NOTHING",
            "SELECT string_agg(c.relname || ':' || c.relreplident::text
                               || coalesce((SELECT ':' || x.relname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
                                             WHERE i.indrelid = c.oid AND i.indisreplident), ''), ' ' ORDER BY c.relname)
               FROM pg_class c WHERE c.relnamespace = '{s}'::regnamespace AND c.relkind = 'r'",
            "a:i:a_email_key b:f c:n",
        );
    }

    #[pg_test]
    fn comments_on_composite_columns_and_domain_constraints_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000007",
            "fid_comments",
            "CREATE TYPE pair AS (a int, b text); COMMENT ON COLUMN pair.b IS 'second';
             CREATE DOMAIN positive AS int CONSTRAINT positive_check CHECK (VALUE > 0);
             COMMENT ON CONSTRAINT positive_check ON DOMAIN positive IS 'must be positive'",
            "SELECT col_description('{s}.pair'::regclass, 2) || '/'
                    || (SELECT obj_description(k.oid, 'pg_constraint') FROM pg_constraint k WHERE k.contypid = '{s}.positive'::regtype)",
            "second/must be positive",
        );
    }

    #[pg_test]
    fn defaults_on_view_columns_are_kept() {
        kept(
            "f1000000-0000-4000-8000-000000000008",
            "fid_view_default",
            "CREATE TABLE t (id int, note text); CREATE VIEW v AS SELECT id, note FROM t;
             ALTER VIEW v ALTER COLUMN note SET DEFAULT 'none'",
            "SELECT string_agg(pg_get_expr(adbin, adrelid), ' ') FROM pg_attrdef WHERE adrelid = '{s}.v'::regclass",
            "'none'::text",
        );
        // The default is used by inserts through the view.
        Spi::run("INSERT INTO fid_view_default.v (id) VALUES (1)").unwrap();
        assert_eq!(one::<String>("SELECT note FROM fid_view_default.t"), Some("none".into()));
    }

    #[pg_test]
    fn privileges_the_owner_revoked_from_itself_stay_revoked() {
        let id = kept(
            "f1000000-0000-4000-8000-000000000009",
            "fid_owner_acl",
            "CREATE TABLE ledger (id int); ALTER TABLE ledger OWNER TO tenant_template_owner;
             REVOKE DELETE, TRUNCATE ON ledger FROM tenant_template_owner;
             CREATE SEQUENCE counter; ALTER SEQUENCE counter OWNER TO tenant_template_owner;
             REVOKE UPDATE ON counter FROM tenant_template_owner;
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; ALTER FUNCTION f() OWNER TO tenant_template_owner;
             REVOKE EXECUTE ON FUNCTION f() FROM tenant_template_owner",
            "SELECT (SELECT array_to_string(relacl, ',') FROM pg_class WHERE oid = '{s}.ledger'::regclass) || ' '
                    || (SELECT array_to_string(relacl, ',') FROM pg_class WHERE oid = '{s}.counter'::regclass) || ' '
                    || (SELECT array_to_string(proacl, ',') FROM pg_proc WHERE oid = '{s}.f'::regproc)",
            "ROLE=arwxt/ROLE ROLE=rU/ROLE =X/ROLE",
        );
        // Rows still load into a table whose owner keeps INSERT (a restore loads as the tenant's role).
        Spi::run("INSERT INTO fid_owner_acl.ledger VALUES (7)").unwrap();
        round_trip(&id);
        assert_eq!(one::<i64>("SELECT count(*) FROM fid_owner_acl.ledger WHERE id = 7"), Some(1));
        assert_eq!(
            one::<String>(
                "SELECT array_to_string(relacl, ',') FROM pg_class WHERE oid = 'fid_owner_acl.ledger'::regclass"
            ),
            Some("fid_owner_acl_owner=arwxt/fid_owner_acl_owner".into())
        );
    }
}
