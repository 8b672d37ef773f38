//! set_context's per-connection cache (issue 13): a connection that entered
//! an ACTIVE institution in the last minute enters it again without asking
//! the registry, and forgets that answer as soon as anything about the
//! institution changes in any other connection (or its own transaction rolls
//! back a change). Whether the registry was asked is read from the
//! connection's own function statistics (`pg_stat_xact_user_functions`
//! counts calls of `tenant.enter_context` in the current transaction).

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_context_cache";
const APP: &str = "it_cc_app";

struct Fleet {
    su: Client,
    institution: Uuid,
    schema_id: Uuid,
}

fn setup(prefix: &str) -> Fleet {
    let mut su = fresh_database(DB);
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {APP}; CREATE ROLE {APP} LOGIN; GRANT tenant_control_app TO {APP};
         ALTER ROLE {APP} SET track_functions = 'all';"
    ))
    .unwrap();
    let institution = Uuid::new_v4();
    let created = create(&mut su, institution, &format!("{prefix}_alpha"));
    assert!(created.ok(), "{}", created.message);
    Fleet { su, institution, schema_id: created.row.get("schema_id") }
}

/// `BEGIN [isolation]; SELECT tenant.set_context(..)`: how many times it
/// asked the registry (called enter_context), the transaction left open; or
/// the SQLSTATE of its failure, the transaction rolled back.
fn enter(client: &mut Client, begin: &str, institution: Uuid) -> Result<i64, String> {
    client.batch_execute(begin).unwrap();
    // The statistics view also shows calls not yet reported by earlier
    // transactions: count the difference.
    let before = registry_calls(client);
    match client.execute("SELECT tenant.set_context($1)", &[&institution]) {
        Ok(_) => Ok(registry_calls(client) - before),
        Err(error) => {
            client.batch_execute("ROLLBACK").unwrap();
            Err(error.code().map(|c| c.code().to_string()).unwrap_or_default())
        }
    }
}

fn registry_calls(client: &mut Client) -> i64 {
    count(
        client,
        "SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_xact_user_functions
          WHERE schemaname = 'tenant' AND funcname = 'enter_context'",
    )
}

