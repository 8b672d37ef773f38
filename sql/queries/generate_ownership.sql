SELECT pg_catalog.jsonb_build_array(pg_catalog.format('ALTER %s OWNER TO ', target), '{"slot": "role"}'::jsonb) FROM (
    SELECT c.oid, pg_catalog.format('%s %I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                             WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname) AS target, c.relowner AS owner
      FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       -- A sequence owned by a column follows its table.
       AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                              AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, p.proname,
           CASE WHEN p.prokind = 'a' AND p.pronargs = 0 THEN '*' ELSE tenant.deparse_in($1::text, 'identity arguments', p.oid) END), p.proowner
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
       -- A range type's constructors follow the type.
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'i')
    UNION ALL
    SELECT t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname), t.typowner
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)) AND t.typtype IN ('e', 'd', 'c', 'r')
       AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
) o WHERE o.owner = $2::regrole ORDER BY o.oid
