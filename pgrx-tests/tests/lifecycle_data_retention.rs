//! Retention with archive over real connections (issue 16): a fleet run of
//! `CALL tenant.apply_retention()` by a non-superuser platform administrator,
//! per-institution overrides, one commit per batch, the log rows, failures
//! that stop one institution's table and not the run, and archives that
//! belong to their institution only and travel with its backups.

mod common;
use common::*;
use uuid::Uuid;

const TEMPLATE: &str = "
    CREATE TABLE tenant_template.activity (id bigserial PRIMARY KEY, at timestamptz NOT NULL, what text);
    CREATE TABLE tenant_template.grades (id serial PRIMARY KEY, student text NOT NULL, graded_on date);";

/// activity: one row every 10 days back to 990 days ago (100 rows);
/// grades: one row per year back to 10 years ago (10 rows).
const DATA: &str = "
    INSERT INTO activity (at, what) SELECT now() - i * interval '10 days', 'event ' || i FROM generate_series(0, 99) i;
    INSERT INTO grades (student, graded_on) SELECT 'student ' || i, current_date - (i * 365 - 5) FROM generate_series(1, 10) i;";

fn fleet(su: &mut postgres::Client, schemas: &[&str]) -> Vec<Uuid> {
    su.batch_execute(TEMPLATE).unwrap();
    schemas
        .iter()
        .map(|schema| {
            // Roles outlive the databases of an earlier run of this test.
            su.batch_execute(&format!("DROP ROLE IF EXISTS {schema}_owner")).unwrap();
            let id = create_ok(su, schema);
            su.batch_execute(&format!("SET search_path = {schema}; {DATA} RESET search_path;")).unwrap();
            id
        })
        .collect()
}

fn admin_login(su: &mut postgres::Client, role: &str) {
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; GRANT tenant_control_admin TO {role};"
    ))
    .unwrap();
}

