-- Templates a user builds in steps because their objects need each other: a
-- generated column, a default or a CHECK calling a SQL-standard-body function
-- that reads the very table or names its row type (the table first, then the
-- function, then ALTER TABLE ... ADD COLUMN / SET DEFAULT / ADD CONSTRAINT;
-- or the function first, then the table, then CREATE OR REPLACE FUNCTION).
-- A generated column whose function reads its table, with a column after it.
CREATE TABLE counted (a integer);
CREATE FUNCTION counted_plus(x integer) RETURNS bigint LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT count(*) + x FROM counted; END;
ALTER TABLE counted ADD COLUMN total bigint GENERATED ALWAYS AS (counted_plus(a)) STORED;
ALTER TABLE counted ADD COLUMN note text;
-- A generated column whose function was replaced to name the table's row type.
CREATE FUNCTION twice(x integer) RETURNS integer LANGUAGE sql IMMUTABLE RETURN x * 2;
CREATE TABLE doubled (a integer, b integer GENERATED ALWAYS AS (twice(a)) STORED, c text);
CREATE OR REPLACE FUNCTION twice(x integer) RETURNS integer LANGUAGE sql IMMUTABLE
    BEGIN ATOMIC SELECT x * 2 FROM (SELECT NULL::doubled) AS z; END;
-- A default calling a function that reads the table.
CREATE TABLE numbered (id integer, label text);
CREATE FUNCTION next_number() RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT coalesce(max(id), 0) + 1 FROM numbered; END;
ALTER TABLE numbered ALTER COLUMN id SET DEFAULT next_number();
-- A default taken from a function returning the table's row type.
CREATE TABLE with_blank (id integer, amount integer);
CREATE FUNCTION blank() RETURNS with_blank LANGUAGE sql RETURN ROW(0, 5)::with_blank;
ALTER TABLE with_blank ALTER COLUMN amount SET DEFAULT (blank()).amount;
-- CHECKs: one reading the table, one taking its row.
CREATE TABLE guarded (id integer, a integer);
CREATE FUNCTION no_negative_ids(x integer) RETURNS boolean LANGUAGE sql
    BEGIN ATOMIC SELECT x > -1 AND NOT EXISTS (SELECT FROM guarded WHERE id < 0); END;
ALTER TABLE guarded ADD CONSTRAINT guarded_ids CHECK (no_negative_ids(a));
CREATE TABLE ordered_pair (lo integer, hi integer);
CREATE FUNCTION in_order(r ordered_pair) RETURNS boolean LANGUAGE sql IMMUTABLE RETURN r.lo <= r.hi;
ALTER TABLE ordered_pair ADD CONSTRAINT ordered_pair_check CHECK (in_order(ordered_pair));
-- A partitioned table: a generated column, a default and a CHECK whose
-- function names its row type.
CREATE TABLE readings (at integer, v integer) PARTITION BY RANGE (at);
CREATE TABLE readings_early PARTITION OF readings FOR VALUES FROM (0) TO (100);
CREATE FUNCTION scaled(x integer) RETURNS integer LANGUAGE sql IMMUTABLE
    BEGIN ATOMIC SELECT x * 10 FROM (SELECT NULL::readings) AS z; END;
ALTER TABLE readings ADD COLUMN v10 integer GENERATED ALWAYS AS (scaled(v)) STORED;
ALTER TABLE readings ALTER COLUMN v SET DEFAULT scaled(1);
ALTER TABLE readings ADD CONSTRAINT readings_v CHECK (scaled(v) < 10000);
CREATE TABLE readings_late PARTITION OF readings FOR VALUES FROM (100) TO (200);
-- A domain whose CHECK calls a function reading a table with a column of that domain.
CREATE DOMAIN known_code AS text;
CREATE TABLE known_codes (code known_code);
CREATE FUNCTION code_ok(t text) RETURNS boolean LANGUAGE sql
    BEGIN ATOMIC SELECT length(t) < 9 OR EXISTS (SELECT FROM known_codes WHERE code IS NULL); END;
ALTER DOMAIN known_code ADD CONSTRAINT known_code_check CHECK (code_ok(VALUE));
-- @tenant
INSERT INTO counted (a, note) VALUES (1, 'one'), (2, 'two');
INSERT INTO doubled (a, c) VALUES (4, 'four');
INSERT INTO numbered (label) VALUES ('first'), ('second');
INSERT INTO with_blank (id) VALUES (1);
INSERT INTO guarded VALUES (1, 2);
INSERT INTO ordered_pair VALUES (1, 2);
INSERT INTO readings (at, v) VALUES (5, 3), (150, 4);
INSERT INTO known_codes VALUES ('abc');
