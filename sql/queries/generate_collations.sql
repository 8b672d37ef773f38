-- Collations of the schema (columns, domains and expressions name them
-- unqualified, so they bind to the copy's).
SELECT pg_catalog.format('CREATE COLLATION %I (provider = %s, deterministic = %s, %s)', c.collname,
       CASE c.collprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, CASE WHEN c.collisdeterministic THEN 'true' ELSE 'false' END,
       CASE WHEN c.collprovider = 'i' THEN pg_catalog.format('locale = %L', c.colliculocale)
            ELSE pg_catalog.format('lc_collate = %L, lc_ctype = %L', c.collcollate, c.collctype) END),
       'pg_collation:' || c.oid
  FROM pg_catalog.pg_collation c
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_collation') AS so(oid))
 ORDER BY c.oid
