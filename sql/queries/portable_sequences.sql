-- Run on the source of tenant.copy_institution_from (through dblink, with
-- search_path = pg_catalog, pg_temp): every sequence of the schema read ($1,
-- replaced by its name as a literal), the table and column of an identity
-- column whose sequence it is, and its position (NULL before its first use).
SELECT s.relname::text AS name, t.relname::text AS table_name, a.attname::text AS column_name,
       pg_sequence_last_value(s.oid)::text AS last_value
  FROM pg_class s
  LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'i'
                       AND d.refclassid = 'pg_class'::regclass
  LEFT JOIN pg_class t ON t.oid = d.refobjid
  LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE s.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_class') AS so(oid)) AND s.relkind = 'S'
 ORDER BY s.oid
