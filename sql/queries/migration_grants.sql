-- The privileges objects grant roles other than their owners: $1 the
-- pg_class oids (with the sequences their columns own, which follow their
-- table's owner), $2 the pg_proc oids, $3 the pg_type oids. One row per
-- privilege of an object or of a column, with the relation's and column's
-- names (the caller names routines and types: deparsing a routine's
-- arguments costs more than this query) and a description for messages.
-- Run with search_path = pg_catalog, pg_temp.
WITH classes AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
    UNION
    SELECT d.objid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
       AND d.deptype IN ('a', 'i') AND s.relkind OPERATOR(pg_catalog.=) 'S'
), acls AS (
    SELECT 'pg_class' AS catalog, c.oid, 0::pg_catalog.int2 AS attnum, c.relname::text AS name, ''::text AS column_name,
           c.relacl AS acl, c.relowner AS owner
      FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT oid FROM classes)
    UNION ALL
    SELECT 'pg_class', c.oid, a.attnum, c.relname::text, a.attname::text, a.attacl, c.relowner
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
     WHERE c.oid IN (SELECT oid FROM classes) AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND a.attacl IS NOT NULL
    UNION ALL
    SELECT 'pg_proc', p.oid, 0::pg_catalog.int2, '', '', p.proacl, p.proowner
      FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.oid[])
    UNION ALL
    SELECT 'pg_type', t.oid, 0::pg_catalog.int2, '', '', t.typacl, t.typowner
      FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.oid[])
)
SELECT o.catalog, o.oid, o.attnum, o.name, o.column_name,
       pg_catalog.pg_describe_object(pg_catalog.format('pg_catalog.%s', o.catalog)::pg_catalog.regclass, o.oid, o.attnum) AS described,
       CASE WHEN x.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee)::text END AS grantee,
       x.privilege_type AS privilege, x.is_grantable AS grantable
  FROM acls o, LATERAL pg_catalog.aclexplode(o.acl) x
 WHERE x.grantee OPERATOR(pg_catalog.<>) o.owner
