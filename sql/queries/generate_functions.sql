-- Functions and procedures. Their place among the other objects comes from
-- pg_depend (generate_order.sql): a SQL-standard body after what it reads, a
-- signature naming a table's row type after the table.
-- A function with a SQL-standard body also gets a placeholder just before it
-- (unit 'stub:...'): the same signature and attributes with a body naming
-- nothing (a typed NULL, so that inlining it type-checks). order.rs keeps
-- the placeholder only when the function is on a cycle (a table whose
-- generated column calls it, while its body reads the table) and drops it
-- otherwise.
SELECT statement, unit FROM (
    SELECT tenant.function_statement(p.oid, $1::text) AS statement, 'pg_proc:' || p.oid AS unit, p.oid, 1 AS n
      FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)) AND p.prokind IN ('f', 'p')
       -- A range type's constructors come with the type.
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'i')
    UNION ALL
    SELECT pg_catalog.to_jsonb(pg_catalog.format('CREATE FUNCTION %I(%s) RETURNS %s LANGUAGE sql %s%s AS %L',
               p.proname, tenant.deparse_in($1::text, 'arguments', p.oid), tenant.deparse_in($1::text, 'result', p.oid),
               CASE p.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
               CASE WHEN p.proisstrict THEN ' STRICT' ELSE '' END,
               CASE WHEN p.proretset OR p.proallargtypes IS NOT NULL THEN 'SELECT NULL'
                    ELSE 'SELECT NULL::' || tenant.deparse_in($1::text, 'result', p.oid) END)),
           'stub:pg_proc:' || p.oid, p.oid, 0
      FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
       AND p.prokind = 'f' AND p.prosqlbody IS NOT NULL
) f
ORDER BY oid, n
