//! The registry, the operation log and the backup catalogue survive
//! pg_dump / pg_restore of the database.

mod common;
use common::*;
use std::process::Command;

fn registry_snapshot(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT format('%s|%s|%s|%s|%s|%s', id, institution_id, schema_name, status, owner_role, last_backup)
               FROM tenant.tenant_schemas ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn pg_dump_and_pg_restore_keep_registry_log_and_backups() {
    let mut source = fresh_database("it_dump_src");
    create_ok(&mut source, "dr_kept");
    let dropped = create_ok(&mut source, "dr_dropped");
    source.batch_execute("SET ROLE dr_kept_owner; CREATE TABLE dr_kept.t AS SELECT 1 AS x; RESET ROLE;").unwrap();
    assert!(call(&mut source, "drop_institution_schema", dropped).ok());
    create(&mut source, uuid::Uuid::new_v4(), "Not Valid"); // a FAILED row in the log
    let registry = registry_snapshot(&mut source);
    let operations = count(&mut source, "SELECT count(*) FROM tenant.schema_operations");
    assert_eq!(operations, 4);

    let dump = std::env::temp_dir().join("tenant_control_it.dump");
    let status = Command::new(pg_bin("pg_dump"))
        .args(["-h", &host(), "-p", &port(), "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg("it_dump_src")
        .status()
        .unwrap();
    assert!(status.success(), "pg_dump failed");
    let mut admin = superuser("postgres");
    recreate_database(&mut admin, "it_dump_dst");
    let restore = Command::new(pg_bin("pg_restore"))
        .args(["-h", &host(), "-p", &port(), "-U", "postgres", "--exit-on-error", "-d", "it_dump_dst"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(restore.status.success(), "pg_restore failed: {}", String::from_utf8_lossy(&restore.stderr));

    let mut target = superuser("it_dump_dst");
    assert_eq!(registry_snapshot(&mut target), registry);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations"), operations);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations WHERE status = 'FAILED'"), 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_backups"), 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM dr_kept.t"), 1);
    let backup: String = target.query_one("SELECT backup_schema FROM tenant.schema_backups", &[]).unwrap().get(0);
    assert_eq!(count(&mut target, &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{backup}'")), 1);

    // The restored database keeps working: new operations get new log ids.
    let kept: uuid::Uuid = target.query_one("SELECT id FROM tenant.find_institution('dr_kept')", &[]).unwrap().get(0);
    assert!(call(&mut target, "suspend_institution", kept).ok());
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations"), operations + 1);
    let _ = std::fs::remove_file(dump);
}
