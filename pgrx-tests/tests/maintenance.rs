//! Scheduled maintenance on the real pg_cron (Debian's postgresql-15-cron,
//! preloaded in the test cluster with pg_stat_statements), usage snapshots
//! over real statistics, and the slowest queries per tenant.

mod common;
use common::*;
use std::thread;
use std::time::{Duration, Instant};

const TEMPLATE: &str = "CREATE TABLE tenant_template.items (id int PRIMARY KEY, label text);
                        CREATE TABLE tenant_template.tags (item_id int REFERENCES tenant_template.items, tag text);
                        CREATE TABLE tenant_template.visits (id int PRIMARY KEY, at timestamptz NOT NULL)";

#[test]
fn recommended_jobs_run_on_pg_cron_and_a_failing_job_is_logged() {
    const DB: &str = "it_maint";
    let mut su = fresh_database(DB);
    su.batch_execute(TEMPLATE).unwrap();
    let a = create_ok(&mut su, "mj_a");
    let b = create_ok(&mut su, "mj_b");
    su.batch_execute(&format!("ALTER DATABASE {DB} SET tenant_control.lock_timeout = '2s'")).unwrap();
    // Something for the data retention job to remove: mj_a's visit of two months ago.
    su.batch_execute(
        "SELECT tenant.set_retention('visits', 'at', '30 days', false);
         INSERT INTO mj_a.visits VALUES (1, now() - interval '60 days'), (2, now())",
    )
    .unwrap();

    // pg_cron lives in the database named by cron.database_name (postgres):
    // schedule_maintenance hands out the statements to run there.
    let every_minute = "SELECT job_name, statement, scheduled FROM tenant.schedule_maintenance(
                            quota_refresh => '* * * * *', usage_snapshot => '* * * * *',
                            integrity_check => '* * * * *', maintenance => '* * * * *',
                            fleet_backup => '* * * * *', data_retention => '* * * * *',
                            history => '* * * * *', move_resolver => '* * * * *')";
    let jobs = su.query(every_minute, &[]).unwrap();
    assert_eq!(jobs.len(), 9);
    assert!(jobs.iter().all(|job| !job.get::<_, bool>("scheduled")));
    let mut cron = superuser("postgres");
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    let pattern = format!("tenant_control {DB}: %");
    let scheduled = |cron: &mut postgres::Client| -> Vec<(i64, String, String)> {
        cron.query("SELECT jobid, jobname, schedule FROM cron.job WHERE jobname LIKE $1 ORDER BY jobname", &[&pattern])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };

    // While a DBA holds tenant mj_b's registry row, its maintenance cannot run.
    let mut holder = superuser(DB);
    let mut hold = holder.transaction().unwrap();
    hold.query_one("SELECT 1 FROM tenant.tenant_schemas WHERE id = $1 FOR NO KEY UPDATE", &[&b]).unwrap();

    // Twice: the second call updates the same eight jobs.
    for _ in 0..2 {
        for job in &jobs {
            cron.batch_execute(job.get::<_, &str>("statement")).unwrap();
        }
    }
    let listed = scheduled(&mut cron);
    let names: Vec<&str> =
        listed.iter().map(|(_, name, _)| name.strip_prefix(&pattern[..pattern.len() - 1]).unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "backup_retention",
            "data_retention",
            "fleet_backup",
            "history",
            "integrity_check",
            "maintenance",
            "move_resolver",
            "quota_refresh",
            "usage_snapshot"
        ]
    );
    assert_eq!(listed[0].2, "0 3 * * *", "the retention job keeps its nightly schedule");

    // A platform administrator who is not a superuser schedules the move
    // resolver as its own job (pg_cron runs it as that role), as it would
    // schedule_maintenance's statements in pg_cron's database.
    cron.batch_execute(
        "DROP ROLE IF EXISTS mj_admin; CREATE ROLE mj_admin LOGIN IN ROLE tenant_control_admin;
         GRANT USAGE ON SCHEMA cron TO mj_admin; GRANT EXECUTE ON FUNCTION cron.schedule_in_database TO mj_admin",
    )
    .unwrap();
    let by_admin: i64 = connect_as("mj_admin", "postgres")
        .query_one(
            "SELECT cron.schedule_in_database('it_maint resolver of mj_admin', '* * * * *', $1, $2)",
            &[&"SELECT count(*) FROM tenant.resolve_moves()", &DB],
        )
        .unwrap()
        .get(0);

    // The eight every-minute jobs run in the same minute: wait once.
    let mut running: Vec<i64> =
        listed.iter().filter(|(_, _, schedule)| schedule == "* * * * *").map(|(id, _, _)| *id).collect();
    running.push(by_admin);
    let started = Instant::now();
    let outcomes: Vec<(String, String, String)> = loop {
        let rows = cron
            .query(
                "SELECT DISTINCT ON (d.jobid) j.jobname, d.status, coalesce(d.return_message, '')
                   FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                  WHERE d.jobid = ANY($1) AND d.status IN ('succeeded', 'failed') ORDER BY d.jobid, d.runid",
                &[&running],
            )
            .unwrap();
        if rows.len() == running.len() {
            break rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        }
        assert!(started.elapsed() < Duration::from_secs(150), "pg_cron did not run the jobs");
        thread::sleep(Duration::from_millis(500));
    };
    for id in listed.iter().map(|(id, _, _)| id).chain([&by_admin]) {
        cron.query_one("SELECT cron.unschedule($1::bigint)", &[id]).unwrap();
    }
    hold.rollback().unwrap();

    let outcome = |job: &str| {
        outcomes.iter().find(|(name, _, _)| name.ends_with(job)).map(|(_, s, m)| (s.clone(), m.clone())).unwrap()
    };
    for job in
        ["quota_refresh", "usage_snapshot", "integrity_check", "history", "move_resolver", "resolver of mj_admin"]
    {
        assert_eq!(outcome(job).0, "succeeded", "{job}: {}", outcome(job).1);
    }
    let (status, message) = outcome("maintenance");
    assert_eq!(status, "failed");
    assert!(message.contains("1 of 2 tenant(s) could not be analyzed"), "{message}");
    // The fleet backup saved mj_a (verified) and failed on mj_b, whose
    // registry row it could not update in time.
    let (status, message) = outcome("fleet_backup");
    assert_eq!(status, "failed");
    assert!(message.contains("1 of 2 institution(s) could not be backed up, the last: mj_b"), "{message}");

    // The failure is in the operation log too, next to what succeeded.
    let optimized = |client: &mut postgres::Client, schema_id: uuid::Uuid, status: &str| {
        count(
            client,
            &format!(
                "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'OPTIMIZE' AND schema_id = '{schema_id}'
                    AND status = '{status}' AND ('{status}' = 'COMPLETED' OR error_sqlstate = '55P03')"
            ),
        )
    };
    assert!(optimized(&mut su, b, "FAILED") >= 1);
    assert!(optimized(&mut su, a, "COMPLETED") >= 1);
    assert!(
        count(
            &mut su,
            &format!("SELECT count(*) FROM tenant.schema_backups WHERE schema_id = '{a}' AND verified_at IS NOT NULL")
        ) >= 1
    );
    assert!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'BACKUP' AND schema_id = '{b}'
                    AND status = 'FAILED' AND error_sqlstate = '55P03'"
            )
        ) >= 1
    );
    assert!(count(&mut su, "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'USAGE_SNAPSHOT' AND status = 'COMPLETED'") >= 1);
    assert!(count(&mut su, "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'INTEGRITY_CHECK' AND status = 'COMPLETED'") >= 1);
    assert!(count(&mut su, "SELECT count(DISTINCT schema_id) FROM tenant.usage_snapshots") == 2);
    // The data retention job removed mj_a's old visit and logged it.
    assert_eq!(count(&mut su, "SELECT count(*) FROM mj_a.visits"), 1);
    assert!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'RETENTION' AND schema_id = '{a}'
                    AND status = 'COMPLETED' AND (metadata->>'removed')::int = 1"
            )
        ) >= 1
    );
    assert_eq!(
        count(
            &mut su,
            &format!("SELECT count(*) FROM tenant.tenant_schemas WHERE id = '{a}' AND last_optimized IS NOT NULL")
        ),
        1
    ); // The history job, run in the same second as the others, made this month's
       // partition of the operation log without making any of them fail (a row
       // routed to the DEFAULT partition just before the attachment would fail
       // its partition constraint).
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'tenant.schema_operations'::regclass
                AND inhrelid = format('tenant.schema_operations_p%s', to_char(now() AT TIME ZONE 'UTC', 'YYYYMM'))::regclass"
        ),
        1
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.schema_operations WHERE error_sqlstate = '23514'"), 0);
}

