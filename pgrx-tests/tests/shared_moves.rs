//! Moves between shared tables and an institution's schema (issue 16):
//! tenant.move_to_schema and tenant.move_to_shared over real connections,
//! with a reader that never stops, a time limit that interrupts, a resume,
//! a mismatch refused before anything moves and an explicit mapping.

mod common;
use common::*;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use uuid::Uuid;

/// Template and shared tables (courses, and enrolments referencing them), an
/// application login, and the institutions in `public.institutions`.
fn setup(db: &str, app: &str, institutions: &[Uuid]) -> Client {
    let mut su = fresh_database(db);
    let listed: Vec<String> = institutions.iter().map(|i| format!("('{i}')")).collect();
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {app}; CREATE ROLE {app} LOGIN; GRANT tenant_control_app TO {app};
         CREATE TABLE public.institutions (id uuid PRIMARY KEY);
         INSERT INTO public.institutions VALUES {};
         ALTER DATABASE {db} SET tenant_control.institutions_table = 'public.institutions';
         CREATE TABLE tenant_template.courses (id bigserial PRIMARY KEY, title text NOT NULL);
         CREATE TABLE tenant_template.enrolments (id bigserial PRIMARY KEY,
             course_id bigint NOT NULL REFERENCES tenant_template.courses (id), student text);
         CREATE TABLE public.courses (id bigserial PRIMARY KEY,
             institution_id uuid NOT NULL DEFAULT tenant.current_institution(), title text NOT NULL);
         CREATE TABLE public.enrolments (id bigserial PRIMARY KEY,
             institution_id uuid NOT NULL DEFAULT tenant.current_institution(),
             course_id bigint NOT NULL REFERENCES public.courses (id), student text);
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.courses, public.enrolments TO PUBLIC;
         GRANT USAGE ON SEQUENCE public.courses_id_seq, public.enrolments_id_seq TO PUBLIC;
         SELECT tenant.enable_shared_table_isolation('public.courses');
         SELECT tenant.enable_shared_table_isolation('public.enrolments');",
        listed.join(", ")
    ))
    .unwrap();
    superuser(db)
}

/// Rows for each institution, interleaved so that keys of institutions mix.
fn fill(su: &mut Client, institutions: &[(Uuid, i64)]) {
    for round in 0..40 {
        for (institution, courses) in institutions {
            if round >= *courses {
                continue;
            }
            su.execute(
                "WITH c AS (INSERT INTO public.courses (institution_id, title) VALUES ($1, 'course ' || $2::int) RETURNING id)
                 INSERT INTO public.enrolments (institution_id, course_id, student)
                 SELECT $1, c.id, 'student ' || g FROM c, generate_series(1, 5) g",
                &[institution, &(round as i32)],
            )
            .unwrap();
        }
    }
}

/// What an application sees of an institution in one transaction: the side
/// set_context sends it to (the schema, or None for the shared tables), and
/// the rows and distinct keys of both tables there.
fn read(app: &mut Client, institution: Uuid) -> Result<(Option<String>, [i64; 4]), postgres::Error> {
    let mut tx = app.transaction()?;
    let schema: Option<String> = tx.query_one("SELECT tenant.set_context($1)", &[&institution])?.get(0);
    let from = |table: &str| match &schema {
        Some(schema) => format!("\"{schema}\".{table}"),
        None => format!("public.{table}"),
    };
    let row = tx.query_one(
        &format!(
            "SELECT (SELECT count(*) FROM {c}), (SELECT count(DISTINCT id) FROM {c}),
                    (SELECT count(*) FROM {e}), (SELECT count(*) FROM {e} e JOIN {c} c ON c.id = e.course_id)",
            c = from("courses"),
            e = from("enrolments")
        ),
        &[],
    )?;
    let counts = [row.get(0), row.get(1), row.get(2), row.get(3)];
    tx.commit()?;
    Ok((schema, counts))
}

/// A reader in the institution's context until `stop`: each read must see
/// `expected`; returns the sides it read, in order, and how many reads it made.
fn reading(
    db: &'static str,
    app: &'static str,
    institution: Uuid,
    expected: [i64; 4],
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<Option<String>>, usize)> {
    thread::spawn(move || {
        let mut app = connect_as(app, db);
        let mut sides = Vec::new();
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) {
            let (side, counts) = read(&mut app, institution).expect("a read failed during the move");
            assert_eq!(counts, expected, "reader saw {counts:?} on {side:?}");
            if sides.last() != Some(&side) {
                sides.push(side);
            }
            reads += 1;
        }
        (sides, reads)
    })
}

