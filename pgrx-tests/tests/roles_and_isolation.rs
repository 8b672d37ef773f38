//! Roles over real connections: a non-superuser administrator, a role without
//! the grant, and tenant roles trying to reach each other.

mod common;
use common::*;

const DB: &str = "it_roles";

fn setup_roles(db: &mut postgres::Client) {
    db.batch_execute(
        "DROP ROLE IF EXISTS it_dba; DROP ROLE IF EXISTS it_nobody;
         CREATE ROLE it_dba LOGIN; GRANT tenant_control_admin TO it_dba;
         CREATE ROLE it_nobody LOGIN;",
    )
    .unwrap();
}

#[test]
fn administrator_role_runs_the_lifecycle_without_superuser() {
    let mut su = fresh_database(DB);
    setup_roles(&mut su);
    let mut dba = connect_as("it_dba", DB);
    assert_eq!(count(&mut dba, "SELECT count(*) FROM pg_roles WHERE rolname = current_user AND rolsuper"), 0);

    let id = create_ok(&mut dba, "rl_admin");
    assert!(call(&mut dba, "suspend_institution", id).ok());
    assert!(call(&mut dba, "activate_institution", id).ok());
    let dropped = call(&mut dba, "drop_institution_schema", id);
    assert!(dropped.ok(), "{}", dropped.message);
    assert_eq!(count(&mut dba, "SELECT count(*) FROM tenant.schema_operations WHERE requested_by = 'it_dba'"), 4);
    assert_eq!(count(&mut dba, "SELECT count(*) FROM tenant.list_institutions('DROPPED')"), 1);

    // The registry is read-only for the administrator: changes go through the functions.
    assert_eq!(sqlstate_of_failure(&mut dba, "UPDATE tenant.tenant_schemas SET status = 'ACTIVE'"), "42501");
    assert_eq!(sqlstate_of_failure(&mut dba, "DELETE FROM tenant.schema_operations"), "42501");
}

