//! Issue 13: 10,000 institutions on one server. Grows the fleet of
//! common/fleet.rs (template.sql, 52 relations, plus one `hits` table the
//! context figures insert into) to TC_BENCH_TENANTS institutions (default
//! 10,000; TC_BENCH_FLEET reuses a fleet grown earlier) and prints each figure at 1,000 and at the full size, with its goal and
//! its side-by-side baseline (same database, same moment):
//! - `set_context` + a one-row INSERT against `SET LOCAL search_path` +
//!   `SET LOCAL ROLE` (throughput ratio), the first call of a new
//!   connection, and the first call after sign-ups in another database;
//! - a warm-pool claim (create_institution_schema with a spare ready);
//! - GRANT/REVOKE and CREATE/DROP TABLE with the extension's event triggers
//!   against the same statements with them disabled.
//!
//! Each figure is one function taking the fleet's `Bench`: add one by writing
//! a function and naming it in `FIGURES`. Not run by CI: `./tc bench scale`
//! (fsync on). Growing 10,000 institutions takes about half an hour here.

mod common;
use common::fleet::Fleet;
use common::{median, Goal, Goals};
use postgres::Client;
use std::time::Instant;

const DB: &str = "bench_scale";
const OTHER_DB: &str = "bench_scale_other";
const APP: &str = "bench_scale_app";

/// The fleet being measured, and where the figures go.
struct Bench {
    su: Client,
    db: String,
    institutions: Vec<(uuid::Uuid, String)>,
    goals: Goals,
}

impl Bench {
    fn size(&self) -> usize {
        self.institutions.len()
    }
    fn check(&mut self, what: &str, figure: f64, unit: &str, goal: Goal) {
        let what = format!("{what} at {} institutions", self.size());
        self.goals.check(&what, figure, unit, goal);
    }
}

type Figure = fn(&mut Bench);

/// Every figure, in the order printed at each size.
const FIGURES: &[(&str, Figure)] = &[
    ("context throughput", context_throughput),
    ("context on a new connection", context_first_call),
    ("context after sign-ups elsewhere", context_after_sign_ups),
    ("warm-pool claim", pool_claim),
    ("GRANT/REVOKE", grant_overhead),
    ("CREATE/DROP TABLE", ddl_overhead),
];

fn main() {
    let mut fleet = Fleet::open(DB);
    let su = common::connect(&fleet.db);
    let mut bench = Bench { su, db: fleet.db.clone(), institutions: Vec::new(), goals: Goals::default() };
    bench
        .su
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS public.bench_grants (x int);
             DROP ROLE IF EXISTS {APP}; CREATE ROLE {APP} LOGIN; GRANT tenant_control_app TO {APP};"
        ))
        .unwrap();
    let settings: String = bench.su.query_one("SELECT current_setting('fsync')", &[]).unwrap().get(0);
    println!("fsync = {settings}; fleet of template.sql + hits in database {}", fleet.db);
    for size in fleet.sizes() {
        fleet.grow(size);
        bench.institutions = fleet.institutions();
        for (name, figure) in FIGURES {
            println!("-- {name}");
            figure(&mut bench);
        }
    }
    drop_other_database();
    bench.goals.finish();
}

fn connect_app(db: &str) -> Client {
    postgres::Client::connect(
        &format!("host={} port={} user={APP} dbname={db}", common::host(), common::port()),
        postgres::NoTls,
    )
    .unwrap()
}

/// Milliseconds `work` takes.
fn timed(work: impl FnOnce()) -> f64 {
    let started = Instant::now();
    work();
    started.elapsed().as_secs_f64() * 1000.0
}

/// Institutions spread over the fleet, for transactions that rotate among them.
fn sample(bench: &Bench, count: usize) -> Vec<(uuid::Uuid, String)> {
    let step = (bench.size() / count).max(1);
    bench.institutions.iter().step_by(step).take(count).cloned().collect()
}

/// The median of per-round ratios `theirs[i] / ours[i]` (rounds run side by
/// side, so a burst of load on the machine moves both sides of one ratio).
fn ratio_of_rounds(theirs: &[f64], ours: &[f64]) -> f64 {
    median(&theirs.iter().zip(ours).map(|(t, o)| t / o).collect::<Vec<_>>())
}

