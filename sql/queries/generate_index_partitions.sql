-- Partitions' indexes attached to their parents' (created ON ONLY the
-- partitioned table: generate_indexes.sql). ATTACH PARTITION has usually
-- attached them already (it finds equal indexes): this is then a no-op.
-- Indexes have no pg_depend entry on the namespace: found through their tables.
SELECT pg_catalog.format('ALTER INDEX %I ATTACH PARTITION %I', p.relname, c.relname), 'attach:' || c.oid
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
  JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
 WHERE x.indrelid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
   -- An index behind a partition's key is attached with the key.
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = x.indrelid AND k.conindid = c.oid AND k.contype IN ('p', 'u', 'x'))
 ORDER BY c.oid
