//! Issue #5's figure: the cost of quota enforcement on a pgbench insert
//! workload into a tenant's table, against the same table in a database
//! without the extension, measured side by side in one run (rounds
//! interleaved, the median of the per-round ratios). Also printed, for information: the same
//! workload while the tenant is in its WARNING zone, where every statement
//! passes the guard trigger.
//! Not a test: it prints figures and never fails because the machine is slow.
//! TC_BENCH_SECONDS (default 8) per round, TC_BENCH_ROUNDS (default 7).

mod common;
use common::{connect, median, recreate, tool, Goal, Goals};
use std::env;
use std::fs;

const TABLE: &str = "CREATE TABLE events (id bigserial PRIMARY KEY, account int NOT NULL, payload text NOT NULL,
                                          created_at timestamptz NOT NULL DEFAULT now());
                     CREATE INDEX ON events (account);";
/// Rows in each table before the runs: about 40 MB, so that the warning-zone
/// tenant (warning level 1%) is in its zone with a 2 GB quota to grow into.
const PREFILL: u32 = 200_000;

/// The pgbench script inserting into `schema`.events.
fn script(schema: &str) -> String {
    let path = env::temp_dir().join(format!("tenant_control_quota_bench_{schema}.sql"));
    fs::write(
        &path,
        format!("\\set account random(1, 1000)\nINSERT INTO {schema}.events (account, payload) VALUES (:account, repeat('x', 100));\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn setting(name: &str, default: u32) -> u32 {
    env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A tenant `schema` with the table (roles are cluster-wide: one name per
/// database), and a quota that puts it in the OK or the WARNING state.
fn tenant_database(db: &str, schema: &str, warning_zone: bool) {
    let mut client = recreate(db);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    client.batch_execute(&format!("SET search_path = tenant_template; {TABLE} RESET search_path;")).unwrap();
    let created = client
        .query_one("SELECT schema_id, message FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&schema])
        .unwrap();
    let id: uuid::Uuid =
        created.get::<_, Option<uuid::Uuid>>(0).unwrap_or_else(|| panic!("{}", created.get::<_, String>(1)));
    client.batch_execute(&format!("INSERT INTO {schema}.events (account, payload) SELECT g % 1000, repeat('x', 100) FROM generate_series(1, {PREFILL}) g")).unwrap();
    // Enforcement on: a limit far above the tenant's size (OK), or, for the
    // warning zone, a warning level so low that the tenant is in it with room to grow.
    let quota = if warning_zone {
        client.batch_execute(&format!("ALTER DATABASE {db} SET tenant_control.quota_warning_percent = 1")).unwrap();
        client.batch_execute("SET tenant_control.quota_warning_percent = 1").unwrap();
        "2 GB"
    } else {
        "10 GB"
    };
    client.query_one("SELECT * FROM tenant.set_quota($1, $2)", &[&id, &quota]).unwrap();
    let state: String =
        client.query_one("SELECT quota_state FROM tenant.tenant_schemas WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(state, if warning_zone { "WARNING" } else { "OK" });
}

fn plain_database(db: &str) {
    let mut client = recreate(db);
    client.batch_execute(&format!("CREATE SCHEMA acme; SET search_path = acme; {TABLE} RESET search_path;")).unwrap();
    client.batch_execute(&format!("INSERT INTO acme.events (account, payload) SELECT g % 1000, repeat('x', 100) FROM generate_series(1, {PREFILL}) g")).unwrap();
}

/// Transactions per second of the insert workload on `db`.
fn pgbench(db: &str, seconds: u32, script: &str) -> f64 {
    // Every run starts from a clean checkpoint: none falls in the middle of one series only.
    connect("postgres").batch_execute("CHECKPOINT").unwrap();
    let output = tool("pgbench")
        .args(["-n", "-M", "prepared", "-c", "4", "-j", "2"])
        .args(["-T", &seconds.to_string(), "-f", script, db])
        .output()
        .expect("pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in: {stdout}"))
}

fn main() {
    let (seconds, rounds) = (setting("TC_BENCH_SECONDS", 8), setting("TC_BENCH_ROUNDS", 7));
    plain_database("bench_plain");
    tenant_database("bench_quota", "acme", false);
    tenant_database("bench_quota_warning", "acme_near", true);
    let (acme, acme_near) = (script("acme"), script("acme_near"));
    // Autovacuum of the freshly loaded tables and a pending checkpoint would
    // fall on whichever series runs first.
    for (db, schema) in [("bench_plain", "acme"), ("bench_quota", "acme"), ("bench_quota_warning", "acme_near")] {
        let mut client = connect(db);
        // Autovacuum waking up on one table mid-round would charge that series alone.
        client.batch_execute(&format!("ALTER TABLE {schema}.events SET (autovacuum_enabled = off)")).unwrap();
        client.batch_execute("VACUUM ANALYZE").unwrap();
        // The same table everywhere: the tenant's copy has the template's indexes.
        let indexes: i64 = client
            .query_one("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events'", &[&schema])
            .unwrap()
            .get(0);
        assert_eq!(indexes, 2, "{db}");
    }
    connect("postgres").batch_execute("CHECKPOINT").unwrap();
    println!("pgbench insert workload: 4 clients, {seconds} s per round, {rounds} rounds interleaved");
    let (mut plain, mut enforced, mut warning) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // The order turns every round, so that no series always goes first.
        for series in (0..3).map(|i| (i + round as usize) % 3) {
            match series {
                0 => plain.push(pgbench("bench_plain", seconds, &acme)),
                1 => enforced.push(pgbench("bench_quota", seconds, &acme)),
                _ => warning.push(pgbench("bench_quota_warning", seconds, &acme_near)),
            }
        }
        println!(
            "  round {round}: no extension {:.0} tps, tenant with quota {:.0} tps, tenant in its warning zone {:.0} tps",
            plain[plain.len() - 1],
            enforced[enforced.len() - 1],
            warning[warning.len() - 1]
        );
    }
    // The series of one round ran within a minute of each other: the median of
    // the per-round ratios is steadier than the ratio of the medians on a
    // machine whose speed drifts.
    let ratio = |series: &[f64]| median(&series.iter().zip(&plain).map(|(s, p)| s / p).collect::<Vec<_>>());
    let (enforced_ratio, warning_ratio) = (ratio(&enforced), ratio(&warning));
    let (plain, enforced, warning) = (median(&plain), median(&enforced), median(&warning));
    println!(
        "median tps: no extension {plain:.0}, tenant with quota enforced {enforced:.0}, warning zone {warning:.0}"
    );
    println!("throughput ratio, tenant in its warning zone / extension absent: {warning_ratio:.3} (information)");
    let mut goals = Goals::default();
    goals.check(
        "throughput, quota enforced / extension absent (median of per-round ratios)",
        enforced_ratio,
        "x",
        Goal::AtLeast(0.97),
    );
    goals.finish();
}