fn notices_contain(notices: &std::sync::Mutex<Vec<String>>, text: &str) -> bool {
    notices.lock().unwrap().iter().any(|n| n.contains(text))
}

#[test]
fn an_institution_moves_to_its_schema_and_back_while_a_reader_sees_every_row_once() {
    const DB: &str = "it_shared_moves";
    const APP: &str = "it_shared_moves_app";
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut su = setup(DB, APP, &[a, b]);
    fill(&mut su, &[(a, 40), (b, 10)]);
    let expected = [40, 40, 200, 200];

    // A reader in a's context all along: every read sees all of a's rows, once.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = reading(DB, APP, a, expected, stop.clone());

    // Interrupted by its time limit: some rows copied, nothing deleted yet.
    let (mut mover, notices) = listening(DB);
    mover
        .batch_execute(&format!("CALL tenant.move_to_schema('{a}', batch_size => 15, time_limit => '1 millisecond')"))
        .unwrap();
    assert!(notices_contain(&notices, "time limit of 00:00:00.001 reached"), "{:?}", notices.lock().unwrap());
    let (state, copied, total): (String, i64, i64) = {
        let row = su
            .query_one(
                "SELECT state, rows_copied, rows_total FROM tenant.shared_move_progress WHERE institution_id = $1",
                &[&a],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((state.as_str(), total), ("COPYING", 240));
    assert!(copied > 0 && copied < total, "{copied} of {total}");
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.courses WHERE institution_id = '{a}'")), 40);
    let status: String =
        su.query_one("SELECT status FROM tenant.tenant_schemas WHERE institution_id = $1", &[&a]).unwrap().get(0);
    assert_eq!(status, "MAINTENANCE");

    // Writes wait for the move: the institution's transactions are read-only.
    let mut writer = connect_as(APP, DB);
    writer.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{a}')")).unwrap();
    let refused = writer.batch_execute("INSERT INTO public.courses (title) VALUES ('during the move')");
    assert_eq!(refused.unwrap_err().code().map(|c| c.code()), Some("25006"));
    writer.batch_execute("ROLLBACK").unwrap();
    // A procedure that commits refuses a transaction block, before anything happens.
    assert_eq!(sqlstate_of_failure(&mut su, &format!("BEGIN; CALL tenant.move_to_schema('{a}')")), "25001");
    su.batch_execute("ROLLBACK").unwrap();
    // The other direction is refused while this move runs.
    assert_eq!(sqlstate_of_failure(&mut su, &format!("CALL tenant.move_to_shared('{a}')")), "55000");

    // Resumed to the end.
    notices.lock().unwrap().clear();
    mover.batch_execute(&format!("CALL tenant.move_to_schema('{a}', batch_size => 15)")).unwrap();
    assert!(notices_contain(&notices, "resuming the move"), "{:?}", notices.lock().unwrap());
    assert!(notices_contain(&notices, "240 row(s) verified"), "{:?}", notices.lock().unwrap());
    thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (sides, reads) = reader.join().expect("the reader failed");
    let schema: String = su
        .query_one(
            "SELECT schema_name FROM tenant.tenant_schemas WHERE institution_id = $1 AND status = 'ACTIVE'",
            &[&a],
        )
        .unwrap()
        .get(0);
    assert_eq!(sides, vec![None, Some(schema.clone())], "after {reads} reads");

    // Rows in the schema with their ids, none left in the shared tables, b untouched.
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.courses WHERE institution_id = '{a}'")), 0);
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.enrolments WHERE institution_id = '{b}'")), 50);
    assert_eq!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM \"{schema}\".enrolments e JOIN \"{schema}\".courses c ON c.id = e.course_id"
            )
        ),
        200
    );
    // The schema the move filled is an ordinary institution schema to the integrity check.
    let findings: Vec<String> = su
        .query(
            "SELECT f.severity || ' ' || f.check_name || ' ' || f.object || ': ' || f.detail
               FROM tenant.tenant_schemas t, LATERAL tenant.check_integrity(t.id, false) f
              WHERE t.institution_id = $1 AND f.severity <> 'INFO'",
            &[&a],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
    let state: String =
        su.query_one("SELECT state FROM tenant.shared_move_progress WHERE institution_id = $1", &[&a]).unwrap().get(0);
    assert_eq!(state, "DONE");
    // The schema's sequence continues after the moved ids.
    let mut app = connect_as(APP, DB);
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{a}')")).unwrap();
    let new_id: i64 =
        app.query_one("INSERT INTO courses (title) VALUES ('after the move') RETURNING id", &[]).unwrap().get(0);
    app.batch_execute("COMMIT").unwrap();
    assert!(new_id > count(&mut su, &format!("SELECT max(id) FROM \"{schema}\".courses WHERE id <> {new_id}")));

    // And back, under a reader again: the rows (the new one too) in the shared
    // tables, the schema kept as a backup.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = reading(DB, APP, a, [41, 41, 200, 200], stop.clone());
    thread::sleep(std::time::Duration::from_millis(100));
    notices.lock().unwrap().clear();
    mover.batch_execute(&format!("CALL tenant.move_to_shared('{a}', batch_size => 50)")).unwrap();
    assert!(notices_contain(&notices, "241 row(s) verified"), "{:?}", notices.lock().unwrap());
    thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (sides, reads) = reader.join().expect("the reader failed");
    assert_eq!(sides, vec![Some(schema.clone()), None], "after {reads} reads");
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.courses WHERE institution_id = '{a}'")), 41);
    assert_eq!(
        count(&mut su, &format!("SELECT count(*) FROM public.courses WHERE institution_id = '{a}' AND id = {new_id}")),
        1
    );
    let (status, backups): (String, i64) = {
        let row = su
            .query_one(
                "SELECT t.status, (SELECT count(*) FROM tenant.schema_backups k WHERE k.schema_id = t.id)
                   FROM tenant.tenant_schemas t WHERE t.institution_id = $1",
                &[&a],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), backups), ("DROPPED", 1));
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'")), 0);
    // The application reads a from the shared tables again.
    assert_eq!(read(&mut app, a).unwrap(), (None, [41, 41, 200, 200]));
    // The shared sequence was advanced past the ids the schema handed out.
    let later: i64 = su
        .query_one("INSERT INTO public.courses (institution_id, title) VALUES ($1, 'later') RETURNING id", &[&b])
        .unwrap()
        .get(0);
    assert!(later > new_id, "{later} <= {new_id}");
}

