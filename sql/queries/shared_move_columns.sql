-- The columns of relation $1 (a qualified, quoted name) in order: type as
-- format_type writes it (qualified outside pg_catalog), whether generated,
-- its place in the primary key, and whether its type (or element type)
-- belongs to an institution: lives in a tenant_control schema or is owned
-- by a tenant's role (such a type could carry a cast a tenant wrote).
SELECT a.attname::text AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attgenerated OPERATOR(pg_catalog.<>) '' AS generated,
       pg_catalog.array_position(k.conkey, a.attnum) AS key_position,
       EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                WHERE t.oid IN (a.atttypid, (SELECT e.typelem FROM pg_catalog.pg_type e WHERE e.oid OPERATOR(pg_catalog.=) a.atttypid))
                  AND (t.typnamespace IN (SELECT s.oid FROM pg_catalog.pg_namespace s
                                           WHERE s.nspname OPERATOR(pg_catalog.=) 'tenant_template'
                                              OR s.nspname::text IN (SELECT r.schema_name FROM tenant.tenant_schemas r))
                       OR pg_catalog.pg_get_userbyid(t.typowner)::text IN (SELECT r.owner_role FROM tenant.tenant_schemas r))) AS tenant_type
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_constraint k
    ON k.conrelid OPERATOR(pg_catalog.=) a.attrelid AND k.contype OPERATOR(pg_catalog.=) 'p'
 WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
 ORDER BY a.attnum
