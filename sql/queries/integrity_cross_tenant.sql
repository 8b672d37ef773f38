-- Integrity check, per tenant ($1 = schema).
-- Objects of schema $1 that depend on an object of another tenant's schema
-- (registered, spare, backup or quarantined), or functions whose settings or
-- body name one. The registry is probed by index, one name at a time (a
-- scalar subquery with LIMIT): a join or a hashed subplan would read all of
-- it for every tenant, a cost that grows with the fleet.
WITH objects AS MATERIALIZED (
    -- What lives in schema $1, read from pg_depend once: tenant.schema_objects
    -- reads it again for each catalog it is asked about.
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND d.refobjid = pg_catalog.to_regnamespace($1::text) AND d.refobjsubid = 0 AND d.deptype = 'n'
), rels AS MATERIALIZED (
    SELECT o.objid AS oid FROM objects o WHERE o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
), mine AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, r.oid FROM rels r
    UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, o.objid FROM objects o WHERE o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, o.objid FROM objects o WHERE o.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
    UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT w.oid FROM pg_catalog.pg_rewrite w WHERE w.ev_class = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT a.oid FROM pg_catalog.pg_attrdef a WHERE a.adrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.tgrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid = r.oid) x
)
SELECT DISTINCT x.object, x.other FROM (
    -- A view is named rather than its _RETURN rule.
    SELECT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                THEN (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, w.ev_class, 0)
                        FROM pg_catalog.pg_rewrite w WHERE w.oid = d.objid)
                ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END AS object, n.nspname::text AS other
      FROM mine, LATERAL (SELECT d.* FROM pg_catalog.pg_depend d WHERE d.classid = mine.classid AND d.objid = mine.oid) d
      JOIN LATERAL (SELECT CASE d.refclassid
                           WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT p.pronamespace FROM pg_catalog.pg_proc p WHERE p.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT t.typnamespace FROM pg_catalog.pg_type t WHERE t.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN d.refobjid END AS nsp) r ON true
      JOIN pg_catalog.pg_namespace n ON n.oid = r.nsp
     WHERE n.nspname <> $1::text AND (pg_catalog.starts_with(n.nspname::text, 'tc_') OR (
               SELECT true FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname::text COLLATE "default" AND t.status <> 'DROPPED' LIMIT 1))
    UNION ALL
    -- Names followed by a dot in a body, and the schemas of a search_path setting, looked up in the registry.
    SELECT pg_catalog.format('function %I(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)), w.name
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT m.name[1] AS name FROM pg_catalog.regexp_matches(pg_catalog.lower(p.prosrc), '([a-z_][a-z0-9_$]*)\.', 'g') AS m(name)
                    UNION
                    SELECT pg_catalog.btrim(e.name, ' "') FROM pg_catalog.unnest(p.proconfig) AS c(setting),
                           pg_catalog.regexp_split_to_table(pg_catalog.substr(c.setting, 13), ',') AS e(name)
                     WHERE pg_catalog.starts_with(c.setting, 'search_path=')) w
     WHERE p.oid IN (SELECT o.objid FROM objects o WHERE o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass)
       AND w.name <> $1::text
       AND (SELECT true FROM tenant.tenant_schemas t WHERE t.schema_name = w.name COLLATE "default" AND t.status <> 'DROPPED' LIMIT 1)
) x ORDER BY 1, 2
