//! Issues 12 and 13: what the extension's event triggers (`tenant_control_ddl`
//! on ddl_command_end, `tenant_control_drop` on sql_drop) add to DDL and
//! GRANT/REVOKE that are not the extension's business, in backend CPU time
//! (the first field of /proc/<pid>/schedstat: the benchmark runs on the
//! server's machine), which does not count the time a backend waits for a
//! CPU or the disk of this shared machine:
//!
//! 1. `warm`: a warm connection runs 100 GRANT/REVOKE, or 100 CREATE/DROP
//!    TABLE, in one transaction (rolled back, so no commit is timed), in
//!    rounds that alternate between the triggers enabled and disabled
//!    (`ALTER EVENT TRIGGER ... DISABLE`, the same database and catalogs);
//!    the figure is the median of the per-round ratios.
//! 2. `new_connection`: the hand-written 52-relation script (template.sql, as
//!    a new institution's schema with its role and grants), each run the
//!    first thing in a new connection, in the extension's database against a
//!    database without the extension, in pairs (which goes first alternates);
//!    the figure is the median of the pairs' ratios. A third series loads the
//!    library first (untimed), as `shared_preload_libraries` would.
//!
//! Not run by CI: `./tc bench event_triggers` (TC_BENCH_PARTS=warm or
//! new_connection for one part; TC_BENCH_ROUNDS, TC_BENCH_PAIRS).

mod common;
use common::{
    backend_cpu_ms, backend_pid, connect, hand_written_schema, in_turn, load_average, median, recreate, with_template,
    Goal, Goals, TEMPLATE,
};
use postgres::Client;
use std::env;

const DB: &str = "bench_event_triggers";
const PLAIN_DB: &str = "bench_event_triggers_plain";
/// The series that loads the library first runs in a database of its own:
/// each series adds one schema per pair to its database, so the catalogs of
/// the databases compared grow alike (a database with twice the catalog
/// rows costs measurably more CPU per statement).
const LOADED_DB: &str = "bench_event_triggers_loaded";

fn main() {
    let parts = env::var("TC_BENCH_PARTS").unwrap_or_default();
    let part = |name: &str| parts.is_empty() || parts.split(',').any(|p| p.trim() == name);
    let number = |name: &str, default: usize| env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut goals = Goals::default();
    let mut su = with_template(DB);
    su.batch_execute("CREATE TABLE public.bench_grants (x int)").unwrap();
    with_template(LOADED_DB);
    let mut plain = recreate(PLAIN_DB);
    // The same relations in both databases, so their catalogs are alike.
    plain
        .batch_execute(&format!("CREATE SCHEMA shape; SET search_path = shape; {TEMPLATE}; RESET search_path"))
        .unwrap();
    if part("warm") {
        warm(&mut su, number("TC_BENCH_ROUNDS", 20), &mut goals);
    }
    if part("new_connection") {
        new_connection(number("TC_BENCH_PAIRS", 60), &mut goals);
    }
    goals.finish();
}

/// The CPU time `client`'s backend spends on `work`, in ms.
fn cpu_of(client: &mut Client, work: impl FnOnce(&mut Client)) -> f64 {
    let pid = backend_pid(client);
    let before = backend_cpu_ms(pid);
    work(client);
    backend_cpu_ms(pid) - before
}

fn ratios(ours: &[f64], theirs: &[f64]) -> f64 {
    median(&ours.iter().zip(theirs).map(|(o, t)| o / t).collect::<Vec<_>>())
}

fn switch_triggers(su: &mut Client, enabled: bool) {
    let how = if enabled { "ENABLE ALWAYS" } else { "DISABLE" };
    su.batch_execute(&format!(
        "ALTER EVENT TRIGGER tenant_control_ddl {how}; ALTER EVENT TRIGGER tenant_control_drop {how}"
    ))
    .unwrap();
}

