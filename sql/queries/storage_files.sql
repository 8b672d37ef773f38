-- The files a schema's storage lives in ($1 = schema), as pg_total_relation_size
-- counts it for each of its tables, partitioned tables, materialized views and
-- sequences: the relation itself, its indexes, its TOAST table and the TOAST
-- table's index. One row per relation: whether it is one of the schema's
-- tables, and its tablespace, file node (NULL: no files) and persistence.
-- Read from the catalogs alone: no relation is opened or locked
-- (src/registry/storage.rs sizes the files). Runs under any search_path (a
-- quota check runs in a tenant's): operators are qualified.
WITH rels AS MATERIALIZED (
    SELECT c.oid, c.relkind, c.reltoastrelid FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) ANY (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid))
       AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,m,S}'::"char"[])
), sized AS (
    SELECT r.oid, r.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::"char"[]) AS is_table FROM rels r
    UNION ALL
    SELECT i.indexrelid, false FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) r.oid
    UNION ALL
    SELECT r.reltoastrelid, false FROM rels r WHERE r.reltoastrelid OPERATOR(pg_catalog.<>) 0
    UNION ALL
    SELECT i.indexrelid, false FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) r.reltoastrelid
     WHERE r.reltoastrelid OPERATOR(pg_catalog.<>) 0
)
SELECT s.is_table, c.reltablespace AS spcnode, pg_catalog.pg_relation_filenode(c.oid) AS relnode,
       c.relpersistence::text AS persistence
  FROM sized s JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.oid
