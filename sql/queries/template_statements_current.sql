-- The stored statements for the template's last recorded change, in one
-- statement (src/copy/statements.rs): the last change, its stored row if any,
-- and whether everything the row names outside the template still has the
-- identity recorded there (a dropped object has none). Run with the catalog
-- search_path (pg_identify_object's identities depend on it).
SELECT c.change, s.statements, s.names, s.tables, s.version,
       NOT EXISTS (
           SELECT 1 FROM pg_catalog.jsonb_array_elements(s.names) r
            WHERE (pg_catalog.pg_identify_object((r->>0)::oid, (r->>1)::oid, (r->>2)::int4)).identity
                  IS DISTINCT FROM r->>3) AS named
  FROM (SELECT pg_catalog.max(id) AS change FROM tenant.template_changes) c
  LEFT JOIN tenant.template_statements s ON s.change OPERATOR(pg_catalog.=) c.change
