-- What each statement of a copy must wait for, from pg_depend: the order in
-- which a schema's objects can be created, whatever order they were created
-- in (a function replaced later to read a later view, a composite type over
-- a table's row type, a CHECK calling a SQL-standard-body function, ...).
--
-- $2: whether keys are part of CREATE TABLE (as for the generators' $3).
-- Every object of schema $1 becomes a unit, named '<catalog>:<oid>'. Rows:
--   ('part', unit, parent): an object that has no statement of its own goes
--       with its parent's (a row type with its table, an inline constraint
--       with its table or domain, an array type with its element type);
--       src/copy/order.rs resolves a unit without a statement to its parent;
--   ('needs', unit, other): unit must be created after other;
--   ('stub', unit, other): unit is a function with a SQL-standard body, which
--       can be created first with a placeholder body (needing only the types
--       of its signature, other; '' for none) and replaced once what its body
--       reads exists: order.rs does so to break a cycle (a table whose
--       generated column calls a function that reads the table).
-- Read with search_path = pg_catalog, pg_temp and hash and merge joins off
-- (see structure::INDEX_PROBES): every lookup below starts from the schema's
-- own objects and probes a catalog index, so the query costs in proportion to
-- the schema, not to the database.
-- Row types and array types have no pg_depend entry on the namespace: they
-- are found through their relation or element type.
WITH own_type AS MATERIALIZED (
    SELECT t.oid, t.typtype, t.typrelid, t.typelem, t.typcategory, t.typarray FROM pg_catalog.pg_type t
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
), rel AS MATERIALIZED (
    SELECT c.oid, c.relkind, c.reltype FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
    UNION ALL
    SELECT c.oid, c.relkind, c.reltype FROM own_type t JOIN pg_catalog.pg_class c ON c.oid = t.typrelid WHERE t.typtype = 'c'
), typ AS MATERIALIZED (
    SELECT t.oid, t.typtype, t.typrelid, t.typelem, t.typcategory FROM own_type t
    UNION
    SELECT t.oid, t.typtype, t.typrelid, t.typelem, t.typcategory
      FROM (SELECT r.reltype AS oid FROM rel r WHERE r.reltype <> 0 AND r.relkind <> 'c'
            UNION ALL SELECT o.typarray FROM own_type o WHERE o.typarray <> 0) x
      JOIN pg_catalog.pg_type t ON t.oid = x.oid
    UNION
    SELECT a.oid, a.typtype, a.typrelid, a.typelem, a.typcategory
      FROM rel r JOIN pg_catalog.pg_type t ON t.oid = r.reltype JOIN pg_catalog.pg_type a ON a.oid = t.typarray
     WHERE r.relkind <> 'c'
), member AS MATERIALIZED (
    -- (catalog, oid, unit, parent)
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid AS objid, 'pg_proc:' || p.oid AS unit, NULL::text AS parent
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, r.oid, 'pg_class:' || r.oid,
           CASE WHEN r.relkind = 'c' THEN 'pg_type:' || r.reltype
                -- An identity sequence comes with its table.
                ELSE (SELECT 'pg_class:' || d.refobjid FROM pg_catalog.pg_depend d
                       WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = r.oid AND d.objsubid = 0
                         AND d.deptype = 'i' AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass LIMIT 1) END
      FROM rel r WHERE r.relkind NOT IN ('i', 'I')
    UNION ALL
    -- Indexes: a constraint's goes with the constraint, others with their table
    -- when they have no statement of their own.
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid, 'pg_class:' || i.indexrelid,
           COALESCE((SELECT 'pg_constraint:' || k.oid FROM pg_catalog.pg_constraint k
                      WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x') LIMIT 1),
                    'pg_class:' || i.indrelid)
      FROM rel r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, 'pg_type:' || t.oid,
           CASE WHEN t.typrelid <> 0 AND (SELECT r.relkind FROM rel r WHERE r.oid = t.typrelid) <> 'c' THEN 'pg_class:' || t.typrelid
                WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN 'pg_type:' || t.typelem
                WHEN t.typtype = 'm' THEN (SELECT 'pg_type:' || g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = t.oid) END
      FROM typ t
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 'pg_constraint:' || k.oid, 'pg_class:' || k.conrelid
      -- A partition's clone of its parent's foreign key comes with the parent's.
      FROM rel r JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid AND NOT (k.contype = 'f' AND k.conparentid <> 0)
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 'pg_constraint:' || k.oid, 'pg_type:' || k.contypid
      FROM typ t JOIN pg_catalog.pg_constraint k ON k.contypid = t.oid WHERE t.typtype = 'd'
    UNION ALL
    SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid, 'pg_attrdef:' || a.oid, 'pg_class:' || a.adrelid
      FROM rel r JOIN pg_catalog.pg_attrdef a ON a.adrelid = r.oid
    UNION ALL
    SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, o.oid, 'pg_collation:' || o.oid, NULL
      FROM pg_catalog.pg_collation o WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_collation') AS so(oid))
    UNION ALL
    SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, o.oid, 'pg_ts_dict:' || o.oid, NULL
      FROM pg_catalog.pg_ts_dict o WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_dict') AS so(oid))
    UNION ALL
    SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, o.oid, 'pg_ts_config:' || o.oid, NULL
      FROM pg_catalog.pg_ts_config o WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_config') AS so(oid))
    UNION ALL
    SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, o.oid, 'pg_statistic_ext:' || o.oid, NULL
      FROM pg_catalog.pg_statistic_ext o WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext') AS so(oid))
    UNION ALL
    SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, w.oid, 'pg_rewrite:' || w.oid, 'pg_class:' || w.ev_class
      FROM rel r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
    UNION ALL
    SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, g.oid, 'pg_trigger:' || g.oid, 'pg_class:' || g.tgrelid
      FROM rel r JOIN pg_catalog.pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal AND g.tgparentid = 0
    UNION ALL
    SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, p.oid, 'pg_policy:' || p.oid, 'pg_class:' || p.polrelid
      FROM rel r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
)
SELECT 'part' AS kind, m.unit, m.parent AS other FROM member m WHERE m.parent IS NOT NULL
UNION ALL
SELECT 'needs', m.unit, o.unit
  FROM member m
  JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid
  JOIN member o ON o.classid = d.refclassid AND o.objid = d.refobjid
 -- An internal dependency makes an object part of another (a row type of its
 -- table, a foreign key's triggers of the key): it orders nothing.
 -- A sequence OWNED BY a column is created before the table (its defaults
 -- call it): the OWNED BY statement has a unit of its own (below).
 -- A partition's index or key depends on its parent's ('P'), but must exist
 -- first: the parent's then finds and attaches it (below, reversed).
 WHERE d.deptype NOT IN ('i', 'P') AND NOT (d.deptype = 'a' AND m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND (SELECT r.relkind FROM rel r WHERE r.oid = m.objid) = 'S')
UNION ALL
SELECT 'needs', 'owned:' || d.objid, u.unit
  FROM rel r
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = r.oid AND d.deptype = 'a'
                             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass,
  LATERAL (VALUES ('pg_class:' || d.objid), ('pg_class:' || d.refobjid)) AS u(unit)
 WHERE r.relkind = 'S'
UNION ALL
SELECT 'needs', o.unit, m.unit
  FROM member m
  JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid AND d.deptype = 'P'
  JOIN member o ON o.classid = d.refclassid AND o.objid = d.refobjid
 -- Keys inside CREATE TABLE ($2) are matched by ATTACH PARTITION instead.
 WHERE (m.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND NOT $2::boolean)
    OR (m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index x JOIN pg_catalog.pg_constraint k ON k.conrelid = x.indrelid AND k.conindid = x.indexrelid
                         WHERE x.indexrelid = m.objid AND k.contype IN ('p', 'u', 'x')))
UNION ALL
-- Attaching a partition (a table's or an index's), or OF a type, needs both sides.
SELECT 'needs', 'attach:' || i.inhrelid, u.unit
  FROM rel r JOIN pg_catalog.pg_inherits i ON i.inhrelid = r.oid,
  LATERAL (VALUES ('pg_class:' || i.inhrelid), ('pg_class:' || i.inhparent)) AS u(unit)
UNION ALL
SELECT 'needs', 'attach:' || i.inhrelid, u.unit
  FROM rel r JOIN pg_catalog.pg_index x ON x.indrelid = r.oid JOIN pg_catalog.pg_inherits i ON i.inhrelid = x.indexrelid,
  LATERAL (VALUES ('pg_class:' || i.inhrelid), ('pg_class:' || i.inhparent)) AS u(unit)
UNION ALL
SELECT 'needs', 'attach:' || r.oid, 'pg_type:' || c.reloftype
  FROM rel r JOIN pg_catalog.pg_class c ON c.oid = r.oid WHERE c.reloftype <> 0
UNION ALL
-- A partitioned index is created once the partitions are attached: ATTACH
-- PARTITION would otherwise create the partition's index under a name of its own.
SELECT 'needs', 'pg_class:' || x.indexrelid, 'attach:' || i.inhrelid
  FROM rel r
  JOIN pg_catalog.pg_index x ON x.indrelid = r.oid
  JOIN pg_catalog.pg_inherits i ON i.inhparent = r.oid
 WHERE r.relkind = 'p'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = x.indrelid AND k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))
UNION ALL
-- Row-level security is switched on once its table exists.
SELECT 'needs', 'security:' || r.oid, 'pg_class:' || r.oid FROM rel r WHERE r.relkind IN ('r', 'p')
UNION ALL
SELECT 'stub', 'pg_proc:' || p.oid, COALESCE(m.unit, '')
  FROM pg_catalog.pg_proc p
  LEFT JOIN LATERAL pg_catalog.unnest(p.proargtypes::oid[] || COALESCE(p.proallargtypes, '{}'::oid[]) || p.prorettype) AS s(typ) ON true
  LEFT JOIN member m ON m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND m.objid = s.typ
 WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
   AND p.prokind = 'f' AND p.prosqlbody IS NOT NULL
