//! Issue 15's figures, on the realistic template (template.sql, 52
//! relations) with two students per institution:
//! - a count over 1,000 institutions with tenant.fleet_report (run_in_each);
//! - a fleet view (tenant.create_fleet_view of `students`): planning and
//!   execution time of a count over it at 1,000 and at 5,000 institutions;
//! - what a fleet view adds to one institution's creation (its refresh).
//!
//! Each figure is printed with its goal beside it; the run exits non-zero
//! when a goal is missed. Durable settings: `./tc bench` runs with fsync on.
//! TC_FLEET_BENCH_MAX (default 5000) caps the larger fleet when time is short.

mod common;
use common::{with_template, Goal, Goals};
use postgres::Client;
use std::time::Instant;

const ROWS: &str = "INSERT INTO people (kind, full_name, email) VALUES ('student', 'Ada', 'ada@example.org'),
                                                                     ('student', 'Alan', 'alan@example.org');
                    INSERT INTO students (person_id, student_no) SELECT id, 'S' || id FROM people";

fn grow(client: &mut Client, from: usize, to: usize) {
    let started = Instant::now();
    for i in from..to {
        let name = format!("bf_{i:05}");
        let row = client
            .query_one("SELECT status, message FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&name])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
    }
    // One call puts the rows in every new institution (as each one's role).
    let ids: Vec<uuid::Uuid> = client
        .query(
            "SELECT institution_id FROM tenant.tenant_schemas WHERE schema_name >= $1 AND status = 'ACTIVE'",
            &[&format!("bf_{from:05}")],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let failed: i64 = client
        .query_one("SELECT count(*) FILTER (WHERE status <> 'SUCCESS') FROM tenant.run_in_each($1, $2)", &[&ROWS, &ids])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0);
    println!("built institutions {from}..{to} in {:.0} s", started.elapsed().as_secs_f64());
}

/// Median of three EXPLAIN ANALYZE runs of a count over the view: (planning ms, execution ms, rows).
fn view_times(client: &mut Client) -> Result<(f64, f64, i64), String> {
    let mut plans = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let plan: serde_json::Value = client
            .query_one("EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM tenant.fleet_students", &[])
            .map_err(|e| e.to_string())?
            .get(0);
        plans.push(plan[0]["Planning Time"].as_f64().unwrap());
        runs.push(plan[0]["Execution Time"].as_f64().unwrap());
    }
    let rows: i64 =
        client.query_one("SELECT count(*) FROM tenant.fleet_students", &[]).map_err(|e| e.to_string())?.get(0);
    Ok((common::median(&plans), common::median(&runs), rows))
}

/// The view's figures with JIT off (what the documentation recommends for
/// fleet views: with thousands of branches the planner's cost passes
/// jit_above_cost and PostgreSQL compiles every branch), and, for the
/// record, with the server's default JIT setting (no goal).
fn measure_view(client: &mut Client, goals: &mut Goals, institutions: usize, plan_goal: f64, run_goal: f64) {
    if let Ok((plan, run, _)) = view_times(client) {
        println!("fleet view count at {institutions} institutions with default JIT settings: planning {plan:.1} ms, execution {run:.1} ms (no goal)");
    }
    client.batch_execute("SET jit = off").unwrap();
    let measured = view_times(client);
    client.batch_execute("RESET jit").unwrap();
    match measured {
        Ok((plan, run, rows)) => {
            assert_eq!(rows, 2 * institutions as i64, "the view must count every institution's students");
            goals.check(
                &format!("fleet view count at {institutions} institutions (jit off), planning"),
                plan,
                " ms",
                Goal::AtMost(plan_goal),
            );
            goals.check(
                &format!("fleet view count at {institutions} institutions (jit off), execution"),
                run,
                " ms",
                Goal::AtMost(run_goal),
            );
        }
        Err(error) => {
            println!("fleet view count at {institutions} institutions: FAILED: {error}");
            goals.miss(format!("fleet view at {institutions}: {error}"));
        }
    }
}

fn main() {
    let max: usize = std::env::var("TC_FLEET_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let mut client = with_template("bench_fleet");
    let fsync: String = client.query_one("SHOW fsync", &[]).unwrap().get(0);
    let locks: String = client.query_one("SHOW max_locks_per_transaction", &[]).unwrap().get(0);
    println!(
        "fsync = {fsync}, max_locks_per_transaction = {locks}; template: 52 relations, 2 students per institution"
    );
    let mut goals = Goals::default();

    grow(&mut client, 0, 1000);
    let mut report = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let total: serde_json::Value = client
            .query_one(
                "SELECT figures FROM tenant.fleet_report('SELECT count(*) AS students FROM students') WHERE status = 'TOTAL'",
                &[],
            )
            .unwrap()
            .get(0);
        report.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(total["students"], 2000);
    }
    goals.check("fleet_report count over 1000 institutions", common::median(&report), " ms", Goal::AtMost(5000.0));

    let started = Instant::now();
    client.batch_execute("SELECT tenant.create_fleet_view('students', 'fleet_students')").unwrap();
    goals.check(
        "create_fleet_view over 1000 institutions",
        started.elapsed().as_secs_f64() * 1000.0,
        " ms",
        Goal::AtMost(5000.0),
    );
    measure_view(&mut client, &mut goals, 1000, 500.0, 500.0);
    let started = Instant::now();
    grow(&mut client, 1000, 1001);
    goals.check(
        "one institution created with the fleet view refreshed, at 1000",
        started.elapsed().as_secs_f64() * 1000.0,
        " ms",
        Goal::AtMost(3000.0),
    );
    client.batch_execute("SELECT tenant.drop_fleet_view('fleet_students')").unwrap();

    if max > 1001 {
        grow(&mut client, 1001, max);
        client.batch_execute("SELECT tenant.create_fleet_view('students', 'fleet_students')").unwrap();
        measure_view(&mut client, &mut goals, max, 2500.0, 2500.0);
    }
    if max < 5000 {
        println!("the 5000-institution figures were not measured: TC_FLEET_BENCH_MAX = {max}");
        goals.miss("5000 institutions not measured");
    }

    goals.finish();
}
