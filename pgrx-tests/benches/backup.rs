//! Issue #4's figures, measured side by side in one run against a real cluster
//! (started by `./tc bench backup`), on one tenant of a dozen tables, about
//! 1.5 million rows and 200 MB at the default scale:
//! 1. tenant.backup_institution_schema, alternating three times with
//! 2. a hand-written SQL copy: bare tables, INSERT ... SELECT, then keys,
//!    indexes and foreign keys, sequences set (medians compared);
//! 3. the backup with verify => true;
//! 4. `pg_dump -n <schema> -Fc` followed by `pg_restore` into a new database;
//! 5. an in-place restore from the backup, with the time of its swap.
//!
//! TC_BENCH_BACKUP_SCALE (default 1.0) scales the row counts down for a quick run.
//! Not a test: it prints figures and never fails because the machine is slow.

mod common;
use common::school::{fill, KEYS, NAMES, TABLES};
use common::{connect, median, recreate, tool, Goal, Goals};
use postgres::Client;
use std::env;
use std::process::Command;
use std::time::Instant;

const DB: &str = "bench_backup";
const SCHEMA: &str = "bench_school";

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// Call a tenant function that answers a status row, then checkpoint; the row and the seconds the call took.
fn timed(client: &mut Client, sql: &str, id: &uuid::Uuid) -> (postgres::Row, f64) {
    let started = Instant::now();
    let row = client.query_one(sql, &[id]).unwrap();
    let elapsed = secs(started);
    assert_eq!(row.get::<_, String>("status"), "SUCCESS", "{}", row.get::<_, String>("message"));
    client.batch_execute("CHECKPOINT").unwrap();
    (row, elapsed)
}

fn run(mut command: Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

/// The hand-written copy: bare tables, one INSERT ... SELECT each, then keys and indexes, sequences set.
fn hand_copy(client: &mut Client, target: &str) -> f64 {
    let s = SCHEMA;
    let load: String = NAMES
        .iter()
        .map(|t| format!("INSERT INTO {target}.{t} OVERRIDING SYSTEM VALUE SELECT * FROM {s}.{t};\n"))
        .collect();
    let sequences: String = NAMES
        .iter()
        .filter(|t| **t != "enrolments")
        .map(|t| {
            format!(
                "SELECT setval(pg_get_serial_sequence('{target}.{t}', 'id'), last_value, is_called)
                   FROM {s}.{t}_id_seq; \n"
            )
        })
        .collect();
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             CREATE SCHEMA {target};
             {tables}
             {load}
             {keys}
             {sequences}
             COMMIT;",
            tables = TABLES.replace("{s}", target),
            keys = KEYS.replace("{s}", target),
        ))
        .unwrap();
    secs(started)
}

fn main() {
    let scale: f64 = env::var("TC_BENCH_BACKUP_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    recreate(DB);
    let mut client = connect(DB);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    let id: uuid::Uuid = client
        .query_one("SELECT schema_id FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&SCHEMA])
        .unwrap()
        .get(0);
    let started = Instant::now();
    let rows = fill(&mut client, SCHEMA, scale);
    let size: i64 = client.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    println!(
        "tenant: {} tables, {rows} rows, {:.0} MB (scale {scale}; filled in {:.1} s)",
        NAMES.len(),
        size as f64 / 1048576.0,
        secs(started)
    );
    client.batch_execute("CHECKPOINT").unwrap();

    // Our backup and the hand-written copy alternate, three rounds, each after
    // a checkpoint; the medians are compared. The copies of the first round stay.
    let (mut ours, mut hand, mut backup_id) = (Vec::new(), Vec::new(), None);
    for round in 0..3 {
        let (row, elapsed) =
            timed(&mut client, "SELECT status, message, backup_id FROM tenant.backup_institution_schema($1)", &id);
        ours.push(elapsed);
        let taken: uuid::Uuid = row.get("backup_id");
        hand.push(hand_copy(&mut client, "bench_hand"));
        client.batch_execute("CHECKPOINT").unwrap();
        if round == 0 {
            backup_id = Some(taken);
        } else {
            timed(&mut client, "SELECT status, message FROM tenant.remove_backup($1)", &taken);
        }
        if round < 2 {
            client.batch_execute("DROP SCHEMA bench_hand CASCADE; CHECKPOINT").unwrap();
        }
    }
    let backup_id = backup_id.unwrap();
    let (ours, hand) = (median(&ours), median(&hand));
    let (_, verified) =
        timed(&mut client, "SELECT status, message FROM tenant.backup_institution_schema($1, verify => true)", &id);

    let dump = env::temp_dir().join("tenant_control_bench_backup.dump");
    let restore_db = "bench_backup_restored";
    recreate(restore_db);
    let started = Instant::now();
    let mut pg_dump = tool("pg_dump");
    pg_dump.args(["-n", SCHEMA, "-Fc", "-f", dump.to_str().unwrap(), DB]);
    run(pg_dump);
    let dumped = secs(started);
    let mut pg_restore = tool("pg_restore");
    pg_restore.args(["-d", restore_db, dump.to_str().unwrap()]);
    run(pg_restore);
    let dump_restore = secs(started);
    std::fs::remove_file(&dump).ok();
    client.batch_execute("CHECKPOINT").unwrap();

    // The parallel form a DBA would reach for: directory format, two jobs each way.
    let dump_dir = env::temp_dir().join("tenant_control_bench_backup.dir");
    std::fs::remove_dir_all(&dump_dir).ok();
    recreate(restore_db);
    let started = Instant::now();
    let mut pg_dump = tool("pg_dump");
    pg_dump.args(["-n", SCHEMA, "-Fd", "-j2", "-f", dump_dir.to_str().unwrap(), DB]);
    run(pg_dump);
    let mut pg_restore = tool("pg_restore");
    pg_restore.args(["-j2", "-d", restore_db, dump_dir.to_str().unwrap()]);
    run(pg_restore);
    let parallel_dump_restore = secs(started);
    std::fs::remove_dir_all(&dump_dir).ok();
    client.batch_execute("CHECKPOINT").unwrap();

    let (row, restore) =
        timed(&mut client, "SELECT status, message, swap_ms FROM tenant.restore_institution_schema($1)", &backup_id);
    let swap_ms: f64 = row.get("swap_ms");
    let matches: bool =
        client.query_one("SELECT bool_and(matches) FROM tenant.verify_backup($1, true)", &[&backup_id]).unwrap().get(0);

    println!("backup_institution_schema, median of 3:         {ours:8.2} s");
    println!(
        "backup_institution_schema(verify => true):      {verified:8.2} s  ({:.2} of the plain backup)",
        verified / ours
    );
    println!("hand-written copy, data then keys, median of 3: {hand:8.2} s");
    println!("pg_dump -Fc ({dumped:5.2} s) + pg_restore:         {dump_restore:8.2} s");
    println!("pg_dump -Fd -j2 + pg_restore -j2:                {parallel_dump_restore:8.2} s");
    println!("restore in place: {restore:.2} s in all, of which the swap took {swap_ms:.1} ms; restored tenant matches the backup: {matches}");
    let mut goals = Goals::default();
    goals.check("pg_dump -Fc + pg_restore / backup_institution_schema", dump_restore / ours, "x", Goal::AtLeast(2.0));
    goals.check(
        "pg_dump -Fd -j2 + pg_restore -j2 / backup_institution_schema",
        parallel_dump_restore / ours,
        "x",
        Goal::AtLeast(1.5),
    );
    goals.check("backup_institution_schema / hand-written copy", ours / hand, "x", Goal::AtMost(1.2));
    goals.finish();
}
