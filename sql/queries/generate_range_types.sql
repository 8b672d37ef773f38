-- Range types, with their multirange's name. Support functions and an
-- operator class outside the schema are named qualified (tenant.name_in).
SELECT pg_catalog.format('CREATE TYPE %I AS RANGE (subtype = %s%s%s%s, multirange_type_name = %I)', t.typname,
       tenant.deparse_in($1::text, 'type', r.rngsubtype, NULL, -1),
       CASE WHEN NOT o.opcdefault THEN ', subtype_opclass = ' || tenant.name_in($1::text, o.opcnamespace, o.opcname) ELSE '' END,
       CASE WHEN r.rngcollation <> 0 AND r.rngcollation IS DISTINCT FROM
                 (SELECT s.typcollation FROM pg_catalog.pg_type s WHERE s.oid = r.rngsubtype)
            THEN ', collation = ' || tenant.deparse_in($1::text, 'collation', r.rngcollation) ELSE '' END,
       CASE WHEN r.rngsubdiff <> 0
            THEN ', subtype_diff = ' || (SELECT tenant.name_in($1::text, f.pronamespace, f.proname) FROM pg_catalog.pg_proc f WHERE f.oid = r.rngsubdiff)
            ELSE '' END,
       m.typname),
       'pg_type:' || t.oid
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid
  JOIN pg_catalog.pg_opclass o ON o.oid = r.rngsubopc
  JOIN pg_catalog.pg_type m ON m.oid = r.rngmultitypid
 WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)) AND t.typtype = 'r'
 ORDER BY t.oid
