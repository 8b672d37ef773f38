//! Issue 13's fleet-wide figures (migrations, integrity check, fleet health)
//! on the fleet of common/fleet.rs (the realistic template, eleven rows along
//! seven foreign keys in each institution) grown to TC_BENCH_TENANTS
//! institutions (default 10,000; TC_BENCH_FLEET reuses a fleet grown earlier),
//! printed at 1,000 institutions and at the full size:
//! - a one-column ALTER migrated over the whole fleet by
//!   tenant.apply_migrations, next to a psql-style loop of the same ALTERs
//!   (one transaction each) in the same database; goal at least 500
//!   institutions/s;
//! - tenant.check_integrity over the fleet (the median of three runs): seconds, ms per institution, and
//!   the backend's private memory (RssAnon) afterwards; goals: 10,000
//!   institutions in under 60 s (6 ms each), under 500 MB;
//! - tenant.fleet_health over the fleet: goal 10,000 in under 5 s (0.5 ms each).
//!
//! Durable settings: `./tc bench` runs with fsync on. The fleet is grown
//! with synchronous_commit off in the growing session only (the figures are
//! taken with the defaults).

mod common;
use common::fleet::Fleet;
use common::{median, Goal, Goals};
use std::time::Instant;

/// Institutions per second of a one-column ALTER: through
/// tenant.apply_migrations, and as a psql loop of the same ALTERs.
fn migrations(db: &str, tenants: usize, goals: &mut Goals) {
    let mut client = common::connect(db);
    let schemas: Vec<String> = client
        .query("SELECT schema_name FROM tenant.tenant_schemas WHERE status = 'ACTIVE' ORDER BY schema_name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version: i32 =
        client.query_one("SELECT COALESCE(max(version), 0) + 1 FROM tenant.migrations", &[]).unwrap().get(0);
    let started = Instant::now();
    for schema in &schemas {
        client.batch_execute(&format!("ALTER TABLE {schema}.people ADD COLUMN plain_{version} text")).unwrap();
    }
    let plain = schemas.len() as f64 / started.elapsed().as_secs_f64();

    client
        .query_one(
            "SELECT tenant.register_migration($1, $2, 'bench column')",
            &[&version, &format!("ALTER TABLE people ADD COLUMN note_{version} text")],
        )
        .unwrap();
    let migrated: i64 = client
        .query_one("SELECT count(*) FROM tenant.tenant_schemas WHERE status <> 'DROPPED' AND version < $1", &[&version])
        .unwrap()
        .get(0);
    let started = Instant::now();
    client.batch_execute("SET client_min_messages = warning").unwrap();
    client.batch_execute("CALL tenant.apply_migrations()").unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let behind: i64 = client
        .query_one("SELECT count(*) FROM tenant.tenant_schemas WHERE status <> 'DROPPED' AND version < $1", &[&version])
        .unwrap()
        .get(0);
    assert_eq!(behind, 0, "every schema migrated");
    let rate = migrated as f64 / seconds;
    println!(
        "migration at {tenants}: {rate:.0} institutions/s ({:.2} ms each), psql loop of the same ALTERs {plain:.0}/s: the migration at {:.2}x the loop's rate",
        1000.0 / rate,
        rate / plain
    );
    goals.check(&format!("migration rate at {tenants}"), rate, " institutions/s", Goal::AtLeast(500.0));
}

/// The check three times in one fresh backend (its memory afterwards is what
/// the checks left behind), judged on the median: one run alone swings with
/// what the growth or the VACUUM before it left in the caches.
fn integrity(db: &str, tenants: usize, goals: &mut Goals) -> f64 {
    let mut client = common::connect(db);
    let (runs, findings) = common::three_runs(&mut client, "SELECT count(*) FROM tenant.check_integrity()");
    let seconds = median(&runs);
    let memory = common::backend_rss_anon_mb(&mut client);
    let per = seconds * 1000.0 / tenants as f64;
    let each = runs.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(", ");
    println!(
        "check_integrity at {tenants}: {seconds:.1} s, the median of {each} s ({per:.2} ms per institution), {findings} finding(s), backend RssAnon {memory:.0} MB"
    );
    // 10,000 institutions in 60 s: 6 ms each, at any size.
    goals.check(&format!("check_integrity per institution at {tenants}"), per, " ms", Goal::AtMost(6.0));
    goals.check(&format!("check_integrity backend memory at {tenants}"), memory, " MB", Goal::AtMost(500.0));
    per
}

fn health(db: &str, tenants: usize, goals: &mut Goals) {
    let mut client = common::connect(db);
    let started = Instant::now();
    let rows: i64 = client.query_one("SELECT count(*) FROM tenant.fleet_health", &[]).unwrap().get(0);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(rows as usize, tenants);
    println!("fleet_health at {tenants}: {seconds:.2} s ({:.3} ms per institution)", seconds * 1000.0 / tenants as f64);
    // 10,000 institutions in 5 s: 0.5 s per 1,000.
    goals.check(&format!("fleet_health at {tenants}"), seconds, " s", Goal::AtMost(0.5 * tenants as f64 / 1000.0));
}

fn main() {
    let mut fleet = Fleet::open("bench_fleet_scale");
    let mut goals = Goals::default();
    let mut per_institution = Vec::new();
    for size in fleet.sizes() {
        let size = fleet.grow(size);
        migrations(&fleet.db, size, &mut goals);
        per_institution.push(integrity(&fleet.db, size, &mut goals));
        health(&fleet.db, size, &mut goals);
    }
    if let [small, large] = per_institution[..] {
        goals.check("check_integrity per-institution cost, full size / 1,000", large / small, "x", Goal::AtMost(1.2));
    }
    goals.finish();
}
