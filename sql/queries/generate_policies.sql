SELECT pg_catalog.jsonb_build_array(pg_catalog.format('CREATE POLICY %I ON %I AS %s FOR %s TO %s', p.polname, c.relname,
           CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
           roles.named || CASE WHEN roles.named <> '' AND roles.tenant THEN ', ' ELSE '' END))
       || CASE WHEN roles.tenant THEN '[{"slot": "role"}]'::jsonb ELSE '[]'::jsonb END
       || pg_catalog.jsonb_build_array(
              CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || tenant.deparse_in($1::text, 'expression', p.polrelid, p.polqual::text) || ')' ELSE '' END
              || CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || tenant.deparse_in($1::text, 'expression', p.polrelid, p.polwithcheck::text) || ')' ELSE '' END),
       'pg_policy:' || p.oid
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid,
  LATERAL (SELECT COALESCE(pg_catalog.string_agg(CASE WHEN pr.oid = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
                               FILTER (WHERE pr.oid <> $2::regrole), '') AS named,
                  pg_catalog.bool_or(pr.oid = $2::regrole) AS tenant
             FROM pg_catalog.unnest(p.polroles) AS pr(oid) LEFT JOIN pg_catalog.pg_roles r ON r.oid = pr.oid) roles
 WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
 ORDER BY p.oid
