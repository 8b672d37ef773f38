-- Functions and procedures. Their place among the other objects comes from
-- pg_depend (generate_order.sql): a SQL-standard body after what it reads, a
-- signature naming a table's row type after the table.
SELECT tenant.function_statement(p.oid, $1::text), 'pg_proc:' || p.oid
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.prokind IN ('f', 'p')
 ORDER BY p.oid
