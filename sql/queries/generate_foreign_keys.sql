-- Foreign keys not created with their table (see tenant.inline_foreign_key).
-- A partition's clone of its parent's key (conparentid) comes with the parent's.
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)),
       'pg_constraint:' || c.oid
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.contype = 'f' AND c.conparentid = 0
   AND NOT ($3::boolean AND tenant.inline_foreign_key(c.oid))
 ORDER BY c.oid
