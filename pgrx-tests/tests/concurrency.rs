//! Concurrent sessions on one tenant: one success and one clean error, never
//! a half-created or half-dropped tenant.

mod common;
use common::*;
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DB: &str = "it_concurrency";

/// Wait until `n` other sessions of this database are blocked on a lock.
fn wait_for_waiters(observer: &mut postgres::Client, n: i64) {
    for _ in 0..200 {
        let waiting = count(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        if waiting >= n {
            return;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("no session started waiting for a lock");
}

/// Session A creates inside an open transaction; session B tries the same
/// thing meanwhile (starting its transaction with `b_begin`); A commits.
fn race_creates(db: &str, a_schema: &str, b_schema: &str, same_institution: bool, b_begin: &str) -> (Outcome, Outcome) {
    let institution_a = Uuid::new_v4();
    let institution_b = if same_institution { institution_a } else { Uuid::new_v4() };
    let mut a = superuser(db);
    let mut observer = superuser(db);
    let b_db = db.to_string();
    let b_begin = b_begin.to_string();
    let b_schema = b_schema.to_string();

    a.batch_execute("BEGIN").unwrap();
    let first = create(&mut a, institution_a, a_schema);
    let racer = thread::spawn(move || {
        let mut b = superuser(&b_db);
        b.batch_execute(&b_begin).unwrap();
        let second = create(&mut b, institution_b, &b_schema);
        b.batch_execute("COMMIT").unwrap();
        second
    });
    wait_for_waiters(&mut observer, 1);
    a.batch_execute("COMMIT").unwrap();
    (first, racer.join().unwrap())
}

#[test]
fn two_sessions_creating_the_same_institution() {
    let mut su = fresh_database(DB);
    let (first, second) = race_creates(DB, "cc_same_inst", "cc_same_inst_b", true, "BEGIN");
    assert!(first.ok(), "{}", first.message);
    assert_eq!((second.status.as_str(), second.sqlstate.as_deref()), ("ERROR", Some("42710")), "{}", second.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cc_same_inst_b'"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_roles WHERE rolname = 'cc_same_inst_b_owner'"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas"), 1);
}

#[test]
fn two_sessions_creating_the_same_schema_name() {
    let mut su = fresh_database(DB);
    let (first, second) = race_creates(DB, "cc_same_name", "cc_same_name", false, "BEGIN");
    assert!(first.ok(), "{}", first.message);
    assert_eq!((second.status.as_str(), second.sqlstate.as_deref()), ("ERROR", Some("42P06")), "{}", second.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas"), 1);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.schema_operations WHERE status = 'FAILED' AND error_sqlstate = '42P06'"
        ),
        1
    );
}

#[test]
fn repeatable_read_racers_still_get_a_clean_error() {
    let mut su = fresh_database(DB);
    // B's snapshot is taken before A commits, so B's registry check cannot see
    // A's row; the catalog must still stop it cleanly.
    let (first, second) =
        race_creates(DB, "cc_rr_name", "cc_rr_name", false, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1");
    assert!(first.ok(), "{}", first.message);
    assert_eq!(second.status, "ERROR", "{}", second.message);
    assert!(matches!(second.sqlstate.as_deref(), Some("42P06") | Some("42710")), "{}", second.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cc_rr_name'"), 1);
}

#[test]
fn drop_racing_a_status_change_fails_cleanly_on_lock_timeout() {
    let mut su = fresh_database(DB);
    let id = create_ok(&mut su, "cc_drop_timeout");
    let mut holder = superuser(DB);
    holder.batch_execute("BEGIN").unwrap();
    assert!(call(&mut holder, "suspend_institution", id).ok());

    let mut dropper = superuser(DB);
    dropper.batch_execute("SET tenant_control.lock_timeout = 300").unwrap();
    let dropped = call(&mut dropper, "drop_institution_schema", id);
    assert_eq!((dropped.status.as_str(), dropped.sqlstate.as_deref()), ("ERROR", Some("55P03")), "{}", dropped.message);
    holder.batch_execute("COMMIT").unwrap();

    // Nothing half-done: schema, role and registry row as the suspend left them.
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cc_drop_timeout'"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_roles WHERE rolname = 'cc_drop_timeout_owner'"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.list_institutions('SUSPENDED')"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.schema_backups"), 0);
    // The caller's own lock_timeout is untouched by the operation.
    let own: String = dropper.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
    assert_eq!(own, "0");
}

#[test]
fn drop_waits_for_a_short_operation_then_succeeds() {
    let mut su = fresh_database(DB);
    let id = create_ok(&mut su, "cc_drop_wait");
    let mut holder = superuser(DB);
    let mut observer = superuser(DB);
    holder.batch_execute("BEGIN").unwrap();
    assert!(call(&mut holder, "start_maintenance", id).ok());
    let dropper = thread::spawn(move || call(&mut superuser(DB), "drop_institution_schema", id));
    wait_for_waiters(&mut observer, 1);
    holder.batch_execute("COMMIT").unwrap();
    let dropped = dropper.join().unwrap();
    assert!(dropped.ok(), "{}", dropped.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.list_institutions('DROPPED')"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cc_drop_wait'"), 0);
}

#[test]
fn drop_neither_waits_for_nor_blocks_a_busy_tenant() {
    let mut su = fresh_database(DB);
    let id = create_ok(&mut su, "cc_busy");
    su.batch_execute("SET ROLE cc_busy_owner; CREATE TABLE cc_busy.t (x int); RESET ROLE;").unwrap();
    // A long reader of the tenant's table.
    let mut reader = superuser(DB);
    reader.batch_execute("BEGIN; SELECT * FROM cc_busy.t;").unwrap();
    let mut dropper = superuser(DB);
    dropper.batch_execute("SET tenant_control.lock_timeout = 300").unwrap();
    // Detaching renames the schema and the role: no lock on the tenant's tables.
    let started = Instant::now();
    let dropped = call(&mut dropper, "drop_institution_schema", id);
    assert!(dropped.ok(), "{}", dropped.message);
    assert!(started.elapsed() < Duration::from_millis(300), "the drop waited for the reader");
    reader.batch_execute("COMMIT").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.list_institutions('DROPPED')"), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cc_busy'"), 0);
}

/// Two transactions that each create an institution, then register a
/// migration, upgrade the template lock they both hold shared: PostgreSQL
/// breaks the deadlock (40P01 in one registration's status row), and the
/// other registration goes through once that transaction has committed
/// (documented in docs/limits.md; not a lock-order inversion).
#[test]
fn create_then_register_in_two_transactions_deadlocks_once_and_one_goes_through() {
    const DB: &str = "it_create_register";
    let mut su = fresh_database(DB);
    su.batch_execute(&format!(
        "CREATE TABLE tenant_template.items (id int PRIMARY KEY);
         ALTER DATABASE {DB} SET tenant_control.lock_timeout = '20s'; ALTER DATABASE {DB} SET deadlock_timeout = '200ms'"
    ))
    .unwrap();
    su.batch_execute("DROP ROLE IF EXISTS deadlock_a_owner; DROP ROLE IF EXISTS deadlock_b_owner").unwrap();
    let register = |client: &mut postgres::Client| {
        let row = client
            .query_one(
                "SELECT status, sqlstate FROM tenant.register_migration(1, 'ALTER TABLE items ADD COLUMN note text', 'note')",
                &[],
            )
            .unwrap();
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1))
    };
    let (mut a, mut b, mut observer) = (superuser(DB), superuser(DB), superuser(DB));
    for (client, schema) in [(&mut a, "deadlock_a"), (&mut b, "deadlock_b")] {
        client.batch_execute("BEGIN").unwrap();
        assert!(create(client, Uuid::new_v4(), schema).ok());
    }
    let first = thread::spawn(move || {
        let registered = register(&mut a);
        a.batch_execute("COMMIT").unwrap();
        registered
    });
    wait_for_waiters(&mut observer, 1);
    let second = register(&mut b);
    b.batch_execute("COMMIT").unwrap();
    let first = first.join().unwrap();
    let mut outcomes = [first, second];
    outcomes.sort();
    assert_eq!(outcomes, [("ERROR".to_string(), Some("40P01".to_string())), ("SUCCESS".to_string(), None)]);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.migrations"), 1);
    // Both creates are kept: the registration that lost returned a row, it did not abort its transaction.
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas WHERE schema_name IN ('deadlock_a', 'deadlock_b')"),
        2
    );
}
