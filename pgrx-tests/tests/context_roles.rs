//! How set_context switches roles (from 0.2.0): the application's login role is a
//! member of no tenant role, set_context still runs the transaction as the
//! tenant's role, and nothing the application can do with SET ROLE reaches a
//! tenant, inside a context or outside one.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_context_roles";
const OTHER_DB: &str = "it_context_roles_other";

/// A fresh database with two tenants, `<prefix>_alpha` and `<prefix>_beta`
/// (roles belong to the cluster: each test names its own).
fn setup(db: &str, prefix: &str) -> (Client, Uuid, Uuid) {
    let mut su = fresh_database(db);
    su.batch_execute(
        "DROP ROLE IF EXISTS it_cr_app; CREATE ROLE it_cr_app LOGIN; GRANT tenant_control_app TO it_cr_app;
         CREATE TABLE tenant_template.notes (note text);",
    )
    .unwrap();
    let (alpha, beta) = (Uuid::new_v4(), Uuid::new_v4());
    for (institution, name) in [(alpha, "alpha"), (beta, "beta")] {
        let created = create(&mut su, institution, &format!("{prefix}_{name}"));
        assert!(created.ok(), "{}", created.message);
    }
    (su, alpha, beta)
}

fn text(client: &mut Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap().get(0)
}

fn sqlstate(result: Result<(), postgres::Error>) -> Option<String> {
    result.err().and_then(|e| e.code().map(|c| c.code().to_string()))
}

#[test]
fn the_application_is_a_member_of_no_tenant_role_and_still_runs_as_one() {
    let (mut su, alpha, _) = setup(DB, "cr1");
    let members = count(
        &mut su,
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
          WHERE r.rolname IN ('cr1_alpha_owner', 'cr1_beta_owner')",
    );
    assert_eq!(members, 0, "a tenant role has members");
    let mut app = connect_as("it_cr_app", DB);
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}')")).unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "cr1_alpha_owner");
    assert_eq!(text(&mut app, "SELECT current_setting('role')"), "cr1_alpha_owner");
    app.batch_execute("INSERT INTO notes VALUES ('mine')").unwrap();
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "it_cr_app");
    assert_eq!(text(&mut app, "SELECT current_setting('role')"), "none");
    assert_eq!(count(&mut su, "SELECT count(*) FROM cr1_alpha.notes"), 1);
}

#[test]
fn set_role_never_reaches_a_tenant_inside_or_outside_a_context() {
    let (_su, alpha, _) = setup(DB, "cr2");
    let mut app = connect_as("it_cr_app", DB);
    // Outside a context: no tenant role can be assumed directly.
    for role in ["cr2_alpha_owner", "cr2_beta_owner"] {
        assert_eq!(sqlstate(app.batch_execute(&format!("SET ROLE {role}"))).as_deref(), Some("42501"), "{role}");
    }
    // Inside A's context: neither B's role nor (again) A's.
    for role in ["cr2_beta_owner", "cr2_alpha_owner"] {
        app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}')")).unwrap();
        let attempt = app.batch_execute(&format!("SET LOCAL ROLE {role}"));
        assert_eq!(sqlstate(attempt).as_deref(), Some("42501"), "{role}");
        app.batch_execute("ROLLBACK").unwrap();
    }
    // RESET ROLE inside a context goes back to the login role, which sees no tenant.
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}'); RESET ROLE")).unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "it_cr_app");
    assert_eq!(sqlstate(app.batch_execute("SELECT * FROM cr2_alpha.notes")).as_deref(), Some("42501"));
    app.batch_execute("ROLLBACK").unwrap();
    // After the context ends the role it had is gone, whichever way the transaction ended.
    for end in ["COMMIT", "ROLLBACK"] {
        app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}'); {end}")).unwrap();
        assert_eq!(text(&mut app, "SELECT current_user::text"), "it_cr_app", "{end}");
        assert_eq!(sqlstate(app.batch_execute("SELECT * FROM cr2_alpha.notes")).as_deref(), Some("42501"), "{end}");
    }
}

#[test]
fn savepoints_restore_the_role_exactly() {
    let (mut su, alpha, _) = setup(DB, "cr3");
    su.batch_execute("DROP ROLE IF EXISTS it_cr_sub; CREATE ROLE it_cr_sub IN ROLE tenant_control_app; GRANT it_cr_sub TO it_cr_app;").unwrap();
    let mut app = connect_as("it_cr_app", DB);
    // The role the session had set itself comes back after the context.
    app.batch_execute("SET ROLE it_cr_sub").unwrap();
    app.batch_execute(&format!("BEGIN; SAVEPOINT before; SELECT tenant.set_context('{alpha}')")).unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "cr3_alpha_owner");
    app.batch_execute("ROLLBACK TO SAVEPOINT before").unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "it_cr_sub");
    app.batch_execute(&format!("SELECT tenant.set_context('{alpha}'); SAVEPOINT inside")).unwrap();
    app.batch_execute("INSERT INTO notes VALUES ('kept'); ROLLBACK TO SAVEPOINT inside").unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "cr3_alpha_owner");
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "it_cr_sub");
    assert_eq!(text(&mut app, "SELECT current_setting('role')"), "it_cr_sub");
}

#[test]
fn only_members_of_tenant_control_app_are_switched() {
    let (mut su, alpha, _) = setup(DB, "cr4");
    su.batch_execute(
        "DROP ROLE IF EXISTS it_cr_admin; CREATE ROLE it_cr_admin LOGIN; GRANT tenant_control_admin TO it_cr_admin;",
    )
    .unwrap();
    let mut admin = connect_as("it_cr_admin", DB);
    admin.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}')")).unwrap();
    assert_eq!(text(&mut admin, "SELECT current_user::text"), "it_cr_admin");
    admin.batch_execute("ROLLBACK").unwrap();
    // A tenant role (in a context) cannot call set_context to reach another tenant.
    let mut app = connect_as("it_cr_app", DB);
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{alpha}')")).unwrap();
    assert_eq!(text(&mut app, "SELECT current_user::text"), "cr4_alpha_owner");
    let again = app.batch_execute(&format!("SELECT tenant.set_context('{alpha}')"));
    assert_eq!(sqlstate(again).as_deref(), Some("42501"));
}

#[test]
fn sign_ups_in_another_database_change_nothing() {
    let (_su, alpha, beta) = setup(DB, "cr5");
    let mut other = fresh_database(OTHER_DB);
    let mut app = connect_as("it_cr_app", DB);
    let context = |app: &mut Client, institution: Uuid| {
        app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{institution}')")).unwrap();
        let user = text(app, "SELECT current_user::text");
        app.batch_execute("COMMIT").unwrap();
        user
    };
    assert_eq!(context(&mut app, alpha), "cr5_alpha_owner");
    // Roles created (and dropped) in another database of the cluster.
    for i in 0..3 {
        assert!(create(&mut other, Uuid::new_v4(), &format!("cr5_elsewhere_{i}")).ok());
    }
    assert_eq!(context(&mut app, alpha), "cr5_alpha_owner");
    assert_eq!(context(&mut app, beta), "cr5_beta_owner");
    // The application is no member of the other database's tenant roles either.
    assert_eq!(sqlstate(app.batch_execute("SET ROLE cr5_elsewhere_0_owner")).as_deref(), Some("42501"));
    other.batch_execute("SELECT tenant.drop_institution_schema(id) FROM tenant.tenant_schemas").unwrap();
    assert_eq!(context(&mut app, beta), "cr5_beta_owner");
}
