//! Quota enforcement over real connections: an application working as a
//! tenant is warned near its limit, refused (53400) over it whether it writes
//! with INSERT, COPY, UPDATE or DDL, and writes again once it has deleted its
//! way back under, without anybody recounting; concurrent writers stop at the limit.

mod common;
use common::*;
use postgres::Client;
use std::io::Write;
use std::thread;
use uuid::Uuid;

const DB: &str = "it_quota";

/// A database with a tenant whose table holds about `rows` KiB, an
/// application role, and guards that re-measure on every statement.
fn tenant_with_rows(schema: &str, rows: i64) -> (Client, Uuid, Uuid) {
    let mut su = fresh_database(DB);
    su.batch_execute(&format!(
        "ALTER DATABASE {DB} SET tenant_control.quota_recheck_interval = 0;
         DROP ROLE IF EXISTS it_quota_app; CREATE ROLE it_quota_app LOGIN; GRANT tenant_control_app TO it_quota_app;
         CREATE TABLE tenant_template.docs (id bigserial PRIMARY KEY, body text NOT NULL);"
    ))
    .unwrap();
    let institution = Uuid::new_v4();
    let created = create(&mut su, institution, schema);
    assert!(created.ok(), "{}", created.message);
    let id: Uuid = created.row.get("schema_id");
    su.batch_execute(&format!("INSERT INTO {schema}.docs (body) SELECT {KIB_ROW} FROM generate_series(1, {rows})"))
        .unwrap();
    (su, institution, id)
}

/// About a kibibyte of text that does not compress.
const KIB_ROW: &str = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 32))";

/// Set the quota so that the tenant's usage today is `percent` of it.
fn quota_at_percent(su: &mut Client, id: Uuid, percent: i64) -> i64 {
    let used: i64 = su.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    let limit = used * 100 / percent;
    let set = outcome(su.query_one("SELECT * FROM tenant.set_quota($1, $2)", &[&id, &limit.to_string()]).unwrap());
    assert!(set.ok(), "{}", set.message);
    limit
}

fn as_tenant(app: &mut Client, institution: Uuid, sql: &str) -> Result<(), postgres::Error> {
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{institution}'); {sql}; COMMIT;")).inspect_err(|_| {
        app.batch_execute("ROLLBACK").unwrap();
    })
}

fn code(result: Result<(), postgres::Error>) -> Option<String> {
    result.err().map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("{e}")))
}

#[test]
fn a_tenant_over_its_quota_cannot_grow_and_writes_again_once_back_under() {
    let (mut su, institution, id) = tenant_with_rows("qt_full", 1500);
    let (mut app, notices) = listening_as("it_quota_app", DB);

    // Near the limit: the tenant's session is warned, once (not on every statement).
    quota_at_percent(&mut su, id, 93);
    let row = format!("INSERT INTO docs (body) SELECT {KIB_ROW}");
    as_tenant(&mut app, institution, &format!("{row}; {row}; {row}")).unwrap();
    let warned = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.contains("near its storage quota: schema \"qt_full\" uses"))
        .count();
    assert_eq!(warned, 1, "{:?}", notices.lock().unwrap());

    // Writing on, the tenant is stopped as soon as it crosses the limit, before any recount.
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = as_tenant(
            &mut app,
            institution,
            &format!("INSERT INTO docs (body) SELECT {KIB_ROW} FROM generate_series(1, 20)"),
        ) {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("the tenant was never stopped");
    assert_eq!(refused.code().map(|c| c.code()), Some("53400"), "{refused}");
    let message = refused.as_db_error().unwrap().message().to_string();
    assert!(message.contains(&institution.to_string()) && message.contains("qt_full"), "{message}");

    // INSERT, COPY FROM, UPDATE and CREATE are refused; SELECT and DELETE work.
    assert_eq!(code(as_tenant(&mut app, institution, "INSERT INTO docs (body) VALUES ('x')")), Some("53400".into()));
    assert_eq!(
        code(as_tenant(&mut app, institution, "UPDATE docs SET body = body WHERE id = 1")),
        Some("53400".into())
    );
    assert_eq!(code(as_tenant(&mut app, institution, "CREATE TABLE more_docs (id int)")), Some("53400".into()));
    // COPY through psql, which speaks the COPY protocol the way applications' drivers do.
    let copy = std::process::Command::new(pg_bin("psql"))
        .args(["-X", "-h", &host(), "-p", &port(), "-U", "it_quota_app", "-d", DB, "-v", "VERBOSITY=verbose"])
        .args([
            "-c",
            "BEGIN",
            "-c",
            &format!("SELECT tenant.set_context('{institution}')"),
            "-c",
            "COPY docs (body) FROM STDIN",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    copy.stdin.as_ref().unwrap().write_all(b"copied row\n\\.\n").unwrap();
    let copy = copy.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&copy.stderr);
    assert!(stderr.contains("ERROR:  53400: institution"), "{stderr}");
    assert_eq!(count(&mut su, "SELECT count(*) FROM qt_full.docs WHERE body = 'copied row'"), 0);
    // Nor can the tenant's own role take its guard away.
    assert_eq!(code(as_tenant(&mut app, institution, "DROP TRIGGER tc_quota_guard ON docs")), Some("42501".into()));
    assert_eq!(code(as_tenant(&mut app, institution, "SELECT count(*) FROM docs")), None);

    // Deleting (and VACUUM giving the space back) is enough: the next write goes through.
    assert_eq!(code(as_tenant(&mut app, institution, "DELETE FROM docs WHERE id > 100")), None);
    su.batch_execute("VACUUM qt_full.docs").unwrap();
    assert_eq!(code(as_tenant(&mut app, institution, "INSERT INTO docs (body) VALUES ('back under')")), None);

    // The recounts log every transition.
    su.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
    let transitions: String = su
        .query_one(
            "SELECT string_agg(metadata->>'to', ' ' ORDER BY id) FROM tenant.schema_operations
              WHERE operation_type = 'QUOTA_CHECK' AND schema_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(transitions, "WARNING OK");
    su.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_trigger WHERE tgname = 'tc_quota_guard'"), 0);
}

#[test]
fn concurrent_writers_stop_at_the_limit() {
    let (mut su, institution, id) = tenant_with_rows("qt_race", 2000);
    let limit = quota_at_percent(&mut su, id, 92);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut app = connect_as("it_quota_app", DB);
                for statements in 1..=500 {
                    let sql = format!("INSERT INTO docs (body) SELECT {KIB_ROW} FROM generate_series(1, 10)");
                    if let Err(e) = as_tenant(&mut app, institution, &sql) {
                        return (statements, e.code().map(|c| c.code().to_string()));
                    }
                }
                (500, None)
            })
        })
        .collect();
    for writer in writers {
        let (statements, sqlstate) = writer.join().unwrap();
        assert_eq!(sqlstate.as_deref(), Some("53400"), "a writer ended after {statements} statements");
    }
    // Each writer may have finished the statement it had started; the tenant did not run away.
    let used: i64 = su.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    assert!(used >= limit, "stopped at {used} of {limit}");
    assert!(used < limit + 2 * 1024 * 1024, "overshot: {used} of {limit}");
    assert_eq!(
        count(
            &mut su,
            &format!("SELECT count(*) FROM tenant.tenant_schemas WHERE id = '{id}' AND quota_state = 'EXCEEDED'")
        ),
        1
    );
    let mut app = connect_as("it_quota_app", DB);
    assert_eq!(code(as_tenant(&mut app, institution, "TRUNCATE docs")), None);
    assert_eq!(code(as_tenant(&mut app, institution, "INSERT INTO docs (body) VALUES ('room again')")), None);
}

