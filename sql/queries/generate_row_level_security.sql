SELECT pg_catalog.format('ALTER TABLE %I %s ROW LEVEL SECURITY', c.relname, mode), 'security:' || c.oid
  FROM pg_catalog.pg_class c,
       LATERAL (VALUES (1, 'ENABLE', c.relrowsecurity), (2, 'FORCE', c.relforcerowsecurity)) AS m(step, mode, wanted)
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p') AND m.wanted
 ORDER BY c.oid, m.step
