//! Issue #4's figures, measured side by side in one run against a real cluster
//! (started by `./tc bench backup`), on one tenant of a dozen tables, about
//! 1.5 million rows and 200 MB at the default scale:
//! 1. tenant.backup_institution_schema, alternating three times with
//! 2. a hand-written SQL copy: bare tables, INSERT ... SELECT, then keys,
//!    indexes and foreign keys, sequences set (medians compared);
//! 3. the backup with verify => true;
//! 4. `pg_dump -n <schema> -Fc` followed by `pg_restore` into a new database;
//! 5. an in-place restore from the backup, with the time of its swap.
//!
//! TC_BENCH_BACKUP_SCALE (default 1.0) scales the row counts down for a quick run.
//! Not a test: it prints figures and never fails because the machine is slow.

mod common;
use common::{connect, median, recreate, tool, Goal, Goals};
use postgres::Client;
use std::env;
use std::process::Command;
use std::time::Instant;

const DB: &str = "bench_backup";
const SCHEMA: &str = "bench_school";

/// The tables, bare: what both copies create before loading.
const TABLES: &str = "
CREATE TABLE {s}.students (id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL, email text, born date, profile jsonb);
CREATE TABLE {s}.teachers (id int GENERATED ALWAYS AS IDENTITY, name text NOT NULL, subject text);
CREATE TABLE {s}.rooms (id int GENERATED ALWAYS AS IDENTITY, code text NOT NULL, capacity int CHECK (capacity > 0));
CREATE TABLE {s}.courses (id int GENERATED ALWAYS AS IDENTITY, teacher_id int, room_id int, title text, starts date);
CREATE TABLE {s}.enrolments (student_id bigint NOT NULL, course_id int NOT NULL, enrolled_at timestamptz);
CREATE TABLE {s}.lessons (id bigint GENERATED ALWAYS AS IDENTITY, course_id int, held_on date, topic text);
CREATE TABLE {s}.attendance (id bigint GENERATED ALWAYS AS IDENTITY, lesson_id bigint, student_id bigint,
                             present boolean, noted_at timestamptz);
CREATE TABLE {s}.grades (id bigint GENERATED ALWAYS AS IDENTITY, student_id bigint, course_id int, score numeric(5,2),
                         graded_at timestamptz);
CREATE TABLE {s}.invoices (id bigint GENERATED ALWAYS AS IDENTITY, student_id bigint, amount numeric(10,2), due date,
                           status text);
CREATE TABLE {s}.payments (id bigint GENERATED ALWAYS AS IDENTITY, invoice_id bigint, paid numeric(10,2), paid_at timestamptz);
CREATE TABLE {s}.messages (id bigint GENERATED ALWAYS AS IDENTITY, student_id bigint, subject text, body text,
                           sent_at timestamptz);
CREATE TABLE {s}.audit_log (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz, actor text, action text, detail jsonb);
";

/// Keys, indexes and foreign keys, built after the load.
const KEYS: &str = "
ALTER TABLE {s}.students ADD PRIMARY KEY (id), ADD UNIQUE (email);
ALTER TABLE {s}.teachers ADD PRIMARY KEY (id);
ALTER TABLE {s}.rooms ADD PRIMARY KEY (id), ADD UNIQUE (code);
ALTER TABLE {s}.courses ADD PRIMARY KEY (id);
ALTER TABLE {s}.enrolments ADD PRIMARY KEY (student_id, course_id);
ALTER TABLE {s}.lessons ADD PRIMARY KEY (id);
ALTER TABLE {s}.attendance ADD PRIMARY KEY (id);
ALTER TABLE {s}.grades ADD PRIMARY KEY (id);
ALTER TABLE {s}.invoices ADD PRIMARY KEY (id);
ALTER TABLE {s}.payments ADD PRIMARY KEY (id);
ALTER TABLE {s}.messages ADD PRIMARY KEY (id);
ALTER TABLE {s}.audit_log ADD PRIMARY KEY (id);
CREATE INDEX ON {s}.attendance (student_id);
CREATE INDEX ON {s}.grades (course_id);
CREATE INDEX ON {s}.messages (sent_at);
ALTER TABLE {s}.courses ADD FOREIGN KEY (teacher_id) REFERENCES {s}.teachers, ADD FOREIGN KEY (room_id) REFERENCES {s}.rooms;
ALTER TABLE {s}.enrolments ADD FOREIGN KEY (student_id) REFERENCES {s}.students, ADD FOREIGN KEY (course_id) REFERENCES {s}.courses;
ALTER TABLE {s}.lessons ADD FOREIGN KEY (course_id) REFERENCES {s}.courses;
ALTER TABLE {s}.attendance ADD FOREIGN KEY (lesson_id) REFERENCES {s}.lessons, ADD FOREIGN KEY (student_id) REFERENCES {s}.students;
ALTER TABLE {s}.grades ADD FOREIGN KEY (student_id) REFERENCES {s}.students, ADD FOREIGN KEY (course_id) REFERENCES {s}.courses;
ALTER TABLE {s}.invoices ADD FOREIGN KEY (student_id) REFERENCES {s}.students;
ALTER TABLE {s}.payments ADD FOREIGN KEY (invoice_id) REFERENCES {s}.invoices;
ALTER TABLE {s}.messages ADD FOREIGN KEY (student_id) REFERENCES {s}.students;
";

