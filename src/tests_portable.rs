// `#[pg_test]` unit tests: the portable institution (issue 14). The fleet
// backup commits per institution, so its behaviour is tested on a real
// cluster in pgrx-tests/tests/portable_fleet_backup.rs; here, what fails
// before the first commit.

#[pg_test]
fn fleet_backup_refuses_a_negative_or_null_age() {
    for age in ["'-1 day'::interval", "NULL"] {
        let refused = Spi::run(&format!(
            "DO $$ BEGIN
                 CALL tenant.backup_all({age});
                 RAISE EXCEPTION 'not refused';
             EXCEPTION WHEN invalid_parameter_value THEN NULL;
             END $$"
        ));
        assert!(refused.is_ok(), "backup_all({age}): {refused:?}");
    }
}

#[pg_test]
fn a_scheduled_backup_failure_is_logged_as_a_failed_backup() {
    Spi::run("SELECT tenant.note_job_failure('BACKUP', NULL, 'back up institution schema (scheduled)', '55P03', 'lock timeout')")
        .unwrap();
    assert_eq!(
        one::<String>("SELECT format('%s/%s', status, error_sqlstate) FROM tenant.schema_operations WHERE operation_type = 'BACKUP'"),
        Some("FAILED/55P03".into())
    );
}
