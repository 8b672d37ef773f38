-- Partitions attached to their parents, and tables made OF their type
-- (partitions' indexes: generate_index_partitions.sql; inheritance: INHERITS
-- in generate_tables.sql).
-- Each table was created with all its columns, checks and keys
-- (generate_tables.sql): ATTACH PARTITION finds the partition's own indexes
-- and keys equal to the parent's and attaches them, names and all.
SELECT s.statement, s.unit FROM (
    SELECT c.oid, i.inhseqno AS step,
           pg_catalog.format('ALTER TABLE ONLY %I ATTACH PARTITION %I %s', p.relname, c.relname,
                             tenant.deparse_in($1::text, 'expression', c.oid, c.relpartbound::text)) AS statement,
           'attach:' || c.oid AS unit
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
      JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p') AND c.relispartition
    UNION ALL
    SELECT c.oid, 0, pg_catalog.format('ALTER TABLE %I OF %s', c.relname, tenant.deparse_in($1::text, 'type', c.reloftype, NULL, -1)),
           'attach:' || c.oid
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind = 'r' AND c.reloftype <> 0
) s ORDER BY s.oid, s.step
