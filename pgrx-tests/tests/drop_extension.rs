//! DROP EXTENSION tenant_control while tenants exist is refused (2BP01) with
//! a hint saying how to proceed, instead of discarding the registry, the log
//! and the backup catalogue; without tenants, or with the override set by a
//! superuser in the dropping transaction, it goes ahead.

mod common;
use common::*;
use postgres::Client;

fn failure(client: &mut Client, sql: &str) -> postgres::error::DbError {
    client.batch_execute(sql).expect_err(sql).as_db_error().expect("a database error").clone()
}

fn extension_installed(client: &mut Client) -> bool {
    count(client, "SELECT count(*) FROM pg_extension WHERE extname = 'tenant_control'") == 1
}

#[test]
fn dropping_the_extension_is_refused_while_institutions_or_backups_exist() {
    let mut su = fresh_database("it_drop_ext");
    let id = create_ok(&mut su, "de_kept");
    su.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm").unwrap();

    for drop in ["DROP EXTENSION tenant_control", "DROP EXTENSION tenant_control CASCADE", "DROP SCHEMA tenant CASCADE"]
    {
        let refused = failure(&mut su, drop);
        assert_eq!(refused.code().code(), "2BP01", "{drop}: {refused}");
        assert!(refused.message().contains("1 institution schema(s) and 0 backup(s)"), "{}", refused.message());
        let hint = refused.hint().unwrap_or_default();
        assert!(
            hint.contains("tenant.drop_institution_schema")
                && hint.contains("tenant.remove_backup")
                && hint.contains("tenant_control.allow_drop_with_tenants"),
            "{hint}"
        );
    }
    assert!(extension_installed(&mut su));
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas"), 1);
    // Other extensions are not held back.
    su.batch_execute("DROP EXTENSION pg_trgm").unwrap();

    // A dropped institution leaves a backup: that still counts.
    assert!(call(&mut su, "drop_institution_schema", id).ok());
    let refused = failure(&mut su, "DROP EXTENSION tenant_control");
    assert_eq!(refused.code().code(), "2BP01");
    assert!(refused.message().contains("0 institution schema(s) and 1 backup(s)"), "{}", refused.message());
    let backup: uuid::Uuid = su.query_one("SELECT id FROM tenant.schema_backups", &[]).unwrap().get(0);
    let removed = outcome(su.query_one("SELECT * FROM tenant.remove_backup($1)", &[&backup]).unwrap());
    assert!(removed.ok(), "{}", removed.message);

    // Nothing left to lose: the drop goes through, and the extension can come back.
    su.batch_execute("DROP EXTENSION tenant_control").unwrap();
    assert!(!extension_installed(&mut su));
    su.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    assert!(extension_installed(&mut su));
}

#[test]
fn a_superuser_may_discard_the_tenants_knowingly_in_the_dropping_transaction() {
    let mut su = fresh_database("it_drop_ext_forced");
    create_ok(&mut su, "de_forced");
    // Only a superuser may set the override.
    su.batch_execute("DROP ROLE IF EXISTS it_drop_admin; CREATE ROLE it_drop_admin LOGIN IN ROLE tenant_control_admin")
        .unwrap();
    let mut admin = connect_as("it_drop_admin", "it_drop_ext_forced");
    // Set before the library is loaded, the value is discarded when it loads...
    admin
        .batch_execute("SET tenant_control.allow_drop_with_tenants = on; SELECT tenant.current_institution()")
        .unwrap();
    let value: String = admin.query_one("SHOW tenant_control.allow_drop_with_tenants", &[]).unwrap().get(0);
    assert_eq!(value, "off");
    // ...and once it is loaded, setting it is refused.
    assert_eq!(sqlstate_of_failure(&mut admin, "SET tenant_control.allow_drop_with_tenants = on"), "42501");
    drop(admin);

    // Set in a new session before the library is loaded, it is still a superuser's setting.
    let mut fresh = superuser("it_drop_ext_forced");
    fresh
        .batch_execute(
            "BEGIN; SET LOCAL tenant_control.allow_drop_with_tenants = on; DROP EXTENSION tenant_control CASCADE; COMMIT;",
        )
        .unwrap();
    assert!(!extension_installed(&mut fresh));
    // The setting was LOCAL: the next drop is checked again.
    fresh.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    create_ok(&mut fresh, "de_forced_again");
    assert_eq!(failure(&mut fresh, "DROP EXTENSION tenant_control").code().code(), "2BP01");
    fresh.batch_execute("DROP ROLE it_drop_admin").unwrap();
}
