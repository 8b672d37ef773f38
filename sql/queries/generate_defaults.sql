-- Column defaults that call a function of the schema: set once the function
-- exists (it may read the very table, or take its row type).
SELECT pg_catalog.format('ALTER TABLE ONLY %I ALTER COLUMN %I SET DEFAULT %s', c.relname, a.attname,
                         tenant.deparse_in($1::text, 'expression', c.oid, ad.adbin::text)),
       'pg_attrdef:' || ad.oid
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ad.adnum
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p')
   AND a.attgenerated = '' AND NOT a.attisdropped
   AND tenant.calls_schema_function('pg_catalog.pg_attrdef', ad.oid, $1::text)
 ORDER BY ad.oid
