-- Keys and checks are part of CREATE TABLE; only checks added NOT VALID come
-- after, and keys too when the tables are to be loaded first ($3 false).
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)),
       'pg_constraint:' || c.oid
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
   AND c.contype IN ('p', 'u', 'c', 'x') AND (NOT c.convalidated OR (c.contype <> 'c' AND NOT $3::boolean))
 ORDER BY c.contype <> 'p', c.oid
