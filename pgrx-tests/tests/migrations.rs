//! Fleet migrations and the warm pool over real connections: procedures that
//! commit per tenant, failures that do not stop the rest, resume, dry run,
//! and sign-ups running while a fleet migration is under way.

mod common;
use common::*;
use postgres::Client;
use std::thread;
use std::time::{Duration, Instant};

const DB: &str = "it_migrations";

fn register(client: &mut Client, version: i32, script: &str) {
    let row =
        client.query_one("SELECT * FROM tenant.register_migration($1, $2, 'test')", &[&version, &script]).unwrap();
    assert_eq!(row.get::<_, String>("status"), "SUCCESS", "{}", row.get::<_, String>("message"));
}

fn versions(client: &mut Client) -> Vec<(String, i32)> {
    client
        .query("SELECT schema_name, version FROM tenant.tenant_schemas ORDER BY schema_name", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn fleet_migration_goes_on_past_a_failing_tenant_and_resumes() {
    let mut su = fresh_database(DB);
    register(&mut su, 1, "CREATE TABLE notes (id int PRIMARY KEY)");
    for name in ["mg_a", "mg_b", "mg_c"] {
        create_ok(&mut su, name);
    }
    su.batch_execute("DROP TABLE mg_b.notes").unwrap();
    register(&mut su, 2, "ALTER TABLE notes ADD COLUMN body text");

    let (mut applier, notices) = listening(DB);
    applier.batch_execute("CALL tenant.apply_migrations(dry_run => true)").unwrap();
    let planned = notices.lock().unwrap().clone();
    assert_eq!(planned.len(), 3, "{planned:?}");
    assert!(planned.iter().any(|n| n.contains("would migrate mg_b from version 1 to 2: migrations 2")), "{planned:?}");
    assert_eq!(versions(&mut su).iter().filter(|(_, v)| *v == 2).count(), 0, "a dry run changes nothing");

    notices.lock().unwrap().clear();
    applier.batch_execute("CALL tenant.apply_migrations()").unwrap();
    assert_eq!(versions(&mut su), vec![("mg_a".into(), 2), ("mg_b".into(), 1), ("mg_c".into(), 2)]);
    let reported = notices.lock().unwrap().clone();
    assert!(reported.iter().any(|n| n.starts_with("ERROR:") && n.contains("notes")), "{reported:?}");
    assert!(reported.iter().any(|n| n.contains("2 schema(s), 1 failed")), "{reported:?}");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'MIGRATE' AND status = 'FAILED'"
        ),
        1
    );

    // Fix the tenant and run again: only what is left runs.
    su.batch_execute("CREATE TABLE mg_b.notes (id int PRIMARY KEY)").unwrap();
    notices.lock().unwrap().clear();
    applier.batch_execute("CALL tenant.apply_migrations()").unwrap();
    assert_eq!(versions(&mut su), vec![("mg_a".into(), 2), ("mg_b".into(), 2), ("mg_c".into(), 2)]);
    assert!(notices.lock().unwrap().iter().any(|n| n.contains("1 schema(s), 0 failed")));
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.migration_status WHERE pending > 0"), 0);
}

#[test]
fn sign_up_is_not_held_up_by_a_fleet_migration() {
    let mut su = fresh_database(DB);
    register(&mut su, 1, "CREATE TABLE notes (id int PRIMARY KEY)");
    create_ok(&mut su, "mg_busy");
    register(&mut su, 2, "ALTER TABLE notes ADD COLUMN body text");

    // A long reader keeps mg_busy's migration waiting for its lock.
    let mut reader = superuser(DB);
    reader.batch_execute("BEGIN; SELECT * FROM mg_busy.notes;").unwrap();
    let applier = thread::spawn(|| {
        let mut applier = superuser(DB);
        // One statement per call: a multi-statement string is one transaction, and CALL could not commit.
        applier.batch_execute("SET tenant_control.lock_timeout = '20s'").unwrap();
        applier.batch_execute("CALL tenant.apply_migrations()").unwrap();
    });
    let mut observer = superuser(DB);
    while count(&mut observer, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == 0 {
        thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let new_id = create_ok(&mut su, "mg_signup");
    assert!(started.elapsed() < Duration::from_secs(5), "sign-up waited for the fleet migration");
    let version: i32 =
        su.query_one("SELECT version FROM tenant.tenant_schemas WHERE id = $1", &[&new_id]).unwrap().get(0);
    assert_eq!(version, 2);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'mg_signup' AND column_name = 'body'"
        ),
        1
    );

    reader.batch_execute("COMMIT").unwrap();
    applier.join().unwrap();
    assert_eq!(versions(&mut su), vec![("mg_busy".into(), 2), ("mg_signup".into(), 2)]);
}

#[test]
fn the_pool_fills_and_serves_concurrent_sign_ups() {
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)").unwrap();
    su.batch_execute("CALL tenant.fill_pool(2)").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.warm_pool WHERE ready"), 2);
    su.batch_execute("CALL tenant.fill_pool(2)").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.warm_pool"), 2, "filling is idempotent");

    // Three sign-ups at once for two spares: every one succeeds, two from the pool.
    let signups: Vec<_> = (0..3)
        .map(|i| thread::spawn(move || create(&mut superuser(DB), uuid::Uuid::new_v4(), &format!("pool_{i}"))))
        .collect();
    for signup in signups {
        let outcome = signup.join().unwrap();
        assert!(outcome.ok(), "{}", outcome.message);
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.warm_pool"), 0);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.schema_operations WHERE (metadata->>'from_pool')::boolean"),
        2
    );
    for i in 0..3 {
        su.batch_execute(&format!("INSERT INTO pool_{i}.items DEFAULT VALUES")).unwrap();
    }
}

/// A tenant's trigger that raises a SQLSTATE of its own during a migration:
/// apply_migrations reports that SQLSTATE (not XX000), with the trigger's
/// message and detail, in its NOTICE, the operation log and migration_status.
#[test]
fn a_tenant_error_keeps_its_own_sqlstate_through_apply_migrations() {
    const DB: &str = "it_migrations_sqlstate";
    let mut su = fresh_database(DB);
    register(&mut su, 1, "CREATE TABLE notes (id int PRIMARY KEY, body text)");
    create_ok(&mut su, "mq_a");
    su.batch_execute(
        "CREATE FUNCTION mq_a.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'notes are closed' USING ERRCODE = 'P0123', DETAIL = 'said the tenant'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON mq_a.notes FOR EACH ROW EXECUTE FUNCTION mq_a.refuse();",
    )
    .unwrap();
    register(&mut su, 2, "INSERT INTO notes VALUES (1, 'welcome')");

    let (mut applier, notices) = listening(DB);
    applier.batch_execute("CALL tenant.apply_migrations()").unwrap();
    let reported = notices.lock().unwrap().clone();
    assert!(
        reported.iter().any(|n| n.starts_with("ERROR: notes are closed (said the tenant; migration 2 on schema mq_a)")
            && n.ends_with("[SQLSTATE P0123]")),
        "{reported:?}"
    );
    let row = su
        .query_one(
            "SELECT last_migration_sqlstate, (SELECT string_agg(error_sqlstate, ',') FROM tenant.schema_operations
                                               WHERE operation_type = 'MIGRATE' AND status = 'FAILED')
               FROM tenant.migration_status WHERE schema_name = 'mq_a'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("P0123".into(), "P0123".into()));
}