/// The server flushes a session's statistics when it goes idle; force it.
fn write_and_flush(client: &mut postgres::Client, sql: &str) {
    client.batch_execute(&format!("{sql}; SELECT pg_stat_force_next_flush()")).unwrap();
}

#[test]
fn usage_snapshots_count_the_rows_written_in_each_period() {
    let mut su = fresh_database("it_usage");
    su.batch_execute(TEMPLATE).unwrap();
    let id = create_ok(&mut su, "us_a");
    write_and_flush(&mut su, "INSERT INTO us_a.items SELECT i FROM generate_series(1, 10) i");
    su.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    assert_eq!(
        count(&mut su, &format!("SELECT inserted_since_snapshot FROM tenant.tenant_stats WHERE schema_id = '{id}'")),
        0
    );
    write_and_flush(
        &mut su,
        "INSERT INTO us_a.items SELECT i FROM generate_series(11, 15) i;
         UPDATE us_a.items SET label = 'x' WHERE id <= 2;
         DELETE FROM us_a.items WHERE id = 15",
    );
    assert_eq!(
        count(&mut su, &format!("SELECT inserted_since_snapshot FROM tenant.tenant_stats WHERE schema_id = '{id}'")),
        5
    );
    assert_eq!(
        su.query_one(
            &format!("SELECT checks->'recent_activity'->>'state' FROM tenant.fleet_health WHERE schema_id = '{id}'"),
            &[]
        )
        .unwrap()
        .get::<_, String>(0),
        "ok"
    );
    su.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    let periods = su
        .query(
            "SELECT inserted, updated, deleted, period_start IS NOT DISTINCT FROM lag(taken_at) OVER (ORDER BY taken_at)
               FROM tenant.usage_snapshots WHERE schema_id = $1 ORDER BY taken_at",
            &[&id],
        )
        .unwrap();
    let periods: Vec<(i64, i64, i64, bool)> =
        periods.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(periods, vec![(10, 0, 0, true), (5, 2, 1, true)]);

    // A snapshot that fails leaves its FAILED log row (committed first) and raises.
    su.batch_execute("ALTER TABLE tenant.usage_snapshots ADD CONSTRAINT closed CHECK (false) NOT VALID").unwrap();
    assert_eq!(sqlstate_of_failure(&mut su, "CALL tenant.take_usage_snapshot()"), "23514");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'USAGE_SNAPSHOT' AND status = 'FAILED' AND error_sqlstate = '23514'"
        ),
        1
    );
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM tenant.usage_snapshots WHERE schema_id = '{id}'")), 2);
}

