-- Typed tables (OF type), with their own options on the type's columns.
CREATE TYPE point3 AS (x numeric, y numeric, z numeric);
CREATE TABLE points OF point3 (x WITH OPTIONS NOT NULL, PRIMARY KEY (x, y), z WITH OPTIONS DEFAULT 0);
-- @tenant
INSERT INTO points VALUES (1, 2, 3);
