-- Triggers (a partition's clone of its parent's trigger comes with the parent's).
SELECT statement, 'pg_trigger:' || t.oid FROM (
    -- pg_get_triggerdef always qualifies the table after ON: that one token is rebuilt.
    SELECT g.oid, 0 AS step,
           overlay(d.def PLACING pg_catalog.format(' ON %I ', c.relname)
                              FROM pg_catalog.strpos(d.def, d.token) FOR pg_catalog.length(d.token)) AS statement
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid,
      LATERAL (SELECT tenant.deparse_in($1::text, 'trigger', g.oid) AS def,
                      pg_catalog.format(' ON %I.%I ', $1::text, c.relname) AS token OFFSET 0) d
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND NOT g.tgisinternal AND g.tgparentid = 0 AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_') AND pg_catalog.strpos(d.def, d.token) > 0
    UNION ALL
    SELECT g.oid, 1, pg_catalog.format('ALTER TABLE %I %s TRIGGER %I', c.relname,
           CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, g.tgname)
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND NOT g.tgisinternal AND g.tgparentid = 0 AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_') AND g.tgenabled <> 'O'
) t ORDER BY t.oid, t.step
