-- Properties of a schema's tables, indexes and views that their CREATE
-- statements leave at the default (template.rs, generator "properties"):
-- storage parameters of the indexes behind keys (pg_get_constraintdef leaves
-- them out) and of materialized views, toast.* parameters, per-column
-- storage, compression, statistics targets and options, statistics targets
-- of index columns, replica identity, CLUSTER ON, and defaults on view
-- columns. $1: the schema being read. Runs after the indexes exist.
SELECT s.statement FROM (
    SELECT c.oid, 1 AS step, pg_catalog.format('ALTER INDEX %I SET (%s)', c.relname, pg_catalog.array_to_string(c.reloptions, ', ')) AS statement
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.reloptions IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                      AND k.contype IN ('p', 'u', 'x'))
    UNION ALL
    SELECT c.oid, 2, pg_catalog.format('ALTER MATERIALIZED VIEW %I SET (%s)', c.relname, pg_catalog.array_to_string(c.reloptions, ', '))
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind = 'm' AND c.reloptions IS NOT NULL
    UNION ALL
    SELECT c.oid, 3, pg_catalog.format('ALTER TABLE %I SET (%s)', c.relname,
           (SELECT pg_catalog.string_agg('toast.' || o.option, ', ') FROM pg_catalog.unnest(t.reloptions) AS o(option)))
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND t.reloptions IS NOT NULL
    UNION ALL
    -- Column properties of tables and materialized views (ALTER TABLE takes both).
    SELECT c.oid, 4 + p.step, pg_catalog.format('ALTER TABLE ONLY %I ALTER COLUMN %I %s', c.relname, a.attname, p.clause)
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid,
      -- This server keeps an internal pg_attver=<n> among every column's
      -- options (pg_dump leaves it out, setting it is ignored): not a user's option.
      LATERAL (SELECT pg_catalog.string_agg(x.option, ', ') AS options FROM pg_catalog.unnest(a.attoptions) AS x(option)
                WHERE NOT pg_catalog.starts_with(x.option, 'pg_attver=')) AS o,
      LATERAL (VALUES
          (a.attnum * 4, a.attstorage <> t.typstorage, 'SET STORAGE ' || CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL'
                                                                                  WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END),
          (a.attnum * 4 + 1, a.attcompression <> '', 'SET COMPRESSION ' || CASE a.attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END),
          (a.attnum * 4 + 2, a.attstattarget >= 0, 'SET STATISTICS ' || a.attstattarget),
          (a.attnum * 4 + 3, o.options IS NOT NULL, 'SET (' || o.options || ')')
      ) AS p(step, wanted, clause)
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'm', 'p') AND p.wanted
    UNION ALL
    SELECT c.oid, 5 + a.attnum, pg_catalog.format('ALTER INDEX %I ALTER COLUMN %s SET STATISTICS %s', c.relname, a.attnum, a.attstattarget)
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
     WHERE i.indrelid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND a.attstattarget >= 0
    UNION ALL
    SELECT c.oid, 0, pg_catalog.format('ALTER TABLE %I REPLICA IDENTITY %s', c.relname, CASE c.relreplident
               WHEN 'n' THEN 'NOTHING' WHEN 'f' THEN 'FULL'
               ELSE (SELECT pg_catalog.format('USING INDEX %I', x.relname) FROM pg_catalog.pg_index i
                       JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisreplident) END)
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p') AND c.relreplident <> 'd'
    UNION ALL
    SELECT t.oid, 1, pg_catalog.format('ALTER TABLE %I CLUSTER ON %I', t.relname, c.relname)
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND i.indisclustered
    UNION ALL
    SELECT c.oid, a.attnum, pg_catalog.format('ALTER VIEW %I ALTER COLUMN %I SET DEFAULT %s', c.relname, a.attname,
           tenant.deparse_in($1::text, 'expression', c.oid, ad.adbin::text))
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ad.adnum
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind = 'v'
) s ORDER BY s.oid, s.step