fn warm(su: &mut Client, rounds: usize, goals: &mut Goals) {
    println!("warm connection, {rounds} rounds of each side, load average before: {}", load_average());
    let grants = |i: usize| {
        if i.is_multiple_of(2) {
            "GRANT SELECT ON public.bench_grants TO PUBLIC"
        } else {
            "REVOKE SELECT ON public.bench_grants FROM PUBLIC"
        }
        .to_string()
    };
    let tables = |i: usize| {
        if i.is_multiple_of(2) {
            format!("CREATE TABLE public.bench_ddl_{} (id int PRIMARY KEY, note text)", i / 2)
        } else {
            format!("DROP TABLE public.bench_ddl_{}", i / 2)
        }
    };
    let figures: [(&str, &dyn Fn(usize) -> String); 2] = [("GRANT/REVOKE", &grants), ("CREATE/DROP TABLE", &tables)];
    for (what, statement) in figures {
        let mut worker = connect(DB);
        let mut round = |enabled: bool| {
            switch_triggers(su, enabled);
            cpu_of(&mut worker, |worker| {
                let mut batch = String::from("BEGIN;");
                (0..100).for_each(|i| batch.push_str(&format!("{};", statement(i))));
                batch.push_str("ROLLBACK;");
                worker.batch_execute(&batch).unwrap();
            })
        };
        // A warm-up round of each side, then the order swaps every round.
        let (_, _) = (round(true), round(false));
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            for enabled in [i % 2 == 0, i % 2 != 0] {
                let ms = round(enabled);
                if enabled {
                    with.push(ms)
                } else {
                    without.push(ms)
                }
            }
        }
        switch_triggers(su, true);
        let ratio = ratios(&with, &without);
        println!(
            "{what}, 100 in one transaction: backend CPU {:.1} us a statement with the event triggers, {:.1} us without",
            median(&with) * 10.0,
            median(&without) * 10.0
        );
        goals.check(&format!("{what} with / without the event triggers, backend CPU"), ratio, "x", Goal::AtMost(1.05));
    }
    println!("warm connection: load average after: {}", load_average());
}

/// A new institution's schema written by hand: role, schema, the template's
/// relations, and the grants a create gives (to all tables and sequences).
fn script(name: &str) -> String {
    hand_written_schema(
        name,
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};",
    )
}

/// The script, the first thing a new connection to `db` does; `load` loads
/// the library first (not counted).
fn fresh_script(db: &str, name: &str, load: bool) -> (f64, f64) {
    let mut client = connect(db);
    if load {
        client.batch_execute("LOAD 'tenant_control'").unwrap();
    }
    let started = std::time::Instant::now();
    let cpu = cpu_of(&mut client, |client| client.batch_execute(&script(name)).unwrap());
    (cpu, started.elapsed().as_secs_f64() * 1000.0)
}

fn new_connection(pairs: usize, goals: &mut Goals) {
    println!("new connections, {pairs} pairs, load average before: {}", load_average());
    let (mut ours, mut loaded, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_wall, mut plain_wall) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let with_extension = || fresh_script(DB, &format!("ev_{i}"), false);
        // Roles are cluster-wide: each series names its own.
        let without = || fresh_script(PLAIN_DB, &format!("evp_{i}"), false);
        let (o, p) = in_turn(i, with_extension, without);
        ours.push(o.0);
        ours_wall.push(o.1);
        plain.push(p.0);
        plain_wall.push(p.1);
        loaded.push(fresh_script(LOADED_DB, &format!("evl_{i}"), true).0);
    }
    println!("new connections: load average after: {}", load_average());
    println!(
        "new connection, the 52-relation script: backend CPU {:.2} ms in the extension's database ({:.2} ms with the library loaded first), {:.2} ms without the extension; wall clock {:.2} / {:.2} ms",
        median(&ours),
        median(&loaded),
        median(&plain),
        median(&ours_wall),
        median(&plain_wall)
    );
    println!(
        "new connection: median of the pairs' ratios: {:.3} (library loaded first: {:.3}); wall clock {:.3}",
        ratios(&ours, &plain),
        ratios(&loaded, &plain),
        ratios(&ours_wall, &plain_wall)
    );
    goals.check(
        "52-relation script on a new connection, with / without the extension, backend CPU (median of pairs)",
        ratios(&ours, &plain),
        "x",
        Goal::AtMost(1.05),
    );
}
