//! Copies of an institution between databases (issue 14):
//! `tenant.copy_institution_from(source, institution_id, schema_name, in_place, migrate)`
//! from a second cluster started by this test (over dblink), and from another
//! database of the same cluster. The copy must hold the source's rows (same
//! hashes on both sides), keep its sequences, bring the registry row along,
//! be logged on both sides, and refuse a template version mismatch.

mod cluster;
mod common;
use cluster::{required_env, Cluster};
use common::*;
use postgres::Client;
use uuid::Uuid;

/// A template that exercises what a copy must carry: a serial and an identity
/// column, an enum and a domain of the schema, a generated column, a foreign
/// key, a populated materialized view, and a trigger.
const TEMPLATE: &str = "
CREATE TYPE tenant_template.mood AS ENUM ('ok', 'sad');
CREATE DOMAIN tenant_template.positive AS int CHECK (VALUE > 0);
CREATE TABLE tenant_template.parents (id serial PRIMARY KEY, name text NOT NULL, mood tenant_template.mood);
CREATE TABLE tenant_template.children (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id int NOT NULL REFERENCES tenant_template.parents,
    qty tenant_template.positive,
    doubled int GENERATED ALWAYS AS (qty * 2) STORED,
    note text);
CREATE FUNCTION tenant_template.touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.note := coalesce(NEW.note, '') || '+'; RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE INSERT ON tenant_template.children FOR EACH ROW EXECUTE FUNCTION tenant_template.touch();
CREATE MATERIALIZED VIEW tenant_template.totals AS
  SELECT parent_id, sum(qty)::bigint AS total FROM tenant_template.children GROUP BY parent_id;
";

/// A second cluster of this test's own, with the extension and dblink in `db`.
fn second_cluster(name: &str, db: &str) -> (Cluster, Client) {
    let bin = required_env("TC_TEST_PG_BIN");
    let mut cluster = Cluster::init(name, &bin);
    cluster.start(&bin);
    let mut admin = cluster.connect("postgres");
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut client = cluster.connect(db);
    client.batch_execute("CREATE EXTENSION tenant_control; CREATE EXTENSION dblink").unwrap();
    client.batch_execute(TEMPLATE).unwrap();
    (cluster, client)
}

/// A database of the test cluster with the extension, dblink and the template.
fn source_database(db: &str) -> Client {
    let mut client = fresh_database(db);
    client.batch_execute("CREATE EXTENSION dblink").unwrap();
    client.batch_execute(TEMPLATE).unwrap();
    client
}

fn connection_string(db: &str) -> String {
    format!("host={} port={} user=postgres dbname={db}", host(), port())
}

/// An institution with rows in every table, its config and quota set.
fn populated(client: &mut Client, schema: &str, rows: i32) -> (Uuid, Uuid) {
    let institution = Uuid::new_v4();
    let created = create(client, institution, schema);
    assert!(created.ok(), "create {schema}: {}", created.message);
    let schema_id: Uuid = created.row.get("schema_id");
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.parents (name, mood) SELECT 'p' || i, CASE WHEN i % 2 = 0 THEN 'ok' ELSE 'sad' END::{schema}.mood
               FROM generate_series(1, {rows}) i;
             INSERT INTO {schema}.children (parent_id, qty) SELECT 1 + i % {rows}, i FROM generate_series(1, {rows} * 3) i;
             DELETE FROM {schema}.children WHERE id % 7 = 0;
             REFRESH MATERIALIZED VIEW {schema}.totals;
             UPDATE tenant.tenant_schemas SET config = '{{\"plan\": \"gold\"}}', quota_limit = 123456789 WHERE id = '{schema_id}'"
        ))
        .unwrap();
    (institution, schema_id)
}

fn copy(client: &mut Client, source: &str, institution: Uuid, name: Option<&str>, in_place: bool) -> Outcome {
    outcome(
        client
            .query_one(
                "SELECT * FROM tenant.copy_institution_from($1, $2, $3, in_place => $4)",
                &[&source, &institution, &name, &in_place],
            )
            .unwrap(),
    )
}

