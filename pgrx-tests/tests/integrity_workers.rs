//! The fleet check shared with background workers (tenant_control.integrity_workers),
//! over real connections: the workers' findings are those of the caller alone, in
//! the same order; a worker that is terminated, or cannot connect, leaves its
//! tenants to the caller; repairs stay the caller's, in its transaction; who may
//! call, and what tenant code may run, do not change.

mod cluster;
mod common;
use cluster::Cluster;
use common::*;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const DB: &str = "it_integrity_workers";
/// Enough tenants for two workers (one per 16 tenants, at most the setting's 2).
const TENANTS: usize = 48;
const WORKER_TYPE: &str = "tenant_control integrity check";

const TEMPLATE: &str = "
    CREATE TABLE tenant_template.parents (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE tenant_template.children (id int PRIMARY KEY, parent_id int REFERENCES tenant_template.parents);
    CREATE VIEW tenant_template.family AS
        SELECT p.name, c.id FROM tenant_template.parents p JOIN tenant_template.children c ON c.parent_id = p.id;
";

fn schema(i: usize) -> String {
    format!("iw_{i:02}")
}

/// The fleet, with drift in a few tenants: an extra column (reported), a
/// dropped view (repairable), rows past a foreign key (reported), and an
/// operator planted by a tenant that must never run.
fn setup() -> Client {
    let mut db = fresh_database(DB);
    // Roles are the cluster's: those of an earlier run own nothing once its database is gone.
    for i in 0..TENANTS {
        db.batch_execute(&format!("DROP ROLE IF EXISTS {}_owner", schema(i))).unwrap();
    }
    db.batch_execute(TEMPLATE).unwrap();
    db.batch_execute(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_iw_admin') THEN CREATE ROLE it_iw_admin LOGIN; END IF;
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_iw_nobody') THEN CREATE ROLE it_iw_nobody LOGIN; END IF;
         END $$;
         GRANT tenant_control_admin TO it_iw_admin;
         CREATE TABLE public.marks (who text, what text);
         GRANT INSERT ON public.marks TO PUBLIC;",
    )
    .unwrap();
    for i in 0..TENANTS {
        let s = schema(i);
        create_ok(&mut db, &s);
        db.batch_execute(&format!(
            "INSERT INTO {s}.parents VALUES (1, 'a'); INSERT INTO {s}.children VALUES (1, 1), (2, 1);"
        ))
        .unwrap();
    }
    db.batch_execute(&format!(
        "ALTER TABLE {a}.children ADD COLUMN nickname text;
         DROP VIEW {b}.family;
         DROP VIEW {c}.family;
         SET session_replication_role = replica; INSERT INTO {d}.children VALUES (3, 99); RESET session_replication_role;
         SET ROLE {e}_owner;
         CREATE FUNCTION {e}.eq_oid_regclass(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS
             $f$ BEGIN INSERT INTO public.marks VALUES (current_user, 'operator ran'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $f$;
         CREATE OPERATOR {e}.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = {e}.eq_oid_regclass);
         RESET ROLE;",
        a = schema(5),
        b = schema(20),
        c = schema(41),
        d = schema(30),
        e = schema(7)
    ))
    .unwrap();
    // A procedure that commits: a statement of its own.
    db.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
    db
}

type Row = (Option<String>, String, String, String, String, bool, Option<uuid::Uuid>);

fn check(client: &mut Client, fix: bool) -> Vec<Row> {
    client
        .query(
            "SELECT schema_name, check_name, severity, object, detail, fixed, tenant_schema_id
               FROM tenant.check_integrity(NULL, $1)",
            &[&fix],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect()
}

fn serial(client: &mut Client, fix: bool) -> Vec<Row> {
    client.batch_execute("SET tenant_control.integrity_workers = 0").unwrap();
    let rows = check(client, fix);
    client.batch_execute("RESET tenant_control.integrity_workers").unwrap();
    rows
}

/// Watches pg_stat_activity from another connection while `work` runs: the
/// roles the workers ran as, and (with `terminate`) how many were terminated.
fn watching<T>(terminate: bool, work: impl FnOnce() -> T) -> (T, Vec<String>, i64) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let watcher = thread::spawn(move || {
        let mut db = superuser(DB);
        let (mut roles, mut terminated) = (Vec::new(), 0i64);
        while !flag.load(Ordering::SeqCst) {
            for row in db
                .query(
                    "SELECT usename::text, CASE WHEN $2 THEN pg_terminate_backend(pid) ELSE false END
                       FROM pg_stat_activity WHERE backend_type = $1 AND datname = current_database()",
                    &[&WORKER_TYPE, &terminate],
                )
                .unwrap()
            {
                let role: String = row.get(0);
                if !roles.contains(&role) {
                    roles.push(role);
                }
                if row.get::<_, bool>(1) {
                    terminated += 1;
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
        (roles, terminated)
    });
    let result = work();
    stop.store(true, Ordering::SeqCst);
    let (roles, terminated) = watcher.join().unwrap();
    (result, roles, terminated)
}

/// How many tenants background workers checked in the last check, as its
/// operation-log row says.
fn checked_by_workers(db: &mut Client) -> i64 {
    count(
        db,
        "SELECT (metadata->>'checked_by_workers')::bigint FROM tenant.schema_operations
          WHERE operation_type = 'INTEGRITY_CHECK' ORDER BY id DESC LIMIT 1",
    )
}

fn no_tenant_code_ran(db: &mut Client) {
    assert_eq!(count(db, "SELECT count(*) FROM public.marks"), 0, "a tenant's operator ran during the check");
}

#[test]
fn workers_find_what_the_caller_alone_finds_in_the_same_order() {
    let mut db = setup();
    let alone = serial(&mut db, false);
    for (check, schema) in [
        ("extra_object", schema(5)),
        ("missing_object", schema(20)),
        ("missing_object", schema(41)),
        ("orphaned_rows", schema(30)),
        ("extra_object", schema(7)),
    ] {
        assert!(
            alone.iter().any(|r| r.1 == check && r.0.as_deref() == Some(schema.as_str())),
            "{check} in {schema} not found: {alone:?}"
        );
    }
    assert_eq!(checked_by_workers(&mut db), 0, "the operation log counts no worker for a check without them");
    let (shared, roles, _) = watching(false, || check(&mut db, false));
    assert_eq!(shared, alone, "the workers' findings differ from the caller's alone");
    assert_eq!(roles, vec!["postgres".to_string()], "workers run as the extension's owner, and ran");
    assert!(checked_by_workers(&mut db) > 0, "the operation log counts the tenants the workers checked");
    // A non-superuser platform administrator gets the same, through the same workers.
    let mut admin = connect_as("it_iw_admin", DB);
    let (by_admin, roles, _) = watching(false, || check(&mut admin, false));
    assert_eq!(by_admin, alone);
    assert_eq!(roles, vec!["postgres".to_string()]);
    no_tenant_code_ran(&mut db);
}

#[test]
fn a_worker_that_fails_leaves_its_tenants_to_the_caller() {
    let mut db = setup();
    let alone = serial(&mut db, false);
    // Workers terminated as soon as they show up (pg_terminate_backend).
    let mut killed = 0;
    for _ in 0..5 {
        let (shared, _, terminated) = watching(true, || check(&mut db, false));
        assert_eq!(shared, alone, "findings lost or changed when a worker was terminated");
        killed += terminated;
        if killed > 0 {
            break;
        }
    }
    assert!(killed > 0, "no worker was seen to terminate");
    // Workers that cannot connect at all (the database refuses new
    // connections): the caller checks everything, and says so.
    let (mut listener, notices) = listening(DB);
    let mut admin = superuser("postgres");
    admin.batch_execute(&format!("ALTER DATABASE {DB} WITH ALLOW_CONNECTIONS false")).unwrap();
    let refused = check(&mut listener, false);
    admin.batch_execute(&format!("ALTER DATABASE {DB} WITH ALLOW_CONNECTIONS true")).unwrap();
    assert_eq!(refused, alone, "findings lost when no worker could connect");
    assert_eq!(checked_by_workers(&mut db), 0);
    let notices = notices.lock().unwrap().clone();
    assert!(
        notices.iter().any(|n| n.contains("integrity workers checked no tenant")),
        "no NOTICE that the workers checked nothing: {notices:?}"
    );
    no_tenant_code_ran(&mut db);
}

#[test]
fn a_cancelled_check_ends_its_workers() {
    let mut db = setup();
    let alone = serial(&mut db, false);
    let caller: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // Cancelled as soon as a worker shows up.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let canceller = thread::spawn(move || {
        let mut watcher = superuser(DB);
        while !flag.load(Ordering::SeqCst) {
            let seen = count(
                &mut watcher,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = '{WORKER_TYPE}'"),
            );
            if seen > 0 {
                watcher.query_one("SELECT pg_cancel_backend($1)", &[&caller]).unwrap();
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    });
    let outcome = db.query("SELECT * FROM tenant.check_integrity()", &[]);
    stop.store(true, Ordering::SeqCst);
    let cancelled = canceller.join().unwrap();
    assert!(cancelled, "no worker was seen");
    // (A cancel that comes just after the last tenant finds the check done.)
    if let Err(error) = outcome {
        assert_eq!(error.code().map(|c| c.code()), Some("57014"), "{error}");
    }
    // The workers see the caller gone and end.
    eventually(&mut db, &format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = '{WORKER_TYPE}'"), 0);
    assert_eq!(check(&mut db, false), alone, "a check after a cancelled one");
    no_tenant_code_ran(&mut db);
}

#[test]
fn repairs_stay_the_callers_and_roll_back_with_its_transaction() {
    let mut db = setup();
    // In a transaction that is rolled back, the repairs go with it.
    db.batch_execute("BEGIN").unwrap();
    let rolled_back = check(&mut db, true);
    db.batch_execute("ROLLBACK").unwrap();
    assert!(rolled_back.iter().any(|r| r.1 == "missing_object" && r.5), "no repair reported: {rolled_back:?}");
    assert_eq!(count(&mut db, &format!("SELECT count(*) FROM pg_views WHERE schemaname = '{}'", schema(20))), 0);
    // Repaired with workers, as the caller alone repairs the same drift.
    let (shared, roles, _) = watching(false, || check(&mut db, true));
    assert_eq!(roles, vec!["postgres".to_string()]);
    for s in [schema(20), schema(41)] {
        assert_eq!(count(&mut db, &format!("SELECT count(*) FROM pg_views WHERE schemaname = '{s}'")), 1);
        db.batch_execute(&format!("DROP VIEW {s}.family")).unwrap();
    }
    let alone = serial(&mut db, true);
    assert_eq!(shared, alone, "repairs with workers differ from the caller's alone");
    assert!(shared.iter().filter(|r| r.1 == "missing_object" && r.5).count() == 2, "{shared:?}");
    assert!(check(&mut db, false).iter().all(|r| r.1 != "missing_object"));
    no_tenant_code_ran(&mut db);
}

#[test]
fn who_may_call_and_who_may_start_workers_is_unchanged() {
    let mut db = setup();
    let mut nobody = connect_as("it_iw_nobody", DB);
    assert_eq!(sqlstate_of_failure(&mut nobody, "SELECT * FROM tenant.check_integrity()"), "42501");
    // The number of workers is the DBA's: a platform administrator cannot raise it.
    // (After a call of the extension's: before the library is loaded, any SET is a placeholder's.)
    let mut admin = connect_as("it_iw_admin", DB);
    admin.query("SELECT count(*) FROM tenant.check_integrity()", &[]).unwrap();
    assert_eq!(sqlstate_of_failure(&mut admin, "SET tenant_control.integrity_workers = 8"), "42501");
    no_tenant_code_ran(&mut db);
}

#[test]
fn a_check_short_of_worker_slots_says_so_and_finds_the_same() {
    // A cluster of the test's own: pg_cron's launcher and the logical
    // replication launcher take two of its three worker slots.
    let cluster = Cluster::running("integrity_slots", "max_worker_processes = 3");
    cluster.connect("postgres").batch_execute("CREATE DATABASE slots").unwrap();
    let (mut db, notices) = listening_at(&cluster.host(), cluster.port(), "postgres", "slots");
    db.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    db.batch_execute(TEMPLATE).unwrap();
    // Enough tenants for two workers.
    for i in 0..32 {
        create_ok(&mut db, &format!("it_iws_{i}"));
    }
    db.batch_execute("ALTER TABLE it_iws_3.children ADD COLUMN nickname text").unwrap();
    let alone = serial(&mut db, false);
    assert!(alone.iter().any(|r| r.1 == "extra_object" && r.0.as_deref() == Some("it_iws_3")), "{alone:?}");
    notices.lock().unwrap().clear();
    assert_eq!(check(&mut db, false), alone, "findings lost or changed without enough worker slots");
    let notices = notices.lock().unwrap().clone();
    assert!(
        notices.iter().any(|n| n.contains("of 2 integrity workers could start") && n.contains("max_worker_processes")),
        "no NOTICE about the missing worker slots: {notices:?}"
    );
    drop(db);
    cluster.discard();
}
