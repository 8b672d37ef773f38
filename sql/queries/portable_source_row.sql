-- Run on the source of tenant.copy_institution_from (through dblink, with
-- search_path = pg_catalog, pg_temp): the institution's registry row, its live
-- one first, else the newest dropped one with its newest backup (a drill is
-- never a source), the bytes of the schema the copy reads (for the free-space
-- check here), and the source's template version. $1 is replaced by the
-- institution id as a literal. Every column is text: dblink reads it as such.
SELECT t.id::text, t.schema_name, t.status, t.version::text,
       b.id::text AS backup_id, b.source_version::text AS backup_version,
       (SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
         WHERE c.relnamespace = to_regnamespace(COALESCE(b.backup_schema, t.schema_name)) AND c.relkind IN ('r', 'm', 'S'))::text AS size,
       (SELECT COALESCE(max(m.version), 0) FROM tenant.migrations m)::text AS template_version,
       current_database()::text AS database
  FROM tenant.tenant_schemas t
  LEFT JOIN LATERAL (SELECT b.id, b.source_version, b.created_at, b.backup_schema FROM tenant.schema_backups b
                      WHERE t.status = 'DROPPED' AND b.schema_id = t.id AND b.reason <> 'DRILL'
                      ORDER BY b.created_at DESC LIMIT 1) b ON true
 WHERE t.institution_id = $1::uuid AND t.status <> 'SPARE'
 ORDER BY t.status = 'DROPPED', b.created_at DESC NULLS LAST, t.updated_at DESC
 LIMIT 1
