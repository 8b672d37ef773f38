-- Integrity check, per tenant ($1 = schema).
-- Objects of schema $1 that depend on an object of another tenant's schema
-- (registered, spare, backup or quarantined), or functions whose settings or
-- body name one.
WITH rels AS MATERIALIZED (
    SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid)
), mine AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, r.oid FROM rels r
    UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid)
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS o(oid)
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
     WHERE n.nspname <> $1::text AND (pg_catalog.starts_with(n.nspname::text, 'tc_') OR EXISTS (
               SELECT 1 FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname AND t.status <> 'DROPPED'))
    UNION ALL
    -- Names followed by a dot in a body, and the schemas of a search_path setting, looked up in the registry.
    SELECT pg_catalog.format('function %I(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)), t.schema_name
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT m.name[1] AS name FROM pg_catalog.regexp_matches(pg_catalog.lower(p.prosrc), '([a-z_][a-z0-9_$]*)\.', 'g') AS m(name)
                    UNION
                    SELECT pg_catalog.btrim(e.name, ' "') FROM pg_catalog.unnest(p.proconfig) AS c(setting),
                           pg_catalog.regexp_split_to_table(pg_catalog.substr(c.setting, 13), ',') AS e(name)
                     WHERE pg_catalog.starts_with(c.setting, 'search_path=')) w
      JOIN tenant.tenant_schemas t ON t.schema_name = w.name AND t.status <> 'DROPPED' AND t.schema_name <> $1::text
     WHERE p.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid))
) x ORDER BY 1, 2
