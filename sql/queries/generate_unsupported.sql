-- Objects of schema $1 a copy cannot reproduce faithfully: (what, hint), the
-- first by oid. Refused before anything is created.
--
-- Cost: this runs before every generated copy, in databases with thousands
-- of tenant schemas. Each catalog is entered from the schema's own objects
-- (tenant.schema_objects, an index probe of pg_depend by namespace) in
-- MATERIALIZED CTEs, and the deparsing calls sit in LATERAL subqueries fenced
-- by OFFSET 0: a planner that would hash pg_index or pg_trigger whole (as it
-- did once the database held about 2,000 schemas) cannot evaluate
-- pg_get_indexdef over every index of the database.
WITH rel AS MATERIALIZED (
    SELECT c.oid, c.relname, c.relkind, c.relnamespace FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid))
), fun AS MATERIALIZED (
    SELECT p.oid, p.proname, p.prokind, p.prosrc, p.prosqlbody IS NULL AS text_body FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid))
), typ AS MATERIALIZED (
    SELECT t.oid, t.typname, t.typtype, t.typcategory, t.typelem FROM pg_catalog.pg_type t
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS so(oid))
), found AS (
    SELECT 'operator class' AS kind, o.opcname::text AS name, o.oid, NULL::text AS hint FROM pg_catalog.pg_opclass o
     WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_opclass') AS so(oid))
    UNION ALL
    SELECT 'operator family', o.opfname, o.oid, NULL FROM pg_catalog.pg_opfamily o
     WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_opfamily') AS so(oid))
    UNION ALL
    SELECT 'conversion', c.conname, c.oid, NULL FROM pg_catalog.pg_conversion c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_conversion') AS so(oid))
    UNION ALL
    SELECT 'text search parser', p.prsname, p.oid, NULL FROM pg_catalog.pg_ts_parser p
     WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_parser') AS so(oid))
    UNION ALL
    SELECT 'text search template', t.tmplname, t.oid, NULL FROM pg_catalog.pg_ts_template t
     WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_template') AS so(oid))
    UNION ALL
    SELECT 'index whose definition cannot be rebuilt', x.relname, x.oid, NULL
      FROM rel r, LATERAL (
           SELECT c.relname, c.oid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = r.oid
              AND NOT pg_catalog.starts_with(pg_catalog.pg_get_indexdef(i.indexrelid),
                      pg_catalog.format('CREATE %sINDEX %I ON %s%I.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                                        c.relname, CASE WHEN c.relkind = 'I' THEN 'ONLY ' ELSE '' END, $1::text, r.relname))
           OFFSET 0) x
     WHERE r.relkind IN ('r', 'p', 'm')
    UNION ALL
    SELECT 'trigger whose definition cannot be rebuilt', x.tgname, x.oid, NULL
      FROM rel r, LATERAL (
           SELECT g.tgname, g.oid FROM pg_catalog.pg_trigger g
            WHERE g.tgrelid = r.oid AND NOT g.tgisinternal AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_')
              AND pg_catalog.strpos(pg_catalog.pg_get_triggerdef(g.oid), pg_catalog.format(' ON %I.%I ', $1::text, r.relname)) = 0
           OFFSET 0) x
     WHERE r.relkind IN ('r', 'p', 'v')
    UNION ALL
    SELECT 'rule whose definition cannot be rebuilt', x.rulename, x.oid, NULL
      FROM rel r, LATERAL (
           SELECT w.rulename, w.oid FROM pg_catalog.pg_rewrite w
            WHERE w.ev_class = r.oid AND w.rulename <> '_RETURN'
              AND pg_catalog.strpos(pg_catalog.pg_get_ruledef(w.oid), pg_catalog.format(' TO %I.%I', $1::text, r.relname)) = 0
           OFFSET 0) x
    UNION ALL
    SELECT 'foreign table', r.relname, r.oid, 'Create the foreign table in another schema: its data is not the tenant''s.'
      FROM rel r WHERE r.relkind = 'f'
    UNION ALL
    -- A partition or child outside the template would be left behind.
    SELECT 'table inherited from outside the template', r.relname, r.oid,
           'Keep both the parent and its partitions or children in the template.'
      FROM rel r WHERE r.relkind IN ('r', 'p')
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                    WHERE i.inhrelid = r.oid AND p.relnamespace <> r.relnamespace)
    UNION ALL
    SELECT 'window function', f.proname, f.oid,
           'Create it in another schema (public, or one of its own), and call it there by its qualified name.'
      FROM fun f WHERE f.prokind = 'w'
    UNION ALL
    -- A body kept as text can name the template however it quotes or spaces
    -- the name ("tenant_template" . t): the copy would read the template.
    SELECT 'function naming the template schema in its body', f.proname, f.oid,
           'Write unqualified names in the body and give the function SET search_path = ' || pg_catalog.quote_ident($1::text)
           || ', pg_temp: the copy then binds them to its own objects.'
      FROM fun f WHERE f.text_body
       AND f.prosrc OPERATOR(pg_catalog.~*) ('(^|[^a-z0-9_$])"?' || $1::text || '"?\s*\.')
    UNION ALL
    SELECT 'base type', t.typname, t.oid, 'Create the type in another schema (public, or one of its own) and use it from there.'
      FROM typ t WHERE t.typtype = 'b' AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
    UNION ALL
    -- A multirange comes with its range: the range is the object to name.
    SELECT 'range type with a canonical function', t.typname, t.oid,
           'Create the type in another schema (public, or one of its own) and use it from there.'
      FROM typ t JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid WHERE t.typtype = 'r' AND r.rngcanonical <> 0
    UNION ALL
    -- The function needs the table (its signature names the row type) and the
    -- table needs the function: only ALTER TABLE ... ADD COLUMN can build
    -- that, which would move the column to the end.
    SELECT pg_catalog.format('generated column %I of table', a.attname), r.relname, r.oid,
           'Its function takes or returns the table''s row type, so neither can be created first; make the function take and return plain values, or fill the column with a trigger.'
      FROM rel r
      JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = r.oid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = ad.adnum AND a.attgenerated = 's'
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
                                 AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
      JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid AND p.pronamespace = r.relnamespace
      JOIN pg_catalog.pg_class c ON c.oid = r.oid
     WHERE c.reltype OPERATOR(pg_catalog.=) ANY (p.proargtypes::oid[] || COALESCE(p.proallargtypes, '{}'::oid[]) || p.prorettype)
    UNION ALL
    SELECT 'operator', o.oprname, o.oid, 'Create it in another schema (public, or one of its own) and use it from there.'
      FROM pg_catalog.pg_operator o WHERE o.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_operator') AS so(oid))
)
SELECT pg_catalog.format('%s %I.%I', f.kind, $1::text, f.name) AS object, f.hint
  FROM found f ORDER BY f.oid LIMIT 1
