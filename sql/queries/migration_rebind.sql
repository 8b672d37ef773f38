-- What a migration written for the template left pointing at the template in
-- tenant schema $1 ($2 the template, $3 the template's role), as statements
-- of parts ({"slot": "schema"} and {"slot": "role"} stand for the tenant's
-- schema and role), the very rebinding a copy of the template gets:
-- function settings whose search_path names the template, policies that
-- apply to the template's role, and privileges granted to that role.
-- Run with search_path = pg_catalog, pg_temp. Routines are named by their
-- argument types alone: ROUTINE takes no ordered-set aggregate's ORDER BY.
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('ALTER ROUTINE %I.%I(%s)', $1::text, p.proname,
                                                      pg_catalog.oidvectortypes(p.proargtypes)))
       || tenant.setting_parts(s.setting, $2::text)
  FROM pg_catalog.pg_proc p, pg_catalog.unnest(p.proconfig) AS s(setting)
 WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
   AND s.setting LIKE 'search_path=%'
   AND tenant.setting_parts(s.setting, $2::text) @> '[{"slot": "schema"}]'
UNION ALL
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('ALTER POLICY %I ON %I.%I TO ', p.polname, $1::text, c.relname))
       || (SELECT pg_catalog.jsonb_agg(x.part ORDER BY r.n, x.k)
             FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY AS r(role, n),
                  LATERAL (VALUES (1, CASE WHEN r.n > 1 THEN pg_catalog.to_jsonb(', '::text) END),
                                  (2, CASE WHEN r.role = 0 THEN pg_catalog.to_jsonb('PUBLIC'::text)
                                           WHEN r.role = $3::regrole THEN '{"slot": "role"}'::jsonb
                                           ELSE pg_catalog.to_jsonb(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.role))) END))
                          AS x(k, part)
            WHERE x.part IS NOT NULL)
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
   AND $3::regrole = ANY (p.polroles)
UNION ALL
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('REVOKE ALL ON %s FROM %I', o.target, $3::text))
  FROM (SELECT pg_catalog.format('%s %I.%I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, $1::text, c.relname) AS target,
               c.relacl AS acl,
               (SELECT pg_catalog.array_agg(x) FROM pg_catalog.pg_attribute a, pg_catalog.unnest(a.attacl) x
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL) AS columns
          FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
        UNION ALL
        SELECT pg_catalog.format('ROUTINE %I.%I(%s)', $1::text, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),
               p.proacl, NULL
          FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
        UNION ALL
        SELECT pg_catalog.format('TYPE %I.%I', $1::text, t.typname), t.typacl, NULL
          FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
           AND t.typtype IN ('e', 'd', 'c', 'r') AND t.typacl IS NOT NULL) o
 WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(o.acl) x WHERE x.grantee = $3::regrole)
    OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(o.columns) x WHERE x.grantee = $3::regrole)
