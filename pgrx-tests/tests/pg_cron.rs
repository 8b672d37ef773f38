//! The procedures run as pg_cron jobs (Debian's postgresql-15-cron, preloaded
//! in the test cluster): each job is its own command, so procedures commit.

mod common;
use common::*;
use std::thread;
use std::time::{Duration, Instant};

const DB: &str = "it_cron";

/// Schedule the commands as jobs in the test database (Debian's pg_cron 1.4
/// schedules by the minute), wait until each has run once, unschedule them.
fn run_as_cron_jobs(jobs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut cron = superuser("postgres");
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    let ids: Vec<i64> = jobs
        .iter()
        .map(|(name, command)| {
            cron.query_one("SELECT cron.schedule_in_database($1, '* * * * *', $2, $3)", &[name, command, &DB])
                .unwrap()
                .get(0)
        })
        .collect();
    let started = Instant::now();
    let outcomes = loop {
        let rows = cron
            .query(
                "SELECT DISTINCT ON (jobid) status, coalesce(return_message, '') FROM cron.job_run_details
                  WHERE jobid = ANY($1) AND status IN ('succeeded', 'failed') ORDER BY jobid, runid",
                &[&ids],
            )
            .unwrap();
        if rows.len() == ids.len() {
            break rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        }
        assert!(started.elapsed() < Duration::from_secs(150), "pg_cron did not run the jobs");
        thread::sleep(Duration::from_millis(500));
    };
    for id in ids {
        cron.query_one("SELECT cron.unschedule($1::bigint)", &[&id]).unwrap();
    }
    outcomes
}

#[test]
fn fleet_migration_and_pool_filling_run_as_pg_cron_jobs() {
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.items (id int PRIMARY KEY)").unwrap();
    for name in ["cr_a", "cr_b"] {
        create_ok(&mut su, name);
    }
    let row = su
        .query_one(
            "SELECT status FROM tenant.register_migration(1, 'ALTER TABLE items ADD COLUMN label text', 'label')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");

    let outcomes =
        run_as_cron_jobs(&[("tc_migrate", "CALL tenant.apply_migrations()"), ("tc_pool", "CALL tenant.fill_pool(2)")]);
    for (status, message) in &outcomes {
        assert_eq!(status, "succeeded", "{message}");
    }
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.migration_status WHERE status <> 'SPARE' AND pending > 0"),
        0
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'MIGRATE' AND status = 'COMPLETED' AND schema_id IS NOT NULL"),
        2
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.warm_pool WHERE ready"), 2);
}
