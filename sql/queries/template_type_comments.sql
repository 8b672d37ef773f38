-- Comments on the parts of types (template.rs, generator "comments on types'
-- parts"): columns of composite types and constraints of domains, which the
-- comments on relations and relation constraints do not reach.
SELECT pg_catalog.format('COMMENT ON %s IS %L', c.target, c.description) FROM (
    SELECT t.oid, d.objsubid AS step, d.description, pg_catalog.format('COLUMN %I.%I', t.typname, a.attname) AS target
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_class r ON r.oid = t.typrelid AND r.relkind = 'c'
      JOIN pg_catalog.pg_description d ON d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = r.oid AND d.objsubid > 0
      JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.objsubid
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
    UNION ALL
    SELECT t.oid, k.oid::integer, d.description, pg_catalog.format('CONSTRAINT %I ON DOMAIN %I', k.conname, t.typname)
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_constraint k ON k.contypid = t.oid
      JOIN pg_catalog.pg_description d ON d.classoid = 'pg_catalog.pg_constraint'::regclass AND d.objoid = k.oid
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
) c ORDER BY c.oid, c.step
