-- Integrity check, per tenant ($1 = schema).
-- What each role other than the owner holds on schema $1.
SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee)::text END AS grantee,
       pg_catalog.string_agg(x.privilege_type, ', ' ORDER BY x.privilege_type) AS privileges
  FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) x
 WHERE n.nspname = $1 AND x.grantee <> n.nspowner
 GROUP BY x.grantee ORDER BY 1
