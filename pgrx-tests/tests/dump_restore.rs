//! The registry, the operation log and the backup catalogue survive
//! pg_dump / pg_restore of the database.

mod common;
use common::*;
use std::process::Command;

/// pg_dump -Fc the database `from`, pg_restore it into a new database `to`
/// (stopping at the first error); returns the dump file.
fn dump_and_restore(from: &str, to: &str) -> std::path::PathBuf {
    let dump = std::env::temp_dir().join(format!("tenant_control_{from}.dump"));
    let status = Command::new(pg_bin("pg_dump"))
        .args(["-h", &host(), "-p", &port(), "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(from)
        .status()
        .unwrap();
    assert!(status.success(), "pg_dump failed");
    let mut admin = superuser("postgres");
    recreate_database(&mut admin, to);
    let restore = Command::new(pg_bin("pg_restore"))
        .args(["-h", &host(), "-p", &port(), "-U", "postgres", "--exit-on-error", "-d", to])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(restore.status.success(), "pg_restore failed: {}", String::from_utf8_lossy(&restore.stderr));
    dump
}

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
    // The audit trail: the four operations and the DROPPED status change.
    let audited = count(&mut source, "SELECT count(*) FROM tenant.audit_events");
    assert_eq!(audited, 5);

    let dump = dump_and_restore("it_dump_src", "it_dump_dst");
    let mut target = superuser("it_dump_dst");
    assert_eq!(registry_snapshot(&mut target), registry);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations"), operations);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.audit_events"), audited);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations WHERE status = 'FAILED'"), 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_backups"), 1);
    assert_eq!(count(&mut target, "SELECT count(*) FROM dr_kept.t"), 1);
    let backup: String = target.query_one("SELECT backup_schema FROM tenant.schema_backups", &[]).unwrap().get(0);
    assert_eq!(count(&mut target, &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{backup}'")), 1);

    // The restored database keeps working: new operations get new log ids.
    let kept: uuid::Uuid = target.query_one("SELECT id FROM tenant.find_institution('dr_kept')", &[]).unwrap().get(0);
    assert!(call(&mut target, "suspend_institution", kept).ok());
    assert_eq!(count(&mut target, "SELECT count(*) FROM tenant.schema_operations"), operations + 1);
    // ... and new audit events new ids (the trail's sequence came along).
    assert_eq!(count(&mut target, "SELECT count(DISTINCT id) FROM tenant.audit_events"), audited + 2);
    let _ = std::fs::remove_file(dump);
}

/// Every object of a schema, as `kind name definition` lines: relations,
/// constraints (keys, foreign keys, checks), indexes and triggers.
fn objects_of(client: &mut postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT 'relation ' || c.relname || ' ' || c.relkind::text FROM pg_class c
              WHERE c.relnamespace = $1::text::regnamespace
             UNION ALL
             SELECT 'constraint ' || k.conname || ' ' || pg_get_constraintdef(k.oid) FROM pg_constraint k
              WHERE k.connamespace = $1::text::regnamespace
             UNION ALL
             SELECT 'index ' || i.indexrelid::regclass::text || ' ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
              WHERE i.indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = $1::text::regnamespace)
             UNION ALL
             SELECT 'trigger ' || pg_get_triggerdef(g.oid) || ' ' || g.tgenabled::text FROM pg_trigger g
              WHERE NOT g.tgisinternal AND g.tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = $1::text::regnamespace)
             ORDER BY 1",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn an_over_quota_tenant_is_restored_with_every_object() {
    let mut source = fresh_database("it_dump_quota_src");
    source
        .batch_execute(
            "CREATE TABLE tenant_template.customers (id int PRIMARY KEY, email text UNIQUE);
             CREATE TABLE tenant_template.orders (id int PRIMARY KEY,
                                                  customer_id int NOT NULL REFERENCES tenant_template.customers,
                                                  total numeric CHECK (total >= 0));
             CREATE INDEX orders_customer ON tenant_template.orders (customer_id);",
        )
        .unwrap();
    let id = create_ok(&mut source, "dr_full");
    source
        .batch_execute(
            "INSERT INTO dr_full.customers SELECT i, 'c' || i || '@example.org' FROM generate_series(1, 2000) i;
             INSERT INTO dr_full.orders SELECT i, 1 + i % 2000, i FROM generate_series(1, 4000) i;",
        )
        .unwrap();
    let used: i64 = source.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    let limit = (used / 2).to_string();
    assert!(outcome(source.query_one("SELECT * FROM tenant.set_quota($1, $2)", &[&id, &limit]).unwrap()).ok());
    let state: String =
        source.query_one("SELECT quota_state FROM tenant.tenant_schemas WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(state, "EXCEEDED");
    let objects = objects_of(&mut source, "dr_full");
    assert!(objects.iter().any(|o| o.contains("FOREIGN KEY")), "{objects:?}");
    assert!(objects.iter().any(|o| o.contains("tc_quota_guard")), "{objects:?}");

    let dump = dump_and_restore("it_dump_quota_src", "it_dump_quota_dst");

    let mut target = superuser("it_dump_quota_dst");
    assert_eq!(objects_of(&mut target, "dr_full"), objects);
    assert_eq!(count(&mut target, "SELECT count(*) FROM dr_full.orders"), 4000);
    // Still over its quota, and still held to it: the restored guards work.
    let refused = sqlstate_of_failure(
        &mut target,
        "SET ROLE dr_full_owner; INSERT INTO dr_full.customers VALUES (5000, 'late@example.org')",
    );
    assert_eq!(refused, "53400");
    let _ = std::fs::remove_file(dump);
}

