-- pg_get_indexdef always qualifies the table: its fixed prefix is rebuilt.
-- A partitioned index is created ON ONLY its table, and its partitions'
-- indexes attached to it (generate_partitions.sql).
-- OFFSET 0 keeps the deparsing per index of the schema (never per index of the database).
-- The key constraint is probed through its table (pg_constraint has no index on conindid).
SELECT pg_catalog.format('CREATE %sINDEX %I ON %s%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, c.relname,
                         CASE WHEN c.relkind = 'I' THEN 'ONLY ' ELSE '' END, t.relname)
       || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1), 'pg_class:' || i.indexrelid
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid,
  LATERAL (SELECT tenant.deparse_in($1::text, 'index', i.indexrelid) AS def,
                  pg_catalog.format('CREATE %sINDEX %I ON %s%I.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                                    c.relname, CASE WHEN c.relkind = 'I' THEN 'ONLY ' ELSE '' END, $1::text, t.relname) AS prefix
           OFFSET 0) d
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
   AND pg_catalog.starts_with(d.def, d.prefix)
 ORDER BY i.indexrelid
