SELECT CASE c.relkind
       WHEN 'v' THEN pg_catalog.format('CREATE VIEW %I%s AS %s', c.relname,
            CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
            pg_catalog.rtrim(tenant.deparse_in($1::text, 'view', c.oid), ';'))
       ELSE pg_catalog.format('CREATE MATERIALIZED VIEW %I AS %s WITH %sDATA', c.relname,
            pg_catalog.rtrim(tenant.deparse_in($1::text, 'view', c.oid), ';'), CASE WHEN c.relispopulated THEN '' ELSE 'NO ' END) END,
       'pg_class:' || c.oid
  FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('v', 'm')
 ORDER BY c.oid
