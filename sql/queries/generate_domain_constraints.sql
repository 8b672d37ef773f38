-- Checks of a domain added NOT VALID (CREATE DOMAIN cannot say so), or that
-- call a function of the schema (that function may take the domain itself).
SELECT pg_catalog.format('ALTER DOMAIN %I ADD CONSTRAINT %I %s', t.typname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)),
       'pg_constraint:' || c.oid
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)) AND t.typtype = 'd'
   AND (NOT c.convalidated OR tenant.calls_schema_function('pg_catalog.pg_constraint', c.oid, $1::text))
 ORDER BY c.oid