fn text(client: &mut Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Enter twice, committing; the second time from the cache.
fn warm(app: &mut Client, institution: Uuid) {
    assert!(enter(app, "BEGIN", institution).is_ok());
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(enter(app, "BEGIN", institution), Ok(0), "enter_context calls of a warm connection");
    app.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_warm_connection_enters_from_its_cache_with_the_same_context() {
    let Fleet { institution, .. } = setup("cc1");
    let mut app = connect_as(APP, DB);
    assert_eq!(enter(&mut app, "BEGIN", institution), Ok(1), "the first call asks the registry");
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(enter(&mut app, "BEGIN", institution), Ok(0));
    assert_eq!(text(&mut app, "SELECT current_user::text"), "cc1_alpha_owner");
    assert_eq!(text(&mut app, "SELECT current_setting('search_path')"), "cc1_alpha, public");
    assert_eq!(text(&mut app, "SELECT tenant.current_institution()::text"), institution.to_string());
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), APP);
    // Another connection asks the registry (its cache is its own), but neither
    // records the access again (recorded a moment ago) nor makes the
    // transaction a writing one: COMMIT of a read-only transaction stays free.
    let mut other = connect_as(APP, DB);
    assert_eq!(enter(&mut other, "BEGIN", institution), Ok(1));
    assert_eq!(text(&mut other, "SELECT COALESCE(pg_current_xact_id_if_assigned()::text, 'none')"), "none");
    other.batch_execute("COMMIT").unwrap();
    // REPEATABLE READ neither uses nor fills the cache: its snapshot may be
    // older than what the cache has heard of.
    assert_eq!(enter(&mut app, "BEGIN ISOLATION LEVEL REPEATABLE READ", institution), Ok(1));
    app.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_status_change_in_another_connection_reaches_a_warm_connection_at_once() {
    let Fleet { mut su, institution, schema_id } = setup("cc2");
    let mut app = connect_as(APP, DB);
    for status in ["suspend_institution", "start_maintenance"] {
        warm(&mut app, institution);
        // A transaction already open when the change commits sees it too.
        app.batch_execute("BEGIN; SELECT 1").unwrap();
        assert!(call(&mut su, status, schema_id).ok(), "{status}");
        assert_eq!(
            app.execute("SELECT tenant.set_context($1)", &[&institution]).err().and_then(|e| e.code().cloned()),
            Some(postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
            "{status}"
        );
        app.batch_execute("ROLLBACK").unwrap();
        assert_eq!(enter(&mut app, "BEGIN", institution), Err("55000".to_string()), "{status}");
        assert!(call(&mut su, "activate_institution", schema_id).ok());
        assert_eq!(enter(&mut app, "BEGIN", institution), Ok(1), "after {status} ended");
        app.batch_execute("COMMIT").unwrap();
    }
    // Dropped: gone for good, whatever the connection remembered.
    warm(&mut app, institution);
    assert!(call(&mut su, "drop_institution_schema", schema_id).ok());
    assert!(enter(&mut app, "BEGIN", institution).is_err(), "a dropped institution was entered");
}

#[test]
fn limits_set_in_another_connection_apply_to_a_warm_connection() {
    let Fleet { mut su, institution, schema_id } = setup("cc3");
    let mut app = connect_as(APP, DB);
    warm(&mut app, institution);
    su.execute("SELECT tenant.set_limits($1, '{\"statement_timeout\": \"4s\"}')", &[&schema_id]).unwrap();
    assert_eq!(enter(&mut app, "BEGIN", institution), Ok(1));
    assert_eq!(text(&mut app, "SHOW statement_timeout"), "4s");
    app.batch_execute("COMMIT").unwrap();
    // An institution with limits always asks the registry (which applies them).
    assert_eq!(enter(&mut app, "BEGIN", institution), Ok(1));
    assert_eq!(text(&mut app, "SHOW statement_timeout"), "4s");
    app.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_change_rolled_back_in_the_same_connection_is_forgotten() {
    let Fleet { mut su, institution, schema_id } = setup("cc4");
    assert!(call(&mut su, "suspend_institution", schema_id).ok());
    // The superuser activates the institution, enters it (the registry's
    // uncommitted answer: ACTIVE), then rolls everything back.
    su.batch_execute("BEGIN").unwrap();
    su.execute("SELECT * FROM tenant.activate_institution($1)", &[&schema_id]).unwrap();
    su.execute("SELECT tenant.set_context($1)", &[&institution]).unwrap();
    su.batch_execute("ROLLBACK").unwrap();
    assert_eq!(enter(&mut su, "BEGIN", institution), Err("55000".to_string()));
}

/// The DDL event trigger also remembers, per connection, which schemas are
/// not tenants' (ops/schema_cache). A schema name remembered that way and
/// then registered as a tenant by another connection gets the tenant checks
/// in the first connection's very next DDL; and a tenant registered and
/// rolled back in the connection itself leaves no "tenant" behind.
#[test]
fn a_schema_registered_in_another_connection_is_checked_at_once() {
    let Fleet { mut su, .. } = setup("cc5");
    let mut other = superuser(DB);
    // tc_ names are free outside tenant schemas: the answer "not a tenant's" is kept.
    other
        .batch_execute("CREATE SCHEMA cc5_beta; CREATE TABLE cc5_beta.tc_free (x int); DROP SCHEMA cc5_beta CASCADE")
        .unwrap();
    let created = create(&mut su, Uuid::new_v4(), "cc5_beta");
    assert!(created.ok(), "{}", created.message);
    assert_eq!(sqlstate_of_failure(&mut other, "CREATE TABLE cc5_beta.tc_taken (x int)"), "42939");
    // Registered and rolled back in one connection: the name is free again there.
    other.batch_execute("BEGIN").unwrap();
    let rolled_back = create(&mut other, Uuid::new_v4(), "cc5_gamma");
    assert!(rolled_back.ok(), "{}", rolled_back.message);
    assert_eq!(sqlstate_of_failure(&mut other, "CREATE TABLE cc5_gamma.tc_taken (x int)"), "42939");
    other.batch_execute("ROLLBACK").unwrap();
    other.batch_execute("CREATE SCHEMA cc5_gamma; CREATE TABLE cc5_gamma.tc_free (x int)").unwrap();
}