/// Alternate `run(true)` and `run(false)` for `rounds` rounds, the order
/// swapped every round, after one warm-up round of each; returns the times
/// of each side per round.
fn alternate(rounds: usize, mut run: impl FnMut(bool) -> f64) -> (Vec<f64>, Vec<f64>) {
    let (_, _) = (run(true), run(false));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in [round % 2 == 0, round % 2 != 0] {
            let ms = run(side);
            if side {
                first.push(ms)
            } else {
                second.push(ms)
            }
        }
    }
    (first, second)
}

/// `BEGIN; set_context; INSERT; COMMIT` as the application, against `BEGIN;
/// SET LOCAL search_path; SET LOCAL ROLE; INSERT; COMMIT` as a superuser (the
/// cheapest role check there is), in alternating rounds over 50 institutions;
/// the median of the per-round ratios. The application calls set_context as
/// drivers call a statement they run again and again: prepared once per
/// connection (pgx by default, the JDBC driver and psycopg 3 from the fifth
/// call); the same call parsed and planned each time (an unnamed statement,
/// one more round trip) is printed beside it. Twice: with durable commits,
/// and with `synchronous_commit = off` on both connections, which leaves out
/// the wait for the WAL flush (a shared disk's noise) and measures the work.
///
/// Every round runs on a new connection, warmed by one untimed pass over the
/// same institutions: a backend keeps the core the scheduler first gives it,
/// and on this two-core machine one core takes the disk's and network's
/// interrupts, so a long-lived pair of backends measured one core against
/// the other (the same side ran 0.10 or 0.35 ms a transaction from one run
/// to the next). Each side's backend CPU time per transaction is printed
/// beside the wall times.
fn context_throughput(bench: &mut Bench) {
    let tenants = sample(bench, 50);
    for synchronous_commit in ["on", "off"] {
        for (what, reuse) in [("prepared once", true), ("parsed every time", false)] {
            let mut cpu_ms = [0.0, 0.0];
            let (ours, theirs) = alternate(40, |ours| {
                let mut client = if ours { connect_app(&bench.db) } else { common::connect(&bench.db) };
                client.batch_execute(&format!("SET synchronous_commit = {synchronous_commit}")).unwrap();
                let prepared = (ours && reuse).then(|| client.prepare("SELECT tenant.set_context($1)").unwrap());
                let pass = |client: &mut Client| {
                    for (institution, schema) in &tenants {
                        client.batch_execute("BEGIN").unwrap();
                        if !ours {
                            client.batch_execute(&format!("SET LOCAL search_path = {schema}, public")).unwrap();
                            client.batch_execute(&format!("SET LOCAL ROLE {schema}_owner")).unwrap();
                        } else if let Some(statement) = &prepared {
                            client.execute(statement, &[institution]).unwrap();
                        } else {
                            client.execute("SELECT tenant.set_context($1)", &[institution]).unwrap();
                        }
                        client.batch_execute("INSERT INTO hits DEFAULT VALUES").unwrap();
                        client.batch_execute("COMMIT").unwrap();
                    }
                };
                pass(&mut client);
                let pid = common::backend_pid(&mut client);
                let before = common::backend_cpu_ms(pid);
                let ms = timed(|| pass(&mut client));
                cpu_ms[usize::from(!ours)] += common::backend_cpu_ms(pid) - before;
                ms
            });
            let per_tx = |rounds: &[f64]| median(rounds) / tenants.len() as f64;
            println!(
                "per transaction (synchronous_commit {synchronous_commit}, set_context {what}): set_context {:.3} ms, SET LOCAL search_path + ROLE {:.3} ms",
                per_tx(&ours),
                per_tx(&theirs)
            );
            // The warm-up round of each side included, alike.
            let cpu_us = cpu_ms.map(|ms| ms * 1000.0 / ((ours.len() + 1) * tenants.len()) as f64);
            println!(
                "backend CPU per transaction (synchronous_commit {synchronous_commit}, set_context {what}): set_context {:.1} us, SET LOCAL search_path + ROLE {:.1} us: throughput by CPU {:.3}x",
                cpu_us[0],
                cpu_us[1],
                cpu_us[1] / cpu_us[0]
            );
            let figure =
                format!("set_context throughput / SET LOCAL throughput (synchronous_commit {synchronous_commit})");
            if reuse {
                bench.check(&figure, ratio_of_rounds(&theirs, &ours), "x", Goal::AtLeast(0.9));
            } else {
                println!("{figure}, set_context {what}: {:.3}x", ratio_of_rounds(&theirs, &ours));
            }
        }
    }
}