/// (status, removed, archived, batches, sqlstate) of the RETENTION rows of a schema's table, oldest first.
fn log_rows(su: &mut postgres::Client, schema: &str, table: &str) -> Vec<(String, i64, i64, i64, Option<String>)> {
    su.query(
        "SELECT status, (metadata->>'removed')::bigint, (metadata->>'archived')::bigint, (metadata->>'batches')::bigint,
                error_sqlstate
           FROM tenant.schema_operations
          WHERE operation_type = 'RETENTION' AND metadata->>'schema_name' = $1 AND metadata->>'table_name' = $2
          ORDER BY id",
        &[&schema, &table],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

#[test]
fn retention_archives_and_deletes_across_a_fleet_with_overrides() {
    const DB: &str = "it_retention_fleet";
    let mut su = fresh_database(DB);
    let ids = fleet(&mut su, &["rf_plain", "rf_longer", "rf_grades_off"]);
    su.execute(
        "UPDATE tenant.tenant_schemas SET config = '{\"retention\": {\"activity\": {\"keep\": \"605 days\"}}}' WHERE id = $1",
        &[&ids[1]],
    )
    .unwrap();
    su.execute(
        "UPDATE tenant.tenant_schemas SET config = '{\"retention\": {\"grades\": null}}' WHERE id = $1",
        &[&ids[2]],
    )
    .unwrap();
    admin_login(&mut su, "it_retention_dba");
    let (mut dba, notices) = listening_as("it_retention_dba", DB);
    dba.batch_execute(
        "SELECT tenant.set_retention('activity', 'at', '365 days', true);
         SELECT tenant.set_retention('grades', 'graded_on', '7 years', false);",
    )
    .unwrap();

    // Before any rule is applied nothing is touched: rules are all there is.
    assert_eq!(count(&mut su, "SELECT count(*) FROM rf_plain.activity"), 100);

    dba.batch_execute("CALL tenant.apply_retention(batch_size => 7)").unwrap();

    // activity: rows 370..990 days old (63 rows) leave rf_plain and rf_grades_off,
    // rows 610..990 (39 rows, kept 605 days) leave rf_longer; all of them land in its archive.
    for (schema, moved) in [("rf_plain", 63), ("rf_longer", 39), ("rf_grades_off", 63)] {
        assert_eq!(count(&mut su, &format!("SELECT count(*) FROM {schema}.activity")), 100 - moved, "{schema}");
        assert_eq!(count(&mut su, &format!("SELECT count(*) FROM {schema}.activity_archive")), moved, "{schema}");
        assert_eq!(
            count(
                &mut su,
                &format!(
                    "SELECT count(*) FROM {schema}.activity_archive a
                  WHERE a.what = 'event ' || (extract(epoch FROM now() - a.at) / 86400 / 10)::int"
                )
            ),
            moved,
            "{schema}: archived rows are the rows that were deleted"
        );
        // One commit per batch: the archived rows were written by ceil(moved / 7) transactions.
        assert_eq!(
            count(&mut su, &format!("SELECT count(DISTINCT xmin::text) FROM {schema}.activity_archive")),
            (moved + 6) / 7,
            "{schema}"
        );
        assert_eq!(
            log_rows(&mut su, schema, "activity"),
            vec![("COMPLETED".into(), moved, moved, moved / 7 + 1, None)]
        );
    }
    // grades: deleted without archive after 7 years (rows 8, 9, 10 years old),
    // except where the institution turned the rule off.
    assert_eq!(count(&mut su, "SELECT count(*) FROM rf_plain.grades"), 7);
    assert_eq!(count(&mut su, "SELECT count(*) FROM rf_longer.grades"), 7);
    assert_eq!(count(&mut su, "SELECT count(*) FROM rf_grades_off.grades"), 10);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname = 'grades_archive'"), 0);
    assert_eq!(log_rows(&mut su, "rf_plain", "grades"), vec![("COMPLETED".into(), 3, 0, 1, None)]);
    assert_eq!(log_rows(&mut su, "rf_grades_off", "grades"), vec![("COMPLETED".into(), 0, 0, 0, None)]);
    let skipped: String = su
        .query_one(
            "SELECT metadata->>'skipped' FROM tenant.schema_operations
              WHERE operation_type = 'RETENTION' AND metadata->>'schema_name' = 'rf_grades_off' AND metadata->>'table_name' = 'grades'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(skipped.contains("config"), "{skipped}");
    let said = notices.lock().unwrap().join("\n");
    assert!(said.contains("rf_longer.activity: 39 row(s) older than"), "{said}");
    assert!(said.contains("rf_grades_off.grades: skipped"), "{said}");
    assert!(said.contains("retention applied to 5 institution table(s)"), "{said}");
    // The archive tables are listed for the integrity check.
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.retention_archives WHERE table_name = 'activity'"), 3);
    // ... and the check does not take them, their columns or their indexes for drift.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.check_integrity() WHERE object LIKE '%activity_archive%' AND severity <> 'INFO'"
        ),
        0
    );

    // A second run finds nothing more to do, and says so in the log.
    dba.batch_execute("CALL tenant.apply_retention()").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM rf_plain.activity_archive"), 63);
    assert_eq!(log_rows(&mut su, "rf_plain", "activity").last().unwrap().1, 0);

    // Removing a rule stops it.
    dba.batch_execute("SELECT tenant.set_retention('activity', NULL, NULL, NULL)").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.retention_rules"), 1);
    // Nobody but platform administrators sets rules or runs retention.
    su.batch_execute("DROP ROLE IF EXISTS it_retention_nobody; CREATE ROLE it_retention_nobody LOGIN").unwrap();
    let mut nobody = connect_as("it_retention_nobody", DB);
    assert_eq!(
        sqlstate_of_failure(&mut nobody, "SELECT tenant.set_retention('grades', 'graded_on', '1 day', false)"),
        "42501"
    );
    assert_eq!(sqlstate_of_failure(&mut nobody, "CALL tenant.apply_retention()"), "42501");
}

#[test]
fn a_failing_institution_is_logged_and_the_others_go_on() {
    const DB: &str = "it_retention_failure";
    let mut su = fresh_database(DB);
    let _ids = fleet(&mut su, &["rx_a", "rx_b", "rx_c"]);
    su.batch_execute(&format!("ALTER DATABASE {DB} SET tenant_control.lock_timeout = '300ms'")).unwrap();
    su.batch_execute("SELECT tenant.set_retention('activity', 'at', '365 days', true)").unwrap();
    // rx_a's own trigger refuses deletions; rx_b's rows are locked by a busy application.
    su.batch_execute(
        "CREATE FUNCTION rx_a.keep_all() RETURNS trigger LANGUAGE plpgsql AS
             $$BEGIN RAISE EXCEPTION 'activity is kept forever here'; END$$;
         CREATE TRIGGER keep_all BEFORE DELETE ON rx_a.activity FOR EACH ROW EXECUTE FUNCTION rx_a.keep_all();",
    )
    .unwrap();
    let mut busy = superuser(DB);
    let mut hold = busy.transaction().unwrap();
    hold.batch_execute("SELECT * FROM rx_b.activity WHERE id = 100 FOR UPDATE").unwrap();

    let (mut runner, notices) = listening(DB);
    let error = runner.batch_execute("CALL tenant.apply_retention(batch_size => 1000)").unwrap_err();
    // The run raises at the end with the last failure (pg_cron shows it).
    assert_eq!(error.code().map(|c| c.code()), Some("55P03"), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("retention failed for 2 institution table(s)"), "{message}");
    hold.rollback().unwrap();

    assert_eq!(log_rows(&mut su, "rx_a", "activity"), vec![("FAILED".into(), 0, 0, 0, Some("P0001".into()))]);
    assert_eq!(log_rows(&mut su, "rx_b", "activity"), vec![("FAILED".into(), 0, 0, 0, Some("55P03".into()))]);
    assert_eq!(log_rows(&mut su, "rx_c", "activity"), vec![("COMPLETED".into(), 63, 63, 1, None)]);
    // The failed batches left their institution as it was.
    for schema in ["rx_a", "rx_b"] {
        assert_eq!(count(&mut su, &format!("SELECT count(*) FROM {schema}.activity")), 100, "{schema}");
        assert_eq!(
            count(
                &mut su,
                &format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass('{schema}.activity_archive')")
            ),
            0,
            "{schema}: the failed batch's archive table was rolled back with it"
        );
    }
    let said = notices.lock().unwrap().join("\n");
    assert!(said.contains("rx_a.activity: failed after 0 row(s): activity is kept forever here"), "{said}");
}

#[test]
fn an_archive_belongs_to_its_institution_and_travels_with_its_backup() {
    const DB: &str = "it_retention_archive";
    let mut su = fresh_database(DB);
    let ids = fleet(&mut su, &["ra_one", "ra_two"]);
    // CALL as a statement of its own: in a multi-statement string it would
    // run inside an implicit transaction block, where it cannot commit.
    su.batch_execute("SELECT tenant.set_retention('activity', 'at', '365 days', true)").unwrap();
    su.batch_execute("CALL tenant.apply_retention()").unwrap();
    // An application in ra_one's context reads its archive; in ra_two's it cannot reach it.
    su.batch_execute(
        "DROP ROLE IF EXISTS it_retention_app; CREATE ROLE it_retention_app LOGIN; GRANT tenant_control_app TO it_retention_app;",
    )
    .unwrap();
    let institution = |su: &mut postgres::Client, id: &Uuid| -> Uuid {
        su.query_one("SELECT institution_id FROM tenant.tenant_schemas WHERE id = $1", &[id]).unwrap().get(0)
    };
    let (one, two) = (institution(&mut su, &ids[0]), institution(&mut su, &ids[1]));
    let mut app = connect_as("it_retention_app", DB);
    let mut tx = app.transaction().unwrap();
    tx.execute("SELECT tenant.set_context($1)", &[&one]).unwrap();
    let own: i64 = tx.query_one("SELECT count(*) FROM activity_archive", &[]).unwrap().get(0);
    assert_eq!(own, 63);
    tx.commit().unwrap();
    let mut tx = app.transaction().unwrap();
    tx.execute("SELECT tenant.set_context($1)", &[&two]).unwrap();
    let denied = tx.query_one("SELECT count(*) FROM ra_one.activity_archive", &[]).unwrap_err();
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"), "{denied}");
    drop(tx);

    // A backup copies the archive with the schema, row for row.
    let backup = outcome(
        su.query_one("SELECT * FROM tenant.backup_institution_schema($1, verify => true)", &[&ids[0]]).unwrap(),
    );
    assert!(backup.ok(), "{}", backup.message);
    let copied: i64 = su
        .query_one(
            "SELECT t.row_count FROM tenant.backup_tables t JOIN tenant.schema_backups b ON b.id = t.backup_id
              WHERE b.schema_id = $1 AND t.table_name = 'activity_archive'",
            &[&ids[0]],
        )
        .unwrap()
        .get(0);
    assert_eq!(copied, 63);
}
