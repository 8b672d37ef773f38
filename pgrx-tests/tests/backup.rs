//! Backups over real connections: consistency under concurrent writes,
//! backups racing drops and each other, restores under connected clients,
//! retention as a committing procedure, and the free-space refusal.

mod common;
use common::*;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use uuid::Uuid;

/// A tenant with parents and children (one child per parent, written in one
/// transaction), pre-filled with `rows` pairs.
fn family_tenant(su: &mut Client, institution: Uuid, schema: &str, rows: i64) -> Uuid {
    let created = create(su, institution, schema);
    assert!(created.ok(), "{}", created.message);
    su.batch_execute(&format!(
        "SET ROLE {schema}_owner;
         CREATE TABLE {schema}.parents (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
         CREATE TABLE {schema}.children (id bigserial PRIMARY KEY,
                                         parent_id bigint NOT NULL REFERENCES {schema}.parents, note text);
         INSERT INTO {schema}.parents (name) SELECT 'p' || g FROM generate_series(1, {rows}) g;
         INSERT INTO {schema}.children (parent_id, note) SELECT id, repeat('x', 100) FROM {schema}.parents;
         RESET ROLE;"
    ))
    .unwrap();
    created.row.get("schema_id")
}

fn backup(client: &mut Client, schema_id: Uuid) -> Outcome {
    outcome(client.query_one("SELECT * FROM tenant.backup_institution_schema($1)", &[&schema_id]).unwrap())
}

fn backup_schema(client: &mut Client, backup_id: Uuid) -> String {
    client.query_one("SELECT backup_schema FROM tenant.backups WHERE backup_id = $1", &[&backup_id]).unwrap().get(0)
}

fn verified(client: &mut Client, backup_id: Uuid, against_live: bool) -> bool {
    client
        .query_one("SELECT bool_and(matches) FROM tenant.verify_backup($1, $2)", &[&backup_id, &against_live])
        .unwrap()
        .get::<_, Option<bool>>(0)
        .unwrap_or(false)
}

/// Every backup schema is in the catalogue and every catalogue row has its schema.
fn catalogue_matches_schemas(client: &mut Client) {
    let orphans = count(
        client,
        "SELECT count(*) FROM pg_namespace n WHERE n.nspname LIKE 'tc\\_%'
            AND NOT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_schema = n.nspname)",
    );
    let missing = count(
        client,
        "SELECT count(*) FROM tenant.schema_backups b
          WHERE NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = b.backup_schema)",
    );
    assert_eq!((orphans, missing), (0, 0), "backup schemas and catalogue disagree");
}

#[test]
fn a_backup_under_concurrent_writes_has_no_orphans() {
    let db = "it_backup_writes";
    let mut su = fresh_database(db);
    let id = family_tenant(&mut su, Uuid::new_v4(), "bw_school", 200_000);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(0i64));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        thread::spawn(move || {
            let mut w = superuser(db);
            while !stop.load(Ordering::Relaxed) {
                w.batch_execute(
                    "BEGIN;
                     WITH p AS (INSERT INTO bw_school.parents (name) VALUES ('live') RETURNING id)
                     INSERT INTO bw_school.children (parent_id, note) SELECT id, 'c' FROM p;
                     COMMIT;",
                )
                .unwrap();
                *written.lock().unwrap() += 1;
            }
        })
    };
    thread::sleep(Duration::from_millis(200));
    let mut backups = Vec::new();
    for _ in 0..3 {
        let taken = backup(&mut su, id);
        assert!(taken.ok(), "{}", taken.message);
        backups.push(taken.row.get::<_, Uuid>("backup_id"));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(*written.lock().unwrap() > 0, "the writer never got a transaction in");
    for backup_id in backups {
        let schema = backup_schema(&mut su, backup_id);
        let parents = count(&mut su, &format!("SELECT count(*) FROM {schema}.parents"));
        let children = count(&mut su, &format!("SELECT count(*) FROM {schema}.children"));
        let orphans = count(
            &mut su,
            &format!(
                "SELECT count(*) FROM {schema}.children c WHERE NOT EXISTS (SELECT 1 FROM {schema}.parents p WHERE p.id = c.parent_id)"
            ),
        );
        assert_eq!((orphans, parents), (0, children), "backup {schema}");
        assert!(verified(&mut su, backup_id, false));
        // The sequences are at least where the copied rows are.
        let next: i64 = su.query_one(&format!("SELECT nextval('{schema}.children_id_seq')"), &[]).unwrap().get(0);
        assert!(next > count(&mut su, &format!("SELECT max(id) FROM {schema}.children")));
    }
}

