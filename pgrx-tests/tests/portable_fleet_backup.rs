//! Scheduled fleet backups (issue 14): `CALL tenant.backup_all(older_than)`
//! backs up every ACTIVE institution that is due, one commit each, goes on
//! past a tenant whose backup fails (logged), raises at the end, and when
//! called again backs up only the institutions still due.

mod common;
use common::*;
use uuid::Uuid;

const TEMPLATE: &str = "CREATE TABLE tenant_template.items (id int PRIMARY KEY, label text)";

/// Verified BACKUP-reason backups of one tenant.
fn verified_backups(su: &mut postgres::Client, id: Uuid) -> i64 {
    su.query_one(
        "SELECT count(*) FROM tenant.schema_backups WHERE schema_id = $1 AND reason = 'BACKUP' AND verified_at IS NOT NULL",
        &[&id],
    )
    .unwrap()
    .get(0)
}

fn failed_backups(su: &mut postgres::Client, id: Uuid) -> Vec<Option<String>> {
    su.query(
        "SELECT error_sqlstate FROM tenant.schema_operations
          WHERE operation_type = 'BACKUP' AND status = 'FAILED' AND schema_id = $1 ORDER BY id",
        &[&id],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn fleet_backup_skips_a_failing_tenant_logs_it_and_resumes_with_it() {
    const DB: &str = "it_fleet_backup";
    let mut su = fresh_database(DB);
    su.batch_execute(TEMPLATE).unwrap();
    let a = create_ok(&mut su, "fb_a");
    let b = create_ok(&mut su, "fb_b");
    let c = create_ok(&mut su, "fb_c");
    let suspended = create_ok(&mut su, "fb_s");
    for schema in ["fb_a", "fb_b", "fb_c", "fb_s"] {
        su.batch_execute(&format!("INSERT INTO {schema}.items SELECT i, 'row ' || i FROM generate_series(1, 50) i"))
            .unwrap();
    }
    let status = su
        .query_one("SELECT status FROM tenant.set_institution_status($1, 'SUSPENDED')", &[&suspended])
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(status, "SUCCESS");
    su.batch_execute("SET tenant_control.lock_timeout = 300").unwrap();

    // Another session holds fb_b's table: its backup cannot read it in time.
    let mut holder = superuser(DB);
    let mut hold = holder.transaction().unwrap();
    hold.batch_execute("LOCK TABLE fb_b.items IN ACCESS EXCLUSIVE MODE").unwrap();

    let error = su.batch_execute("CALL tenant.backup_all()").unwrap_err();
    let db_error = error.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "55P03", "{db_error:?}");
    assert!(db_error.message().contains("1 of 3 institution(s) could not be backed up"), "{}", db_error.message());
    assert!(db_error.message().contains("fb_b"), "the failure names the tenant: {}", db_error.message());
    // The others were backed up (verified) and committed despite the error.
    assert_eq!(verified_backups(&mut su, a), 1);
    assert_eq!(verified_backups(&mut su, c), 1);
    assert_eq!(verified_backups(&mut su, b), 0);
    assert_eq!(failed_backups(&mut su, b), vec![Some("55P03".to_string())]);
    // A suspended institution is not backed up.
    assert_eq!(verified_backups(&mut su, suspended), 0);
    // No half-made backup schema is left behind for fb_b.
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tc_backup_%'"), 2);

    // Still locked: a second run retries only fb_b, not the ones just saved.
    let error = su.batch_execute("CALL tenant.backup_all()").unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("1 of 1 institution(s)"), "{error:?}");
    assert_eq!(failed_backups(&mut su, b).len(), 2);

    // Released: the run resumes with fb_b alone and succeeds.
    hold.rollback().unwrap();
    su.batch_execute("CALL tenant.backup_all()").unwrap();
    assert_eq!((verified_backups(&mut su, a), verified_backups(&mut su, b), verified_backups(&mut su, c)), (1, 1, 1));
    // The backup holds fb_b's rows.
    assert_eq!(
        count(
            &mut su,
            &format!("SELECT row_count FROM tenant.schema_backups WHERE schema_id = '{b}' AND reason = 'BACKUP'")
        ),
        50
    );
    su.batch_execute("CALL tenant.backup_all()").unwrap();
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.schema_backups WHERE reason = 'BACKUP'"),
        3,
        "nothing was due"
    );

    // Only institutions whose last backup is older than the age are due.
    su.execute("UPDATE tenant.tenant_schemas SET last_backup = now() - interval '2 days' WHERE id = $1", &[&a])
        .unwrap();
    su.batch_execute("CALL tenant.backup_all(interval '1 day')").unwrap();
    assert_eq!((verified_backups(&mut su, a), verified_backups(&mut su, b), verified_backups(&mut su, c)), (2, 1, 1));
    su.batch_execute("CALL tenant.backup_all(interval '0')").unwrap();
    assert_eq!((verified_backups(&mut su, a), verified_backups(&mut su, b), verified_backups(&mut su, c)), (3, 2, 2));

    // A platform administrator (no superuser) runs it too, as pg_cron would.
    su.batch_execute(
        "DO $$ BEGIN CREATE ROLE fb_admin LOGIN IN ROLE tenant_control_admin;
               EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .unwrap();
    let mut admin = connect_as("fb_admin", DB);
    admin.batch_execute("CALL tenant.backup_all(interval '0')").unwrap();
    assert_eq!((verified_backups(&mut su, a), verified_backups(&mut su, b), verified_backups(&mut su, c)), (4, 3, 3));
    // Not for PUBLIC: a tenant's own role cannot call it.
    let refused = sqlstate_of_failure(&mut su, "SET ROLE fb_a_owner; CALL tenant.backup_all()");
    assert_eq!(refused, "42501");
}
