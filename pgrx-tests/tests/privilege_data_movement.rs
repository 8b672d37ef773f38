//! The privilege boundary while data moves (backup, verify, restore,
//! restore_table, drop, remove, cleanup): a member of a tenant's role plants
//! code of every kind the data movement could evaluate; each payload records
//! who ran it and tries to leave a mark only a superuser can leave. Every
//! operation runs once as a superuser and once as a non-superuser member of
//! tenant_control_admin, and must still work.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

/// Tables the payloads write: `seen` (anyone may insert) records who ran a
/// payload, `mark` only a superuser can write.
const WITNESS: &str = "
    CREATE TABLE public.seen (who text, su boolean, what text);
    GRANT SELECT, INSERT ON public.seen TO PUBLIC;
    CREATE TABLE public.mark (what text);";

/// The attacker's plantings, run as a LOGIN member of the tenant's role
/// after SET ROLE to it. Bodies never name the schema (the copy refuses
/// that); SQL-standard bodies and expressions bind by OID.
fn plantings(schema: &str) -> String {
    format!(
        "SET ROLE {schema}_owner;
         CREATE FUNCTION {schema}.payload(what text) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.seen
                  VALUES (current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), what);
             BEGIN
                 INSERT INTO public.mark VALUES (what);
             EXCEPTION WHEN insufficient_privilege THEN NULL;
             END;
             RETURN true;
         END $$;
         -- For generated columns and index expressions (IMMUTABLE, created
         -- before the tables): calls the newest payload it may reach by its name.
         CREATE FUNCTION {schema}.ipayload(what text, n int) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
         DECLARE
             call text := (SELECT pg_catalog.format('SELECT %I.%I($1)', n.nspname, p.proname)
                             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                            WHERE p.proname = 'payload' AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                            ORDER BY p.oid DESC LIMIT 1);
             done boolean;
         BEGIN
             EXECUTE call INTO done USING what;
             RETURN done AND n IS NOT NULL;
         END $$;
         CREATE TYPE {schema}.mood AS ENUM ('ok');
         CREATE FUNCTION {schema}.mood_text(m {schema}.mood) RETURNS text LANGUAGE sql
             BEGIN ATOMIC SELECT CASE WHEN {schema}.payload('enum cast') THEN 'ok' END; END;
         CREATE CAST ({schema}.mood AS text) WITH FUNCTION {schema}.mood_text({schema}.mood);
         -- A domain CHECK that goes through that cast.
         CREATE DOMAIN {schema}.guarded AS {schema}.mood CHECK (VALUE::text <> 'zz');
         CREATE TABLE {schema}.t (
             id int PRIMARY KEY,
             doc json,
             mood {schema}.mood,
             guarded {schema}.guarded,
             derived boolean GENERATED ALWAYS AS ({schema}.ipayload('generated', id)) STORED,
             CHECK ({schema}.payload('check'))
         );
         INSERT INTO {schema}.t (id, doc, mood, guarded) VALUES (1, '{{}}', 'ok', 'ok'), (2, '[]', 'ok', 'ok'), (3, 'null', 'ok', 'ok');
         CREATE FUNCTION {schema}.row_text(r {schema}.t) RETURNS text LANGUAGE sql
             BEGIN ATOMIC SELECT CASE WHEN {schema}.payload('row cast') THEN 'x' END; END;
         CREATE CAST ({schema}.t AS text) WITH FUNCTION {schema}.row_text({schema}.t);
         CREATE FUNCTION {schema}.fire() RETURNS trigger LANGUAGE plpgsql SET search_path = {schema}, pg_catalog
             AS $$ BEGIN PERFORM payload('trigger'); RETURN COALESCE(NEW, OLD); END $$;
         CREATE TRIGGER fire BEFORE INSERT OR DELETE ON {schema}.t FOR EACH ROW EXECUTE FUNCTION {schema}.fire();
         CREATE INDEX t_expression ON {schema}.t ({schema}.ipayload('index', id));
         CREATE MATERIALIZED VIEW {schema}.mv AS SELECT {schema}.payload('matview') AS x;
         RESET ROLE;"
    )
}

