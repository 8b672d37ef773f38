//! Issue 14's copy figure, measured side by side in one run: one institution of
//! the school data set (a dozen tables, about 1.5 million rows and 200 MB at
//! the default scale) copied from the cluster `./tc bench copy` started to a
//! second cluster this benchmark starts (fsync on, like the first):
//! 1. `tenant.copy_institution_from` on the second cluster, over dblink;
//! 2. `pg_dump -n <schema> -Fc | pg_restore` piped from the first cluster into a
//!    new database of the second.
//!
//! Three rounds alternate the two, each after a checkpoint on both clusters;
//! the medians are compared (goal: the copy within 1.2x of the pipe).
//! TC_BENCH_COPY_SCALE (default 1.0) scales the row counts down for a quick run.

#[path = "../tests/cluster/mod.rs"]
mod cluster;
mod common;
use cluster::Cluster;
use common::school::fill;
use common::{median, recreate, tool, Goal, Goals};
use postgres::Client;
use std::env;
use std::process::Stdio;
use std::time::Instant;

const DB: &str = "bench_copy_source";
const TARGET_DB: &str = "bench_copy_target";
const DUMP_DB: &str = "bench_copy_dump";
const SCHEMA: &str = "bench_school";

/// The second cluster, in a folder of the benchmark's own, durable like the first.
fn second_cluster(bin: &str) -> Cluster {
    if env::var("TC_TEST_CLUSTERS_DIR").is_err() {
        let dir = env::temp_dir().join("tenant_control_bench_clusters");
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("chown").arg("postgres").arg(&dir).status().unwrap();
        assert!(status.success());
        env::set_var("TC_TEST_CLUSTERS_DIR", &dir);
    }
    let mut cluster = Cluster::init("bench-copy-target", bin);
    cluster.configure("fsync = on\nautovacuum = on");
    cluster.start(bin);
    cluster
}

fn checkpoint(clients: &mut [&mut Client]) {
    for client in clients {
        client.batch_execute("CHECKPOINT").unwrap();
    }
}

/// copy_institution_from as a new institution; the seconds it took.
fn copy(target: &mut Client, source: &str, institution: &uuid::Uuid) -> f64 {
    let started = Instant::now();
    let row = target
        .query_one("SELECT status, message FROM tenant.copy_institution_from($1, $2)", &[&source, institution])
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
    elapsed
}

/// Drop the copy and its drop's backup, so that the next round copies anew.
fn remove_copy(target: &mut Client, institution: &uuid::Uuid) {
    target
        .batch_execute(&format!(
            "SELECT tenant.drop_institution_schema(id) FROM tenant.tenant_schemas
              WHERE institution_id = '{institution}' AND status <> 'DROPPED';
             SELECT tenant.remove_backup(b.backup_id) FROM tenant.backups b
               JOIN tenant.tenant_schemas t ON t.id = b.schema_id WHERE t.institution_id = '{institution}';"
        ))
        .unwrap();
}

/// pg_dump -Fc of the schema piped into pg_restore in a new database of the target.
fn dump_restore(target_cluster: &Cluster, bin: &str) -> f64 {
    let mut admin = target_cluster.connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {DUMP_DB} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {DUMP_DB}")).unwrap();
    let started = Instant::now();
    let mut dump = tool("pg_dump");
    dump.args(["-n", SCHEMA, "-Fc", DB]).stdout(Stdio::piped());
    let mut dumping = dump.spawn().unwrap();
    let mut restore = target_cluster.tool(bin, "pg_restore");
    restore.args(["--no-owner", "--no-privileges", "-d", DUMP_DB]).stdin(dumping.stdout.take().unwrap());
    let restored = restore.status().unwrap();
    let dumped = dumping.wait().unwrap();
    assert!(dumped.success() && restored.success(), "pg_dump | pg_restore failed");
    started.elapsed().as_secs_f64()
}

fn main() {
    let scale: f64 = env::var("TC_BENCH_COPY_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let bin = env::var("TC_TEST_PG_BIN").expect("run through ./tc bench");
    let mut source = recreate(DB);
    source.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    let institution = uuid::Uuid::new_v4();
    let id: uuid::Uuid = source
        .query_one("SELECT schema_id FROM tenant.create_institution_schema($1, $2)", &[&institution, &SCHEMA])
        .unwrap()
        .get(0);
    let started = Instant::now();
    let rows = fill(&mut source, SCHEMA, scale);
    let size: i64 = source.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    println!(
        "institution: 12 tables, {rows} rows, {:.0} MB (scale {scale}; filled in {:.1} s)",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let target_cluster = second_cluster(&bin);
    target_cluster.connect("postgres").batch_execute(&format!("CREATE DATABASE {TARGET_DB}")).unwrap();
    let mut target = target_cluster.connect(TARGET_DB);
    target.batch_execute("CREATE EXTENSION tenant_control; CREATE EXTENSION dblink").unwrap();
    let source_string = format!("host={} port={} user=postgres dbname={DB}", common::host(), common::port());

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..3 {
        checkpoint(&mut [&mut source, &mut target]);
        ours.push(copy(&mut target, &source_string, &institution));
        checkpoint(&mut [&mut source, &mut target]);
        theirs.push(dump_restore(&target_cluster, &bin));
        if round < 2 {
            remove_copy(&mut target, &institution);
        }
    }
    let (ours, theirs) = (median(&ours), median(&theirs));
    println!("copy_institution_from (dblink), median of 3:          {ours:8.2} s");
    println!("pg_dump -n -Fc | pg_restore, piped, median of 3:      {theirs:8.2} s");
    let mut goals = Goals::default();
    goals.check("copy_institution_from / pg_dump | pg_restore", ours / theirs, "x", Goal::AtMost(1.2));
    goals.finish();
}