/// A login that is a member of the tenant's role, in a new session.
fn tenant_member(su: &mut Client, schema: &str) -> Client {
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS it_quota_member; CREATE ROLE it_quota_member LOGIN; GRANT {schema}_owner TO it_quota_member"
    ))
    .unwrap();
    connect_as("it_quota_member", DB)
}

#[test]
fn a_tenant_cannot_switch_its_quota_enforcement_off() {
    let (mut su, _, id) = tenant_with_rows("qt_tamper", 300);
    let mut member = tenant_member(&mut su, "qt_tamper");
    member
        .batch_execute(
            "SET ROLE qt_tamper_owner;
             CREATE TABLE qt_tamper.mine (x int);
             CREATE FUNCTION qt_tamper.let_it_through() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
        )
        .unwrap();
    // A look-alike guard planted before the tenant gets near its quota: the name is reserved.
    let planted = "CREATE TRIGGER tc_quota_guard BEFORE INSERT OR UPDATE ON qt_tamper.mine
                   FOR EACH STATEMENT EXECUTE FUNCTION qt_tamper.let_it_through()";
    let refused = member.batch_execute(planted).unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42939"), "{refused}");
    assert!(refused.as_db_error().unwrap().message().contains("tc_quota_guard"), "{refused}");

    // Near the quota every table has the extension's guard, and the tenant cannot switch it off.
    quota_at_percent(&mut su, id, 95);
    let guards =
        "SELECT count(*) FROM pg_trigger WHERE tgfoid = 'tenant.quota_guard()'::regprocedure AND tgenabled = 'O'
                    AND tgrelid IN ('qt_tamper.mine'::regclass, 'qt_tamper.docs'::regclass)";
    assert_eq!(count(&mut su, guards), 2);
    for tampering in [
        "ALTER TABLE qt_tamper.mine DISABLE TRIGGER tc_quota_guard",
        "ALTER TABLE qt_tamper.mine DISABLE TRIGGER ALL",
        "ALTER TABLE qt_tamper.mine DISABLE TRIGGER USER",
        "ALTER TABLE qt_tamper.mine ENABLE REPLICA TRIGGER tc_quota_guard",
        "ALTER TRIGGER tc_quota_guard ON qt_tamper.mine RENAME TO renamed_guard",
        "DROP TRIGGER tc_quota_guard ON qt_tamper.mine",
        "SET session_replication_role = replica",
    ] {
        assert_eq!(sqlstate_of_failure(&mut member, tampering), "42501", "{tampering}");
    }
    assert_eq!(count(&mut su, guards), 2);
    // A table created near the quota is guarded at once, not at the next recount.
    member.batch_execute("CREATE TABLE qt_tamper.fresh (x int)").unwrap();
    let fresh_guards = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'qt_tamper.fresh'::regclass
                          AND tgfoid = 'tenant.quota_guard()'::regprocedure AND tgenabled = 'O'";
    assert_eq!(count(&mut su, fresh_guards), 1);

    // Over it, a session that sets the old internal setting before the library
    // is loaded is refused like any other.
    quota_at_percent(&mut su, id, 110);
    let mut early = connect_as("it_quota_member", DB);
    early.batch_execute("SET tenant_control.internal_ddl = on; SET ROLE qt_tamper_owner").unwrap();
    assert_eq!(sqlstate_of_failure(&mut early, "CREATE TABLE qt_tamper.grown (x int)"), "53400");
    assert_eq!(sqlstate_of_failure(&mut early, "INSERT INTO qt_tamper.mine VALUES (1)"), "53400");
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname = 'grown'"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM qt_tamper.mine"), 0);
    drop((member, early));
    su.batch_execute("DROP ROLE it_quota_member").unwrap();
}
