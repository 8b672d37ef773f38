//! Row-level security on the registry and the operation log: an institution
//! administrator sees (and may change the config of) its own institution's
//! rows only; the platform administrator sees everything.

mod common;
use common::*;
use uuid::Uuid;

const DB: &str = "it_institution_admins";

#[test]
fn institution_administrators_see_and_change_their_own_rows_only() {
    let mut su = fresh_database(DB);
    su.batch_execute(
        "DROP ROLE IF EXISTS it_admin_a; DROP ROLE IF EXISTS it_admin_b; DROP ROLE IF EXISTS it_platform;
         CREATE ROLE it_admin_a LOGIN; CREATE ROLE it_admin_b LOGIN;
         CREATE ROLE it_platform LOGIN; GRANT tenant_control_admin TO it_platform;",
    )
    .unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let a_id: Uuid = create(&mut su, a, "ia_alpha").row.get("schema_id");
    let b_id: Uuid = create(&mut su, b, "ia_beta").row.get("schema_id");
    assert!(call(&mut su, "suspend_institution", b_id).ok());
    for (institution, role) in [(a, "it_admin_a"), (b, "it_admin_b")] {
        su.query_one("SELECT tenant.grant_institution_admin($1, $2)", &[&institution, &role]).unwrap();
    }

    let mut admin_a = connect_as("it_admin_a", DB);
    let seen: Vec<Uuid> =
        admin_a.query("SELECT id FROM tenant.tenant_schemas", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, vec![a_id]);
    assert_eq!(count(&mut admin_a, "SELECT count(*) FROM tenant.list_institutions()"), 1);
    let own_log = count(&mut su, &format!("SELECT count(*) FROM tenant.schema_operations WHERE schema_id = '{a_id}'"));
    assert!(own_log >= 1);
    assert_eq!(count(&mut admin_a, "SELECT count(*) FROM tenant.schema_operations"), own_log);
    assert_eq!(count(&mut admin_a, "SELECT count(*) FROM tenant.institution_admins"), 1);

    // Its own config can change; the other institution's row is not there to change.
    let changed = admin_a
        .execute("UPDATE tenant.tenant_schemas SET config = '{\"plan\": \"gold\"}' WHERE schema_name = 'ia_alpha'", &[])
        .unwrap();
    assert_eq!(changed, 1);
    let untouched = admin_a
        .execute("UPDATE tenant.tenant_schemas SET config = '{\"plan\": \"free\"}' WHERE schema_name = 'ia_beta'", &[])
        .unwrap();
    assert_eq!(untouched, 0);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.tenant_schemas WHERE config = '{}'::jsonb AND schema_name = 'ia_beta'"
        ),
        1
    );
    for sql in [
        "UPDATE tenant.tenant_schemas SET status = 'ACTIVE'".to_string(),
        "UPDATE tenant.tenant_schemas SET institution_id = gen_random_uuid()".to_string(),
        "DELETE FROM tenant.tenant_schemas".to_string(),
        "INSERT INTO tenant.schema_operations (operation_type, status, description, started_at, requested_by) VALUES ('CREATE', 'COMPLETED', 'forged', now(), 'x')".to_string(),
        "DELETE FROM tenant.schema_operations".to_string(),
        "SELECT * FROM tenant.schema_backups".to_string(),
        format!("SELECT * FROM tenant.set_institution_status('{a_id}', 'ACTIVE')"),
        format!("SELECT tenant.grant_institution_admin('{b}', 'it_admin_a')"),
    ] {
        assert_eq!(sqlstate_of_failure(&mut admin_a, &sql), "42501", "{sql}");
    }

    // The platform administrator sees every tenant and the whole log.
    let mut platform = connect_as("it_platform", DB);
    assert_eq!(count(&mut platform, "SELECT count(*) FROM tenant.tenant_schemas"), 2);
    assert_eq!(
        count(&mut platform, "SELECT count(*) FROM tenant.schema_operations"),
        count(&mut su, "SELECT count(*) FROM tenant.schema_operations")
    );

    // Taking the right back takes the rows away.
    su.query_one("SELECT tenant.revoke_institution_admin($1, 'it_admin_a')", &[&a]).unwrap();
    let mut admin_a = connect_as("it_admin_a", DB);
    assert_eq!(sqlstate_of_failure(&mut admin_a, "SELECT * FROM tenant.tenant_schemas"), "42501");
    // Nonsense grants are refused with their SQLSTATE.
    for (sql, sqlstate) in [
        (format!("SELECT tenant.grant_institution_admin('{a}', 'it_nobody_here')"), "42704"),
        (format!("SELECT tenant.grant_institution_admin('{a}', 'postgres')"), "22023"),
        (format!("SELECT tenant.grant_institution_admin('{}', 'it_admin_a')", Uuid::new_v4()), "42704"),
        (format!("SELECT tenant.revoke_institution_admin('{a}', 'it_admin_a')"), "42704"),
    ] {
        assert_eq!(sqlstate_of_failure(&mut su, &sql), sqlstate, "{sql}");
    }
}
