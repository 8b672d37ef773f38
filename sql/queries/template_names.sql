-- Everything outside schema $1 that the schema's objects name: the objects
-- they depend on (pg_depend) and the roles that own them, are granted on
-- them or are named by their policies (pg_shdepend), each with its current
-- identity. Generated statements name these by name, so they are only good
-- while every identity is still the same (see src/copy/statements.rs).
--
-- The schema's objects are those that depend on the schema, then what
-- belongs to them (auto and internal dependencies: columns' defaults,
-- constraints, indexes, triggers, policies, rules, row and array types),
-- whatever their kind. Pinned objects (built-ins) have no pg_depend rows.
-- Run with search_path = pg_catalog, pg_temp.
WITH RECURSIVE mine(classid, objid, depth) AS (
    SELECT d.classid, d.objid, 1
      FROM pg_depend d
     WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = to_regnamespace($1::text)
       AND d.refobjsubid = 0 AND d.deptype = 'n'
    UNION ALL
    SELECT d.classid, d.objid, m.depth + 1
      FROM mine m JOIN pg_depend d ON d.refclassid = m.classid AND d.refobjid = m.objid
     WHERE d.deptype IN ('a', 'i') AND m.depth < 4
), objects AS (
    SELECT DISTINCT classid, objid FROM mine
), outside AS (
    SELECT d.refclassid AS classid, d.refobjid AS objid, d.refobjsubid AS objsubid
      FROM objects o JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid
     WHERE NOT (d.refclassid = 'pg_namespace'::regclass AND d.refobjid = to_regnamespace($1::text))
       AND NOT EXISTS (SELECT 1 FROM objects x WHERE x.classid = d.refclassid AND x.objid = d.refobjid)
    UNION
    SELECT s.refclassid, s.refobjid, 0
      FROM objects o JOIN pg_shdepend s ON s.classid = o.classid AND s.objid = o.objid
     WHERE s.dbid = (SELECT b.oid FROM pg_database b WHERE b.datname = current_database())
       AND s.refclassid = 'pg_authid'::regclass
)
SELECT COALESCE(jsonb_agg(jsonb_build_array(u.classid, u.objid, u.objsubid,
                                            (pg_identify_object(u.classid, u.objid, u.objsubid)).identity)
                          ORDER BY u.classid, u.objid, u.objsubid), '[]'::jsonb)
  FROM outside u