const NAMES: [&str; 12] = [
    "students",
    "teachers",
    "rooms",
    "courses",
    "enrolments",
    "lessons",
    "attendance",
    "grades",
    "invoices",
    "payments",
    "messages",
    "audit_log",
];

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// Call a tenant function that answers a status row, then checkpoint; the row and the seconds the call took.
fn timed(client: &mut Client, sql: &str, id: &uuid::Uuid) -> (postgres::Row, f64) {
    let started = Instant::now();
    let row = client.query_one(sql, &[id]).unwrap();
    let elapsed = secs(started);
    assert_eq!(row.get::<_, String>("status"), "SUCCESS", "{}", row.get::<_, String>("message"));
    client.batch_execute("CHECKPOINT").unwrap();
    (row, elapsed)
}

fn run(mut command: Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

/// Fill the tenant with `scale` times the default rows, as its own role.
fn fill(client: &mut Client, scale: f64) -> i64 {
    let n = |rows: f64| ((rows * scale) as i64).max(10);
    let (students, teachers, rooms, courses) = (n(100_000.0), n(1_000.0), n(500.0), n(5_000.0));
    let s = SCHEMA;
    client
        .batch_execute(&format!(
            "SET ROLE {s}_owner;
             {tables}
             INSERT INTO {s}.students (name, email, born, profile)
             SELECT 'student ' || g, 'student' || g || '@example.org', date '2000-01-01' + g % 3000,
                    jsonb_build_object('city', 'city ' || g % 100, 'tags', jsonb_build_array(g % 7, g % 11))
               FROM generate_series(1, {students}) g;
             INSERT INTO {s}.teachers (name, subject) SELECT 'teacher ' || g, 'subject ' || g % 40 FROM generate_series(1, {teachers}) g;
             INSERT INTO {s}.rooms (code, capacity) SELECT 'R' || g, 10 + g % 90 FROM generate_series(1, {rooms}) g;
             INSERT INTO {s}.courses (teacher_id, room_id, title, starts)
             SELECT 1 + g % {teachers}, 1 + g % {rooms}, 'course ' || g, date '2024-09-01' + g % 200 FROM generate_series(1, {courses}) g;
             INSERT INTO {s}.enrolments (student_id, course_id, enrolled_at)
             SELECT 1 + g % {students}, 1 + (g / {students} + (g % {students}) * 7) % {courses},
                    timestamptz '2024-09-01' + g * interval '1 second'
               FROM generate_series(0, {enrolments} - 1) g;
             INSERT INTO {s}.lessons (course_id, held_on, topic)
             SELECT 1 + g % {courses}, date '2024-09-01' + g % 250, 'topic ' || g FROM generate_series(1, {lessons}) g;
             INSERT INTO {s}.attendance (lesson_id, student_id, present, noted_at)
             SELECT 1 + g % {lessons}, 1 + g % {students}, g % 10 <> 0, timestamptz '2024-09-01' + g * interval '10 seconds'
               FROM generate_series(1, {attendance}) g;
             INSERT INTO {s}.grades (student_id, course_id, score, graded_at)
             SELECT 1 + g % {students}, 1 + g % {courses}, (g % 10000) / 100.0, timestamptz '2025-01-01' + g * interval '1 minute'
               FROM generate_series(1, {grades}) g;
             INSERT INTO {s}.invoices (student_id, amount, due, status)
             SELECT 1 + g % {students}, 100 + g % 900, date '2025-01-01' + g % 365, CASE WHEN g % 5 = 0 THEN 'open' ELSE 'paid' END
               FROM generate_series(1, {invoices}) g;
             INSERT INTO {s}.payments (invoice_id, paid, paid_at)
             SELECT 1 + g % {invoices}, 100 + g % 900, timestamptz '2025-01-01' + g * interval '1 minute' FROM generate_series(1, {payments}) g;
             INSERT INTO {s}.messages (student_id, subject, body, sent_at)
             SELECT 1 + g % {students}, 'subject ' || g, repeat('message body of ' || g || '. ', 20),
                    timestamptz '2025-01-01' + g * interval '30 seconds'
               FROM generate_series(1, {messages}) g;
             INSERT INTO {s}.audit_log (at, actor, action, detail)
             SELECT timestamptz '2025-01-01' + g * interval '5 seconds', 'user' || g % 500, 'action ' || g % 30,
                    jsonb_build_object('row', g, 'before', md5(g::text), 'after', md5((g + 1)::text))
               FROM generate_series(1, {audit}) g;
             {keys}
             RESET ROLE;",
            tables = TABLES.replace("{s}", s),
            keys = KEYS.replace("{s}", s),
            enrolments = n(300_000.0),
            lessons = n(50_000.0),
            attendance = n(400_000.0),
            grades = n(200_000.0),
            invoices = n(100_000.0),
            payments = n(80_000.0),
            messages = n(120_000.0),
            audit = n(150_000.0),
        ))
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").unwrap();
    NAMES
        .iter()
        .map(|t| client.query_one(&format!("SELECT count(*) FROM {s}.{t}"), &[]).unwrap().get::<_, i64>(0))
        .sum()
}

/// The hand-written copy: bare tables, one INSERT ... SELECT each, then keys and indexes, sequences set.
fn hand_copy(client: &mut Client, target: &str) -> f64 {
    let s = SCHEMA;
    let load: String = NAMES
        .iter()
        .map(|t| format!("INSERT INTO {target}.{t} OVERRIDING SYSTEM VALUE SELECT * FROM {s}.{t};\n"))
        .collect();
    let sequences: String = NAMES
        .iter()
        .filter(|t| **t != "enrolments")
        .map(|t| {
            format!(
                "SELECT setval(pg_get_serial_sequence('{target}.{t}', 'id'), last_value, is_called)
                   FROM {s}.{t}_id_seq; \n"
            )
        })
        .collect();
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             CREATE SCHEMA {target};
             {tables}
             {load}
             {keys}
             {sequences}
             COMMIT;",
            tables = TABLES.replace("{s}", target),
            keys = KEYS.replace("{s}", target),
        ))
        .unwrap();
    secs(started)
}