#[test]
fn a_role_without_the_grant_can_do_nothing() {
    let mut su = fresh_database(DB);
    setup_roles(&mut su);
    let id = create_ok(&mut su, "rl_target");
    let mut nobody = connect_as("it_nobody", DB);
    for sql in [
        "SELECT * FROM tenant.create_institution_schema(gen_random_uuid(), 'rl_intruder')".to_string(),
        format!("SELECT * FROM tenant.drop_institution_schema('{id}')"),
        format!("SELECT * FROM tenant.set_institution_status('{id}', 'SUSPENDED')"),
        format!("SELECT tenant.refresh_storage('{id}')"),
        "SELECT * FROM tenant.list_institutions()".to_string(),
        "SELECT * FROM tenant.tenant_schemas".to_string(),
        "SELECT * FROM tenant.schema_operations".to_string(),
    ] {
        assert_eq!(sqlstate_of_failure(&mut nobody, &sql), "42501", "{sql}");
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rl_intruder'"), 0);
}

#[test]
fn a_tenant_role_reaches_its_own_schema_only() {
    let mut su = fresh_database(DB);
    let a = create_ok(&mut su, "rl_alpha");
    create_ok(&mut su, "rl_beta");
    su.batch_execute(
        "SET ROLE rl_alpha_owner;
         CREATE TABLE rl_alpha.notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
         INSERT INTO rl_alpha.notes (body) VALUES ('alpha secret');
         CREATE FUNCTION rl_alpha.secret() RETURNS text LANGUAGE sql AS 'SELECT body FROM rl_alpha.notes';
         CREATE VIEW rl_alpha.open_notes AS SELECT body FROM rl_alpha.notes;
         GRANT SELECT ON rl_alpha.open_notes TO PUBLIC;
         SET ROLE rl_beta_owner;
         CREATE TABLE rl_beta.notes (body text);
         RESET ROLE;",
    )
    .unwrap();
    // A dropped tenant's backup schema, reachable by no tenant either.
    let dropped = create_ok(&mut su, "rl_delta");
    su.batch_execute("SET ROLE rl_delta_owner; CREATE TABLE rl_delta.kept (x int); RESET ROLE;").unwrap();
    let backup: String = call(&mut su, "drop_institution_schema", dropped).row.get("backup_schema");
    let backup_read = format!("SELECT * FROM {backup}.kept");
    for sql in [
        backup_read.as_str(),
        "SELECT * FROM rl_alpha.open_notes",
        "SELECT * FROM tenant.schema_backups",
        "SELECT * FROM tenant.migrations",
        "SELECT * FROM rl_alpha.notes",
        "INSERT INTO rl_alpha.notes (body) VALUES ('x')",
        "SELECT rl_alpha.secret()",
        "SELECT nextval('rl_alpha.notes_id_seq')",
        "CREATE TABLE rl_alpha.planted (x int)",
        "SELECT * FROM tenant.tenant_schemas",
        "SELECT * FROM tenant.schema_operations",
        "SELECT * FROM tenant.create_institution_schema(gen_random_uuid(), 'rl_gamma')",
    ] {
        let attempt = format!("BEGIN; SET LOCAL ROLE rl_beta_owner; {sql}; COMMIT;");
        assert_eq!(sqlstate_of_failure(&mut su, &attempt), "42501", "{sql}");
        su.batch_execute("ROLLBACK").unwrap();
    }
    // The owner itself works, until its institution is suspended.
    su.batch_execute("BEGIN; SET LOCAL ROLE rl_alpha_owner; SELECT * FROM rl_alpha.notes; COMMIT;").unwrap();
    assert!(call(&mut su, "suspend_institution", a).ok());
    let attempt = "BEGIN; SET LOCAL ROLE rl_alpha_owner; SELECT * FROM rl_alpha.notes; COMMIT;";
    assert_eq!(sqlstate_of_failure(&mut su, attempt), "42501");
    su.batch_execute("ROLLBACK").unwrap();
    assert!(call(&mut su, "activate_institution", a).ok());
    su.batch_execute("BEGIN; SET LOCAL ROLE rl_alpha_owner; SELECT * FROM rl_alpha.notes; COMMIT;").unwrap();
}

#[test]
fn suspension_stops_statements_prepared_before_it() {
    let mut su = fresh_database(DB);
    let id = create_ok(&mut su, "rl_prepared");
    su.batch_execute("SET ROLE rl_prepared_owner; CREATE TABLE rl_prepared.t (x int); RESET ROLE;").unwrap();
    // The application session runs as the tenant role with a prepared statement.
    let mut app = superuser(DB);
    app.batch_execute("SET ROLE rl_prepared_owner").unwrap();
    let insert = app.prepare("INSERT INTO rl_prepared.t VALUES (1)").unwrap();
    app.execute(&insert, &[]).unwrap();
    assert!(call(&mut su, "suspend_institution", id).ok());
    let error = app.execute(&insert, &[]).expect_err("a suspended tenant must not write");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error}");
    assert!(call(&mut su, "activate_institution", id).ok());
    app.execute(&insert, &[]).unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM rl_prepared.t"), 2);
}

#[test]
fn a_failed_operation_is_logged_durably() {
    let mut su = fresh_database(DB);
    let result = create(&mut su, uuid::Uuid::new_v4(), "public");
    assert_eq!((result.status.as_str(), result.sqlstate.as_deref()), ("ERROR", Some("42939")));
    // Autocommit: the FAILED row is there for a new connection to read.
    let mut other = superuser(DB);
    let row = other
        .query_one(
            "SELECT status, error_sqlstate, error_message, requested_by FROM tenant.schema_operations
              WHERE operation_type = 'CREATE'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "FAILED");
    assert_eq!(row.get::<_, String>(1), "42939");
    assert!(row.get::<_, String>(2).contains("\"public\" is reserved"));
    assert_eq!(row.get::<_, String>(3), "postgres");
}
