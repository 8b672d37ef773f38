//! tenant.run_in_each and tenant.run_in_each_committed over real connections:
//! a non-superuser platform administrator runs them, one institution fails,
//! the statement is confined to each institution's role, and a committed run
//! killed half-way resumes without running any institution twice.

mod common;
use common::*;
use postgres::Client;
use std::thread;
use std::time::Duration;
use uuid::Uuid;

const DB: &str = "it_fleet_run";

/// A database with `count` institutions (schemas `<prefix>_00`, ...) whose template has a `counters`
/// table (one row, n = 0); returns (institution ids, schema names).
fn fleet(prefix: &str, count: usize) -> (Client, Vec<Uuid>, Vec<String>) {
    let mut db = fresh_database(DB);
    db.batch_execute(
        "CREATE TABLE tenant_template.counters (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO tenant_template.counters VALUES (1, 0);
         DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_fleet_admin') THEN
                 CREATE ROLE it_fleet_admin LOGIN;
             END IF;
         END $$;
         GRANT tenant_control_admin TO it_fleet_admin;",
    )
    .unwrap();
    let mut ids = Vec::new();
    let mut schemas = Vec::new();
    for i in 0..count {
        let id = Uuid::new_v4();
        let schema = format!("{prefix}_{i:02}");
        assert!(create(&mut db, id, &schema).ok());
        db.batch_execute(&format!("INSERT INTO {schema}.counters VALUES (1, 0) ON CONFLICT DO NOTHING")).unwrap();
        ids.push(id);
        schemas.push(schema);
    }
    (db, ids, schemas)
}

fn counter(db: &mut Client, schema: &str) -> i32 {
    db.query_one(&format!("SELECT n FROM {schema}.counters WHERE id = 1"), &[]).unwrap().get(0)
}

#[test]
fn a_platform_admin_runs_a_statement_everywhere_and_one_failure_stops_nothing() {
    let (mut db, ids, schemas) = fleet("fr_all", 3);
    db.batch_execute(&format!("DROP TABLE {}.counters", schemas[1])).unwrap();
    let mut admin = connect_as("it_fleet_admin", DB);
    let rows = admin
        .query(
            "SELECT schema_name, status, row_count, sqlstate FROM tenant.run_in_each(
                 'UPDATE counters SET n = n + $1::int', parameters => ARRAY['5'])",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, Option<i64>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got,
        vec![
            (schemas[0].clone(), "SUCCESS".into(), Some(1), None),
            (schemas[1].clone(), "ERROR".into(), None, Some("42P01".into())),
            (schemas[2].clone(), "SUCCESS".into(), Some(1), None),
        ]
    );
    assert_eq!(counter(&mut db, &schemas[0]), 5);
    assert_eq!(counter(&mut db, &schemas[2]), 5);
    // The admin's session is untouched: same user, same search_path.
    let row = admin.query_one("SELECT current_user::text, current_setting('search_path')", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "it_fleet_admin");
    assert_eq!(row.get::<_, String>(1), "\"$user\", public");
    // A list of institutions runs only there.
    let rows = admin.query("SELECT status FROM tenant.run_in_each('SELECT 1', $1)", &[&vec![ids[2]]]).unwrap();
    assert_eq!(rows.len(), 1);
    // Applications and tenants may not call it.
    db.batch_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_fleet_app') THEN
             CREATE ROLE it_fleet_app LOGIN; END IF; END $$; GRANT tenant_control_app TO it_fleet_app;",
    )
    .unwrap();
    let mut app = connect_as("it_fleet_app", DB);
    assert_eq!(sqlstate_of_failure(&mut app, "SELECT * FROM tenant.run_in_each('SELECT 1')"), "42501");
}

#[test]
fn the_statement_runs_as_each_institutions_role_and_cannot_reach_another() {
    let (mut db, ids, schemas) = fleet("fr_conf", 2);
    // Even a superuser's run cannot read another institution's table by name,
    // nor plant code that would run with more than the tenant's rights.
    let row = db
        .query_one(
            &format!("SELECT status, sqlstate FROM tenant.run_in_each('SELECT * FROM {}.counters', $1)", schemas[1]),
            &[&vec![ids[0]]],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, Option<String>>(1)), ("ERROR".into(), Some("42501".into())));
    // A trigger the tenant planted fires as the tenant's role.
    db.batch_execute(&format!(
        "CREATE TABLE public.it_fleet_marks (who text, superuser boolean);
         GRANT INSERT ON public.it_fleet_marks TO {s}_owner;
         CREATE FUNCTION {s}.mark() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.it_fleet_marks
               SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user; RETURN NEW; END $$;
         ALTER FUNCTION {s}.mark() OWNER TO {s}_owner;
         CREATE TRIGGER mark BEFORE UPDATE ON {s}.counters FOR EACH ROW EXECUTE FUNCTION {s}.mark();",
        s = schemas[0]
    ))
    .unwrap();
    db.query("SELECT * FROM tenant.run_in_each('UPDATE counters SET n = 1', $1)", &[&vec![ids[0]]]).unwrap();
    let marks: Vec<(String, bool)> = db
        .query("SELECT who, superuser FROM public.it_fleet_marks", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(marks, vec![(format!("{}_owner", schemas[0]), false)]);
}

