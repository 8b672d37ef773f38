-- Integrity check, per tenant ($1 = schema).
-- The tables of schema $1 and the bytes of its relations, as refresh_storage counts them.
SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p'))::integer AS tables,
       COALESCE(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint AS bytes
  FROM pg_catalog.pg_class c
 WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS o(oid)) AND c.relkind IN ('r', 'p', 'm', 'S')
