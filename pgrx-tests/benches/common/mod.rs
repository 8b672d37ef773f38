//! What every benchmark needs: the cluster `./tc bench` started, fresh
//! databases, PostgreSQL's own tools, and medians.
#![allow(dead_code)]

pub mod fleet;
pub mod school;

use postgres::{Client, NoTls};
use std::env;
use std::process::Command;

/// The realistic template of pgrx-tests/benches/template.sql (52 relations).
pub const TEMPLATE: &str = include_str!("../template.sql");

pub fn host() -> String {
    env::var("TC_TEST_HOST").expect("run through ./tc bench")
}

pub fn port() -> String {
    env::var("TC_TEST_PORT").expect("run through ./tc bench")
}

pub fn connect(db: &str) -> Client {
    Client::connect(&format!("host={} port={} user=postgres dbname={db}", host(), port()), NoTls).unwrap()
}

/// An empty database of that name, made anew.
pub fn recreate(db: &str) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    connect(db)
}

/// A new database with the extension, whose template is `TEMPLATE`.
pub fn with_template(db: &str) -> Client {
    let mut client = recreate(db);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    client.batch_execute(&format!("SET search_path = tenant_template; {TEMPLATE}; RESET search_path")).unwrap();
    client
}

/// A PostgreSQL client tool (pg_dump, pgbench, ...) pointed at the cluster as postgres.
pub fn tool(name: &str) -> Command {
    let bin = env::var("TC_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let mut command = Command::new(format!("{bin}/{name}"));
    command.args(["-h", &host(), "-p", &port(), "-U", "postgres"]);
    command
}

/// This backend's private memory in MB (its catalog caches among it): the
/// benchmarks run on the server's machine.
pub fn backend_rss_anon_mb(client: &mut Client) -> f64 {
    let pid = backend_pid(client);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// The server process serving `client`.
pub fn backend_pid(client: &mut Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// The CPU time server process `pid` has used so far, in ms (from /proc: the
/// benchmarks run on the server's machine; NaN when it cannot be read).
/// Unlike wall time it leaves out the waits for a CPU on a loaded machine.
pub fn backend_cpu_ms(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|stat| stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .map_or(f64::NAN, |ns| ns / 1e6)
}

/// The machine's load averages (1, 5, 15 minutes), to print beside figures
/// taken on a shared machine.
pub fn load_average() -> String {
    let loads = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loads.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted[sorted.len() / 2]
}

/// Three runs of a statement on one connection: each run's seconds, and the
/// first column of the last run's row (judge on `median` of the runs).
pub fn three_runs(client: &mut Client, sql: &str) -> (Vec<f64>, i64) {
    let mut runs = Vec::new();
    let mut value = 0;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        value = client.query_one(sql, &[]).unwrap().get(0);
        runs.push(started.elapsed().as_secs_f64());
    }
    (runs, value)
}

/// The goals a benchmark measures itself against. Each figure is printed with
/// its goal beside it; `finish` exits non-zero when any goal was missed, so a
/// run that misses one cannot be mistaken for a good one. (CI does not run the
/// benchmarks: a slow machine fails a benchmark run, never the test suite.)
#[derive(Default)]
pub struct Goals {
    missed: Vec<String>,
}

pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goals {
    /// Print `figure` (in `unit`) against `goal`, and remember a miss.
    pub fn check(&mut self, what: &str, figure: f64, unit: &str, goal: Goal) {
        let (met, wanted) = match goal {
            Goal::AtLeast(bound) => (figure >= bound, format!(">= {bound}")),
            Goal::AtMost(bound) => (figure <= bound, format!("<= {bound}")),
        };
        let verdict = if met { "met" } else { "MISSED" };
        println!("GOAL {what}: {figure:.3}{unit} (goal {wanted}{unit}): {verdict}");
        if !met {
            self.missed.push(format!("{what}: {figure:.3}{unit}, goal {wanted}{unit}"));
        }
    }

    /// A goal that could not even be measured counts as missed.
    pub fn miss(&mut self, what: impl Into<String>) {
        let what = what.into();
        println!("GOAL {what}: MISSED");
        self.missed.push(what);
    }

    /// Exit non-zero if a goal was missed.
    pub fn finish(self) {
        if self.missed.is_empty() {
            println!("all goals met");
        } else {
            println!("goals missed:\n  {}", self.missed.join("\n  "));
            std::process::exit(1);
        }
    }
}

/// Run the two sides of pair `i`, the one first on even pairs and the other
/// first on odd ones, so that neither side always meets the machine as the
/// other left it; the results come back in argument order.
pub fn in_turn<A, B>(i: usize, one: impl FnOnce() -> A, other: impl FnOnce() -> B) -> (A, B) {
    if i.is_multiple_of(2) {
        let a = one();
        (a, other())
    } else {
        let b = other();
        (one(), b)
    }
}

/// A new institution's schema written by hand, the baseline of the create
/// figures: its role, the schema, the template's relations, then `grants`
/// (statements where `{role}` stands for the schema's role and `{schema}` for
/// the schema), in one transaction.
pub fn hand_written_schema(name: &str, grants: &str) -> String {
    format!(
        "BEGIN;
         CREATE ROLE {name}_owner NOLOGIN;
         CREATE SCHEMA {name};
         GRANT USAGE, CREATE ON SCHEMA {name} TO {name}_owner;
         SET LOCAL search_path = {name};
         {TEMPLATE};
         {}
         COMMIT;",
        grants.replace("{role}", &format!("{name}_owner")).replace("{schema}", name)
    )
}
