//! The extension's own history (operation log, usage snapshots, audit trail)
//! is partitioned by month: tenant.maintain_history creates the coming
//! months' partitions, moves rows out of the DEFAULT partitions and drops
//! whole months older than the retention period.

mod common;
use common::*;

const TABLES: [&str; 3] = ["schema_operations", "usage_snapshots", "audit_events"];

/// A month `months` from now (negative: ago) as the `YYYYMM` of its partition.
fn month_tag(client: &mut postgres::Client, months: i32) -> String {
    client
        .query_one(
            "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + $1::int * interval '1 month', 'YYYYMM')",
            &[&months],
        )
        .unwrap()
        .get(0)
}

/// Rows of every history table dated `months` from now, written as the
/// extension would have written them then.
fn backdate(client: &mut postgres::Client, schema_id: uuid::Uuid, months: i32) {
    let at = format!("date_trunc('month', now()) + interval '10 days' + {months} * interval '1 month'");
    client
        .batch_execute(&format!(
            "INSERT INTO tenant.schema_operations (schema_id, operation_type, status, description, started_at, requested_by)
                  VALUES ('{schema_id}', 'QUOTA_CHECK', 'COMPLETED', 'backdated', {at}, 'test');
             INSERT INTO tenant.usage_snapshots (taken_at, schema_id, schema_name, status, table_count, storage_bytes,
                                                 row_estimate, seq_scans, idx_scans, tup_inserted, tup_updated,
                                                 tup_deleted, inserted, updated, deleted)
                  VALUES ({at}, '{schema_id}', 'hi_a', 'ACTIVE', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
             INSERT INTO tenant.audit_events (occurred_at, event_class, action, outcome, schema_id, session_role,
                                              caller_committed)
                  VALUES ({at}, 'OPERATION', 'QUOTA_CHECK', 'COMPLETED', '{schema_id}', 'test', true);"
        ))
        .unwrap();
}

fn partition_rows(client: &mut postgres::Client, partition: &str) -> i64 {
    count(client, &format!("SELECT count(*) FROM tenant.{partition}"))
}

fn exists(client: &mut postgres::Client, partition: &str) -> bool {
    client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("tenant.{partition}")]).unwrap().get(0)
}