/// A database with the witness tables, a tenant `schema` with its payloads
/// planted by the LOGIN member `<schema>_user`, and a LOGIN member of
/// tenant_control_admin `<schema>_admin`.
fn planted(db: &str, schema: &str) -> (Client, Uuid) {
    let mut su = fresh_database(db);
    let user = format!("{schema}_user");
    let admin = format!("{schema}_admin");
    let mut cluster = superuser("postgres");
    for role in [&user, &admin, &format!("{schema}_owner")] {
        cluster.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    }
    su.batch_execute(WITNESS).unwrap();
    let id = create_ok(&mut su, schema);
    su.batch_execute(&format!(
        "CREATE ROLE {user} LOGIN IN ROLE {schema}_owner; CREATE ROLE {admin} LOGIN IN ROLE tenant_control_admin;"
    ))
    .unwrap();
    connect_as(&user, db).batch_execute(&plantings(schema)).unwrap();
    su.batch_execute("TRUNCATE public.seen").unwrap();
    (su, id)
}

/// Who ran the payloads since the last look: (who, superuser, what).
fn seen(su: &mut Client) -> Vec<(String, bool, String)> {
    let rows = su.query("SELECT who, su, what FROM public.seen", &[]).unwrap();
    su.batch_execute("TRUNCATE public.seen").unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

/// No mark, and every payload that ran ran as the tenant's role or as a
/// backup's role (the owner of a backup's copy builds its indexes and
/// fills its materialized views), never as a superuser.
fn only_tenant_rights(su: &mut Client, schema: &str, step: &str) -> Vec<String> {
    assert_eq!(count(su, "SELECT count(*) FROM public.mark"), 0, "{step}: a payload left a superuser's mark");
    let tenant = format!("{schema}_owner");
    let ran = seen(su);
    for (who, superuser, what) in &ran {
        let backup_role = who.starts_with("tc_backup_") && who.ends_with("_owner");
        assert!(!superuser && (*who == tenant || backup_role), "{step}: payload {what} ran as {who}");
    }
    ran.into_iter().map(|(_, _, what)| what).collect()
}

fn ran(whats: &[String], what: &str) -> bool {
    whats.iter().any(|w| w == what)
}

fn row_of(client: &mut Client, sql: &str) -> Outcome {
    outcome(client.query_one(sql, &[]).unwrap())
}

fn rows_of(su: &mut Client, schema: &str) -> Vec<(i32, String)> {
    su.query(&format!("SELECT id, pg_catalog.textin(pg_catalog.enum_out(mood)) FROM ONLY {schema}.t ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Every data movement on one planted tenant, run by `runner`.
fn every_operation_keeps_the_boundary(db: &str, schema: &str, as_admin: bool) {
    let (mut su, id) = planted(db, schema);
    let mut runner = if as_admin { connect_as(&format!("{schema}_admin"), db) } else { superuser(db) };
    let original = rows_of(&mut su, schema);

    // Backup with verification: the rows are loaded as the tenant's role.
    let taken = row_of(&mut runner, &format!("SELECT * FROM tenant.backup_institution_schema('{id}', true)"));
    assert!(taken.ok(), "backup: {}", taken.message);
    let backup_id: Uuid = taken.row.get("backup_id");
    let whats = only_tenant_rights(&mut su, schema, "backup");
    for what in ["check", "generated", "index", "matview", "enum cast"] {
        assert!(ran(&whats, what), "backup: payload {what} did not run at all: {whats:?}");
    }
    assert!(!ran(&whats, "row cast") && !ran(&whats, "trigger"), "backup: {whats:?}");
    let backup_schema: String =
        su.query_one("SELECT backup_schema FROM tenant.backups WHERE backup_id = $1", &[&backup_id]).unwrap().get(0);
    assert_eq!(rows_of(&mut su, &backup_schema), original);
    // The backup's role has no members and no USAGE on its schema afterwards.
    let role = format!("{backup_schema}_owner");
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM pg_auth_members WHERE roleid = '{role}'::regrole")), 0);
    let usage: bool = su
        .query_one(&format!("SELECT has_schema_privilege('{role}', '{backup_schema}', 'USAGE')"), &[])
        .unwrap()
        .get(0);
    assert!(!usage, "the backup's role kept USAGE on its schema");

    // Verification hashes without the tenant's cast from its row type to text.
    let verified: bool =
        runner.query_one("SELECT bool_and(matches) FROM tenant.verify_backup($1, true)", &[&backup_id]).unwrap().get(0);
    assert!(verified);
    let whats = only_tenant_rights(&mut su, schema, "verify");
    assert!(whats.is_empty(), "verify ran tenant code: {whats:?}");

    // restore_table: the tenant's triggers fire as the tenant's role.
    // The tenant loses rows (its own trigger fires, as its own role).
    connect_as(&format!("{schema}_user"), db)
        .batch_execute(&format!("SET ROLE {schema}_owner; DELETE FROM {schema}.t WHERE id > 1"))
        .unwrap();
    seen(&mut su);
    let table = row_of(&mut runner, &format!("SELECT * FROM tenant.restore_table('{backup_id}', 't', 'replace')"));
    assert!(table.ok(), "restore_table: {}", table.message);
    let whats = only_tenant_rights(&mut su, schema, "restore_table");
    assert!(ran(&whats, "trigger") && ran(&whats, "check"), "restore_table: {whats:?}");
    assert_eq!(rows_of(&mut su, schema), original);

    // Restore in place.
    let restored = row_of(&mut runner, &format!("SELECT * FROM tenant.restore_institution_schema('{backup_id}')"));
    assert!(restored.ok(), "restore: {}", restored.message);
    let whats = only_tenant_rights(&mut su, schema, "restore in place");
    assert!(ran(&whats, "check") && ran(&whats, "matview"), "restore: {whats:?}");
    assert_eq!(rows_of(&mut su, schema), original);

    // Drop: the seal hashes the rows without the tenant's cast.
    let dropped = row_of(&mut runner, &format!("SELECT * FROM tenant.drop_institution_schema('{id}')"));
    assert!(dropped.ok(), "drop: {}", dropped.message);
    let dropped_into: String = dropped.row.get("backup_schema");
    let whats = only_tenant_rights(&mut su, schema, "drop");
    assert!(whats.is_empty(), "drop ran tenant code: {whats:?}");
    let drop_backup: Uuid =
        su.query_one("SELECT backup_id FROM tenant.backups WHERE backup_schema = $1", &[&dropped_into]).unwrap().get(0);

    // The former member reaches nothing of the dropped tenant's backup.
    let dropped_role = format!("{dropped_into}_owner");
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{schema}_owner'")), 0);
    assert_eq!(
        count(&mut su, &format!("SELECT count(*) FROM pg_auth_members WHERE roleid = '{dropped_role}'::regrole")),
        0
    );
    let mut former = connect_as(&format!("{schema}_user"), db);
    for attack in [
        format!("DROP OWNED BY {dropped_role}"),
        format!("DROP OWNED BY {schema}_owner"),
        format!("DROP TABLE {dropped_into}.t"),
        format!("SET ROLE {dropped_role}"),
    ] {
        assert!(former.batch_execute(&attack).is_err(), "a former member could: {attack}");
    }
    let verified: bool =
        runner.query_one("SELECT bool_and(matches) FROM tenant.verify_backup($1)", &[&drop_backup]).unwrap().get(0);
    assert!(verified, "the dropped tenant's backup no longer verifies");
    only_tenant_rights(&mut su, schema, "verify after drop");

    // Restore of the dropped tenant: a new role of the old name owns it again.
    let back = row_of(&mut runner, &format!("SELECT * FROM tenant.restore_institution_schema('{drop_backup}')"));
    assert!(back.ok(), "restore of the dropped tenant: {}", back.message);
    only_tenant_rights(&mut su, schema, "restore of the dropped tenant");
    assert_eq!(rows_of(&mut su, schema), original);
    let owner: String = su
        .query_one(&format!("SELECT relowner::regrole::text FROM pg_class WHERE oid = '{schema}.t'::regclass"), &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("{schema}_owner"));
    // The former member is no member of the new role.
    assert!(former.batch_execute(&format!("SET ROLE {schema}_owner")).is_err());

    // Removing a backup drops its role.
    let removed = row_of(&mut runner, &format!("SELECT * FROM tenant.remove_backup('{backup_id}')"));
    assert!(removed.ok(), "remove: {}", removed.message);
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")), 0);
    only_tenant_rights(&mut su, schema, "remove");
}

#[test]
fn data_movement_as_a_superuser_runs_tenant_code_with_tenant_rights() {
    every_operation_keeps_the_boundary("it_priv_move_su", "pm_super", false);
}

#[test]
fn data_movement_as_an_admin_runs_tenant_code_with_tenant_rights() {
    every_operation_keeps_the_boundary("it_priv_move_admin", "pm_admin", true);
}

#[test]
fn cleanup_backups_refuses_bad_retention_and_removes_nothing() {
    let db = "it_priv_cleanup";
    let mut su = fresh_database(db);
    su.batch_execute("DROP ROLE IF EXISTS pm_cleanup_owner").unwrap();
    let id = create_ok(&mut su, "pm_cleanup");
    for _ in 0..2 {
        assert!(call(&mut su, "backup_institution_schema", id).ok());
    }
    su.batch_execute("UPDATE tenant.schema_backups SET created_at = now() - interval '10 days'").unwrap();
    for bad in [
        "CALL tenant.cleanup_backups(max_age => '-1 day')",
        "CALL tenant.cleanup_backups(max_age => '0 seconds')",
        "CALL tenant.cleanup_backups(keep_last => 1, max_age => '-1 day')",
        "CALL tenant.cleanup_backups(keep_last => -1)",
        "SET tenant_control.backup_max_age = '-5 days'; CALL tenant.cleanup_backups()",
    ] {
        assert_eq!(sqlstate_of_failure(&mut su, bad), "22023", "{bad}");
        su.batch_execute("RESET tenant_control.backup_max_age").unwrap();
        assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.backups"), 2, "{bad} removed backups");
    }
    // A sane age still works.
    su.batch_execute("CALL tenant.cleanup_backups(max_age => '1 day')").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.backups"), 0);
}

/// Roles belong to the cluster: a drop in a copy of a database leaves the
/// role the original still uses alone, and a restore there refuses to adopt it.
#[test]
fn a_drop_in_a_copy_of_the_database_leaves_the_original_tenant_alone() {
    let (original, copy) = ("it_priv_original", "it_priv_copy");
    let mut cluster = superuser("postgres");
    for db in [copy, original] {
        cluster.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    }
    cluster.batch_execute("DROP ROLE IF EXISTS pm_shared_owner, pm_shared_two_owner").unwrap();
    let mut su = fresh_database(original);
    let id = create_ok(&mut su, "pm_shared");
    su.batch_execute("SET ROLE pm_shared_owner; CREATE TABLE pm_shared.t (id int PRIMARY KEY); RESET ROLE;").unwrap();
    drop(su);
    cluster.batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {original}")).unwrap();

    let mut other = superuser(copy);
    let dropped = call(&mut other, "drop_institution_schema", id);
    assert!(dropped.ok(), "{}", dropped.message);
    // The original's tenant still works with its role.
    let mut su = superuser(original);
    su.batch_execute("BEGIN; SET LOCAL ROLE pm_shared_owner; INSERT INTO pm_shared.t VALUES (1); COMMIT;").unwrap();
    // The copy's backup is owned by its own backup role, not by the shared role.
    let dropped_into: String = dropped.row.get("backup_schema");
    let owner: String = other
        .query_one(
            &format!("SELECT relowner::regrole::text FROM pg_class WHERE oid = '{dropped_into}.t'::regclass"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("{dropped_into}_owner"));
    // Restoring it under its old name would adopt the original's role: refused.
    let backup_id: Uuid =
        other.query_one("SELECT backup_id FROM tenant.backups WHERE reason = 'DROP'", &[]).unwrap().get(0);
    let refused = row_of(&mut other, &format!("SELECT * FROM tenant.restore_institution_schema('{backup_id}')"));
    assert_eq!((refused.status.as_str(), refused.sqlstate.as_deref()), ("ERROR", Some("42710")), "{}", refused.message);
    let renamed =
        row_of(&mut other, &format!("SELECT * FROM tenant.restore_institution_schema('{backup_id}', 'pm_shared_two')"));
    assert!(renamed.ok(), "{}", renamed.message);
    // Removing the copy's backups never drops the original's role.
    for row in other.query("SELECT backup_id FROM tenant.backups", &[]).unwrap() {
        let backup: Uuid = row.get(0);
        assert!(row_of(&mut other, &format!("SELECT * FROM tenant.remove_backup('{backup}')")).ok());
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_roles WHERE rolname = 'pm_shared_owner'"), 1);
    su.batch_execute("BEGIN; SET LOCAL ROLE pm_shared_owner; INSERT INTO pm_shared.t VALUES (2); COMMIT;").unwrap();
}