#[test]
fn two_backups_of_one_tenant_at_once() {
    let db = "it_backup_twice";
    let mut su = fresh_database(db);
    let id = family_tenant(&mut su, Uuid::new_v4(), "bt_school", 100_000);
    let racers: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let mut c = superuser(db);
                let taken = backup(&mut c, id);
                assert!(taken.ok(), "{}", taken.message);
                taken.row.get::<_, Uuid>("backup_id")
            })
        })
        .collect();
    let ids: Vec<Uuid> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_ne!(ids[0], ids[1]);
    for backup_id in &ids {
        assert!(verified(&mut su, *backup_id, true));
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.backups WHERE reason = 'BACKUP'"), 2);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'BACKUP' AND status = 'COMPLETED'"
        ),
        2
    );
    let accounted = count(
        &mut su,
        "SELECT count(*) FROM tenant.tenant_schemas t
          WHERE t.backup_storage = (SELECT sum(size_bytes) FROM tenant.schema_backups) AND t.last_backup IS NOT NULL",
    );
    assert_eq!(accounted, 1);
    catalogue_matches_schemas(&mut su);
}

#[test]
fn a_backup_racing_a_drop() {
    let db = "it_backup_drop";
    let mut su = fresh_database(db);
    let mut observer = superuser(db);
    // A drop in progress: the backup waits for it, then finds the tenant DROPPED.
    let id = family_tenant(&mut su, Uuid::new_v4(), "bd_first", 1_000);
    su.batch_execute("BEGIN").unwrap();
    assert!(call(&mut su, "drop_institution_schema", id).ok());
    let racer = thread::spawn(move || {
        let mut c = superuser(db);
        c.batch_execute("SET tenant_control.lock_timeout = '30s'").unwrap();
        backup(&mut c, id)
    });
    wait_for_lock_waiters(&mut observer);
    su.batch_execute("COMMIT").unwrap();
    let late = racer.join().unwrap();
    assert_eq!((late.status.as_str(), late.sqlstate.as_deref()), ("ERROR", Some("55000")), "{}", late.message);

    // A backup in progress: the drop waits for it and leaves its own verified backup.
    let id = family_tenant(&mut su, Uuid::new_v4(), "bd_second", 300_000);
    let racer = thread::spawn(move || {
        let mut c = superuser(db);
        backup(&mut c, id)
    });
    // Once the backup holds its lock on the tenant's data, drop comes.
    for _ in 0..500 {
        let holding = count(
            &mut observer,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted",
        );
        if holding > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    su.batch_execute("SET tenant_control.lock_timeout = '60s'").unwrap();
    let dropped = call(&mut su, "drop_institution_schema", id);
    let taken = racer.join().unwrap();
    assert!(dropped.ok(), "{}", dropped.message);
    assert!(taken.ok(), "{}", taken.message);
    let backup_id: Uuid = taken.row.get("backup_id");
    assert!(verified(&mut su, backup_id, false));
    assert_eq!(
        count(&mut su, &format!("SELECT count(*) FROM tenant.backups WHERE schema_id = '{id}' AND verified")),
        2
    );
    catalogue_matches_schemas(&mut su);
}

fn wait_for_lock_waiters(observer: &mut Client) {
    for _ in 0..400 {
        let waiting = count(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        if waiting > 0 {
            return;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("no session started waiting for a lock");
}

#[test]
fn restore_in_place_while_clients_are_connected() {
    let db = "it_backup_restore";
    let mut su = fresh_database(db);
    let institution = Uuid::new_v4();
    let id = family_tenant(&mut su, institution, "br_school", 50_000);
    su.batch_execute("DROP ROLE IF EXISTS it_backup_app; CREATE ROLE it_backup_app LOGIN; GRANT tenant_control_app TO it_backup_app;")
        .unwrap();
    let taken = backup(&mut su, id);
    assert!(taken.ok(), "{}", taken.message);
    let backup_id: Uuid = taken.row.get("backup_id");
    su.batch_execute("DELETE FROM br_school.children WHERE id % 2 = 0").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = ["postgres", "it_backup_app"]
        .into_iter()
        .map(|user| {
            let (stop, seen) = (stop.clone(), seen.clone());
            thread::spawn(move || {
                let mut c = connect_as(user, db);
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads < 5 {
                    let mut tx = c.transaction().unwrap();
                    tx.execute("SELECT tenant.set_context($1)", &[&institution]).unwrap();
                    let rows: i64 = tx.query_one("SELECT count(*) FROM children", &[]).unwrap().get(0);
                    tx.commit().unwrap();
                    seen.lock().unwrap().push(rows);
                    reads += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let restored = outcome(su.query_one("SELECT * FROM tenant.restore_institution_schema($1)", &[&backup_id]).unwrap());
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("a reader failed during the restore");
    }
    assert!(restored.ok(), "{}", restored.message);
    let swap_ms: f64 = restored.row.get("swap_ms");
    assert!(swap_ms < 1000.0, "swap took {swap_ms} ms");
    // Readers saw the old schema or the new one, never anything else.
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().all(|&n| n == 25_000 || n == 50_000),
        "{:?}",
        seen.iter().filter(|&&n| n != 25_000 && n != 50_000).collect::<Vec<_>>()
    );
    assert_eq!(seen.last(), Some(&50_000));
    assert!(verified(&mut su, backup_id, true));
    catalogue_matches_schemas(&mut su);
}

#[test]
fn retention_removes_exactly_the_right_backups() {
    let db = "it_backup_retention";
    let mut su = fresh_database(db);
    let a = family_tenant(&mut su, Uuid::new_v4(), "bk_ret_a", 10);
    // Backups of A taken 40, 20, 10 and 1 days ago; of B 40 and 30 days ago.
    let b = family_tenant(&mut su, Uuid::new_v4(), "bk_ret_b", 10);
    let mut ids = Vec::new();
    for (tenant, days_ago) in [(a, 40), (a, 20), (a, 10), (a, 1), (b, 40), (b, 30)] {
        let taken = backup(&mut su, tenant);
        assert!(taken.ok(), "{}", taken.message);
        let backup_id: Uuid = taken.row.get("backup_id");
        su.execute(
            "UPDATE tenant.schema_backups SET created_at = now() - $2::integer * interval '1 day' WHERE id = $1",
            &[&backup_id, &days_ago],
        )
        .unwrap();
        ids.push(backup_id);
    }
    let schemas: Vec<String> = ids.iter().map(|id| backup_schema(&mut su, *id)).collect();
    let remaining = |su: &mut Client| -> Vec<Uuid> {
        su.query("SELECT backup_id FROM tenant.backups ORDER BY created_at", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // Nothing set: nothing removed.
    su.batch_execute("CALL tenant.cleanup_backups()").unwrap();
    assert_eq!(remaining(&mut su).len(), 6);
    // Keep the newest 3 per institution, or anything younger than 25 days: A's oldest goes.
    su.batch_execute("CALL tenant.cleanup_backups(keep_last => 3, max_age => '25 days')").unwrap();
    let left = remaining(&mut su);
    assert!(!left.contains(&ids[0]) && left.len() == 5, "{left:?}");
    // Defaults from the settings, as pg_cron calls it: the newest one of each.
    su.batch_execute("SET tenant_control.backup_keep_last = 1").unwrap();
    su.batch_execute("CALL tenant.cleanup_backups()").unwrap();
    let mut left = remaining(&mut su);
    left.sort();
    let mut kept = vec![ids[3], ids[5]];
    kept.sort();
    assert_eq!(left, kept);
    catalogue_matches_schemas(&mut su);
    // The removed backups' roles are gone, the kept ones' remain.
    let roles_left = |su: &mut Client, schemas: &[&String]| -> i64 {
        let names: Vec<String> = schemas.iter().map(|s| format!("{s}_owner")).collect();
        su.query_one("SELECT count(*) FROM pg_roles WHERE rolname = ANY ($1)", &[&names]).unwrap().get(0)
    };
    assert_eq!(roles_left(&mut su, &[&schemas[0], &schemas[1], &schemas[2], &schemas[4]]), 0);
    assert_eq!(roles_left(&mut su, &[&schemas[3], &schemas[5]]), 2);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.schema_operations
              WHERE operation_type = 'BACKUP' AND status = 'COMPLETED' AND metadata->>'action' = 'remove'
                AND metadata->>'why' = 'retention'"
        ),
        4
    );
    let storage = count(&mut su, &format!("SELECT backup_storage FROM tenant.tenant_schemas WHERE id = '{a}'"));
    let one = count(&mut su, &format!("SELECT size_bytes FROM tenant.schema_backups WHERE id = '{}'", ids[3]));
    assert_eq!(storage, one);
}

#[test]
fn a_backup_that_would_not_fit_is_refused() {
    let db = "it_backup_space";
    let mut su = fresh_database(db);
    let id = family_tenant(&mut su, Uuid::new_v4(), "bs_school", 1_000);
    su.batch_execute("SET tenant_control.backup_reserve = 2147483647").unwrap();
    let refused = backup(&mut su, id);
    assert_eq!((refused.status.as_str(), refused.sqlstate.as_deref()), ("ERROR", Some("53100")), "{}", refused.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tc\\_backup\\_%'"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.schema_backups"), 0);
    su.batch_execute("RESET tenant_control.backup_reserve").unwrap();
    assert!(backup(&mut su, id).ok());
}

#[test]
fn no_tenant_role_reaches_a_backup() {
    let db = "it_backup_isolation";
    let mut su = fresh_database(db);
    let a = family_tenant(&mut su, Uuid::new_v4(), "bi_alpha", 10);
    family_tenant(&mut su, Uuid::new_v4(), "bi_beta", 10);
    let taken = backup(&mut su, a);
    assert!(taken.ok(), "{}", taken.message);
    let backup_id: Uuid = taken.row.get("backup_id");
    let copied = backup_schema(&mut su, backup_id);
    // An in-place restore keeps the replaced schema, still owned by alpha's role.
    let restored = outcome(su.query_one("SELECT * FROM tenant.restore_institution_schema($1)", &[&backup_id]).unwrap());
    assert!(restored.ok(), "{}", restored.message);
    let replaced: String = restored.row.get("replaced_by_backup");
    for role in ["bi_alpha_owner", "bi_beta_owner"] {
        for schema in [&copied, &replaced] {
            for sql in [
                format!("SELECT * FROM {schema}.parents"),
                format!("INSERT INTO {schema}.parents (name) VALUES ('x')"),
                format!("SELECT nextval('{schema}.children_id_seq')"),
                format!("ALTER TABLE {schema}.parents ADD COLUMN planted int"),
                format!("CREATE TABLE {schema}.planted (x int)"),
                "SELECT * FROM tenant.backups".to_string(),
                format!("SELECT * FROM tenant.verify_backup('{backup_id}')"),
                format!("SELECT * FROM tenant.restore_table('{backup_id}', 'parents')"),
            ] {
                let attempt = format!("BEGIN; SET LOCAL ROLE {role}; {sql}; COMMIT;");
                assert_eq!(sqlstate_of_failure(&mut su, &attempt), "42501", "{role}: {sql}");
                su.batch_execute("ROLLBACK").unwrap();
            }
        }
    }
    // Alpha's role works in its restored schema.
    su.batch_execute(
        "BEGIN; SET LOCAL ROLE bi_alpha_owner; INSERT INTO bi_alpha.parents (name) VALUES ('ok'); COMMIT;",
    )
    .unwrap();
}