/// The first set_context of a new application connection (median of 7),
/// with the library loaded by that first call, then preloaded at connection
/// start (`session_preload_libraries`, as `shared_preload_libraries` would).
fn context_first_call(bench: &mut Bench) {
    let (institution, _) = bench.institutions[bench.size() / 2];
    let db = bench.db.clone();
    let first_call = || -> f64 {
        let firsts: Vec<f64> = (0..7)
            .map(|_| {
                let mut app = connect_app(&db);
                app.batch_execute("BEGIN").unwrap();
                let ms = timed(|| {
                    app.execute("SELECT tenant.set_context($1)", &[&institution]).unwrap();
                });
                app.batch_execute("COMMIT").unwrap();
                ms
            })
            .collect();
        median(&firsts)
    };
    let loading = first_call();
    bench.su.batch_execute(&format!("ALTER ROLE {APP} SET session_preload_libraries = 'tenant_control'")).unwrap();
    let preloaded = first_call();
    bench.su.batch_execute(&format!("ALTER ROLE {APP} RESET session_preload_libraries")).unwrap();
    let mut plain = common::connect(&bench.db);
    let role = format!("{}_owner", bench.institutions[0].1);
    let baseline = timed(|| plain.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}; COMMIT")).unwrap());
    println!("first BEGIN; SET LOCAL ROLE; COMMIT of a superuser connection: {baseline:.2} ms");
    bench.check("first set_context of a new connection (loads the library)", loading, " ms", Goal::AtMost(5.0));
    bench.check("first set_context of a new connection (library preloaded)", preloaded, " ms", Goal::AtMost(5.0));
}

/// set_context in an open application connection right after sign-ups in
/// another database of the cluster (which change pg_auth_members / pg_authid).
fn context_after_sign_ups(bench: &mut Bench) {
    let mut other = other_database();
    let (institution, _) = bench.institutions[0];
    let mut app = connect_app(&bench.db);
    let context = |app: &mut Client| {
        app.batch_execute("BEGIN").unwrap();
        let ms = timed(|| {
            app.execute("SELECT tenant.set_context($1)", &[&institution]).unwrap();
        });
        app.batch_execute("COMMIT").unwrap();
        ms
    };
    context(&mut app);
    let steady = median(&(0..5).map(|_| context(&mut app)).collect::<Vec<_>>());
    let after: Vec<f64> = (0..5)
        .map(|_| {
            let row = other
                .query_one("SELECT status FROM tenant.create_institution_schema(gen_random_uuid(), NULL)", &[])
                .unwrap();
            assert_eq!(row.get::<_, String>(0), "SUCCESS");
            context(&mut app)
        })
        .collect();
    println!("set_context in a warm connection: {steady:.3} ms");
    bench.check("set_context right after a sign-up in another database", median(&after), " ms", Goal::AtMost(5.0));
}

fn other_database() -> Client {
    let mut admin = common::connect("postgres");
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&OTHER_DB]).unwrap().is_some();
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {OTHER_DB}")).unwrap();
        common::connect(OTHER_DB).batch_execute("CREATE EXTENSION tenant_control").unwrap();
    }
    common::connect(OTHER_DB)
}

/// Its tenants' roles stay behind in the throwaway bench cluster.
fn drop_other_database() {
    common::connect("postgres").batch_execute(&format!("DROP DATABASE IF EXISTS {OTHER_DB} WITH (FORCE)")).unwrap();
}

