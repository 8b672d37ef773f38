-- Runs before the examples of every page of docs/ (pgrx-tests/tests/docs_examples.rs),
-- in a fresh database: the extension and the template of ./tc demo.
CREATE EXTENSION tenant_control;
SET search_path = tenant_template;
CREATE TABLE students (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE courses (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text NOT NULL UNIQUE);
CREATE TABLE enrolments (student_id bigint REFERENCES students, course_id int REFERENCES courses,
                         PRIMARY KEY (student_id, course_id));
CREATE VIEW roster AS
    SELECT c.code, s.name FROM enrolments e JOIN students s ON s.id = e.student_id JOIN courses c ON c.id = e.course_id;
RESET search_path;