#[test]
fn a_mismatch_is_refused_before_anything_moves_and_a_mapping_is_honoured() {
    const DB: &str = "it_shared_moves_map";
    let institution = Uuid::new_v4();
    let mut su = fresh_database(DB);
    su.batch_execute(&format!(
        "CREATE TABLE public.institutions (id uuid PRIMARY KEY);
         INSERT INTO public.institutions VALUES ('{institution}');
         ALTER DATABASE {DB} SET tenant_control.institutions_table = 'public.institutions';
         CREATE TABLE tenant_template.notes (id integer PRIMARY KEY, body text, written date NOT NULL);
         CREATE TABLE public.shared_notes (id integer PRIMARY KEY, institution_id uuid NOT NULL,
                                           content text, written date NOT NULL);
         INSERT INTO public.shared_notes SELECT g, '{institution}', 'note ' || g, date '2026-01-01' + g FROM generate_series(1, 30) g;
         SELECT tenant.enable_shared_table_isolation('public.shared_notes');"
    ))
    .unwrap();
    let mut su = superuser(DB);
    let nothing_moved = |su: &mut Client| {
        assert_eq!(count(su, "SELECT count(*) FROM public.shared_notes"), 30);
        assert_eq!(count(su, "SELECT count(*) FROM tenant.tenant_schemas"), 0);
        assert_eq!(count(su, "SELECT count(*) FROM tenant.shared_moves"), 0);
    };
    let refusal = |su: &mut Client| {
        let error = su.batch_execute(&format!("CALL tenant.move_to_schema('{institution}')")).unwrap_err();
        let db = error.as_db_error().unwrap();
        (db.code().code().to_string(), db.message().to_string())
    };

    // No template table of that name.
    let (code, message) = refusal(&mut su);
    assert_eq!(code, "42P01");
    assert!(message.contains("\"public.shared_notes\" has no table \"shared_notes\""), "{message}");
    nothing_moved(&mut su);
    // The table named, the column that differs not yet.
    su.batch_execute("SELECT tenant.set_column_mapping('public.shared_notes', 'notes')").unwrap();
    let (code, message) = refusal(&mut su);
    assert_eq!(code, "42703");
    assert!(message.contains("column \"body\" of \"tenant_template.notes\" has no column \"body\""), "{message}");
    nothing_moved(&mut su);
    // A mapping naming a column that does not exist is refused when it is set.
    assert_eq!(
        sqlstate_of_failure(
            &mut su,
            "SELECT tenant.set_column_mapping('public.shared_notes', 'notes', '{\"body\": \"nope\"}')"
        ),
        "42703"
    );
    // A type that differs is refused too, naming both columns.
    su.batch_execute(
        "SELECT tenant.set_column_mapping('public.shared_notes', 'notes', '{\"body\": \"content\"}');
         ALTER TABLE public.shared_notes ALTER COLUMN written TYPE timestamp",
    )
    .unwrap();
    let (code, message) = refusal(&mut su);
    assert_eq!(code, "42804");
    assert!(message.contains("column \"written\" of \"tenant_template.notes\" is date"), "{message}");
    nothing_moved(&mut su);

    // Fixed: the mapping carries content into body. A platform administrator
    // who is not a superuser runs the move; a role without the grant cannot.
    su.batch_execute(
        "ALTER TABLE public.shared_notes ALTER COLUMN written TYPE date;
         DROP ROLE IF EXISTS it_moves_admin; CREATE ROLE it_moves_admin LOGIN; GRANT tenant_control_admin TO it_moves_admin;
         DROP ROLE IF EXISTS it_moves_nobody; CREATE ROLE it_moves_nobody LOGIN;",
    )
    .unwrap();
    // From a function, which cannot commit: refused at the first COMMIT, the
    // first step (the schema's creation) rolled back with it.
    su.batch_execute(&format!(
        "CREATE FUNCTION public.move_in_a_function() RETURNS void LANGUAGE plpgsql
             AS $$ BEGIN CALL tenant.move_to_schema('{institution}'); END $$"
    ))
    .unwrap();
    assert_eq!(sqlstate_of_failure(&mut su, "SELECT public.move_in_a_function()"), "2D000");
    nothing_moved(&mut su);
    let mut nobody = connect_as("it_moves_nobody", DB);
    assert_eq!(sqlstate_of_failure(&mut nobody, &format!("CALL tenant.move_to_schema('{institution}')")), "42501");
    let mut admin = connect_as("it_moves_admin", DB);
    admin.batch_execute(&format!("CALL tenant.move_to_schema('{institution}', batch_size => 7)")).unwrap();
    let schema: String = su
        .query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE institution_id = $1", &[&institution])
        .unwrap()
        .get(0);
    let row =
        su.query_one(&format!("SELECT count(*), min(body), max(written)::text FROM \"{schema}\".notes"), &[]).unwrap();
    let (rows, first, last): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((rows, first.as_str(), last.as_str()), (30, "note 1", "2026-01-31"));
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.shared_notes"), 0);

    // The audit trail holds every attempt: each refusal (its transaction
    // rolled back, so the audit worker writes it), the attempt from a
    // function (its first step done, then rolled back) and the move's start
    // and end, with who ran them.
    let events = |condition: &str| {
        format!(
            "SELECT count(*) FROM tenant.audit_events
              WHERE action = 'MOVE_TO_SCHEMA' AND institution_id = '{institution}' AND {condition}"
        )
    };
    for sqlstate in ["42P01", "42703", "42804"] {
        eventually(&mut su, &events(&format!("outcome = 'FAILED' AND error_sqlstate = '{sqlstate}'")), 1);
    }
    eventually(&mut su, &events("outcome = 'COMPLETED' AND NOT caller_committed AND session_role = 'postgres'"), 1);
    eventually(&mut su, &events("outcome = 'COMPLETED' AND caller_committed AND session_role = 'it_moves_admin'"), 2);
}