/// create_institution_schema with a spare ready, against the two renames a
/// claim is at bottom (ALTER SCHEMA/ROLE RENAME, by hand, in the same
/// database), each a claim then a rename in turn. Twice: with durable commits,
/// and with `synchronous_commit = off` (the work without the WAL flush wait).
fn pool_claim(bench: &mut Bench) {
    let claims = 9;
    for synchronous_commit in ["on", "off"] {
        bench.su.batch_execute(&format!("CALL tenant.fill_pool({claims})")).unwrap();
        bench.su.batch_execute(&format!("SET synchronous_commit = {synchronous_commit}")).unwrap();
        let (mut ms, mut hand) = (Vec::new(), Vec::new());
        let size = bench.size();
        for i in 0..claims {
            let (institution, name) = (uuid::Uuid::new_v4(), format!("sc_pool_{size}_{synchronous_commit}_{i}"));
            let su = &mut bench.su;
            ms.push(timed(|| {
                let row = su
                    .query_one(
                        "SELECT status, message FROM tenant.create_institution_schema($1, $2)",
                        &[&institution, &name],
                    )
                    .unwrap();
                assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
            }));
            bench.institutions.push((institution, name));
            let name = format!("sc_hand_{size}_{synchronous_commit}_{i}");
            su.batch_execute(&format!("CREATE SCHEMA {name}_s; CREATE ROLE {name}_r")).unwrap();
            hand.push(timed(|| {
                su.batch_execute(&format!(
                    "BEGIN; ALTER SCHEMA {name}_s RENAME TO {name}; ALTER ROLE {name}_r RENAME TO {name}_owner; COMMIT"
                ))
                .unwrap()
            }));
            su.batch_execute(&format!("DROP SCHEMA {name}; DROP ROLE {name}_owner")).unwrap();
        }
        bench.su.batch_execute("RESET synchronous_commit").unwrap();
        println!(
            "hand-written ALTER SCHEMA + ALTER ROLE RENAME (synchronous_commit {synchronous_commit}): {:.2} ms",
            median(&hand)
        );
        bench.check(
            &format!("warm-pool claim (median, synchronous_commit {synchronous_commit})"),
            median(&ms),
            " ms",
            Goal::AtMost(2.0),
        );
    }
}

/// Alternating rounds of 100 `statements` with the extension's event
/// triggers enabled and disabled (the same database, so the same catalogs);
/// the median of the per-round ratios, and the median times per statement.
/// `one_transaction`: the 100 statements in one transaction (rolled back),
/// which leaves out the commits (and their WAL flushes) and measures the
/// work the triggers add; otherwise each statement commits on its own.
fn with_and_without_triggers(
    bench: &mut Bench,
    one_transaction: bool,
    statements: &dyn Fn(usize) -> String,
) -> (f64, f64, f64) {
    let triggers: Vec<String> = bench
        .su
        .query("SELECT evtname::text FROM pg_event_trigger WHERE evtname LIKE 'tenant_control%'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let switch = |su: &mut Client, how: &str| {
        for trigger in &triggers {
            su.batch_execute(&format!("ALTER EVENT TRIGGER {trigger} {how}")).unwrap();
        }
    };
    let mut worker = common::connect(&bench.db);
    let mut round = 0;
    // Thirty rounds a side: a round of 100 GRANTs in one transaction lasts 8 ms.
    let (with, without) = alternate(30, |with| {
        switch(&mut bench.su, if with { "ENABLE ALWAYS" } else { "DISABLE" });
        round += 1;
        timed(|| {
            if one_transaction {
                worker.batch_execute("BEGIN").unwrap();
            }
            (0..100).for_each(|i| worker.batch_execute(&statements(round * 100 + i)).unwrap());
            if one_transaction {
                worker.batch_execute("ROLLBACK").unwrap();
            }
        })
    });
    switch(&mut bench.su, "ENABLE ALWAYS");
    (ratio_of_rounds(&with, &without), median(&with) / 100.0, median(&without) / 100.0)
}

/// Both variants of a with/without figure, printed and checked.
fn trigger_figure(bench: &mut Bench, what: &str, statements: &dyn Fn(usize) -> String) {
    for (one_transaction, how) in [(false, "each committed"), (true, "100 in one transaction")] {
        let (ratio, with, without) = with_and_without_triggers(bench, one_transaction, statements);
        println!("{what} ({how}): {with:.3} ms with the extension's event triggers, {without:.3} ms without");
        bench.check(&format!("{what} with / without the extension ({how})"), ratio, "x", Goal::AtMost(1.05));
    }
}

fn grant_overhead(bench: &mut Bench) {
    trigger_figure(bench, "GRANT/REVOKE", &|i| {
        if i % 2 == 0 {
            "GRANT SELECT ON public.bench_grants TO PUBLIC"
        } else {
            "REVOKE SELECT ON public.bench_grants FROM PUBLIC"
        }
        .to_string()
    });
}

fn ddl_overhead(bench: &mut Bench) {
    trigger_figure(bench, "CREATE/DROP TABLE", &|i| {
        if i % 2 == 0 {
            format!("CREATE TABLE public.bench_ddl_{} (id int PRIMARY KEY, note text)", i / 2)
        } else {
            format!("DROP TABLE public.bench_ddl_{}", i / 2)
        }
    });
}