/// History in several partitions: the monthly partitions that
/// tenant.maintain_history creates at run time are not members of the extension;
/// pg_dump writes them as tables of their own attached to the extension's parents,
/// with their rows and indexes, and the DEFAULT partitions' rows as configuration
/// data. A restore stopping at the first error gets every row back in its month.
#[test]
fn pg_dump_and_pg_restore_keep_history_in_every_partition() {
    let mut source = fresh_database("it_dump_hist_src");
    let kept = create_ok(&mut source, "dh_kept");
    source
        .batch_execute(
            "INSERT INTO tenant.schema_operations (schema_id, operation_type, status, description, started_at, requested_by)
             SELECT schema_id, 'QUOTA_CHECK', 'COMPLETED', 'backdated', now() - m * interval '1 month', 'test'
               FROM tenant.schema_operations, generate_series(1, 3) m WHERE operation_type = 'CREATE'",
        )
        .unwrap();
    source.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    source.batch_execute("CALL tenant.maintain_history('13 months', 1)").unwrap();
    // A row beyond the partitions made ahead stays in the DEFAULT partition.
    source
        .batch_execute(
            "INSERT INTO tenant.schema_operations (operation_type, status, description, started_at, requested_by)
             VALUES ('QUOTA_CHECK', 'COMPLETED', 'future', now() + interval '6 months', 'test')",
        )
        .unwrap();
    let placement = "SELECT format('%s %s %s', tableoid::regclass, id, description) FROM tenant.schema_operations
                     UNION ALL SELECT format('%s %s', tableoid::regclass, id) FROM tenant.usage_snapshots
                     UNION ALL SELECT format('%s %s %s', tableoid::regclass, id, action) FROM tenant.audit_events
                     ORDER BY 1";
    let rows = |client: &mut postgres::Client| -> Vec<String> {
        client.query(placement, &[]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    let before = rows(&mut source);
    let partitions = count(
        &mut source,
        "SELECT count(DISTINCT tableoid) FROM tenant.schema_operations WHERE tableoid <> 'tenant.schema_operations_default'::regclass",
    );
    assert_eq!(partitions, 4, "{before:?}");
    assert!(before.iter().any(|r| r.starts_with("tenant.schema_operations_default ")), "{before:?}");

    let dump = dump_and_restore("it_dump_hist_src", "it_dump_hist_dst");
    let mut target = superuser("it_dump_hist_dst");
    assert_eq!(rows(&mut target), before);
    // Every partition came back (the empty one made ahead too), each with its primary key.
    let children = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'tenant.schema_operations'::regclass";
    assert_eq!(count(&mut source, children), 6, "three past months, this one, the next, DEFAULT");
    assert_eq!(count(&mut target, children), 6);
    assert_eq!(
        count(
            &mut target,
            "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid AND x.indisprimary
              WHERE i.inhparent = 'tenant.schema_operations'::regclass"
        ),
        6
    );
    // The restored history keeps working: a new operation goes to this month's
    // partition with the next id.
    let last = count(&mut target, "SELECT max(id) FROM tenant.schema_operations");
    assert!(call(&mut target, "suspend_institution", kept).ok());
    assert_eq!(count(&mut target, "SELECT max(id) FROM tenant.schema_operations"), last + 1);
    // Maintenance works on the restored partitions: the row kept in DEFAULT
    // moves to a partition of its own month.
    target.batch_execute("CALL tenant.maintain_history('13 months', 1)").unwrap();
    assert_eq!(count(&mut target, children), 7);
    assert_eq!(
        count(
            &mut target,
            "SELECT count(*) FROM tenant.schema_operations
              WHERE description = 'future' AND tableoid::regclass::text LIKE 'tenant.schema_operations_p%'"
        ),
        1
    );
    let _ = std::fs::remove_file(dump);
}
