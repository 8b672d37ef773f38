-- Extended statistics objects, as pg_get_statisticsobjdef prints them.
-- It always qualifies the object's own name: that prefix is rebuilt. Its
-- statistics target (ALTER STATISTICS ... SET STATISTICS; -1 is the default)
-- is left out of that definition: a second statement sets it.
SELECT s.statement, 'pg_statistic_ext:' || s.oid FROM (
    SELECT x.oid, 0 AS step,
           pg_catalog.format('CREATE STATISTICS %I', x.stxname) || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1) AS statement
      FROM pg_catalog.pg_statistic_ext x,
      LATERAL (SELECT tenant.deparse_in($1::text, 'statistics', x.oid) AS def,
                      pg_catalog.format('CREATE STATISTICS %I.%I', $1::text, x.stxname) AS prefix OFFSET 0) d
     WHERE x.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext') AS so(oid))
       AND pg_catalog.starts_with(d.def, d.prefix)
    UNION ALL
    SELECT x.oid, 1, pg_catalog.format('ALTER STATISTICS %I SET STATISTICS %s', x.stxname, x.stxstattarget)
      FROM pg_catalog.pg_statistic_ext x
     WHERE x.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext') AS so(oid)) AND x.stxstattarget >= 0
) s ORDER BY s.oid, s.step
