//! The school of the backup and copy benchmarks: a dozen tables, about 1.5
//! million rows and 200 MB at scale 1.0, filled as the tenant's own role.

use postgres::Client;

/// The tables, bare: what both copies create before loading.
pub const TABLES: &str = "
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
pub const KEYS: &str = "
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

pub const NAMES: [&str; 12] = [
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

/// Fill the tenant with `scale` times the default rows, as its own role.
pub fn fill(client: &mut Client, s: &str, scale: f64) -> i64 {
    let n = |rows: f64| ((rows * scale) as i64).max(10);
    let (students, teachers, rooms, courses) = (n(100_000.0), n(1_000.0), n(500.0), n(5_000.0));
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
