-- A realistic tenant: the schema of a school's administration. Used by the
-- benchmark both as the template and as the hand-written DDL baseline; names
-- are unqualified, so it runs in whatever schema search_path names first.
CREATE TYPE person_kind AS ENUM ('student', 'staff', 'guardian');
CREATE DOMAIN email AS text CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$');

CREATE TABLE departments (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE people (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        person_kind NOT NULL,
    full_name   text NOT NULL CHECK (length(full_name) > 0),
    email       email UNIQUE,
    born_on     date,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE students (
    person_id   bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    student_no  text NOT NULL UNIQUE,
    enrolled_on date NOT NULL DEFAULT current_date
);
CREATE TABLE staff (
    person_id     bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    department_id integer NOT NULL REFERENCES departments (id),
    title         text
);
CREATE INDEX staff_department ON staff (department_id);
CREATE TABLE courses (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department_id integer NOT NULL REFERENCES departments (id),
    code          text NOT NULL UNIQUE,
    title         text NOT NULL,
    credits       numeric(4, 1) NOT NULL DEFAULT 5 CHECK (credits > 0)
);
CREATE INDEX courses_department ON courses (department_id);
CREATE TABLE sections (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id   integer NOT NULL REFERENCES courses (id),
    teacher_id  bigint REFERENCES staff (person_id),
    term        text NOT NULL,
    capacity    integer NOT NULL DEFAULT 30
);
CREATE INDEX sections_course ON sections (course_id);
CREATE TABLE enrolments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    section_id  integer NOT NULL REFERENCES sections (id),
    student_id  bigint NOT NULL REFERENCES students (person_id),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (section_id, student_id)
);
CREATE INDEX enrolments_student ON enrolments (student_id);
CREATE TABLE grades (
    enrolment_id bigint PRIMARY KEY REFERENCES enrolments (id) ON DELETE CASCADE,
    grade        numeric(4, 2) CHECK (grade BETWEEN 0 AND 10),
    graded_at    timestamptz
);
CREATE TABLE attendance (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enrolment_id bigint NOT NULL REFERENCES enrolments (id) ON DELETE CASCADE,
    day          date NOT NULL,
    present      boolean NOT NULL DEFAULT true
);
CREATE INDEX attendance_enrolment_day ON attendance (enrolment_id, day);
CREATE TABLE invoices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES people (id),
    amount      numeric(12, 2) NOT NULL CHECK (amount >= 0),
    due_on      date NOT NULL,
    paid        boolean NOT NULL DEFAULT false
);
CREATE INDEX invoices_unpaid ON invoices (due_on) WHERE NOT paid;
CREATE TABLE payments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id),
    amount      numeric(12, 2) NOT NULL,
    paid_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_invoice ON payments (invoice_id);
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    happened_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT current_user,
    entry       jsonb NOT NULL
);
CREATE INDEX audit_log_entry ON audit_log USING gin (entry);
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL DEFAULT '{}'
);

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER people_touch BEFORE UPDATE ON people FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE FUNCTION mark_paid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE invoices SET paid = true WHERE id = NEW.invoice_id;
    RETURN NEW;
END $$;
CREATE TRIGGER payments_mark_paid AFTER INSERT ON payments FOR EACH ROW EXECUTE FUNCTION mark_paid();

CREATE VIEW student_overview AS
    SELECT p.id, p.full_name, s.student_no, count(e.id) AS sections
      FROM people p JOIN students s ON s.person_id = p.id LEFT JOIN enrolments e ON e.student_id = s.person_id
     GROUP BY p.id, p.full_name, s.student_no;
CREATE VIEW course_load AS
    SELECT c.code, sec.term, count(e.id) AS enrolled, sec.capacity
      FROM courses c JOIN sections sec ON sec.course_id = c.id LEFT JOIN enrolments e ON e.section_id = sec.id
     GROUP BY c.code, sec.term, sec.capacity;
CREATE VIEW outstanding_invoices AS
    SELECT i.*, p.full_name FROM invoices i JOIN people p ON p.id = i.person_id WHERE NOT i.paid;
CREATE MATERIALIZED VIEW department_stats AS
    SELECT d.name, count(DISTINCT c.id) AS courses, count(DISTINCT st.person_id) AS staff
      FROM departments d LEFT JOIN courses c ON c.department_id = d.id LEFT JOIN staff st ON st.department_id = d.id
     GROUP BY d.name;

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_own_rows ON audit_log USING (actor = current_user);
