-- Extended statistics objects, as pg_get_statisticsobjdef prints them.
-- It always qualifies the object's own name: that prefix is rebuilt.
SELECT pg_catalog.format('CREATE STATISTICS %I', s.stxname) || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1),
       'pg_statistic_ext:' || s.oid
  FROM pg_catalog.pg_statistic_ext s,
  LATERAL (SELECT tenant.deparse_in($1::text, 'statistics', s.oid) AS def,
                  pg_catalog.format('CREATE STATISTICS %I.%I', $1::text, s.stxname) AS prefix OFFSET 0) d
 WHERE s.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext') AS so(oid))
   AND pg_catalog.starts_with(d.def, d.prefix)
 ORDER BY s.oid
