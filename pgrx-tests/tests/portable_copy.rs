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
