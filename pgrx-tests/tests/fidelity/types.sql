-- Enums, domains, composite types, arrays of them, and tables using them.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE mood ADD VALUE 'ecstatic' AFTER 'happy';
CREATE TYPE empty_enum AS ENUM ();
CREATE DOMAIN positive AS integer CONSTRAINT positive_check CHECK (VALUE > 0);
CREATE DOMAIN email AS text COLLATE "C" NOT NULL DEFAULT 'nobody@example.org' CHECK (VALUE LIKE '%@%');
CREATE DOMAIN short_code AS varchar(8) CONSTRAINT short_code_upper CHECK (VALUE = upper(VALUE));
CREATE DOMAIN positive_list AS positive[];
CREATE TYPE address AS (street text, zip short_code, since date);
CREATE TYPE person AS (name text, home address, moods mood[]);
CREATE TABLE people (
    id positive PRIMARY KEY,
    contact email,
    mood mood DEFAULT 'ok',
    who person,
    homes address[],
    codes positive_list
);
COMMENT ON TYPE mood IS 'how one feels';
COMMENT ON DOMAIN email IS 'an address';
COMMENT ON TYPE address IS 'where';
-- @tenant
INSERT INTO people VALUES (1, 'a@b.c', 'happy', ROW('Ann', ROW('Main', 'AB1', '2020-01-01'), '{sad,ok}'),
                           ARRAY[ROW('High', 'ZZ', NULL)::address], '{1,2}');
