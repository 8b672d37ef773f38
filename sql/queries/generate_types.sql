-- Enums, domains and composite types, with their unit (see generate_order.sql).
-- A domain's checks are part of CREATE DOMAIN unless they were added NOT VALID
-- or call a function of the schema: those come later (generate_domain_constraints.sql),
-- when what they call exists.
SELECT CASE t.typtype
    WHEN 'e' THEN pg_catalog.format('CREATE TYPE %I AS ENUM (%s)', t.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
           FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid))
    WHEN 'd' THEN pg_catalog.format('CREATE DOMAIN %I AS %s%s%s%s%s', t.typname,
        tenant.deparse_in($1::text, 'type', t.typbasetype, NULL, t.typtypmod),
        CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM
                  (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)
             THEN ' COLLATE ' || tenant.deparse_in($1::text, 'collation', t.typcollation) ELSE '' END,
        CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || tenant.deparse_in($1::text, 'expression', 0, t.typdefaultbin::text) ELSE '' END,
        CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END,
        (SELECT pg_catalog.string_agg(pg_catalog.format(' CONSTRAINT %I %s', c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)), '' ORDER BY c.oid)
           FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.convalidated
                AND NOT tenant.calls_schema_function('pg_catalog.pg_constraint', c.oid, $1::text)))
    ELSE pg_catalog.format('CREATE TYPE %I AS (%s)', t.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, tenant.deparse_in($1::text, 'type', a.atttypid, NULL, a.atttypmod)), ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    END, 'pg_type:' || t.oid
  FROM pg_catalog.pg_type t
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
   AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
 ORDER BY t.oid
