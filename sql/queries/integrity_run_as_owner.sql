-- Integrity check, per tenant ($1 = schema, $2 = its role).
-- Relations of schema $1 not owned by its tenant's role ($2) whose indexes,
-- statistics objects or materialized-view query call a function or operator
-- that role owns: ANALYZE (autovacuum's too), REINDEX and REFRESH run those
-- as the relation's owner, and the tenant can replace what it owns.
WITH rels AS MATERIALIZED (
    SELECT c.oid, c.relowner FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid)) AND c.relkind IN ('r', 'p', 'm')
       AND c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text)
), evaluated AS (
    SELECT r.oid AS rel, 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, i.indexrelid AS objid
      FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT r.oid, 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, x.oid
      FROM rels r JOIN pg_catalog.pg_statistic_ext x ON x.stxrelid = r.oid
    UNION ALL
    SELECT r.oid, 'pg_catalog.pg_rewrite'::pg_catalog.regclass, w.oid
      FROM rels r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
)
SELECT DISTINCT pg_catalog.pg_describe_object(e.classid, e.objid, 0) AS object,
       pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0) AS code,
       pg_catalog.pg_get_userbyid((SELECT r.relowner FROM rels r WHERE r.oid = e.rel))::text AS owner
  FROM evaluated e JOIN pg_catalog.pg_depend d ON d.classid = e.classid AND d.objid = e.objid
 WHERE (d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = d.refobjid)
            = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text))
    OR (d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
        AND (SELECT o.oprowner FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid)
            = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text))
 ORDER BY 1, 2