#[test]
fn a_row_written_behind_the_move_is_found_by_the_verification_and_copied() {
    const DB: &str = "it_shared_moves_again";
    const APP: &str = "it_shared_moves_again_app";
    let institution = Uuid::new_v4();
    let mut su = setup(DB, APP, &[institution]);
    fill(&mut su, &[(institution, 10)]);
    let (mut mover, notices) = listening(DB);
    // Interrupted once the courses are copied...
    mover
        .batch_execute(&format!(
            "CALL tenant.move_to_schema('{institution}', batch_size => 11, time_limit => '1 millisecond')"
        ))
        .unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.shared_move_tables WHERE copied"), 1);
    // ...a platform administrator writes a course below the last key copied
    // (the institution's own transactions are read-only meanwhile).
    su.batch_execute(&format!(
        "INSERT INTO public.courses (id, institution_id, title) VALUES (0, '{institution}', 'late')"
    ))
    .unwrap();
    notices.lock().unwrap().clear();
    mover.batch_execute(&format!("CALL tenant.move_to_schema('{institution}', batch_size => 11)")).unwrap();
    let seen = notices.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|n| n.contains("verification found 11 row(s) in the source of \"public.courses\" and 10 in its copy")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|n| n.contains("61 row(s) verified")), "{seen:?}");
    let schema: String = su
        .query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE institution_id = $1", &[&institution])
        .unwrap()
        .get(0);
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".courses WHERE title = 'late'")), 1);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.courses"), 0);
    assert_eq!(count(&mut su, "SELECT verify_attempts::bigint FROM tenant.shared_moves"), 1);
}