#[test]
fn history_is_kept_in_monthly_partitions_and_old_months_are_dropped_whole() {
    let mut su = fresh_database("it_history");
    let a = create_ok(&mut su, "hi_a");
    for months in [-20, -3, -3] {
        backdate(&mut su, a, months);
    }
    let (old, recent, now, ahead, beyond) = (
        month_tag(&mut su, -20),
        month_tag(&mut su, -3),
        month_tag(&mut su, 0),
        month_tag(&mut su, 2),
        month_tag(&mut su, 3),
    );
    // An operation of five months ago still RUNNING: it will update its log row
    // when it ends, so its month must not move yet.
    let m5 = month_tag(&mut su, -5);
    su.batch_execute(&format!(
        "INSERT INTO tenant.schema_operations (schema_id, operation_type, status, description, started_at, requested_by)
              VALUES ('{a}', 'MIGRATE', 'RUNNING', 'still running', date_trunc('month', now()) - interval '5 months' + interval '3 days', 'test')"
    ))
    .unwrap();
    // Before any maintenance every row is in the DEFAULT partitions: inserts never fail.
    assert_eq!(partition_rows(&mut su, "usage_snapshots_default"), 3);
    let ops_before = count(&mut su, "SELECT count(*) FROM tenant.schema_operations");
    let events_before = count(&mut su, "SELECT count(*) FROM tenant.audit_events");

    // The procedure commits partition by partition and says what it did.
    let (mut listener, notices) = listening("it_history");
    let run = |client: &mut postgres::Client, sql: &str| -> Vec<String> {
        notices.lock().unwrap().clear();
        client.batch_execute(sql).unwrap();
        notices.lock().unwrap().clone()
    };
    let report = run(&mut listener, "CALL tenant.maintain_history('13 months', 2)");
    for table in TABLES {
        let said = |line: String| assert!(report.contains(&line), "{line} not in {report:?}");
        // The 20-month-old rows were moved into their month, which was then dropped whole.
        said(format!("created {table}_p{old} (1 row(s) moved in)"));
        said(format!("dropped {table}_p{old} (1 row(s))"));
        assert!(!exists(&mut su, &format!("{table}_p{old}")));
        // Three months ago is within the retention period: kept, in its own partition.
        said(format!("created {table}_p{recent} (2 row(s) moved in)"));
        assert_eq!(partition_rows(&mut su, &format!("{table}_p{recent}")), 2);
        // This month and the next two exist ahead of need; the month after does not.
        assert!(report.iter().any(|l| l.starts_with(&format!("created {table}_p{now} "))), "{report:?}");
        assert!(exists(&mut su, &format!("{table}_p{ahead}")));
        assert!(!exists(&mut su, &format!("{table}_p{beyond}")));
        let left_behind = if table == "schema_operations" { 1 } else { 0 };
        assert_eq!(partition_rows(&mut su, &format!("{table}_default")), left_behind, "{table}");
    }
    assert!(report.contains(&"history: 15 partition(s) created, 3 dropped".to_string()), "{report:?}");
    assert!(
        report.contains(&format!("busy: schema_operations_p{m5} not created (its table stayed locked, or an operation logged in that month is still running), next run")),
        "{report:?}"
    );
    assert_eq!(report.last().unwrap(), "history: 1 step(s) left for the next run: their tables stayed busy");
    assert_eq!(partition_rows(&mut su, "schema_operations_default"), 1);
    // The operation ends (its row updated through the parent, still in DEFAULT); the next run moves it.
    su.batch_execute("UPDATE tenant.schema_operations SET status = 'COMPLETED' WHERE description = 'still running'")
        .unwrap();
    assert_eq!(
        run(&mut listener, "CALL tenant.maintain_history('13 months', 2)"),
        vec![
            format!("created schema_operations_p{m5} (1 row(s) moved in)"),
            "history: 1 partition(s) created, 0 dropped".into()
        ]
    );

    // Only the three dropped rows are gone; the rest reads through the parents as before.
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.schema_operations"), ops_before - 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.audit_events"), events_before - 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.usage_snapshots"), 2);

    // A second run has nothing to do.
    assert_eq!(
        run(&mut listener, "CALL tenant.maintain_history('13 months', 2)"),
        vec!["history: 0 partition(s) created, 0 dropped"]
    );

    // Reports read across partitions: this month's CREATE and the backdated checks.
    let since: Vec<(String, i64)> = su
        .query(
            "SELECT action, events FROM tenant.audit_report(NULL, now() - interval '6 months', now() + interval '1 day')
              WHERE action IN ('CREATE', 'QUOTA_CHECK') ORDER BY action",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(since, vec![("CREATE".to_string(), 1), ("QUOTA_CHECK".to_string(), 2)]);

    // New rows land in this month's partition, with the next id.
    let last = count(&mut su, "SELECT max(id) FROM tenant.schema_operations");
    assert!(call(&mut su, "suspend_institution", a).ok());
    let (id, partition): (i64, String) = su
        .query_one("SELECT id, tableoid::regclass::text FROM tenant.schema_operations ORDER BY id DESC LIMIT 1", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((id, partition), (last + 1, format!("tenant.schema_operations_p{now}")));

    // NULL keeps everything; bad arguments are refused before anything changes.
    assert_eq!(
        run(&mut listener, "CALL tenant.maintain_history(NULL, 2)"),
        vec!["history: 0 partition(s) created, 0 dropped"]
    );
    assert_eq!(sqlstate_of_failure(&mut su, "CALL tenant.maintain_history('-1 day')"), "22023");
    assert_eq!(sqlstate_of_failure(&mut su, "CALL tenant.maintain_history('1 year', 25)"), "22023");
    // Only the platform administrator may run it (it creates and drops tables).
    su.batch_execute("DROP ROLE IF EXISTS hi_nobody; CREATE ROLE hi_nobody").unwrap();
    assert_eq!(sqlstate_of_failure(&mut su, "SET ROLE hi_nobody; CALL tenant.maintain_history('1 day')"), "42501");
    su.batch_execute("RESET ROLE").unwrap();
    assert_eq!(partition_rows(&mut su, &format!("usage_snapshots_p{recent}")), 2);
}

/// The history job of schedule_maintenance runs on pg_cron (in the database
/// pg_cron lives in, postgres, with the statement schedule_maintenance hands out)
/// and makes this month's partitions; a CALL with COMMITs works from pg_cron.
#[test]
fn the_history_job_runs_on_pg_cron() {
    const DB: &str = "it_history_cron";
    let mut su = fresh_database(DB);
    let statement: String = su
        .query_one(
            "SELECT statement FROM tenant.schedule_maintenance(quota_refresh => NULL, usage_snapshot => NULL,
                    integrity_check => NULL, backup_retention => NULL, maintenance => NULL, fleet_backup => NULL,
                    data_retention => NULL, history => '* * * * *', history_keep => '2 years', move_resolver => NULL)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(statement.contains("CALL tenant.maintain_history(''2 years'')"), "{statement}");
    let mut cron = superuser("postgres");
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    cron.batch_execute(&statement).unwrap();
    let job = format!("tenant_control {DB}: history");
    let started = std::time::Instant::now();
    let (status, message): (String, String) = loop {
        let rows = cron
            .query(
                "SELECT d.status, coalesce(d.return_message, '') FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                  WHERE j.jobname = $1 AND d.status IN ('succeeded', 'failed')",
                &[&job],
            )
            .unwrap();
        if let Some(row) = rows.first() {
            break (row.get(0), row.get(1));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(150), "pg_cron did not run the job");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    cron.query_one("SELECT cron.unschedule($1)", &[&job]).unwrap();
    assert_eq!(status, "succeeded", "{message}");
    let now = month_tag(&mut su, 0);
    for table in TABLES {
        assert!(exists(&mut su, &format!("{table}_p{now}")), "{table}_p{now}");
    }
    // The run-time partitions are not members of the extension, yet DROP EXTENSION
    // (no institution left) takes them with their parents.
    su.batch_execute("DROP EXTENSION tenant_control").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname LIKE 'schema\\_operations%'"), 0);
}
