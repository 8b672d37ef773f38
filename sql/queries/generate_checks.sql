-- Valid checks that call a function of the schema: added once the function
-- exists, before any row is loaded (a backup loads rows as the tenant's role
-- through them; generate_keys_and_checks.sql runs after the load).
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)),
       'pg_constraint:' || c.oid
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND t.relkind IN ('r', 'p')
   AND c.contype = 'c' AND c.convalidated AND tenant.calls_schema_function('pg_catalog.pg_constraint', c.oid, $1::text)
 ORDER BY c.oid