/// Every row of every table of a schema, as sorted text: what must be equal on both sides.
fn contents(client: &mut Client, schema: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["parents", "children", "totals"] {
        let rows = client
            .query(&format!("SELECT t::text FROM {schema}.{table} t ORDER BY t::text"), &[])
            .unwrap_or_else(|e| panic!("read {schema}.{table}: {e}"));
        found.extend(rows.iter().map(|r| format!("{table}: {}", r.get::<_, String>(0))));
    }
    found
}

fn registry_row(client: &mut Client, institution: Uuid) -> (String, String, String, Option<i64>, i32) {
    let row = client
        .query_one(
            "SELECT schema_name, status, config::text, quota_limit, version FROM tenant.tenant_schemas
              WHERE institution_id = $1 AND status <> 'DROPPED'",
            &[&institution],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// The next values the sequences give, consumed in a transaction rolled back.
fn next_ids(client: &mut Client, schema: &str) -> (i32, i64) {
    let mut tx = client.transaction().unwrap();
    let parent: i32 =
        tx.query_one(&format!("INSERT INTO {schema}.parents (name) VALUES ('n') RETURNING id"), &[]).unwrap().get(0);
    let child: i64 = tx
        .query_one(&format!("INSERT INTO {schema}.children (parent_id, qty) VALUES (1, 1) RETURNING id"), &[])
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    (parent, child)
}

fn logged(client: &mut Client, kind: &str, key: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = $1 AND status = 'COMPLETED' AND metadata ? $2",
            &[&kind, &key],
        )
        .unwrap()
        .get(0)
}

#[test]
fn copy_between_two_clusters_as_a_new_institution_keeps_rows_sequences_and_registry() {
    let (target_cluster, mut target) = second_cluster("copy-target", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source");
    let (institution, _) = populated(&mut source, "acme", 40);

    let done = copy(&mut target, &connection_string("it_copy_source"), institution, None, false);
    assert!(done.ok(), "copy: {} ({:?})", done.message, done.sqlstate);
    assert!(done.message.contains("new schema \"acme\""), "{}", done.message);

    assert_eq!(contents(&mut target, "acme"), contents(&mut source, "acme"));
    assert_eq!(
        next_ids(&mut target, "acme"),
        next_ids(&mut source, "acme"),
        "sequences continue where the source's are"
    );
    let (schema, status, config, quota, version) = registry_row(&mut target, institution);
    assert_eq!((schema.as_str(), status.as_str(), quota, version), ("acme", "ACTIVE", Some(123456789), 0));
    assert_eq!(config, r#"{"plan": "gold"}"#);
    // The copy is a tenant like any other: its role reaches it, the template's trigger works.
    target
        .batch_execute("SET ROLE acme_owner; INSERT INTO acme.children (parent_id, qty) VALUES (2, 99999); RESET ROLE")
        .unwrap();
    assert_eq!(count(&mut target, "SELECT count(*) FROM acme.children WHERE qty = 99999 AND note = '+'"), 1);
    // Logged on both sides.
    assert_eq!(logged(&mut target, "RESTORE", "source_database"), 1);
    // Both tables hold tenant code (an enum, a domain, a generated column): both were staged.
    assert_eq!(count(&mut target, "SELECT sum((metadata->>'direct_tables')::int) FROM tenant.schema_operations"), 0);
    assert_eq!(logged(&mut source, "BACKUP", "copy_out"), 1);
    // No staging table, no temporary schema left behind.
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_class WHERE relname LIKE 'tc_load_%'"), 0);
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tc_restoring_%'"), 0);

    // A second copy as a new institution is refused: it is here now.
    let again = copy(&mut target, &connection_string("it_copy_source"), institution, None, false);
    assert_eq!(again.sqlstate.as_deref(), Some("42710"), "{}", again.message);
}

#[test]
fn copy_in_place_swaps_in_the_source_rows_and_keeps_the_replaced_schema_as_a_backup() {
    let (target_cluster, mut target) = second_cluster("copy-in-place", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source_b");
    let (institution, _) = populated(&mut source, "globex", 25);
    let first = copy(&mut target, &connection_string("it_copy_source_b"), institution, None, false);
    assert!(first.ok(), "{}", first.message);
    let schema_id: Uuid = first.row.get("schema_id");
    // Both sides move on differently; the copy in place brings the source's state.
    target
        .batch_execute("DELETE FROM globex.children; INSERT INTO globex.parents (name) VALUES ('local only')")
        .unwrap();
    source.batch_execute("INSERT INTO globex.parents (name, mood) VALUES ('later', 'ok')").unwrap();
    let other = create_ok(&mut target, "bystander");
    target.batch_execute("INSERT INTO bystander.parents (name) VALUES ('untouched')").unwrap();

    let done = copy(&mut target, &connection_string("it_copy_source_b"), institution, None, true);
    assert!(done.ok(), "{} ({:?})", done.message, done.sqlstate);
    assert_eq!(done.row.get::<_, Uuid>("schema_id"), schema_id, "the institution keeps its registry id");
    assert_eq!(contents(&mut target, "globex"), contents(&mut source, "globex"));
    let kept: String = target
        .query_one(
            "SELECT backup_schema FROM tenant.schema_backups WHERE schema_id = $1 AND reason = 'RESTORE'",
            &[&schema_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(count(&mut target, &format!("SELECT count(*) FROM {kept}.parents WHERE name = 'local only'")), 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM bystander.parents WHERE name = 'untouched'"), 1);
    let bystander: String =
        target.query_one("SELECT status FROM tenant.tenant_schemas WHERE id = $1", &[&other]).unwrap().get(0);
    assert_eq!(bystander, "ACTIVE");

    // A name beside the live one makes a drill no tenant role reaches.
    let drill = copy(&mut target, &connection_string("it_copy_source_b"), institution, Some("globex_then"), false);
    assert!(drill.ok(), "{}", drill.message);
    assert_eq!(contents(&mut target, "globex_then"), contents(&mut source, "globex"));
    let reason: String = target
        .query_one("SELECT reason FROM tenant.schema_backups WHERE backup_schema = 'globex_then'", &[])
        .unwrap()
        .get(0);
    assert_eq!(reason, "DRILL");
    let reachable: bool =
        target.query_one("SELECT has_schema_privilege('globex_owner', 'globex_then', 'USAGE')", &[]).unwrap().get(0);
    assert!(!reachable);
}

#[test]
fn copy_of_a_dropped_institution_comes_from_its_backup_on_the_source() {
    let (target_cluster, mut target) = second_cluster("copy-dropped", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source_c");
    let (institution, schema_id) = populated(&mut source, "initech", 30);
    let expected = contents(&mut source, "initech");
    let dropped = call(&mut source, "drop_institution_schema", schema_id);
    assert!(dropped.ok(), "{}", dropped.message);

    let done = copy(&mut target, &connection_string("it_copy_source_c"), institution, None, false);
    assert!(done.ok(), "{} ({:?})", done.message, done.sqlstate);
    assert_eq!(contents(&mut target, "initech"), expected);
    let (_, status, _, _, _) = registry_row(&mut target, institution);
    assert_eq!(status, "ACTIVE");

    // An institution the source never had: a clear error, nothing created.
    let unknown = copy(&mut target, &connection_string("it_copy_source_c"), Uuid::new_v4(), None, false);
    assert_eq!(unknown.sqlstate.as_deref(), Some("42704"), "{}", unknown.message);
}

#[test]
fn copy_refuses_a_template_version_mismatch_unless_asked_to_migrate() {
    let (target_cluster, mut target) = second_cluster("copy-version", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source_d");
    let (institution, _) = populated(&mut source, "hooli", 10);
    let registered = target
        .query_one(
            "SELECT status, message FROM tenant.register_migration(1, 'ALTER TABLE parents ADD COLUMN rank int DEFAULT 7', 'rank')",
            &[],
        )
        .unwrap();
    assert_eq!(registered.get::<_, String>(0), "SUCCESS", "{}", registered.get::<_, String>(1));

    let refused = copy(&mut target, &connection_string("it_copy_source_d"), institution, None, false);
    assert_eq!(refused.sqlstate.as_deref(), Some("55000"), "{}", refused.message);
    assert!(refused.message.contains("version 0") && refused.message.contains("version 1"), "{}", refused.message);
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'hooli'"), 0);
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_roles WHERE rolname = 'hooli_owner'"), 0);

    let migrated = outcome(
        target
            .query_one(
                "SELECT * FROM tenant.copy_institution_from($1, $2, migrate => true)",
                &[&connection_string("it_copy_source_d"), &institution],
            )
            .unwrap(),
    );
    assert!(migrated.ok(), "{} ({:?})", migrated.message, migrated.sqlstate);
    let (_, _, _, _, version) = registry_row(&mut target, institution);
    assert_eq!(version, 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM hooli.parents WHERE rank = 7"), 10);
}

#[test]
fn copy_from_another_database_of_the_same_cluster_needs_a_new_name_for_its_role() {
    let mut source = source_database("it_copy_same_src");
    let mut target = source_database("it_copy_same_dst");
    let (institution, _) = populated(&mut source, "umbrella", 15);

    // Roles belong to the cluster: umbrella_owner is the source's.
    let clash = copy(&mut target, &connection_string("it_copy_same_src"), institution, None, false);
    assert_eq!(clash.sqlstate.as_deref(), Some("42710"), "{}", clash.message);

    let done = copy(&mut target, &connection_string("it_copy_same_src"), institution, Some("umbrella_copy"), false);
    assert!(done.ok(), "{} ({:?})", done.message, done.sqlstate);
    assert_eq!(contents(&mut target, "umbrella_copy"), contents(&mut source, "umbrella"));
    let (schema, _, _, _, _) = registry_row(&mut target, institution);
    assert_eq!(schema, "umbrella_copy");
}

#[test]
fn copy_refusals_name_what_is_missing() {
    let mut target = fresh_database("it_copy_refusals");
    // Without dblink.
    let no_dblink = copy(&mut target, "dbname=postgres", Uuid::new_v4(), None, false);
    assert_eq!(no_dblink.sqlstate.as_deref(), Some("0A000"), "{}", no_dblink.message);
    assert!(no_dblink.message.contains("dblink"), "{}", no_dblink.message);
    target.batch_execute("CREATE EXTENSION dblink").unwrap();
    // A source that does not answer.
    let unreachable = copy(&mut target, "host=/nonexistent port=1 dbname=x", Uuid::new_v4(), None, false);
    assert_eq!(unreachable.sqlstate.as_deref(), Some("08001"), "{}", unreachable.message);
    // Only a superuser session may open connections with the extension owner's rights.
    target
        .batch_execute("DROP ROLE IF EXISTS copy_admin; CREATE ROLE copy_admin LOGIN IN ROLE tenant_control_admin")
        .unwrap();
    let mut admin = connect_as("copy_admin", "it_copy_refusals");
    let refused = copy(&mut admin, &connection_string("it_copy_refusals"), Uuid::new_v4(), None, false);
    assert_eq!(refused.sqlstate.as_deref(), Some("42501"), "{}", refused.message);
    drop(admin);
    target.batch_execute("DROP ROLE copy_admin").unwrap();
}

/// A role of the cluster, created unless it exists (roles outlive a test's databases).
fn ensure_role(client: &mut Client, role: &str) {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .unwrap();
}

/// config, quota_limit, limits, and row limits (table, max_rows, row_count).
type Settings = (String, Option<i64>, Option<String>, Vec<(String, i64, i64)>);

/// The settings of an institution as the target must receive them.
fn settings_of(client: &mut Client, institution: Uuid) -> Settings {
    let row = client
        .query_one(
            "SELECT t.config::text, t.quota_limit, (SELECT l.limits::text FROM tenant.institution_limits l WHERE l.schema_id = t.id)
               FROM tenant.tenant_schemas t WHERE t.institution_id = $1 AND t.status <> 'DROPPED'",
            &[&institution],
        )
        .unwrap();
    let limits = client
        .query(
            "SELECT r.table_name, r.max_rows, r.row_count FROM tenant.row_limits r
               JOIN tenant.tenant_schemas t ON t.id = r.schema_id
              WHERE t.institution_id = $1 AND t.status <> 'DROPPED' ORDER BY 1",
            &[&institution],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (row.get(0), row.get(1), row.get(2), limits)
}

fn archives_of(client: &mut Client, institution: Uuid) -> Vec<(String, String)> {
    client
        .query(
            "SELECT a.table_name, a.archive_table FROM tenant.retention_archives a
               JOIN tenant.tenant_schemas t ON t.id = a.schema_id
              WHERE t.institution_id = $1 AND t.status <> 'DROPPED' ORDER BY 2",
            &[&institution],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn admins_of(client: &mut Client, institution: Uuid) -> Vec<String> {
    client
        .query("SELECT role_name FROM tenant.institution_admins WHERE institution_id = $1 ORDER BY 1", &[&institution])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn copy_brings_the_institution_settings_along_as_new_and_in_place() {
    let (target_cluster, mut target) = second_cluster("copy-settings", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source_s");
    let (institution, schema_id) = populated(&mut source, "wayne", 20);
    // Everything per institution the source holds: config with a retention
    // override, quota, limits, a row limit, two administrators (one of them a
    // role the target's cluster does not have).
    ensure_role(&mut source, "wayne_it");
    ensure_role(&mut source, "wayne_auditor");
    ensure_role(&mut target, "wayne_it");
    source
        .batch_execute(&format!(
            "UPDATE tenant.tenant_schemas SET config = '{{\"plan\": \"gold\", \"retention\": {{\"children\": {{\"keep\": \"30 days\"}}}}}}'
              WHERE id = '{schema_id}';
             SELECT tenant.set_limits('{schema_id}', '{{\"statement_timeout\": \"5s\", \"max_transactions\": 7}}');
             SELECT tenant.set_row_limit('{schema_id}', 'parents', 100);
             SELECT tenant.grant_institution_admin('{institution}', 'wayne_it');
             SELECT tenant.grant_institution_admin('{institution}', 'wayne_auditor');
             CREATE TABLE wayne.children_archive (id bigint, note text);
             INSERT INTO tenant.retention_archives (schema_id, table_name, archive_table)
             VALUES ('{schema_id}', 'children', 'children_archive');"
        ))
        .unwrap();

    let done = copy(&mut target, &connection_string("it_copy_source_s"), institution, None, false);
    assert!(done.ok(), "copy: {} ({:?})", done.message, done.sqlstate);
    let (config, quota, limits, row_limits) = settings_of(&mut target, institution);
    assert_eq!(config, r#"{"plan": "gold", "retention": {"children": {"keep": "30 days"}}}"#);
    assert_eq!(quota, Some(123456789));
    let limits: serde_json::Value = serde_json::from_str(limits.as_deref().expect("limits arrived")).unwrap();
    assert_eq!(limits, serde_json::json!({"statement_timeout": "5s", "max_transactions": 7}));
    assert_eq!(row_limits, vec![("parents".to_string(), 100, 20)]);
    // The row limit is enforced on the copy: its counting triggers are there.
    assert_eq!(
        sqlstate_of_failure(&mut target, "INSERT INTO wayne.parents (name) SELECT 'x' FROM generate_series(1, 81)"),
        "53400"
    );
    target.batch_execute("INSERT INTO wayne.parents (name) SELECT 'x' FROM generate_series(1, 80)").unwrap();
    assert_eq!(settings_of(&mut target, institution).3, vec![("parents".to_string(), 100, 100)]);
    // The archive table that retention made is known as such here too.
    assert_eq!(archives_of(&mut target, institution), vec![("children".to_string(), "children_archive".to_string())]);
    // The administrator whose role exists here was granted; the other is named in the log.
    assert_eq!(admins_of(&mut target, institution), vec!["wayne_it".to_string()]);
    assert_eq!(
        count(
            &mut target,
            "SELECT count(*) FROM tenant.schema_operations WHERE metadata->'admins_skipped' = '[\"wayne_auditor\"]'"
        ),
        1
    );

    // In place: the settings become the source's again, and no other.
    source
        .batch_execute(&format!(
            "UPDATE tenant.tenant_schemas SET config = '{{\"plan\": \"silver\"}}', quota_limit = NULL WHERE id = '{schema_id}';
             SELECT tenant.set_limits('{schema_id}', '{{\"work_mem\": \"8MB\"}}');
             SELECT tenant.set_row_limit('{schema_id}', 'parents', NULL);
             SELECT tenant.set_row_limit('{schema_id}', 'children', 500);"
        ))
        .unwrap();
    let children: i64 = count(&mut source, "SELECT count(*) FROM wayne.children");
    let again = copy(&mut target, &connection_string("it_copy_source_s"), institution, None, true);
    assert!(again.ok(), "copy in place: {} ({:?})", again.message, again.sqlstate);
    let (config, quota, limits, row_limits) = settings_of(&mut target, institution);
    assert_eq!((config.as_str(), quota), (r#"{"plan": "silver"}"#, None));
    let limits: serde_json::Value = serde_json::from_str(limits.as_deref().expect("limits arrived")).unwrap();
    assert_eq!(limits, serde_json::json!({"work_mem": "8MB"}));
    assert_eq!(row_limits, vec![("children".to_string(), 500, children)]);
    assert_eq!(archives_of(&mut target, institution), vec![("children".to_string(), "children_archive".to_string())]);
    // The old limit is gone with its triggers: parents takes any number of rows.
    target.batch_execute("INSERT INTO wayne.parents (name) SELECT 'y' FROM generate_series(1, 200)").unwrap();
}

/// The copy's connections to the source: none left on either side.
fn assert_no_copy_connection(source: &mut Client, target: &mut Client) {
    let open: Option<Vec<String>> = target.query_one("SELECT dblink_get_connections()", &[]).unwrap().get(0);
    assert_eq!(open, None, "dblink connections left open on the target");
    // A closed connection's backend on the source ends a moment later.
    let mut left = 0;
    for _ in 0..100 {
        left = count(source, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenant_control copy'");
        if left == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{left} session(s) of the copy left on the source");
}

#[test]
fn a_refused_failed_or_cancelled_copy_leaves_no_connection_or_transaction_behind() {
    let (target_cluster, mut target) = second_cluster("copy-cleanup", "it_copy_target");
    let _keep = &target_cluster;
    let mut source = source_database("it_copy_source_e");
    let (institution, _) = populated(&mut source, "cyberdyne", 200);
    let from = connection_string("it_copy_source_e");

    // Not enough free space (as a backup estimates it): refused up front,
    // naming the institution and the sizes.
    target.batch_execute("SET tenant_control.backup_reserve = 2147483647").unwrap();
    let short = copy(&mut target, &from, institution, None, false);
    assert_eq!(short.sqlstate.as_deref(), Some("53100"), "{}", short.message);
    assert!(short.message.contains(&institution.to_string()), "{}", short.message);
    assert!(short.message.contains("bytes on the source") && short.message.contains("bytes free"), "{}", short.message);
    target.batch_execute("RESET tenant_control.backup_reserve").unwrap();
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cyberdyne'"), 0);
    assert_no_copy_connection(&mut source, &mut target);

    // A copy that fails after reading from the source (the name is taken here).
    target.batch_execute("CREATE SCHEMA cyberdyne").unwrap();
    let taken = copy(&mut target, &from, institution, None, false);
    assert_eq!(taken.sqlstate.as_deref(), Some("42P06"), "{}", taken.message);
    target.batch_execute("DROP SCHEMA cyberdyne").unwrap();
    assert_no_copy_connection(&mut source, &mut target);

    // A cancelled copy: the source's table is locked, so the copy waits there
    // until its statement_timeout has passed; the lock then goes and the copy
    // ends cancelled (57014).
    let mut locker = superuser("it_copy_source_e");
    locker.batch_execute("BEGIN; LOCK TABLE cyberdyne.children IN ACCESS EXCLUSIVE MODE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        locker.batch_execute("COMMIT").unwrap();
    });
    target.batch_execute("SET statement_timeout = '1s'").unwrap();
    let cancelled = target.query_one("SELECT * FROM tenant.copy_institution_from($1, $2)", &[&from, &institution]);
    target.batch_execute("RESET statement_timeout").unwrap();
    release.join().unwrap();
    let state = match cancelled {
        Ok(row) => outcome(row).sqlstate,
        Err(error) => error.code().map(|c| c.code().to_string()),
    };
    assert_eq!(state.as_deref(), Some("57014"));
    assert_eq!(count(&mut target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cyberdyne'"), 0);
    assert_no_copy_connection(&mut source, &mut target);

    // Still copies afterwards.
    let done = copy(&mut target, &from, institution, None, false);
    assert!(done.ok(), "{} ({:?})", done.message, done.sqlstate);
    assert_no_copy_connection(&mut source, &mut target);
}
