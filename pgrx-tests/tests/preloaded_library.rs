//! The library preloaded by the server (`shared_preload_libraries`), in a
//! cluster of the test's own. Then the postmaster, its other processes and
//! databases without the extension carry the library's settings, hooks and
//! callbacks too. The extension works as it does without preloading, a
//! database without it is left alone (DDL, GRANT and a refused call there
//! get nothing from the extension), and no process of the server fails.

mod cluster;
mod common;
use cluster::Cluster;
use common::{count, eventually, sqlstate_of_failure};

#[test]
fn a_server_that_preloads_the_library_works_and_leaves_other_databases_alone() {
    // The last setting in the file wins.
    let cluster =
        Cluster::running("preloaded", "shared_preload_libraries = 'pg_cron,pg_stat_statements,tenant_control'");
    let mut admin = cluster.connect("postgres");
    for statement in
        ["CREATE DATABASE tenants", "CREATE DATABASE plain", "CREATE ROLE pl_app LOGIN", "CREATE ROLE pl_nobody LOGIN"]
    {
        admin.batch_execute(statement).unwrap();
    }

    // A database without the extension: its settings are there from the start,
    // and DDL, GRANT and a refused call behave as on any server.
    let mut plain = cluster.connect("plain");
    let lock_timeout: String = plain.query_one("SHOW tenant_control.lock_timeout", &[]).unwrap().get(0);
    assert_eq!(lock_timeout, "5s");
    plain
        .batch_execute(
            "CREATE TABLE t (id int); GRANT SELECT ON t TO pl_nobody; REVOKE SELECT ON t FROM pl_nobody;
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC; DROP TABLE t;",
        )
        .unwrap();
    let mut nobody = cluster.connect_as("pl_nobody", "plain");
    assert_eq!(sqlstate_of_failure(&mut nobody, "SELECT f()"), "42501");
    assert_eq!(count(&mut plain, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant'"), 0);

    // The extension in another database of the same server works as ever.
    let mut su = cluster.connect("tenants");
    su.batch_execute(
        "CREATE EXTENSION tenant_control; GRANT tenant_control_app TO pl_app;
         CREATE TABLE tenant_template.notes (note text);",
    )
    .unwrap();
    let institution = uuid::Uuid::new_v4();
    let row = su
        .query_one("SELECT status, message FROM tenant.create_institution_schema($1, 'pl_alpha')", &[&institution])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
    let mut app = cluster.connect_as("pl_app", "tenants");
    app.batch_execute(&format!(
        "BEGIN; SELECT tenant.set_context('{institution}'); INSERT INTO notes VALUES ('hello'); COMMIT"
    ))
    .unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM pl_alpha.notes"), 1);
    let findings = count(&mut su, "SELECT count(*) FROM tenant.check_integrity() WHERE severity = 'ERROR'");
    assert_eq!(findings, 0);

    // A refused call of the extension's is recorded by a session that never
    // called it before: the library is loaded already.
    let mut outsider = cluster.connect_as("pl_nobody", "tenants");
    assert_eq!(
        sqlstate_of_failure(&mut outsider, "SELECT tenant.create_institution_schema(gen_random_uuid(), 'pl_x')"),
        "42501"
    );
    let recorded = "SELECT count(*) FROM tenant.audit_events
                     WHERE outcome = 'REFUSED' AND session_role = 'pl_nobody' AND action = 'create_institution_schema'";
    eventually(&mut su, recorded, 1);

    // Every process of the server is still there, and none failed (read
    // before the shutdown, at which PostgreSQL's own workers exit with code 1).
    drop((plain, nobody, su, app, outsider));
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'checkpointer'"), 1);
    let log = std::fs::read_to_string(format!("{}/server.log", cluster.host())).unwrap();
    for sign in ["PANIC", "terminated by signal", "exited with exit code", "FATAL"] {
        let lines: Vec<&str> = log.lines().filter(|line| line.contains(sign)).collect();
        assert!(lines.is_empty(), "the server log shows a failed process ({sign}): {lines:?}");
    }
    drop(admin);
    cluster.discard();
}