fn main() {
    let scale: f64 = env::var("TC_BENCH_BACKUP_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    recreate(DB);
    let mut client = connect(DB);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    let id: uuid::Uuid = client
        .query_one("SELECT schema_id FROM tenant.create_institution_schema(gen_random_uuid(), $1)", &[&SCHEMA])
        .unwrap()
        .get(0);
    let started = Instant::now();
    let rows = fill(&mut client, scale);
    let size: i64 = client.query_one("SELECT tenant.refresh_storage($1)", &[&id]).unwrap().get(0);
    println!(
        "tenant: {} tables, {rows} rows, {:.0} MB (scale {scale}; filled in {:.1} s)",
        NAMES.len(),
        size as f64 / 1048576.0,
        secs(started)
    );
    client.batch_execute("CHECKPOINT").unwrap();

    // Our backup and the hand-written copy alternate, three rounds, each after
    // a checkpoint; the medians are compared. The copies of the first round stay.
    let (mut ours, mut hand, mut backup_id) = (Vec::new(), Vec::new(), None);
    for round in 0..3 {
        let (row, elapsed) =
            timed(&mut client, "SELECT status, message, backup_id FROM tenant.backup_institution_schema($1)", &id);
        ours.push(elapsed);
        let taken: uuid::Uuid = row.get("backup_id");
        hand.push(hand_copy(&mut client, "bench_hand"));
        client.batch_execute("CHECKPOINT").unwrap();
        if round == 0 {
            backup_id = Some(taken);
        } else {
            timed(&mut client, "SELECT status, message FROM tenant.remove_backup($1)", &taken);
        }
        if round < 2 {
            client.batch_execute("DROP SCHEMA bench_hand CASCADE; CHECKPOINT").unwrap();
        }
    }
    let backup_id = backup_id.unwrap();
    let (ours, hand) = (median(&ours), median(&hand));
    let (_, verified) =
        timed(&mut client, "SELECT status, message FROM tenant.backup_institution_schema($1, verify => true)", &id);

    let dump = env::temp_dir().join("tenant_control_bench_backup.dump");
    let restore_db = "bench_backup_restored";
    recreate(restore_db);
    let started = Instant::now();
    let mut pg_dump = tool("pg_dump");
    pg_dump.args(["-n", SCHEMA, "-Fc", "-f", dump.to_str().unwrap(), DB]);
    run(pg_dump);
    let dumped = secs(started);
    let mut pg_restore = tool("pg_restore");
    pg_restore.args(["-d", restore_db, dump.to_str().unwrap()]);
    run(pg_restore);
    let dump_restore = secs(started);
    std::fs::remove_file(&dump).ok();
    client.batch_execute("CHECKPOINT").unwrap();

    // The parallel form a DBA would reach for: directory format, two jobs each way.
    let dump_dir = env::temp_dir().join("tenant_control_bench_backup.dir");
    std::fs::remove_dir_all(&dump_dir).ok();
    recreate(restore_db);
    let started = Instant::now();
    let mut pg_dump = tool("pg_dump");
    pg_dump.args(["-n", SCHEMA, "-Fd", "-j2", "-f", dump_dir.to_str().unwrap(), DB]);
    run(pg_dump);
    let mut pg_restore = tool("pg_restore");
    pg_restore.args(["-j2", "-d", restore_db, dump_dir.to_str().unwrap()]);
    run(pg_restore);
    let parallel_dump_restore = secs(started);
    std::fs::remove_dir_all(&dump_dir).ok();
    client.batch_execute("CHECKPOINT").unwrap();

    let (row, restore) =
        timed(&mut client, "SELECT status, message, swap_ms FROM tenant.restore_institution_schema($1)", &backup_id);
    let swap_ms: f64 = row.get("swap_ms");
    let matches: bool =
        client.query_one("SELECT bool_and(matches) FROM tenant.verify_backup($1, true)", &[&backup_id]).unwrap().get(0);

    println!("backup_institution_schema, median of 3:         {ours:8.2} s");
    println!(
        "backup_institution_schema(verify => true):      {verified:8.2} s  ({:.2} of the plain backup)",
        verified / ours
    );
    println!("hand-written copy, data then keys, median of 3: {hand:8.2} s");
    println!("pg_dump -Fc ({dumped:5.2} s) + pg_restore:         {dump_restore:8.2} s");
    println!("pg_dump -Fd -j2 + pg_restore -j2:                {parallel_dump_restore:8.2} s");
    println!("restore in place: {restore:.2} s in all, of which the swap took {swap_ms:.1} ms; restored tenant matches the backup: {matches}");
    let mut goals = Goals::default();
    goals.check("pg_dump -Fc + pg_restore / backup_institution_schema", dump_restore / ours, "x", Goal::AtLeast(2.0));
    goals.check(
        "pg_dump -Fd -j2 + pg_restore -j2 / backup_institution_schema",
        parallel_dump_restore / ours,
        "x",
        Goal::AtLeast(1.5),
    );
    goals.check("backup_institution_schema / hand-written copy", ours / hand, "x", Goal::AtMost(1.2));
    goals.finish();
}
