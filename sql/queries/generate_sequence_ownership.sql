SELECT pg_catalog.format('ALTER SEQUENCE %I OWNED BY %I.%I', s.relname, t.relname, a.attname),
       'owned:' || s.oid
  FROM pg_catalog.pg_class s
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a'
                              AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE s.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND s.relkind = 'S'
 ORDER BY s.oid