#[test]
fn slow_queries_are_attributed_to_the_tenant_that_ran_them() {
    let mut su = fresh_database("it_slow");
    su.batch_execute(TEMPLATE).unwrap();
    create_ok(&mut su, "sq_a");
    create_ok(&mut su, "sq_b");
    su.batch_execute("CREATE EXTENSION pg_stat_statements").unwrap();
    su.batch_execute("SET ROLE sq_a_owner; SELECT count(*) FROM sq_a.items, pg_sleep(0.05); RESET ROLE").unwrap();
    let rows = su.query("SELECT schema_name, calls, query FROM tenant.slow_queries(3)", &[]).unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get::<_, String>(0) == "sq_a"), "only sq_a's role ran statements");
    assert!(rows.iter().any(|r| r.get::<_, String>(2).contains("pg_sleep")));
}

#[test]
fn with_pg_cron_in_the_same_database_the_jobs_are_scheduled_directly_and_updated() {
    // pg_cron's own database (cron.database_name = postgres in the test cluster).
    let mut su = superuser("postgres");
    su.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron; DROP EXTENSION IF EXISTS tenant_control CASCADE; CREATE EXTENSION tenant_control")
        .unwrap();
    let jobs = |su: &mut postgres::Client| -> Vec<(String, String, String)> {
        su.query(
            "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'tenant_control postgres: %' ORDER BY jobname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    for schedule in ["0 4 * * *", "0 5 * * *"] {
        let rows =
            su.query("SELECT scheduled FROM tenant.schedule_maintenance(maintenance => $1)", &[&schedule]).unwrap();
        assert_eq!(rows.len(), 9);
        assert!(rows.iter().all(|r| r.get::<_, bool>(0)));
    }
    let scheduled = jobs(&mut su);
    su.batch_execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'tenant_control postgres: %'")
        .unwrap();
    su.batch_execute("DROP EXTENSION tenant_control CASCADE").unwrap();
    assert_eq!(scheduled.len(), 9, "a second call updates the jobs instead of adding some: {scheduled:?}");
    let maintenance = scheduled.iter().find(|(name, _, _)| name.ends_with("maintenance")).unwrap();
    assert_eq!((maintenance.1.as_str(), maintenance.2.as_str()), ("0 5 * * *", "CALL tenant.run_maintenance()"));
}
