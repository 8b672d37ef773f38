//! Moving an institution to another server (tenant.move_institution): the
//! write pause an application sees, at two sizes. An application writes one
//! row per transaction through tenant.set_context, to wherever
//! tenant.locate_institution says the institution lives; the pause runs from
//! the start of its first write that did not succeed on the source (it waited
//! on the cut-over's locks, then was refused) to the commit of its first write
//! on the target. Two clusters of the benchmark's own, durable (fsync on),
//! wal_level = logical; data set: a table of `rows` items (~120 bytes each)
//! with a tag each.

#[path = "../tests/cluster/mod.rs"]
mod cluster;
mod common;
use cluster::{required_env, Cluster};
use common::{median, Goal, Goals};
use postgres::{Client, NoTls, SimpleQueryMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DB: &str = "app";
const MOVES_PER_SIZE: usize = 5;

fn server(name: &str) -> Cluster {
    let bin = required_env("TC_TEST_PG_BIN");
    let mut cluster = Cluster::init(name, &bin);
    cluster.configure(
        "fsync = on\nwal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nshared_buffers = '256MB'",
    );
    cluster.start(&bin);
    cluster.connect("postgres").batch_execute(&format!("CREATE DATABASE {DB}")).unwrap();
    cluster
        .connect(DB)
        .batch_execute(
            "CREATE EXTENSION tenant_control; CREATE EXTENSION dblink;
             CREATE TABLE tenant_template.items (id bigserial PRIMARY KEY, note text NOT NULL, payload text);
             CREATE TABLE tenant_template.tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                                item bigint NOT NULL REFERENCES tenant_template.items (id), tag text);",
        )
        .unwrap();
    cluster
}

fn conninfo(cluster: &Cluster) -> String {
    format!("host={} port={} dbname={DB} user=postgres", cluster.host(), cluster.port())
}

fn institution(db: &mut Client, rows: i64) -> (Uuid, Uuid) {
    let institution = Uuid::new_v4();
    let schema_id: Uuid =
        db.query_one("SELECT schema_id FROM tenant.create_institution_schema($1)", &[&institution]).unwrap().get(0);
    let schema: String =
        db.query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE id = $1", &[&schema_id]).unwrap().get(0);
    db.batch_execute(&format!(
        "INSERT INTO {schema}.items (note, payload) SELECT 'seed ' || g, repeat(md5(g::text), 3) FROM generate_series(1, {rows}) g;
         INSERT INTO {schema}.tags (item, tag) SELECT id, 'seed' FROM {schema}.items; ANALYZE;"
    ))
    .unwrap();
    (institution, schema_id)
}

/// One write through the tenant context; Err when refused.
fn write(db: &mut Client, institution: Uuid, note: &str) -> Result<(), postgres::Error> {
    let mut tx = db.transaction()?;
    tx.query_one("SELECT tenant.set_context($1)", &[&institution])?;
    tx.execute("INSERT INTO items (note) VALUES ($1)", &[&note])?;
    tx.commit()
}

/// The application: writes until the target accepted one; returns the pause.
fn application(source: String, target: String, institution: Uuid, started: Arc<AtomicBool>) -> Duration {
    let (mut here, mut there) = (Client::connect(&source, NoTls).unwrap(), Client::connect(&target, NoTls).unwrap());
    let mut first_failure: Option<Instant> = None;
    for i in 0.. {
        let note = format!("app row {i}");
        if first_failure.is_none() {
            let attempt = Instant::now();
            match write(&mut here, institution, &note) {
                Ok(()) => started.store(true, Ordering::SeqCst),
                Err(_) => first_failure = Some(attempt),
            }
            continue;
        }
        let moved: Option<String> =
            here.query_one("SELECT tenant.locate_institution($1)", &[&institution]).unwrap().get(0);
        if moved.is_some() && write(&mut there, institution, &note).is_ok() {
            return first_failure.unwrap().elapsed();
        }
    }
    unreachable!()
}

fn call_move(db: &mut Client, schema_id: Uuid, target: &str) -> f64 {
    let messages = db.simple_query(&format!("CALL tenant.move_institution('{schema_id}', '{target}')")).unwrap();
    let row =
        messages.into_iter().find_map(|m| if let SimpleQueryMessage::Row(r) = m { Some(r) } else { None }).unwrap();
    assert_eq!(row.get("status"), Some("SUCCESS"), "{:?}", row.get("message"));
    row.get("pause_ms").unwrap().parse().unwrap()
}

fn main() {
    let source = server("bench_move_source");
    let target = server("bench_move_target");
    let (mut src, to) = (source.connect(DB), conninfo(&target));
    let mut goals = Goals::default();
    for rows in [10_000i64, 300_000] {
        let (mut pauses, mut reported, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..MOVES_PER_SIZE {
            let (institution, schema_id) = institution(&mut src, rows);
            let started = Arc::new(AtomicBool::new(false));
            let app = {
                let (s, t, started) = (conninfo(&source), to.clone(), started.clone());
                thread::spawn(move || application(s, t, institution, started))
            };
            while !started.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            let clock = Instant::now();
            reported.push(call_move(&mut src, schema_id, &to));
            totals.push(clock.elapsed().as_secs_f64());
            pauses.push(app.join().unwrap().as_secs_f64() * 1000.0);
        }
        println!(
            "{rows} rows: write pause median {:.1} ms (each: {:?}); cut-over reported by the move {:.1} ms; whole move median {:.2} s",
            median(&pauses),
            pauses.iter().map(|p| (p * 10.0).round() / 10.0).collect::<Vec<_>>(),
            median(&reported),
            median(&totals)
        );
        goals.check(&format!("write pause median, {rows} rows"), median(&pauses), " ms", Goal::AtMost(1000.0));
    }
    drop(src);
    source.discard();
    target.discard();
    goals.finish();
}
