-- Privileges the tenant's role revoked from itself on objects it owns
-- (template.rs, generator "owner privileges"). GRANTS gives the copy every
-- privilege but the owner's own, which a copy's owner holds by default: these
-- REVOKEs take away what the template's owner no longer holds. $2: the role
-- standing for the tenant's role; only objects it owns are concerned.
WITH owned AS (
    SELECT c.oid, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, pg_catalog.quote_ident(c.relname) AS name,
           c.relacl AS acl, pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner) AS initial
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
       AND c.relacl IS NOT NULL AND c.relowner = $2::regrole
    UNION ALL
    -- (An aggregate by its argument types, as in generate_grants.sql.)
    SELECT p.oid, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'ROUTINE' ELSE 'FUNCTION' END,
           pg_catalog.format('%I(%s)', p.proname, CASE WHEN p.prokind = 'a'
               THEN (SELECT COALESCE(pg_catalog.string_agg(tenant.deparse_in($1::text, 'type', a.t, NULL, -1), ', ' ORDER BY a.n), '')
                       FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY AS a(t, n))
               ELSE tenant.deparse_in($1::text, 'identity arguments', p.oid) END),
           p.proacl, pg_catalog.acldefault('f', p.proowner)
      FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)) AND p.proacl IS NOT NULL AND p.proowner = $2::regrole
    UNION ALL
    SELECT t.oid, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.quote_ident(t.typname),
           t.typacl, pg_catalog.acldefault('T', t.typowner)
      FROM pg_catalog.pg_type t
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid)) AND t.typacl IS NOT NULL
       AND t.typowner = $2::regrole AND t.typtype IN ('e', 'd', 'c', 'r')
), missing AS (
    SELECT o.oid, o.kind, o.name, x.privilege_type AS privilege
      FROM owned o, LATERAL pg_catalog.aclexplode(o.initial) x
     WHERE x.grantee = $2::regrole
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(o.acl) y
                        WHERE y.grantee = x.grantee AND y.privilege_type = x.privilege_type)
)
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('REVOKE %s ON %s %s FROM ', pg_catalog.string_agg(m.privilege, ', ' ORDER BY m.privilege),
                                                      m.kind, m.name),
                                    '{"slot": "role"}'::jsonb)
  FROM missing m GROUP BY m.oid, m.kind, m.name ORDER BY m.oid
