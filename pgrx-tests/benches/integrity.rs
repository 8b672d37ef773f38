//! Issue #6's figures: tenant.check_integrity over the whole fleet at 100 and
//! at 1,000 tenants built from the realistic template (template.sql, 52
//! relations), with a few rows in each tenant so that every foreign key is
//! checked against data; how the time grows from 100 to 1,000 tenants (10x
//! the tenants should cost about 10x, not more); and, at 1,000 tenants, the
//! fleet health view and a usage snapshot. At each size the check runs in the
//! calling backend alone (`tenant_control.integrity_workers = 0`) and shared
//! with its background workers (the default), side by side; the goals are
//! measured on the default. CPU time (the caller's, and the workers', as the
//! postmaster's reaped children) is printed beside the wall time.
//! Not a test: it prints figures and never fails because the machine is slow.

mod common;
use common::fleet::SAMPLE_ROWS;
use common::{with_template, Goal, Goals};
use postgres::Client;

fn add_tenants(client: &mut Client, from: usize, to: usize) {
    for i in from..to {
        let name = format!("bi_{i}");
        let row = client
            .query_one("SELECT status, message FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&name])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
        client.batch_execute(&format!("SET search_path = {name}; {SAMPLE_ROWS}; RESET search_path")).unwrap();
    }
    client.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
}

/// Median of three runs of a statement, in seconds, and its first column.
fn timed(client: &mut Client, sql: &str) -> (f64, i64) {
    let (runs, value) = common::three_runs(client, sql);
    (common::median(&runs), value)
}

/// CPU seconds (user + system) of a process, or of its reaped children.
fn cpu_seconds(pid: i32, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<f64> =
        stat.rsplit(')').next().unwrap_or_default().split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let (user, system) = if children { (13, 14) } else { (11, 12) };
    // In clock ticks of USER_HZ, 100 a second on Linux.
    (fields.get(user).unwrap_or(&0.0) + fields.get(system).unwrap_or(&0.0)) / 100.0
}

/// The check in a fresh backend (three runs, the median) with `workers`
/// background workers, and that backend's private memory afterwards: what
/// the check left behind.
fn check_fleet(db: &str, tenants: usize, workers: i32) -> (f64, f64) {
    let mut client = common::connect(db);
    client.batch_execute(&format!("SET tenant_control.integrity_workers = {workers}")).unwrap();
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let postmaster: i32 = client
        .query_one("SELECT pg_read_file('postmaster.pid', 0, 16)", &[])
        .map(|r| r.get::<_, String>(0).lines().next().unwrap_or("0").trim().parse().unwrap_or(0))
        .unwrap_or(0);
    // The postmaster counts a child's time once it has reaped it: the backend of
    // the previous figure's connection must be gone before the count starts.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (caller_before, workers_before) = (cpu_seconds(pid, false), cpu_seconds(postmaster, true));
    let (seconds, findings) = timed(&mut client, "SELECT count(*) FROM tenant.check_integrity()");
    // Reaped: the workers of the last run too.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let per = |cpu: f64| cpu * 1000.0 / 3.0 / tenants as f64;
    let (caller_cpu, workers_cpu) =
        (per(cpu_seconds(pid, false) - caller_before), per(cpu_seconds(postmaster, true) - workers_before));
    let memory = common::backend_rss_anon_mb(&mut client);
    // What was found is in the log row of the last check.
    let found: String = client
        .query_one(
            "SELECT coalesce(string_agg(f->>'check' || ' ' || (f->>'object'), ', '), 'none')
               FROM tenant.schema_operations o, jsonb_array_elements(o.metadata->'findings') f
              WHERE o.id = (SELECT max(id) FROM tenant.schema_operations WHERE operation_type = 'INTEGRITY_CHECK')",
            &[],
        )
        .unwrap()
        .get(0);
    println!(
        "check_integrity over {tenants} tenants, {workers} worker(s): {seconds:.2} s ({:.2} ms per tenant; CPU per tenant \
         {caller_cpu:.2} ms in the caller + {workers_cpu:.2} ms in workers), backend RssAnon {memory:.0} MB, \
         {findings} finding(s): {found} (load average {})",
        seconds * 1000.0 / tenants as f64,
        common::load_average()
    );
    (seconds, memory)
}

/// The check alone, then shared with the default number of workers.
fn check_both(db: &str, tenants: usize) -> (f64, f64) {
    let (alone, _) = check_fleet(db, tenants, 0);
    let (shared, memory) = check_fleet(db, tenants, 2);
    println!("shared with 2 workers / alone at {tenants} tenants: {:.2}x the time", shared / alone);
    (shared, memory)
}

fn main() {
    // TC_BENCH_DB names the database (several fleets can then be kept side by side).
    let db = std::env::var("TC_BENCH_DB").unwrap_or_else(|_| "bench_integrity".into());
    let db = db.as_str();
    let mut client = with_template(db);
    let relations: i64 = client
        .query_one("SELECT count(*) FROM pg_class WHERE relnamespace = 'tenant_template'::regnamespace", &[])
        .unwrap()
        .get(0);
    println!("template: {relations} relations; each tenant holds 11 rows along 7 foreign keys");
    // TC_BENCH_TENANTS (default 1,000) sets the larger fleet; the smaller is a tenth of it.
    let full: usize = std::env::var("TC_BENCH_TENANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000).max(10);
    let tenth = full / 10;
    add_tenants(&mut client, 0, tenth);
    let (small, _) = check_both(db, tenth);
    add_tenants(&mut client, tenth, full);
    let (large, memory) = check_both(db, full);
    println!("growth from {tenth} to {full} tenants: {:.2}x the time for 10x the tenants", large / small);
    let (health, _) = timed(&mut client, "SELECT count(*) FROM tenant.fleet_health");
    println!("fleet_health over {full} tenants: {health:.2} s (load average {})", common::load_average());
    let (snapshot, _) = timed(&mut client, "SELECT tenants FROM tenant.record_usage_snapshot()");
    println!("usage snapshot of {full} tenants: {snapshot:.2} s");
    let mut goals = Goals::default();
    // Flat per tenant: ten times the tenants, at most eleven times the time.
    goals.check(
        &format!("check_integrity time, {full} tenants / {tenth} tenants"),
        large / small,
        "x",
        Goal::AtMost(11.0),
    );
    // 10,000 tenants in under 60 s means at most 6 ms a tenant.
    let per_tenant = large * 1000.0 / full as f64;
    goals.check(&format!("check_integrity per tenant at {full}"), per_tenant, " ms", Goal::AtMost(6.0));
    goals.check(&format!("check_integrity backend memory at {full}"), memory, " MB", Goal::AtMost(500.0));
    // 10,000 tenants in under 5 s: 0.5 ms per tenant.
    let health_per_1000 = health * 1000.0 / full as f64;
    goals.check(&format!("fleet_health per 1000 tenants at {full}"), health_per_1000, " s", Goal::AtMost(0.5));
    goals.finish();
}
