-- Aggregates: plain, with a final function, ordered-set, zero-argument, revoked from PUBLIC, and one using a type of the template.
CREATE TABLE scores (player text, score integer);
CREATE FUNCTION add_int(a integer, b integer) RETURNS integer LANGUAGE sql IMMUTABLE RETURN coalesce(a, 0) + coalesce(b, 0);
CREATE AGGREGATE total(integer) (SFUNC = add_int, STYPE = integer, INITCOND = '0');
CREATE FUNCTION keep_all(s integer[], x integer) RETURNS integer[] LANGUAGE sql IMMUTABLE RETURN s || x;
CREATE FUNCTION middle(s integer[]) RETURNS integer LANGUAGE sql IMMUTABLE RETURN s[(array_length(s, 1) + 1) / 2];
CREATE AGGREGATE middle_value(integer) (SFUNC = keep_all, STYPE = integer[], FINALFUNC = middle, INITCOND = '{}');
CREATE FUNCTION keep_ordered(s integer[], x integer) RETURNS integer[] LANGUAGE sql IMMUTABLE RETURN s || x;
CREATE FUNCTION nth_of(s integer[], n integer, x integer) RETURNS integer LANGUAGE sql IMMUTABLE RETURN s[n];
CREATE AGGREGATE nth(integer ORDER BY integer) (SFUNC = keep_ordered, STYPE = integer[], FINALFUNC = nth_of, FINALFUNC_EXTRA, INITCOND = '{}');
CREATE AGGREGATE tally(*) (SFUNC = pg_catalog.int8inc, STYPE = bigint, INITCOND = '0');
-- Privileges on aggregates (GRANT names them by argument types: no ORDER BY, no *).
REVOKE ALL ON FUNCTION nth(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tally() FROM PUBLIC;
CREATE VIEW totals AS SELECT player, total(score) FROM scores GROUP BY player;
-- @tenant
INSERT INTO scores VALUES ('a', 1), ('a', 2);
