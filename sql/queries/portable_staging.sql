-- The staging tables of a copy from another database: for each table of the
-- copy's schema ($1), the column definition list its rows arrive in, its
-- columns without the generated ones. A column of a type of the schema itself
-- (an enum, a domain, a composite, or an array of one) arrives as text: its
-- input function, or a domain's CHECK, runs later, when the tenant's role
-- loads the rows. Run with search_path = pg_catalog, pg_temp: format_type then
-- qualifies every other type.
-- `direct`: nothing a tenant wrote can run while rows are inserted into the
-- table itself (no generated column, no CHECK constraint, no column of a type
-- of the schema or of a domain, at least one column; triggers, row-level
-- security and indexes come after the load): its rows go straight in, without
-- a staging table and without the tenant's role.
SELECT c.relname::text AS name,
       string_agg(format('%I %s', a.attname,
                         CASE WHEN t.typnamespace = c.relnamespace OR e.typnamespace = c.relnamespace
                              THEN 'pg_catalog.text' ELSE format_type(a.atttypid, a.atttypmod) END),
                  ', ' ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '') AS definitions,
       COALESCE(bool_and(a.attgenerated = '' AND t.typtype <> 'd' AND t.typnamespace <> c.relnamespace
                         AND (e.oid IS NULL OR (e.typtype <> 'd' AND e.typnamespace <> c.relnamespace))), false)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c') AS direct
  FROM pg_class c
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_class') AS so(oid)) AND c.relkind = 'r'
 GROUP BY c.oid, c.relname ORDER BY c.oid
