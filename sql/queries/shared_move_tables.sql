-- The shared tables a move between shared tables and schemas covers: every
-- table with the policy tenant.enable_shared_table_isolation puts on it,
-- with its institution column (the column the policy depends on, from
-- pg_depend) and the table of the template it maps to (same name, or
-- tenant.set_column_mapping's), with the explicit column mapping.
SELECT n.nspname::text AS shared_schema,
       c.relname::text AS shared_name,
       (SELECT a.attname::text
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_attribute a
            ON a.attrelid OPERATOR(pg_catalog.=) d.refobjid AND a.attnum OPERATOR(pg_catalog.=) d.refobjsubid
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_policy'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid
           AND d.refobjsubid OPERATOR(pg_catalog.>) 0
         ORDER BY a.attnum LIMIT 1) AS tenant_column,
       COALESCE(m.table_name, c.relname::text) AS table_name,
       COALESCE(m.columns, '{}'::pg_catalog.jsonb) AS columns
  FROM pg_catalog.pg_policy p
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  LEFT JOIN tenant.shared_table_mappings m
    ON m.shared_schema OPERATOR(pg_catalog.=) n.nspname::text AND m.shared_name OPERATOR(pg_catalog.=) c.relname::text
 WHERE p.polname OPERATOR(pg_catalog.=) 'tc_institution_isolation'
 ORDER BY 1, 2
