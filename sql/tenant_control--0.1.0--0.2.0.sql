-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit

-- privilege boundary: catalog reads and migrations
-- The catalog queries of the integrity check and of the template generators
-- run with search_path pg_catalog, pg_temp; the deparsing functions are
-- applied through tenant.deparse_in with the schema being read alone on the
-- search_path. Migrations run as the role that stands for the tenant.
CREATE FUNCTION tenant.deparse_in(schema_name text, what text, object oid, expression text DEFAULT NULL, modifier integer DEFAULT NULL)
RETURNS text LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'deparse_in_wrapper';
COMMENT ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) IS
    'Internal: a deparsing function applied with one schema alone on the search_path (what: view, expression, constraint, index, trigger, type, collation, arguments, identity arguments, result, sql body).';

REVOKE ALL ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) TO tenant_control_admin;
CREATE OR REPLACE FUNCTION tenant.function_statement(function_oid oid, schema_name text)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_array(pg_catalog.format('CREATE %s %I(%s)%s LANGUAGE %I%s%s%s',
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
               tenant.deparse_in(schema_name, 'arguments', p.oid),
               CASE p.prokind WHEN 'p' THEN '' ELSE ' RETURNS ' || tenant.deparse_in(schema_name, 'result', p.oid) END,
               l.lanname,
               CASE WHEN p.prokind = 'p' THEN '' ELSE
                   CASE p.provolatile WHEN 'i' THEN ' IMMUTABLE' WHEN 's' THEN ' STABLE' ELSE ' VOLATILE' END
                   || CASE WHEN p.proisstrict THEN ' STRICT' ELSE '' END
                   || CASE p.proparallel WHEN 's' THEN ' PARALLEL SAFE' WHEN 'r' THEN ' PARALLEL RESTRICTED' ELSE '' END
                   || pg_catalog.format(' COST %s', p.procost)
                   || CASE WHEN p.proretset THEN pg_catalog.format(' ROWS %s', p.prorows) ELSE '' END END,
               CASE WHEN p.prosecdef THEN ' SECURITY DEFINER' ELSE '' END,
               CASE WHEN p.proleakproof THEN ' LEAKPROOF' ELSE '' END))
           || COALESCE((SELECT pg_catalog.jsonb_agg(part.part ORDER BY setting.n, part.n)
                          FROM pg_catalog.unnest(p.proconfig) WITH ORDINALITY AS setting(value, n),
                               pg_catalog.jsonb_array_elements(tenant.setting_parts(setting.value, schema_name))
                                   WITH ORDINALITY AS part(part, n)),
                       '[]'::jsonb)
           || pg_catalog.jsonb_build_array(CASE
                  WHEN p.prosqlbody IS NOT NULL THEN ' ' || tenant.deparse_in(schema_name, 'sql body', p.oid)
                  WHEN l.lanname = 'c' THEN pg_catalog.format(' AS %L, %L', p.probin, p.prosrc)
                  ELSE ' AS ' || pg_catalog.quote_literal(p.prosrc) END)
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
     WHERE p.oid = function_oid
$$;
COMMENT ON COLUMN tenant.migrations.script IS 'SQL run as the role that stands for the tenant (tenant_template_owner, <schema>_owner) with search_path <schema> (pg_catalog searched first); names in it are unqualified.';
