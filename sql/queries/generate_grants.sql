WITH acl AS (
    SELECT c.oid, 0 AS step, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, pg_catalog.quote_ident(c.relname) AS name,
           x.privilege_type AS privilege, x.grantee, x.is_grantable AS grantable, x.grantee = c.relowner AS own
      FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) x
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    UNION ALL
    SELECT c.oid, 1, 'TABLE', pg_catalog.quote_ident(c.relname), pg_catalog.format('%s (%I)', x.privilege_type, a.attname),
           x.grantee, x.is_grantable, false
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL,
           LATERAL pg_catalog.aclexplode(a.attacl) x
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    -- An aggregate is named by its argument types: GRANT takes neither the
    -- ORDER BY of an ordered-set aggregate's identity arguments nor (*).
    SELECT p.oid, s.step, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'ROUTINE' ELSE 'FUNCTION' END,
           pg_catalog.format('%I(%s)', p.proname, CASE WHEN p.prokind = 'a'
               THEN (SELECT COALESCE(pg_catalog.string_agg(tenant.deparse_in($1::text, 'type', a.t, NULL, -1), ', ' ORDER BY a.n), '')
                       FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY AS a(t, n))
               ELSE tenant.deparse_in($1::text, 'identity arguments', p.oid) END),
           s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = p.proowner
                      FROM pg_catalog.aclexplode(p.proacl) x) s
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)) AND p.proacl IS NOT NULL
    UNION ALL
    SELECT t.oid, s.step, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.quote_ident(t.typname),
           s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_type t,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = t.typowner
                      FROM pg_catalog.aclexplode(t.typacl) x) s
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)) AND t.typacl IS NOT NULL AND t.typtype IN ('e', 'd', 'c', 'r')
), per_object AS (
    SELECT pg_catalog.min(acl.oid) AS oid, acl.step, acl.kind, acl.name, acl.grantee, acl.grantable,
           pg_catalog.string_agg(acl.privilege, ', ' ORDER BY acl.privilege) AS privileges
      FROM acl WHERE NOT acl.own
     GROUP BY acl.step, acl.kind, acl.name, acl.grantee, acl.grantable
)
-- One statement for all objects of a kind that grant the same privileges to the same role.
SELECT CASE WHEN o.grantee IS NULL
            THEN pg_catalog.jsonb_build_array(pg_catalog.format('REVOKE ALL ON %s %s FROM PUBLIC', o.kind,
                                                                pg_catalog.string_agg(o.name, ', ' ORDER BY o.name)))
            ELSE pg_catalog.jsonb_build_array(pg_catalog.format('GRANT %s ON %s %s TO ', o.privileges, o.kind,
                                                                pg_catalog.string_agg(o.name, ', ' ORDER BY o.name)),
                     CASE WHEN o.grantee = 0 THEN pg_catalog.to_jsonb('PUBLIC'::text)
                          WHEN o.grantee = $2::regrole THEN '{"slot": "role"}'::jsonb
                          ELSE pg_catalog.to_jsonb(pg_catalog.quote_ident(o.grantee::regrole::text)) END,
                     CASE WHEN o.grantable THEN ' WITH GRANT OPTION' ELSE '' END) END
  FROM per_object o
 GROUP BY o.step, o.kind, o.privileges, o.grantee, o.grantable
 ORDER BY o.step, pg_catalog.min(o.oid)
