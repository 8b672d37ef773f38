-- Integrity check, per tenant.
-- Foreign keys to check in schema $1: its own, and (when it is at the
-- template's version, $3) the template's ($2) that it lacks, where the
-- tables and columns exist. The child table's files (tablespace, file node,
-- persistence) tell an empty table: rows need pages.
SELECT f.conname, f.child, f.child_cols, f.parent_schema, f.parent, f.parent_cols, f.match_full, f.convalidated, f.present,
       f.child_spcnode, f.child_relnode, f.child_persistence
  FROM (
    SELECT k.conname::text AS conname, c.relname::text AS child,
           ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY u(n, i)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i) AS child_cols,
           CASE WHEN pn.nspname = $2::text AND NOT f.present THEN $1::text ELSE pn.nspname::text END AS parent_schema,
           p.relname::text AS parent,
           ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY u(n, i)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i) AS parent_cols,
           k.confmatchtype = 'f' AS match_full, k.convalidated, f.present,
           c.reltablespace AS child_spcnode, pg_catalog.pg_relation_filenode(c.oid) AS child_relnode,
           c.relpersistence::text AS child_persistence
      FROM (SELECT k.oid, true AS present FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid),
                   LATERAL (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid = o.oid AND k.contype = 'f') k
            UNION ALL
            SELECT k.oid, false FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS o(oid),
                   LATERAL (SELECT k.oid, k.conname FROM pg_catalog.pg_constraint k WHERE $3 AND k.conrelid = o.oid AND k.contype = 'f') k,
                   pg_catalog.pg_class c
             WHERE c.oid = o.oid AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint t
                                WHERE t.conrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, c.relname))
                                  AND t.conname = k.conname)) f
      JOIN pg_catalog.pg_constraint k ON k.oid = f.oid
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
      JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace) f
 WHERE f.present OR NOT EXISTS (SELECT 1 FROM (SELECT $1::text, f.child, f.child_cols UNION ALL SELECT f.parent_schema, f.parent, f.parent_cols)
                                 AS side(nsp, rel, cols), pg_catalog.unnest(side.cols) AS col(name)
                    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', side.nsp, side.rel))
                                         AND a.attname = col.name AND NOT a.attisdropped))
 ORDER BY f.child, f.conname
