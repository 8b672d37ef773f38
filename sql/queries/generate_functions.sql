-- Functions and procedures. Their place among the other objects comes from
-- pg_depend (generate_order.sql): a SQL-standard body after what it reads, a
-- signature naming a table's row type after the table.
SELECT tenant.function_statement(p.oid, $1::text), 'pg_proc:' || p.oid
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)) AND p.prokind IN ('f', 'p')
   -- A range type's constructors come with the type.
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'i')
 ORDER BY p.oid
