-- Objects of the copy that still depend on an object of the template.
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) || ' depends on '
       || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
  FROM pg_catalog.pg_depend d
  JOIN (SELECT 'pg_catalog.pg_class'::regclass AS classid, c.oid FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_proc') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_type') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid FROM pg_catalog.pg_rewrite r
                   JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k
                   JOIN pg_catalog.pg_class c ON c.oid = k.conrelid WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, a.oid FROM pg_catalog.pg_attrdef a
                   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, g.oid FROM pg_catalog.pg_trigger g
                   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL SELECT 'pg_catalog.pg_policy'::regclass, p.oid FROM pg_catalog.pg_policy p
                   JOIN pg_catalog.pg_class c ON c.oid = p.polrelid WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS so(oid))) mine
    ON mine.classid = d.classid AND mine.oid = d.objid
 WHERE (d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = $1::regnamespace)
    OR (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)))
    OR (d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)))
    OR (d.refclassid = 'pg_catalog.pg_type'::regclass AND d.refobjid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)))
 LIMIT 1
