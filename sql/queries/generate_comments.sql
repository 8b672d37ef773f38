SELECT pg_catalog.format('COMMENT ON %s IS %L', target, d.description) FROM (
    SELECT d.description, c.oid, CASE
           WHEN d.objsubid > 0 THEN pg_catalog.format('COLUMN %I.%I', c.relname,
                (SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = d.objsubid))
           ELSE pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                            WHEN 'S' THEN 'SEQUENCE' WHEN 'i' THEN 'INDEX' WHEN 'I' THEN 'INDEX' ELSE 'TYPE' END, c.relname) END AS target
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_class'::regclass
       -- One IN over both sets (not an OR of two), so that it is a join probing pg_description's index.
       AND c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)
                     UNION ALL
                     SELECT i.indexrelid FROM pg_catalog.pg_index i
                      WHERE i.indrelid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)))
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
           p.proname, CASE WHEN p.prokind = 'a' AND p.pronargs = 0 THEN '*' ELSE tenant.deparse_in($1::text, 'identity arguments', p.oid) END)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_proc p ON p.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_proc'::regclass AND p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
    UNION ALL
    SELECT d.description, t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON t.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_type'::regclass AND t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
    UNION ALL
    SELECT d.description, k.oid, pg_catalog.format('CONSTRAINT %I ON %I', k.conname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
     WHERE d.classoid = 'pg_catalog.pg_constraint'::regclass AND c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    SELECT d.description, g.oid, pg_catalog.format('TRIGGER %I ON %I', g.tgname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_trigger g ON g.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE d.classoid = 'pg_catalog.pg_trigger'::regclass AND c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('POLICY %I ON %I', p.polname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_policy p ON p.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
     WHERE d.classoid = 'pg_catalog.pg_policy'::regclass AND c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    SELECT d.description, w.oid, pg_catalog.format('RULE %I ON %I', w.rulename, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_rewrite w ON w.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = w.ev_class
     WHERE d.classoid = 'pg_catalog.pg_rewrite'::regclass AND c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    SELECT d.description, x.oid, pg_catalog.format('STATISTICS %I', x.stxname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_statistic_ext x ON x.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_statistic_ext'::regclass
       AND x.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext') AS so(oid))
) d ORDER BY d.oid
