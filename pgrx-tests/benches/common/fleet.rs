//! The fleet of the realistic template that the 10,000-institution benchmarks
//! (scale.rs, fleet_scale.rs) take their figures on: template.sql plus a
//! one-column `hits` table, eleven rows along seven foreign keys in each
//! institution.
//!
//! Growing 10,000 institutions (and the VACUUM ANALYZE after it) takes from a
//! quarter of an hour to hours on a 2-core machine, too long to do once per
//! benchmark. `TC_BENCH_FLEET=DB` (`./tc bench` then keeps its cluster between
//! runs; or run the bench binaries against a cluster of your own) makes every benchmark use the
//! fleet in database DB, created the first time, and grow it from the
//! institutions already there, so one growth serves them all and an
//! interrupted one resumes. Without it each benchmark makes its own database.
//! `TC_BENCH_GROW_SECONDS=S` stops growing after S seconds: the figures are then
//! taken at the size reached.

use super::{connect, with_template};
use postgres::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A handful of rows along the template's foreign keys (the integrity
/// benchmark loads the same).
pub const SAMPLE_ROWS: &str = "
    INSERT INTO departments (name) VALUES ('Mathematics');
    INSERT INTO people (kind, full_name, email) VALUES ('student', 'Ada', 'ada@example.org'),
                                                        ('student', 'Alan', 'alan@example.org'),
                                                        ('staff', 'Emmy', 'emmy@example.org');
    INSERT INTO students (person_id, student_no) SELECT id, 'S' || id FROM people WHERE kind = 'student';
    INSERT INTO staff (person_id, department_id) SELECT p.id, d.id FROM people p, departments d WHERE p.kind = 'staff';
    INSERT INTO courses (department_id, code, title) SELECT id, 'MATH101', 'Algebra' FROM departments;
    INSERT INTO sections (course_id, teacher_id, term) SELECT c.id, s.person_id, '2026A' FROM courses c, staff s;
    INSERT INTO enrolments (section_id, student_id) SELECT sec.id, st.person_id FROM sections sec, students st;
";

/// The table the tenant-context figures insert into.
const HITS: &str = "CREATE TABLE tenant_template.hits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now())";

pub struct Fleet {
    pub db: String,
    pub client: Client,
}

impl Fleet {
    /// The shared fleet (`TC_BENCH_FLEET`), or a new database `own_db`.
    pub fn open(own_db: &str) -> Fleet {
        let shared = std::env::var("TC_BENCH_FLEET").ok();
        let db = shared.clone().unwrap_or_else(|| own_db.to_string());
        let exists =
            connect("postgres").query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db]).unwrap().is_some();
        let client = if shared.is_some() && exists {
            connect(&db)
        } else {
            let mut client = with_template(&db);
            client.batch_execute(HITS).unwrap();
            client
        };
        Fleet { db, client }
    }

    /// Live institutions (spares not counted).
    pub fn size(&mut self) -> usize {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM tenant.tenant_schemas WHERE status = 'ACTIVE'", &[])
            .unwrap()
            .get(0);
        n as usize
    }

    /// The sizes to take figures at: 1,000 and `TC_BENCH_TENANTS` (default
    /// 10,000), but not 1,000 when the fleet is already past it. The last one
    /// is always measured, at whatever size the fleet has.
    pub fn sizes(&mut self) -> Vec<usize> {
        let full: usize = std::env::var("TC_BENCH_TENANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
        let have = self.size();
        let mut sizes = vec![full];
        if full > 1000 && have <= 1000 {
            sizes.insert(0, 1000);
        }
        sizes
    }

    /// Grow to `size` live institutions (if fewer), named `fl_NNNNN`, on two connections side by
    /// side (two cores; creates share the template lock), then refresh the
    /// storage figures, VACUUM ANALYZE and CHECKPOINT. Returns the size reached, which is
    /// smaller when `TC_BENCH_GROW_SECONDS` ran out.
    pub fn grow(&mut self, size: usize) -> usize {
        let from = self.size();
        if from >= size {
            return from;
        }
        let limit = std::env::var("TC_BENCH_GROW_SECONDS").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs);
        let started = Instant::now();
        // Numbers after the highest one used in the cluster (roles are
        // cluster-wide, another benchmark's database may hold fleet roles too,
        // and an interrupted growth may have left gaps).
        let first: i32 = self
            .client
            .query_one(
                "SELECT COALESCE(max(substring(rolname FROM '^fl_([0-9]+)_owner$')::int) + 1, 0)
                   FROM pg_roles WHERE rolname ~ '^fl_[0-9]+_owner$'",
                &[],
            )
            .unwrap()
            .get(0);
        let next = AtomicUsize::new(first as usize);
        let end = first as usize + (size - from);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| grow_on_one_connection(&self.db, &next, end, started, limit));
            }
        });
        let reached = self.size();
        println!("grew the fleet from {from} to {reached} institutions in {:.0} s", started.elapsed().as_secs_f64());
        // Each on its own: the procedure commits, VACUUM runs outside a transaction.
        // The CHECKPOINT writes out what the growth and the VACUUM dirtied
        // before any figure is taken: at 10,000 the checkpoint that would
        // otherwise follow writes gigabytes of catalogs for minutes, and the
        // figures taken meanwhile measured its I/O (the integrity check 16%
        // slower per institution, set_context's commits 30%).
        for statement in ["CALL tenant.refresh_all_storage()", "VACUUM ANALYZE", "CHECKPOINT"] {
            let started = Instant::now();
            self.client.batch_execute(statement).unwrap();
            println!("  {statement}: {:.0} s", started.elapsed().as_secs_f64());
        }
        reached
    }

    /// (institution, schema) of every live institution, in name order.
    pub fn institutions(&mut self) -> Vec<(uuid::Uuid, String)> {
        self.client
            .query(
                "SELECT institution_id, schema_name FROM tenant.tenant_schemas WHERE status = 'ACTIVE' ORDER BY schema_name",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }
}

/// Create institutions numbered from `next` until `end` (or the time limit),
/// with synchronous_commit off in this session only (fsync stays on). A fresh
/// connection every 500 creates keeps the backend's catalog caches small.
fn grow_on_one_connection(db: &str, next: &AtomicUsize, end: usize, started: Instant, limit: Option<Duration>) {
    let mut client = None;
    for made in 0usize.. {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= end || limit.is_some_and(|limit| started.elapsed() > limit) {
            return;
        }
        if made.is_multiple_of(500) {
            client = None;
        }
        let client = client.get_or_insert_with(|| {
            let mut client = connect(db);
            client.batch_execute("SET synchronous_commit = off").unwrap();
            client
        });
        let name = format!("fl_{i:05}");
        let row = client
            .query_one("SELECT status, message FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&name])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "SUCCESS", "{}", row.get::<_, String>(1));
        client.batch_execute(&format!("SET search_path = {name}; {SAMPLE_ROWS}; RESET search_path")).unwrap();
        if (i + 1).is_multiple_of(500) {
            println!("  institution {} created ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
        }
    }
}