#[test]
fn a_committed_run_commits_each_institution_and_resumes_after_a_kill() {
    let (mut db, _ids, schemas) = fleet("fr_kill", 4);
    // The third institution sleeps long enough to be killed while running.
    db.batch_execute(&format!("UPDATE {}.counters SET n = 100", schemas[2])).unwrap();
    let statement = "UPDATE counters SET n = n + 1 WHERE id = 1 AND pg_catalog.pg_sleep(CASE WHEN n >= 100 THEN 30 ELSE 0 END) IS NOT NULL";
    let (mut runner, notices) = listening_as("it_fleet_admin", DB);
    let pid: i32 = runner.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let handle = thread::spawn(move || {
        let outcome =
            runner.batch_execute(&format!("CALL tenant.run_in_each_committed({})", postgres_literal(statement)));
        (outcome.is_err(), runner)
    });
    // Wait until the run is at the sleeping institution, then kill it.
    let mut waited = 0;
    loop {
        let pending: i64 =
            db.query_one("SELECT COALESCE(max(pending), -1) FROM tenant.fleet_run_progress", &[]).unwrap().get(0);
        if pending == 2 {
            break;
        }
        waited += 1;
        assert!(waited < 300, "the run never reached the third institution");
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    db.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    let (killed, _) = handle.join().unwrap();
    assert!(killed, "the run should have been terminated");
    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("[1/4]")),
        "progress NOTICEs: {:?}",
        notices.lock().unwrap()
    );
    let run_id: i64 = db.query_one("SELECT max(run_id) FROM tenant.fleet_run_progress", &[]).unwrap().get(0);
    let progress = db
        .query_one("SELECT status, succeeded, pending FROM tenant.fleet_run_progress WHERE run_id = $1", &[&run_id])
        .unwrap();
    assert_eq!(
        (progress.get::<_, String>(0), progress.get::<_, i64>(1), progress.get::<_, i64>(2)),
        ("RUNNING".into(), 2, 2)
    );
    // The killed institution's change was rolled back with its PENDING row.
    assert_eq!(counter(&mut db, &schemas[2]), 100);
    assert_eq!(counter(&mut db, &schemas[0]), 1);
    // Resume (the sleeper no longer sleeps): every institution ran exactly once.
    db.batch_execute(&format!("UPDATE {}.counters SET n = 10", schemas[2])).unwrap();
    let mut admin = connect_as("it_fleet_admin", DB);
    admin.batch_execute(&format!("CALL tenant.resume_fleet_run({run_id})")).unwrap();
    let counters: Vec<i32> = schemas.iter().map(|s| counter(&mut db, s)).collect();
    assert_eq!(counters, vec![1, 1, 11, 1]);
    let progress = db
        .query_one("SELECT status, succeeded, pending FROM tenant.fleet_run_progress WHERE run_id = $1", &[&run_id])
        .unwrap();
    assert_eq!(
        (progress.get::<_, String>(0), progress.get::<_, i64>(1), progress.get::<_, i64>(2)),
        ("COMPLETED".into(), 4, 0)
    );
    // Resuming a finished run changes nothing; the run is in the operation log.
    admin.batch_execute(&format!("CALL tenant.resume_fleet_run({run_id})")).unwrap();
    assert_eq!(counter(&mut db, &schemas[0]), 1);
    assert!(count(&mut db, "SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'FLEET_RUN'") >= 1);
    assert_eq!(sqlstate_of_failure(&mut admin, "CALL tenant.resume_fleet_run(-1)"), "42704");
}

#[test]
fn a_committed_dry_run_lists_where_it_would_run_and_changes_nothing() {
    let (mut db, _ids, schemas) = fleet("fr_dry", 2);
    let (mut admin, notices) = listening_as("it_fleet_admin", DB);
    admin.batch_execute("CALL tenant.run_in_each_committed('UPDATE counters SET n = 7', dry_run => true)").unwrap();
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.iter().filter(|n| n.contains("WOULD_RUN")).count(), 2, "{notices:?}");
    assert_eq!(counter(&mut db, &schemas[0]), 0);
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.fleet_runs"), 0);
}

/// A SQL string literal (the statement text is ours, but quote it properly).
fn postgres_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn a_committed_run_is_safe_as_a_pg_cron_job() {
    let (mut db, _ids, schemas) = fleet("fr_cron", 2);
    let mut cron = superuser("postgres");
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    // Debian's pg_cron 1.4 schedules by the minute: wait for the first run.
    let job: i64 = cron
        .query_one(
            "SELECT cron.schedule_in_database('it_fleet_run_job', '* * * * *', $1, $2)",
            &[&"CALL tenant.run_in_each_committed('UPDATE counters SET n = n + 1')", &DB],
        )
        .unwrap()
        .get(0);
    let started = std::time::Instant::now();
    let outcome: (String, String) = loop {
        let row = cron
            .query_opt(
                "SELECT status, coalesce(return_message, '') FROM cron.job_run_details
                  WHERE jobid = $1 AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1",
                &[&job],
            )
            .unwrap();
        if let Some(row) = row {
            break (row.get(0), row.get(1));
        }
        assert!(started.elapsed() < Duration::from_secs(150), "pg_cron did not run the job");
        thread::sleep(Duration::from_millis(500));
    };
    cron.query_one("SELECT cron.unschedule($1::bigint)", &[&job]).unwrap();
    assert_eq!(outcome.0, "succeeded", "{}", outcome.1);
    assert_eq!(schemas.iter().map(|s| counter(&mut db, s)).collect::<Vec<_>>(), vec![1, 1]);
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.fleet_run_progress WHERE status = 'COMPLETED'"), 1);
}