#[test]
fn a_move_given_up_when_the_institution_is_changed_meanwhile_leaves_the_rows_where_they_were() {
    const DB: &str = "it_shared_moves_given_up";
    const APP: &str = "it_shared_moves_given_up_app";
    let institution = Uuid::new_v4();
    let mut su = setup(DB, APP, &[institution]);
    fill(&mut su, &[(institution, 10)]);
    su.batch_execute(&format!(
        "CALL tenant.move_to_schema('{institution}', batch_size => 4, time_limit => '1 millisecond')"
    ))
    .unwrap();
    let (schema_id, schema): (Uuid, String) = {
        let row = su
            .query_one("SELECT id, schema_name FROM tenant.tenant_schemas WHERE institution_id = $1", &[&institution])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".courses")) > 0);
    // Someone opens the half-filled schema by hand.
    let opened = call(&mut su, "activate_institution", schema_id);
    assert!(opened.ok(), "{}", opened.message);
    let error = su.batch_execute(&format!("CALL tenant.move_to_schema('{institution}')")).unwrap_err();
    let db = error.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55000");
    assert!(db.message().contains("was given up"), "{}", db.message());
    // The copies are gone, the shared rows untouched, the move forgotten.
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".courses")), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.courses"), 10);
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.shared_moves"), 0);
    // Started over, into the schema that is now there.
    su.batch_execute(&format!("CALL tenant.move_to_schema('{institution}')")).unwrap();
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".enrolments")), 50);

    // Back to the shared tables only when they hold none of its rows.
    su.batch_execute(&format!("INSERT INTO public.courses VALUES (1000, '{institution}', 'stray')")).unwrap();
    let error = su.batch_execute(&format!("CALL tenant.move_to_shared('{institution}')")).unwrap_err();
    let db = error.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55000");
    assert!(db.message().contains("\"public.courses\" already has 1 row(s)"), "{}", db.message());
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".courses")), 10);
    // Nor when a table of the schema holds rows no shared table would receive.
    su.batch_execute(&format!(
        "DELETE FROM public.courses WHERE id = 1000;
         CREATE TABLE \"{schema}\".notes (body text); INSERT INTO \"{schema}\".notes VALUES ('kept only in a backup?')"
    ))
    .unwrap();
    let error = su.batch_execute(&format!("CALL tenant.move_to_shared('{institution}')")).unwrap_err();
    let db = error.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55000");
    assert!(db.message().contains(&format!("table \"{schema}.notes\" has rows")), "{}", db.message());
    su.batch_execute(&format!("DROP TABLE \"{schema}\".notes")).unwrap();
    su.batch_execute(&format!("CALL tenant.move_to_shared('{institution}')")).unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.enrolments"), 50);
}

#[test]
fn a_table_whose_rows_reference_each_other_moves_in_one_batch_both_ways() {
    const DB: &str = "it_shared_moves_self";
    let institution = Uuid::new_v4();
    let mut su = fresh_database(DB);
    // Every member of staff reports to number 10, whose key comes last.
    su.batch_execute(&format!(
        "CREATE TABLE public.institutions (id uuid PRIMARY KEY);
         INSERT INTO public.institutions VALUES ('{institution}');
         ALTER DATABASE {DB} SET tenant_control.institutions_table = 'public.institutions';
         CREATE TABLE tenant_template.staff (id integer PRIMARY KEY, manager_id integer REFERENCES tenant_template.staff);
         CREATE TABLE public.staff (id integer PRIMARY KEY, institution_id uuid NOT NULL,
                                    manager_id integer REFERENCES public.staff);
         INSERT INTO public.staff VALUES (10, '{institution}', NULL);
         INSERT INTO public.staff SELECT g, '{institution}', 10 FROM generate_series(1, 9) g;
         SELECT tenant.enable_shared_table_isolation('public.staff');"
    ))
    .unwrap();
    let mut su = superuser(DB);
    su.batch_execute(&format!("CALL tenant.move_to_schema('{institution}', batch_size => 3)")).unwrap();
    let schema: String = su
        .query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE institution_id = $1", &[&institution])
        .unwrap()
        .get(0);
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM \"{schema}\".staff WHERE manager_id = 10")), 9);
    su.batch_execute(&format!("CALL tenant.move_to_shared('{institution}', batch_size => 3)")).unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.staff WHERE manager_id = 10"), 9);
}
