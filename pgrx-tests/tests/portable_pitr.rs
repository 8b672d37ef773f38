//! Point-in-time recovery of ONE institution (issue 14), run for real as
//! docs/portability.md describes it: a cluster archiving its WAL
//! (archive_mode, archive_command), a base backup (pg_basebackup), changes,
//! a bad change after time T, then a scratch cluster started from the base
//! backup with restore_command + recovery_target_time = T +
//! recovery_target_action = promote, and `tenant.copy_institution_from` the
//! scratch cluster: under a new name (a drill, to compare), then in place.
//! Every other institution of the live database stays as it was.

mod cluster;
mod common;
use cluster::{required_env, Cluster};
use common::outcome;
use postgres::Client;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DB: &str = "it_pitr";

fn ids(client: &mut Client, table: &str) -> Vec<i32> {
    client.query(&format!("SELECT id FROM {table} ORDER BY id"), &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Switch to a new WAL segment and wait until the finished one is in the archive.
fn archive_current_wal(client: &mut Client, archive: &std::path::Path) {
    let segment: String = client.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).unwrap().get(0);
    wait_for("the WAL archive", || archive.join(&segment).exists());
}

fn copy(client: &mut Client, source: &str, institution: Uuid, name: Option<&str>, in_place: bool) -> common::Outcome {
    outcome(
        client
            .query_one(
                "SELECT * FROM tenant.copy_institution_from($1, $2, $3, in_place => $4)",
                &[&source, &institution, &name, &in_place],
            )
            .unwrap(),
    )
}

#[test]
fn one_institution_comes_back_to_a_point_in_time_from_a_real_wal_archive() {
    let bin = required_env("TC_TEST_PG_BIN");
    let archive = Cluster::shared_folder("pitr-archive");
    let mut live = Cluster::init("pitr-live", &bin);
    live.configure(&format!(
        "archive_mode = on\narchive_command = 'cp %p {}/%f'\nwal_level = replica",
        archive.display()
    ));
    live.start(&bin);
    live.connect("postgres").batch_execute(&format!("CREATE DATABASE {DB}")).unwrap();
    let mut su = live.connect(DB);
    su.batch_execute(
        "CREATE EXTENSION tenant_control; CREATE EXTENSION dblink;
         CREATE TABLE tenant_template.items (id int PRIMARY KEY, label text, serial_no bigserial)",
    )
    .unwrap();
    let victim = Uuid::new_v4();
    let bystander = Uuid::new_v4();
    for (institution, schema) in [(victim, "victim"), (bystander, "bystander")] {
        let row = su
            .query_one("SELECT status, message FROM tenant.create_institution_schema($1, $2)", &[&institution, &schema])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
        su.batch_execute(&format!(
            "INSERT INTO {schema}.items (id, label) SELECT i, 'base' FROM generate_series(1, 50) i"
        ))
        .unwrap();
    }

    // The base backup, then changes that must survive, then time T.
    let mut scratch = live.base_backup("pitr-scratch", &bin);
    su.batch_execute(
        "INSERT INTO victim.items (id, label) SELECT i, 'after base' FROM generate_series(51, 60) i;
         INSERT INTO bystander.items (id, label) SELECT i, 'after base' FROM generate_series(51, 60) i",
    )
    .unwrap();
    let target_time: String = su.query_one("SELECT clock_timestamp()::text", &[]).unwrap().get(0);
    std::thread::sleep(Duration::from_millis(300));
    // The bad change to the victim, and good ones to the bystander, after T.
    su.batch_execute(
        "DELETE FROM victim.items WHERE id <= 30;
         INSERT INTO bystander.items (id, label) SELECT i, 'after T' FROM generate_series(61, 70) i",
    )
    .unwrap();
    let bystander_before: (String, i32, String) = {
        let row = su
            .query_one(
                "SELECT updated_at::text, version, config::text FROM tenant.tenant_schemas WHERE institution_id = $1",
                &[&bystander],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    archive_current_wal(&mut su, &archive);

    // The scratch cluster: the base backup recovered from the archive to T.
    scratch.configure(&format!(
        "archive_mode = off\nrestore_command = 'cp {}/%f %p'\nrecovery_target_time = '{target_time}'\n\
         recovery_target_action = 'promote'",
        archive.display()
    ));
    scratch.write_data_file("recovery.signal", "");
    scratch.start(&bin);
    let mut then = scratch.connect(DB);
    wait_for("the end of recovery", || !then.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    assert_eq!(ids(&mut then, "victim.items"), (1..=60).collect::<Vec<_>>(), "the scratch cluster stopped at T");
    let source = format!("host={} port={} user=postgres dbname={DB}", scratch.host(), scratch.port());

    // Under a new name: a drill beside the live institution, to compare.
    let drill = copy(&mut su, &source, victim, Some("victim_at_t"), false);
    assert!(drill.ok(), "{} ({:?})", drill.message, drill.sqlstate);
    assert_eq!(ids(&mut su, "victim_at_t.items"), (1..=60).collect::<Vec<_>>());
    assert_eq!(ids(&mut su, "victim.items"), (31..=60).collect::<Vec<_>>(), "the drill leaves the live schema alone");

    // In place: the institution is back at T, its sequence where the recovered
    // one is (recovery leaves a sequence up to 32 values ahead of the last one
    // handed out, as after any crash: never behind).
    let recovered: i64 = then.query_one("SELECT last_value FROM victim.items_serial_no_seq", &[]).unwrap().get(0);
    assert!(recovered >= 60, "{recovered}");
    let restored = copy(&mut su, &source, victim, None, true);
    assert!(restored.ok(), "{} ({:?})", restored.message, restored.sqlstate);
    assert_eq!(ids(&mut su, "victim.items"), (1..=60).collect::<Vec<_>>());
    // items holds no tenant code: its rows went straight in, without a staging table.
    let direct: i64 = su
        .query_one(
            "SELECT (metadata->>'direct_tables')::bigint FROM tenant.schema_operations
              WHERE operation_type = 'RESTORE' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(direct, 1);
    let next: i64 = su.query_one("SELECT nextval('victim.items_serial_no_seq')", &[]).unwrap().get(0);
    assert_eq!(next, recovered + 1);

    // Everything else is as it was: the bystander keeps what it did after T.
    assert_eq!(ids(&mut su, "bystander.items"), (1..=70).collect::<Vec<_>>());
    let row = su
        .query_one(
            "SELECT updated_at::text, version, config::text FROM tenant.tenant_schemas WHERE institution_id = $1",
            &[&bystander],
        )
        .unwrap();
    assert_eq!((row.get(0), row.get(1), row.get(2)), bystander_before);
    let live_schemas: i64 =
        su.query_one("SELECT count(*) FROM tenant.tenant_schemas WHERE status <> 'DROPPED'", &[]).unwrap().get(0);
    assert_eq!(live_schemas, 2);
    drop(then);
    scratch.stop();
    live.stop();
}
