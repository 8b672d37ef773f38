-- Collations of the template's own, used by columns, domains and indexes.
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION c_copy FROM "C";
CREATE DOMAIN ci_text AS text COLLATE ci;
CREATE TABLE users (id integer PRIMARY KEY, login text COLLATE ci, code text COLLATE c_copy, alias ci_text);
CREATE INDEX users_code ON users (code COLLATE c_copy);
-- @tenant
INSERT INTO users VALUES (1, 'Ann', 'A', 'x');
