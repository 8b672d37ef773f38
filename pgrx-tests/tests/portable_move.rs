//! Moving an institution to another server online (tenant.move_institution):
//! two real clusters with wal_level = logical, the source reaching the target
//! through dblink and the target subscribing to the source. Writers keep
//! writing through the move; servers are killed between its steps.

mod cluster;
use cluster::{required_env, Cluster};
use postgres::{Client, SimpleQueryMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use uuid::Uuid;

const DB: &str = "app";
const LOGICAL: &str = "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n\
                       wal_retrieve_retry_interval = '200ms'";

/// A started cluster with database `app`, tenant_control (and dblink, which
/// the source needs) and a template of two tables with a sequence each.
fn server(name: &str, settings: &str) -> Cluster {
    let bin = required_env("TC_TEST_PG_BIN");
    let mut cluster = Cluster::init(name, &bin);
    cluster.configure(settings);
    cluster.start(&bin);
    cluster.connect("postgres").batch_execute(&format!("CREATE DATABASE {DB}")).unwrap();
    cluster
        .connect(DB)
        .batch_execute(
            "CREATE EXTENSION tenant_control; CREATE EXTENSION dblink;
             CREATE TABLE tenant_template.items (id bigserial PRIMARY KEY, note text NOT NULL UNIQUE);
             CREATE TABLE tenant_template.tags (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                                item bigint NOT NULL REFERENCES tenant_template.items (id), tag text);",
        )
        .unwrap();
    cluster
}

fn restart(cluster: &mut Cluster) {
    cluster.start(&required_env("TC_TEST_PG_BIN"));
}

fn conninfo(cluster: &Cluster) -> String {
    format!("host={} port={} dbname={DB} user=postgres", cluster.host(), cluster.port())
}

/// A new institution with `rows` items and a tag on each; (institution, schema id, schema).
fn institution(db: &mut Client, rows: i64) -> (Uuid, Uuid, String) {
    let institution = Uuid::new_v4();
    let row = db.query_one("SELECT * FROM tenant.create_institution_schema($1)", &[&institution]).unwrap();
    assert_eq!(row.get::<_, String>("status"), "SUCCESS", "{}", row.get::<_, String>("message"));
    let schema_id: Uuid = row.get("schema_id");
    let schema: String =
        db.query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE id = $1", &[&schema_id]).unwrap().get(0);
    db.batch_execute(&format!(
        "INSERT INTO {schema}.items (note) SELECT 'seed ' || g FROM generate_series(1, {rows}) g;
         INSERT INTO {schema}.tags (item, tag) SELECT id, 'seed' FROM {schema}.items;"
    ))
    .unwrap();
    (institution, schema_id, schema)
}

/// The status row of a CALL: (status, message, sqlstate, pause_ms), read as text.
struct Moved {
    status: String,
    message: String,
    sqlstate: Option<String>,
    pause_ms: Option<f64>,
}

fn call_move(db: &mut Client, schema_id: Uuid, target: &str, stop_after: Option<&str>) -> Moved {
    let stop = stop_after.map(|s| format!("'{s}'")).unwrap_or_else(|| "NULL".into());
    let sql = format!("CALL tenant.move_institution('{schema_id}', '{target}', stop_after => {stop})");
    let messages = db.simple_query(&sql).unwrap();
    let row = messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("CALL returns a row");
    Moved {
        status: row.get("status").unwrap().to_string(),
        message: row.get("message").unwrap_or_default().to_string(),
        sqlstate: row.get("sqlstate").map(str::to_string),
        pause_ms: row.get("pause_ms").map(|p| p.parse().unwrap()),
    }
}

fn move_ok(db: &mut Client, schema_id: Uuid, target: &str) -> Moved {
    let moved = call_move(db, schema_id, target, None);
    assert_eq!(moved.status, "SUCCESS", "{} [{:?}]", moved.message, moved.sqlstate);
    moved
}

fn refused(db: &mut Client, schema_id: Uuid, target: &str) -> Moved {
    let moved = call_move(db, schema_id, target, None);
    assert_eq!(moved.status, "ERROR", "the move should have been refused: {}", moved.message);
    moved
}

/// Whether an application can use the institution on this server now.
fn usable(db: &mut Client, institution: Uuid) -> bool {
    let ok = db
        .batch_execute(&format!("BEGIN; SELECT tenant.set_context('{institution}'); SELECT count(*) FROM items"))
        .is_ok();
    db.batch_execute("ROLLBACK").unwrap();
    ok
}

fn scalar<T: for<'a> postgres::types::FromSql<'a>>(db: &mut Client, sql: &str) -> T {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn status_of(db: &mut Client, institution: Uuid) -> Option<String> {
    db.query_opt(
        "SELECT status FROM tenant.tenant_schemas WHERE institution_id = $1 AND status <> 'DROPPED'",
        &[&institution],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// Nothing of a move is left: no publication or slot on the source, no
/// subscription on the target, no markers on either.
fn assert_no_leftovers(source: &mut Client, target: &mut Client) {
    let on_source: i64 = scalar(
        source,
        "SELECT (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'tc_move_%')
              + (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'tc_move_%')
              + (SELECT count(*) FROM tenant.move_signals)",
    );
    assert_eq!(on_source, 0, "publication, slot or markers left on the source");
    let on_target: i64 =
        scalar(target, "SELECT (SELECT count(*) FROM pg_subscription) + (SELECT count(*) FROM tenant.move_signals)");
    assert_eq!(on_target, 0, "subscription or markers left on the target");
}

/// Rows of the institution's items on a server: (note, id), sorted.
fn items(db: &mut Client, schema: &str) -> Vec<(String, i64)> {
    db.query(&format!("SELECT note, id FROM {schema}.items ORDER BY note"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// How a writer reaches the institution.
#[derive(Clone, Copy)]
enum Access {
    /// tenant.set_context in each transaction.
    Context,
    /// A session that took the tenant's role and search_path once and runs a
    /// prepared INSERT (its plan is cached across the cut-over).
    Prepared,
}

/// An application writing one row per transaction to wherever
/// tenant.locate_institution says the institution lives. Returns the
/// acknowledged writes: (note, id, written on the target).
fn writer(
    source: String,
    target: String,
    (institution, schema): (Uuid, String),
    tag: usize,
    access: Access,
    stop: Arc<AtomicBool>,
) -> Vec<(String, i64, bool)> {
    let connect = |conninfo: &str| postgres::Client::connect(conninfo, postgres::NoTls).unwrap();
    let (mut here, mut there, mut lookup) = (connect(&source), connect(&target), connect(&source));
    let mut prepared = None;
    let mut written = Vec::new();
    let mut on_target = false;
    for i in 0.. {
        let on_target_count = written.iter().filter(|w: &&(String, i64, bool)| w.2).count();
        if stop.load(Ordering::SeqCst) && on_target && on_target_count >= 20 {
            break;
        }
        let note = format!("writer {tag} row {i}");
        let db = if on_target { &mut there } else { &mut here };
        let attempt = (|| -> Result<i64, postgres::Error> {
            match access {
                Access::Context => {
                    let mut tx = db.transaction()?;
                    tx.query_one("SELECT tenant.set_context($1)", &[&institution])?;
                    let id = tx.query_one("INSERT INTO items (note) VALUES ($1) RETURNING id", &[&note])?.get(0);
                    tx.commit()?;
                    Ok(id)
                }
                Access::Prepared => {
                    if prepared.is_none() {
                        db.batch_execute(&format!("SET ROLE {schema}_owner; SET search_path = {schema}"))?;
                        prepared = Some(db.prepare("INSERT INTO items (note) VALUES ($1) RETURNING id")?);
                    }
                    Ok(db.query_one(prepared.as_ref().unwrap(), &[&note])?.get(0))
                }
            }
        })();
        match attempt {
            Ok(id) => written.push((note, id, on_target)),
            Err(_) if !on_target => {
                let location: Option<String> =
                    lookup.query_one("SELECT tenant.locate_institution($1)", &[&institution]).unwrap().get(0);
                on_target = location.is_some();
                if on_target {
                    prepared = None;
                }
            }
            Err(error) => panic!("the target refused a write after the move: {error}"),
        }
    }
    written
}

#[test]
fn a_busy_institution_moves_without_losing_or_repeating_a_write() {
    let source = server("move_busy_source", LOGICAL);
    let target = server("move_busy_target", LOGICAL);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (institution, schema_id, schema) = institution(&mut src, 5000);
    // The institution's settings, which must come along: config, quota,
    // limits, a row limit (its count kept exact through the writes of the
    // move), and administrators (one role exists on the target only).
    dst.batch_execute("CREATE ROLE busy_it NOLOGIN").unwrap();
    src.batch_execute(&format!(
        "CREATE ROLE busy_it NOLOGIN; CREATE ROLE busy_auditor NOLOGIN;
         UPDATE tenant.tenant_schemas SET config = '{{\"plan\": \"gold\"}}', quota_limit = 987654321 WHERE id = '{schema_id}';
         SELECT tenant.set_limits('{schema_id}', '{{\"lock_timeout\": \"2s\", \"max_transactions\": 9}}');
         SELECT tenant.set_row_limit('{schema_id}', 'items', 1000000);
         SELECT tenant.grant_institution_admin('{institution}', 'busy_it');
         SELECT tenant.grant_institution_admin('{institution}', 'busy_auditor');"
    ))
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|tag| {
            let (s, t, stop, schema) = (conninfo(&source), conninfo(&target), stop.clone(), schema.clone());
            let access = if tag == 3 { Access::Prepared } else { Access::Context };
            thread::spawn(move || writer(s, t, (institution, schema), tag, access, stop))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let moved = move_ok(&mut src, schema_id, &conninfo(&target));
    stop.store(true, Ordering::SeqCst);
    let written: Vec<(String, i64, bool)> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();

    // Every acknowledged write is on the target exactly once, with its id;
    // nothing else arrived but the seed rows.
    let rows = items(&mut dst, &schema);
    let seeds = rows.iter().filter(|(note, _)| note.starts_with("seed ")).count();
    assert_eq!(seeds, 5000);
    assert_eq!(rows.len(), 5000 + written.len(), "rows lost or added on the target");
    let by_note: std::collections::HashMap<_, _> = rows.iter().cloned().collect();
    for (note, id, _) in &written {
        assert_eq!(by_note.get(note), Some(id), "write {note} missing or changed on the target");
    }
    // The sequence continued: the target's new ids follow the source's.
    let last_here = written.iter().filter(|w| !w.2).map(|w| w.1).max().expect("writes on the source");
    let first_there = written.iter().filter(|w| w.2).map(|w| w.1).min().expect("writes on the target");
    assert!(first_there > last_here, "target ids restarted: {first_there} <= {last_here}");
    assert_eq!(scalar::<i64>(&mut dst, &format!("SELECT count(*) FROM {schema}.tags")), 5000);
    let pause = moved.pause_ms.expect("pause_ms");
    assert!(pause > 0.0);

    // The settings arrived, the row count as the writes left it.
    let settings = dst
        .query_one(
            "SELECT t.config::text, t.quota_limit, l.limits, r.max_rows, r.row_count
               FROM tenant.tenant_schemas t JOIN tenant.institution_limits l ON l.schema_id = t.id
               JOIN tenant.row_limits r ON r.schema_id = t.id AND r.table_name = 'items'
              WHERE t.institution_id = $1 AND t.status = 'ACTIVE'",
            &[&institution],
        )
        .unwrap();
    assert_eq!(settings.get::<_, String>(0), r#"{"plan": "gold"}"#);
    assert_eq!(settings.get::<_, Option<i64>>(1), Some(987654321));
    assert_eq!(
        settings.get::<_, serde_json::Value>(2),
        serde_json::json!({"lock_timeout": "2s", "max_transactions": 9})
    );
    assert_eq!(settings.get::<_, i64>(3), 1000000);
    assert_eq!(settings.get::<_, i64>(4), rows.len() as i64, "row limit count on the target");
    let admins: Vec<String> = dst
        .query("SELECT role_name FROM tenant.institution_admins WHERE institution_id = $1", &[&institution])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(admins, vec!["busy_it".to_string()]);
    // The counting triggers work there: a new row is counted.
    dst.batch_execute(&format!("INSERT INTO {schema}.items (note) VALUES ('after the move')")).unwrap();
    assert_eq!(
        scalar::<i64>(&mut dst, "SELECT row_count FROM tenant.row_limits WHERE table_name = 'items'"),
        rows.len() as i64 + 1
    );

    // The registry on both sides says where the institution is.
    assert_eq!(status_of(&mut src, institution).as_deref(), Some("MOVED"));
    assert_eq!(status_of(&mut dst, institution).as_deref(), Some("ACTIVE"));
    let location: Option<String> =
        src.query_one("SELECT tenant.locate_institution($1)", &[&institution]).unwrap().get(0);
    let location = location.expect("the source locates the institution elsewhere");
    assert_eq!(location, conninfo(&target));
    let here: Option<String> = dst.query_one("SELECT tenant.locate_institution($1)", &[&institution]).unwrap().get(0);
    assert_eq!(here, None);
    let unknown = src.query_one("SELECT tenant.locate_institution($1)", &[&Uuid::new_v4()]).unwrap_err();
    assert_eq!(unknown.code().unwrap().code(), "42704");

    // set_context on the source names the new location.
    let error = src
        .batch_execute(&format!("BEGIN; SELECT tenant.set_context('{institution}')"))
        .expect_err("the source must refuse a moved institution");
    src.batch_execute("ROLLBACK").unwrap();
    assert_eq!(error.code().unwrap().code(), "55000");
    let text = error.as_db_error().unwrap().message().to_string();
    assert!(text.contains(&location) && text.contains("moved"), "{text}");

    // The source keeps its data, locked out, until dropped; it cannot be reopened.
    let kept: i64 = scalar(&mut src, &format!("SELECT count(*) FROM {schema}.items"));
    assert_eq!(kept as usize, 5000 + written.iter().filter(|w| !w.2).count());
    let reopen = src
        .query_one("SELECT status, sqlstate FROM tenant.set_institution_status($1, 'ACTIVE')", &[&schema_id])
        .unwrap();
    assert_eq!(
        (reopen.get::<_, String>(0), reopen.get::<_, Option<String>>(1)),
        ("ERROR".into(), Some("55000".into()))
    );
    // A second move of the same schema is refused, naming where it went.
    let again = refused(&mut src, schema_id, &conninfo(&target));
    assert_eq!(again.sqlstate.as_deref(), Some("55000"));
    assert!(again.message.contains("already moved"), "{}", again.message);
    assert_no_leftovers(&mut src, &mut dst);

    // Dropping the kept copy keeps the record of where the institution went.
    let dropped = src.query_one("SELECT status FROM tenant.drop_institution_schema($1)", &[&schema_id]).unwrap();
    assert_eq!(dropped.get::<_, String>(0), "SUCCESS");
    let still: Option<String> = src.query_one("SELECT tenant.locate_institution($1)", &[&institution]).unwrap().get(0);
    assert_eq!(still.as_deref(), Some(location.as_str()));
    source.discard();
    target.discard();
}

#[test]
fn settings_and_prerequisites_are_checked_up_front() {
    let bin = required_env("TC_TEST_PG_BIN");
    let mut source = server("move_checks_source", "max_replication_slots = 10");
    let target = server("move_checks_target", LOGICAL);
    let to = conninfo(&target);
    let mut src = source.connect(DB);
    let (_, schema_id, schema) = institution(&mut src, 10);

    let refused_with = |src: &mut Client, target: &str, code: &str, words: &str| {
        let moved = refused(src, schema_id, target);
        assert_eq!(moved.sqlstate.as_deref(), Some(code), "{}", moved.message);
        assert!(moved.message.contains(words), "expected \"{words}\" in: {}", moved.message);
    };
    refused_with(&mut src, &to, "55000", "wal_level = logical");

    drop(src);
    source.stop();
    source.configure("wal_level = logical\nmax_replication_slots = 1");
    source.start(&bin);
    let mut src = source.connect(DB);
    refused_with(&mut src, &to, "53400", "no free replication slots");

    drop(src);
    source.stop();
    source.configure("max_replication_slots = 10\nmax_wal_senders = 1");
    source.start(&bin);
    let mut src = source.connect(DB);
    refused_with(&mut src, &to, "53400", "no free WAL senders");

    drop(src);
    source.stop();
    source.configure("max_wal_senders = 10");
    source.start(&bin);
    let mut src = source.connect(DB);

    // Arguments and the tenant itself.
    let nulls = src.simple_query("CALL tenant.move_institution(NULL, 'x')").unwrap();
    let row = nulls.iter().find_map(|m| if let SimpleQueryMessage::Row(r) = m { Some(r) } else { None }).unwrap();
    assert_eq!(row.get("sqlstate"), Some("22004"));
    let unknown = call_move(&mut src, Uuid::new_v4(), &to, None);
    assert_eq!(unknown.sqlstate.as_deref(), Some("42704"));
    let bad_step = call_move(&mut src, schema_id, &to, Some("HALFWAY"));
    assert_eq!(bad_step.sqlstate.as_deref(), Some("22023"));
    refused_with(&mut src, &format!("host={} port=1 dbname={DB}", target.host()), "08001", "could not establish");

    // A table whose updates could not be replicated.
    src.batch_execute(&format!("ALTER TABLE {schema}.tags REPLICA IDENTITY NOTHING")).unwrap();
    refused_with(&mut src, &to, "55000", "replica identity");
    src.batch_execute(&format!("ALTER TABLE {schema}.tags REPLICA IDENTITY DEFAULT")).unwrap();

    // dblink is the transport to the target.
    src.batch_execute("DROP EXTENSION dblink").unwrap();
    refused_with(&mut src, &to, "55000", "dblink");
    src.batch_execute("CREATE EXTENSION dblink").unwrap();

    // The target: tenant_control there, its template at the tenant's version
    // and with the same tables.
    let mut dst_admin = target.connect("postgres");
    dst_admin.batch_execute("CREATE DATABASE bare").unwrap();
    refused_with(
        &mut src,
        &format!("host={} port={} dbname=bare user=postgres", target.host(), target.port()),
        "55000",
        "not installed in the target",
    );
    let mut dst = target.connect(DB);
    dst.batch_execute("CREATE TABLE tenant_template.extra (id int PRIMARY KEY)").unwrap();
    refused_with(&mut src, &to, "55000", "other tables than the target's template");
    dst.batch_execute("DROP TABLE tenant_template.extra").unwrap();
    let registered = dst
        .query_one(
            "SELECT status FROM tenant.register_migration(1, 'CREATE TABLE notes (id int PRIMARY KEY)', 'v1')",
            &[],
        )
        .unwrap();
    assert_eq!(registered.get::<_, String>(0), "SUCCESS");
    refused_with(&mut src, &to, "55000", "version 1");

    // Nothing of the refused moves was left behind on either side.
    assert_eq!(scalar::<i64>(&mut src, "SELECT count(*) FROM tenant.institution_moves"), 0);
    assert_eq!(scalar::<i64>(&mut dst, "SELECT count(*) FROM tenant.tenant_schemas"), 0);
    assert_no_leftovers(&mut src, &mut dst);
    source.discard();
    target.discard();
}

/// One committed write through tenant.set_context, as an application makes
/// it: the inserted row's id, or the error's (SQLSTATE, message).
fn write(db: &mut Client, institution: Uuid, note: &str) -> Result<i64, (String, String)> {
    let attempt = (|| -> Result<i64, postgres::Error> {
        let mut tx = db.transaction()?;
        tx.query_one("SELECT tenant.set_context($1)", &[&institution])?;
        let id = tx.query_one("INSERT INTO items (note) VALUES ($1) RETURNING id", &[&note])?.get(0);
        tx.commit()?;
        Ok(id)
    })();
    attempt.map_err(|e| {
        let db_error = e.as_db_error().expect("a server error");
        (db_error.code().code().to_string(), db_error.message().to_string())
    })
}

fn move_step(db: &mut Client, schema_id: Uuid) -> String {
    db.query_one("SELECT step FROM tenant.institution_moves WHERE schema_id = $1", &[&schema_id]).unwrap().get(0)
}

/// Run a move up to `stop_after`, kill one server, start it again: without
/// running the move again, a write through set_context succeeds on exactly
/// one side (the source resolves the interrupted cut-over: back before the
/// decision, forward after it) and is refused on the other; running the
/// move again then finishes it with every row, the new one included.
#[test]
fn an_interrupted_move_resumes_after_either_server_was_killed() {
    let mut source = server("move_kill_source", LOGICAL);
    let mut target = server("move_kill_target", LOGICAL);
    let to = conninfo(&target);
    for stop_after in ["PREPARED", "SYNCED", "FROZEN", "ACTIVATING", "ACTIVATED"] {
        for kill_target in [false, true] {
            let mut src = source.connect(DB);
            let (institution, schema_id, schema) = institution(&mut src, 300);
            let stopped = call_move(&mut src, schema_id, &to, Some(stop_after));
            assert_eq!(stopped.status, "STOPPED", "{stop_after}: {}", stopped.message);
            drop(src);
            let killed = if kill_target { &mut target } else { &mut source };
            killed.crash();
            restart(killed);

            let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
            let context =
                format!("stopped after {stop_after}, killed the {}", if kill_target { "target" } else { "source" });
            let decided = matches!(stop_after, "ACTIVATING" | "ACTIVATED");
            // The application tries the source first, as it did before.
            let here = write(&mut src, institution, "after the kill");
            let there = write(&mut dst, institution, "after the kill");
            if decided {
                let (code, message) = here.expect_err(&format!("{context}: the source took a write"));
                assert_eq!(code, "55000", "{context}: {message}");
                assert!(message.contains(&format!("has moved to {to}")), "{context}: {message}");
                assert!(there.is_ok(), "{context}: the target refused the write: {there:?}");
                let location: Option<String> =
                    scalar(&mut src, &format!("SELECT tenant.locate_institution('{institution}')"));
                assert_eq!(location.as_deref(), Some(to.as_str()), "{context}");
            } else {
                assert!(here.is_ok(), "{context}: the source refused the write: {here:?}");
                let (code, _) = there.expect_err(&format!("{context}: the target took a write"));
                assert_eq!(code, "55000", "{context}");
                let location: Option<String> =
                    scalar(&mut src, &format!("SELECT tenant.locate_institution('{institution}')"));
                assert_eq!(location, None, "{context}");
                assert_eq!(status_of(&mut src, institution).as_deref(), Some("ACTIVE"), "{context}");
            }
            // A cut-over rolled back is at SYNCED again; one rolled forward is done here.
            let expected = match stop_after {
                "FROZEN" => "SYNCED",
                "ACTIVATING" | "ACTIVATED" => "MOVED",
                other => other,
            };
            assert_eq!(move_step(&mut src, schema_id), expected, "{context}");

            move_ok(&mut src, schema_id, &to);
            assert!(!usable(&mut src, institution) && usable(&mut dst, institution), "{context}: after the rerun");
            let (mut arrived, mut left) = (items(&mut dst, &schema), items(&mut src, &schema));
            assert_eq!(arrived.len(), 301, "{context}: a row lost or repeated");
            if decided {
                // The write landed on the target after the take-over.
                arrived.retain(|(note, _)| note != "after the kill");
                left.retain(|(note, _)| note != "after the kill");
            }
            assert_eq!(arrived, left, "{context}: rows differ");
            assert_no_leftovers(&mut src, &mut dst);
        }
    }
    source.discard();
    target.discard();
}

/// The coordinator itself fails in the cut-over before deciding (here the
/// target stopped applying, so the freeze's marker never arrives within
/// max_wait): it unfreezes the source rather than leave the institution
/// writable nowhere, and a later run resumes.
#[test]
fn a_cut_over_that_fails_before_its_decision_rolls_back_by_itself() {
    let source = server("move_undecided_source", LOGICAL);
    let target = server("move_undecided_target", LOGICAL);
    let to = conninfo(&target);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (institution, schema_id, schema) = institution(&mut src, 50);
    assert_eq!(call_move(&mut src, schema_id, &to, Some("SYNCED")).status, "STOPPED");
    let subscription = format!("tc_move_{}", schema_id.simple());
    dst.batch_execute(&format!("ALTER SUBSCRIPTION {subscription} DISABLE")).unwrap();

    let row = src
        .simple_query(&format!("CALL tenant.move_institution('{schema_id}', '{to}', max_wait => '1 second')"))
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get("status"), Some("ERROR"));
    assert_eq!(row.get("sqlstate"), Some("57014"));
    assert!(row.get("message").unwrap().contains("rolled back"), "{:?}", row.get("message"));
    assert_eq!(move_step(&mut src, schema_id), "SYNCED");
    assert_eq!(status_of(&mut src, institution).as_deref(), Some("ACTIVE"));
    assert!(write(&mut src, institution, "after the rollback").is_ok());
    assert!(write(&mut dst, institution, "after the rollback").is_err());

    let moved = Interrupted { institution, schema_id, schema: &schema, to: &to };
    finish_after_reenabling(&mut src, &mut dst, &subscription, moved);
    source.discard();
    target.discard();
}

/// The target killed while a running move waits in its cut-over (FROZEN):
/// meanwhile writers here get a clear 55006 naming the target; the
/// coordinator's next look at the target fails, and it rolls the cut-over
/// back at once, so the institution is usable here (and only here) without
/// waiting for the target; a later run finishes the move.
#[test]
fn a_target_killed_during_a_running_cut_over_leaves_the_source_usable() {
    let source = server("move_live_kill_source", LOGICAL);
    let mut target = server("move_live_kill_target", LOGICAL);
    let to = conninfo(&target);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (institution, schema_id, schema) = institution(&mut src, 50);
    assert_eq!(call_move(&mut src, schema_id, &to, Some("SYNCED")).status, "STOPPED");
    // The target stops applying: the freeze's marker cannot arrive, so the
    // move stays in its cut-over, polling the target.
    let subscription = format!("tc_move_{}", schema_id.simple());
    dst.batch_execute(&format!("ALTER SUBSCRIPTION {subscription} DISABLE")).unwrap();
    drop(dst);
    let (from, into) = (conninfo(&source), to.clone());
    let running = thread::spawn(move || {
        let mut coordinator = postgres::Client::connect(&from, postgres::NoTls).unwrap();
        call_move(&mut coordinator, schema_id, &into, None)
    });
    let started = std::time::Instant::now();
    while move_step(&mut src, schema_id) != "FROZEN" {
        assert!(started.elapsed() < Duration::from_secs(60), "the move did not reach its cut-over");
        thread::sleep(Duration::from_millis(20));
    }
    let (code, message) = write(&mut src, institution, "during the cut-over").unwrap_err();
    assert_eq!(code, "55006", "{message}");
    assert!(message.contains(&format!("institution {institution} is moving to {to}")), "{message}");

    target.crash();
    let failed = running.join().unwrap();
    assert_eq!(failed.status, "ERROR");
    assert!(failed.message.contains("rolled back"), "{}", failed.message);
    assert_eq!(move_step(&mut src, schema_id), "SYNCED");
    assert!(write(&mut src, institution, "while the target is down").is_ok());

    restart(&mut target);
    let mut dst = target.connect(DB);
    assert!(write(&mut dst, institution, "while the target is down").is_err());
    let moved = Interrupted { institution, schema_id, schema: &schema, to: &to };
    finish_after_reenabling(&mut src, &mut dst, &subscription, moved);
    source.discard();
    target.discard();
}

/// tenant.resolve_moves (the pg_cron job) resolves abandoned cut-overs: one
/// not decided rolls back, one decided rolls forward; a move whose
/// coordinator is alive is left alone, and meanwhile set_context says what
/// is going on and the status cannot be changed by hand. It is run by a
/// platform administrator who is not a superuser (the owner of a pg_cron job
/// scheduled by such an administrator), who cannot choose where it connects.
#[test]
fn resolve_moves_finishes_or_rolls_back_an_abandoned_cut_over() {
    let source = server("move_resolve_source", LOGICAL);
    let target = server("move_resolve_target", LOGICAL);
    let to = conninfo(&target);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (undecided, undecided_id, undecided_schema) = institution(&mut src, 20);
    let (decided, decided_id, _) = institution(&mut src, 20);
    assert_eq!(call_move(&mut src, undecided_id, &to, Some("FROZEN")).status, "STOPPED");
    assert_eq!(call_move(&mut src, decided_id, &to, Some("ACTIVATING")).status, "STOPPED");
    let late = src.query_one("SELECT status, sqlstate FROM tenant.cancel_move($1, $2)", &[&decided_id, &to]).unwrap();
    assert_eq!((late.get::<_, String>(0), late.get::<_, Option<String>>(1)), ("ERROR".into(), Some("55000".into())));

    // A live coordinator of the undecided move: its lock held by another session.
    let mut coordinator = source.connect(DB);
    coordinator.execute("SELECT pg_advisory_lock(29795, tenant.move_lock_key($1))", &[&undecided_id]).unwrap();
    src.batch_execute("DROP ROLE IF EXISTS move_admin; CREATE ROLE move_admin LOGIN IN ROLE tenant_control_admin")
        .unwrap();
    let mut admin = source.connect_as("move_admin", DB);
    // Where the resolver connects is a superuser's move's record: the
    // administrator can read it, not write it, nor call the resolver of one move.
    for sql in [
        format!("UPDATE tenant.institution_moves SET location = 'host=/tmp port=1' WHERE schema_id = '{decided_id}'"),
        "INSERT INTO tenant.institution_moves SELECT * FROM tenant.institution_moves".to_string(),
        format!("SELECT tenant.move_resolve('{decided_id}')"),
        format!("CALL tenant.move_institution('{decided_id}', 'host=/tmp port=1')"),
    ] {
        let code = admin.batch_execute(&sql).unwrap_err().code().map(|c| c.code().to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}");
    }
    let outcomes = |db: &mut Client| -> Vec<(String, String, String)> {
        db.query("SELECT schema_name, step, outcome FROM tenant.resolve_moves()", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let first = outcomes(&mut admin);
    assert!(first.contains(&(undecided_schema.clone(), "FROZEN".into(), "BUSY".into())), "{first:?}");
    assert!(first.iter().any(|(_, step, outcome)| step == "ACTIVATING" && outcome == "ROLLED_FORWARD"), "{first:?}");
    let (code, message) = write(&mut src, undecided, "while frozen").unwrap_err();
    assert_eq!(code, "55006", "{message}");
    assert!(message.contains(&format!("institution {undecided} is moving to {to}")), "{message}");
    let reopened = src
        .query_one("SELECT status, sqlstate FROM tenant.set_institution_status($1, 'ACTIVE')", &[&undecided_id])
        .unwrap();
    assert_eq!(
        (reopened.get::<_, String>(0), reopened.get::<_, Option<String>>(1)),
        ("ERROR".into(), Some("55006".into()))
    );

    coordinator.execute("SELECT pg_advisory_unlock(29795, tenant.move_lock_key($1))", &[&undecided_id]).unwrap();
    let second = outcomes(&mut admin);
    assert!(second.contains(&(undecided_schema.clone(), "FROZEN".into(), "ROLLED_BACK".into())), "{second:?}");
    assert!(write(&mut src, undecided, "after the rollback").is_ok());
    assert!(write(&mut dst, decided, "after the take-over").is_ok());
    assert!(write(&mut src, decided, "after the take-over").is_err());
    assert_eq!(move_step(&mut src, decided_id), "MOVED");

    move_ok(&mut src, undecided_id, &to);
    assert_eq!(items(&mut dst, &undecided_schema).len(), 21, "the write made after the rollback arrived");
    // The decided move is finished: running it again removes what is left
    // (SUCCESS) or, with nothing left, says it has moved already.
    let again = call_move(&mut src, decided_id, &to, None);
    assert!(
        again.status == "SUCCESS" || again.message.contains("has already moved"),
        "{} {}",
        again.status,
        again.message
    );
    assert_no_leftovers(&mut src, &mut dst);
    source.discard();
    target.discard();
}

/// A resolver cancelled (statement_timeout) while it talks to the target
/// leaves no dblink connection in the caller's session: one left open
/// would be a superuser's session on the target, usable by the caller (a
/// non-superuser administrator) through dblink's functions.
#[test]
fn a_cancelled_resolver_leaves_no_connection_behind() {
    let source = server("move_cancelled_source", LOGICAL);
    let target = server("move_cancelled_target", LOGICAL);
    let to = conninfo(&target);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (institution, schema_id, _) = institution(&mut src, 20);
    assert_eq!(call_move(&mut src, schema_id, &to, Some("ACTIVATING")).status, "STOPPED");
    src.batch_execute("DROP ROLE IF EXISTS move_admin; CREATE ROLE move_admin LOGIN IN ROLE tenant_control_admin")
        .unwrap();
    let mut admin = source.connect_as("move_admin", DB);

    // The target's subscription is locked for 2 s: the roll forward waits
    // there, and the admin's statement_timeout of 1 s cancels it meanwhile.
    let subscription: String = scalar(&mut src, &format!("SELECT tenant.move_object_name('{schema_id}')"));
    let mut blocker = target.connect(DB);
    blocker.batch_execute(&format!("BEGIN; ALTER SUBSCRIPTION \"{subscription}\" DISABLE")).unwrap();
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_secs(2));
        blocker.batch_execute("ROLLBACK").unwrap();
    });
    let cancelled =
        admin.batch_execute("SET statement_timeout = '1s'; SELECT * FROM tenant.resolve_moves()").unwrap_err();
    release.join().unwrap();
    assert_eq!(cancelled.code().map(|c| c.code()), Some("57014"), "{cancelled:?}");
    admin.batch_execute("RESET statement_timeout").unwrap();
    let open: Option<Vec<String>> = scalar(&mut admin, "SELECT dblink_get_connections()");
    assert_eq!(open, None, "a connection to the target was left in the caller's session");

    // Nothing was decided by the cancelled attempt: the next run rolls forward.
    let resolved: String = scalar(&mut admin, "SELECT string_agg(outcome, ',') FROM tenant.resolve_moves()");
    assert_eq!(resolved, "ROLLED_FORWARD");
    assert!(usable(&mut dst, institution) && !usable(&mut src, institution));
    source.discard();
    target.discard();
}

#[test]
fn a_move_that_has_not_cut_over_can_be_cancelled() {
    let source = server("move_cancel_source", LOGICAL);
    let target = server("move_cancel_target", LOGICAL);
    let to = conninfo(&target);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    for stop_after in ["SYNCED", "FROZEN"] {
        let (institution, schema_id, _) = institution(&mut src, 50);
        assert_eq!(call_move(&mut src, schema_id, &to, Some(stop_after)).status, "STOPPED");
        let cancelled =
            src.query_one("SELECT status, message FROM tenant.cancel_move($1, $2)", &[&schema_id, &to]).unwrap();
        assert_eq!(cancelled.get::<_, String>(0), "SUCCESS", "{}", cancelled.get::<_, String>(1));
        assert!(usable(&mut src, institution) && !usable(&mut dst, institution), "after cancelling at {stop_after}");
        assert_eq!(status_of(&mut dst, institution), None, "the arriving schema is dropped on the target");
        assert_eq!(scalar::<i64>(&mut src, "SELECT count(*) FROM tenant.institution_moves"), 0);
        assert_no_leftovers(&mut src, &mut dst);
    }
    // Once the target has taken over, cancelling is refused; the move finishes.
    let (institution, schema_id, _) = institution(&mut src, 50);
    assert_eq!(call_move(&mut src, schema_id, &to, Some("ACTIVATED")).status, "STOPPED");
    let late = src.query_one("SELECT status, sqlstate FROM tenant.cancel_move($1, $2)", &[&schema_id, &to]).unwrap();
    assert_eq!((late.get::<_, String>(0), late.get::<_, Option<String>>(1)), ("ERROR".into(), Some("55000".into())));
    move_ok(&mut src, schema_id, &to);
    assert!(usable(&mut dst, institution));
    source.discard();
    target.discard();
}

/// Tenant code never runs with the subscription owner's rights on the
/// target: the tenant cannot put a trigger (which replication could fire) on
/// its tables, and what it may create in its schema (functions) stays on the
/// source: DDL is not replicated, the target builds the schema from its own
/// template.
#[test]
fn tenant_code_on_the_source_does_not_reach_the_target() {
    let source = server("move_attack_source", LOGICAL);
    let target = server("move_attack_target", LOGICAL);
    let (mut src, mut dst) = (source.connect(DB), target.connect(DB));
    let (institution, schema_id, schema) = institution(&mut src, 10);
    // As the tenant: a function that would make its role a superuser if it
    // ever ran as one, on a trigger. The tenant may add an ordinary trigger
    // (replication does not fire those), not make it fire in replication.
    src.batch_execute(&format!(
        "BEGIN; SELECT tenant.set_context('{institution}');
         CREATE FUNCTION {schema}.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN EXECUTE 'ALTER ROLE {schema}_owner SUPERUSER'; RETURN NEW; END $$;
         CREATE TRIGGER escalate BEFORE INSERT ON {schema}.items FOR EACH ROW EXECUTE FUNCTION {schema}.escalate();
         COMMIT;"
    ))
    .unwrap();
    let always = src
        .batch_execute(&format!(
            "BEGIN; SELECT tenant.set_context('{institution}'); ALTER TABLE {schema}.items ENABLE ALWAYS TRIGGER escalate;"
        ))
        .unwrap_err();
    src.batch_execute("ROLLBACK").unwrap();
    assert_eq!(always.code().unwrap().code(), "42501");
    move_ok(&mut src, schema_id, &conninfo(&target));
    let escalated: bool = scalar(&mut dst, &format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{schema}_owner'"));
    assert!(!escalated);
    let functions: i64 = scalar(
        &mut dst,
        &format!("SELECT count(*) FROM pg_proc WHERE pronamespace = '{schema}'::regnamespace AND proname = 'escalate'"),
    );
    assert_eq!(functions, 0, "the tenant's function reached the target");
    let triggers: i64 = scalar(
        &mut dst,
        &format!("SELECT count(*) FROM pg_trigger WHERE tgrelid = '{schema}.items'::regclass AND tgname = 'escalate'"),
    );
    assert_eq!(triggers, 0, "the tenant's trigger reached the target");
    assert_eq!(items(&mut dst, &schema).len(), 10);
    source.discard();
    target.discard();
}

/// The institution a test moves, and where to.
struct Interrupted<'a> {
    institution: Uuid,
    schema_id: Uuid,
    schema: &'a str,
    to: &'a str,
}

/// After an interrupted cut-over: the target applies again, a new run
/// finishes the move, and the institution is usable there only, with every
/// item (50, plus the one written during the interruption) and no leftovers.
fn finish_after_reenabling(src: &mut Client, dst: &mut Client, subscription: &str, moved: Interrupted) {
    dst.batch_execute(&format!("ALTER SUBSCRIPTION {subscription} ENABLE")).unwrap();
    move_ok(src, moved.schema_id, moved.to);
    assert!(!usable(src, moved.institution) && usable(dst, moved.institution));
    assert_eq!(items(dst, moved.schema), items(src, moved.schema));
    assert_eq!(items(dst, moved.schema).len(), 51);
    assert_no_leftovers(src, dst);
}
