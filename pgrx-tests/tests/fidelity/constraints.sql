-- Keys, checks, exclusion constraints and foreign keys of every kind.
CREATE TABLE parents (
    id integer PRIMARY KEY,
    code text NOT NULL,
    region text,
    CONSTRAINT parents_code_region UNIQUE (code, region),
    CONSTRAINT parents_code_nulls UNIQUE NULLS NOT DISTINCT (code),
    CONSTRAINT parents_code_check CHECK (code <> '' AND length(code) < 20)
);
CREATE TABLE children (
    id integer PRIMARY KEY,
    parent_id integer NOT NULL REFERENCES parents ON DELETE CASCADE ON UPDATE RESTRICT,
    code text,
    region text,
    sibling_id integer REFERENCES children (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT children_pair FOREIGN KEY (code, region) REFERENCES parents (code, region) MATCH FULL ON DELETE SET DEFAULT,
    CONSTRAINT children_positive CHECK (id > 0) NO INHERIT
);
CREATE TABLE bookings (
    room integer,
    during tsrange,
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&) WHERE (room IS NOT NULL)
);
CREATE TABLE late (id integer, parent_id integer);
ALTER TABLE late ADD CONSTRAINT late_parent FOREIGN KEY (parent_id) REFERENCES parents NOT VALID;
ALTER TABLE late ADD CONSTRAINT late_id_check CHECK (id > 0) NOT VALID;
ALTER TABLE late ADD CONSTRAINT late_key PRIMARY KEY (id) DEFERRABLE;
CREATE TABLE on_index (code text NOT NULL);
CREATE UNIQUE INDEX on_index_code ON on_index (code);
ALTER TABLE on_index ADD CONSTRAINT on_index_code_key UNIQUE USING INDEX on_index_code;
-- @tenant
INSERT INTO parents VALUES (1, 'a', 'north'), (2, 'b', 'south');
INSERT INTO children VALUES (1, 1, 'a', 'north', NULL), (2, 2, 'b', 'south', 1);
INSERT INTO bookings VALUES (1, '[2024-01-01, 2024-01-02)');
INSERT INTO late VALUES (1, 1);
INSERT INTO on_index VALUES ('x');
