-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit

-- privilege boundary: catalog reads and migrations
-- The catalog queries of the integrity check and of the template generators
-- run with search_path pg_catalog, pg_temp; the deparsing functions are
-- applied through tenant.deparse_in with the schema being read alone on the
-- search_path. Migrations run as the role that stands for the tenant.
CREATE FUNCTION tenant.deparse_in(schema_name text, what text, object oid, expression text DEFAULT NULL, modifier integer DEFAULT NULL)
RETURNS text LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'deparse_in_wrapper';
COMMENT ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) IS
    'Internal: a deparsing function applied with one schema alone on the search_path (what: view, expression, constraint, index, trigger, type, collation, arguments, identity arguments, result, sql body).';

REVOKE ALL ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) TO tenant_control_admin;
CREATE OR REPLACE FUNCTION tenant.function_statement(function_oid oid, schema_name text)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_array(pg_catalog.format('CREATE %s %I(%s)%s LANGUAGE %I%s%s%s',
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
               tenant.deparse_in(schema_name, 'arguments', p.oid),
               CASE p.prokind WHEN 'p' THEN '' ELSE ' RETURNS ' || tenant.deparse_in(schema_name, 'result', p.oid) END,
               l.lanname,
               CASE WHEN p.prokind = 'p' THEN '' ELSE
                   CASE p.provolatile WHEN 'i' THEN ' IMMUTABLE' WHEN 's' THEN ' STABLE' ELSE ' VOLATILE' END
                   || CASE WHEN p.proisstrict THEN ' STRICT' ELSE '' END
                   || CASE p.proparallel WHEN 's' THEN ' PARALLEL SAFE' WHEN 'r' THEN ' PARALLEL RESTRICTED' ELSE '' END
                   || pg_catalog.format(' COST %s', p.procost)
                   || CASE WHEN p.proretset THEN pg_catalog.format(' ROWS %s', p.prorows) ELSE '' END END,
               CASE WHEN p.prosecdef THEN ' SECURITY DEFINER' ELSE '' END,
               CASE WHEN p.proleakproof THEN ' LEAKPROOF' ELSE '' END))
           || COALESCE((SELECT pg_catalog.jsonb_agg(part.part ORDER BY setting.n, part.n)
                          FROM pg_catalog.unnest(p.proconfig) WITH ORDINALITY AS setting(value, n),
                               pg_catalog.jsonb_array_elements(tenant.setting_parts(setting.value, schema_name))
                                   WITH ORDINALITY AS part(part, n)),
                       '[]'::jsonb)
           || pg_catalog.jsonb_build_array(CASE
                  WHEN p.prosqlbody IS NOT NULL THEN ' ' || tenant.deparse_in(schema_name, 'sql body', p.oid)
                  WHEN l.lanname = 'c' THEN pg_catalog.format(' AS %L, %L', p.probin, p.prosrc)
                  ELSE ' AS ' || pg_catalog.quote_literal(p.prosrc) END)
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
     WHERE p.oid = function_oid
$$;
COMMENT ON COLUMN tenant.migrations.script IS 'SQL run as the role that stands for the tenant (tenant_template_owner, <schema>_owner) with search_path <schema> (pg_catalog searched first); names in it are unqualified.';
-- privilege boundary: quotas, context, extension
-- The setting tenant_control.internal_ddl is gone: the extension marks its own
-- work in backend memory and SQL reads the mark through a C function.
CREATE FUNCTION tenant.internal_work_active() RETURNS bool
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'internal_work_active_sql_wrapper';
CREATE FUNCTION tenant.quota_check_ddl(schema_name text) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'quota_check_ddl_wrapper';
CREATE OR REPLACE FUNCTION tenant.note_template_change() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_EVENT = 'sql_drop' THEN
        IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                        WHERE o.schema_name = 'tenant_template'
                           OR (o.object_type = 'schema' AND o.object_identity = 'tenant_template')) THEN
            RETURN;
        END IF;
    ELSIF TG_TAG IN ('GRANT', 'REVOKE') THEN
        IF tenant.template_privileges() = (SELECT c.privileges FROM tenant.template_changes c ORDER BY c.id DESC LIMIT 1) THEN
            RETURN;
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
                       WHERE c.schema_name = 'tenant_template'
                          OR (c.object_type = 'schema' AND c.object_identity = 'tenant_template')
                          OR c.object_type = 'extension') THEN
        RETURN;
    END IF;
    -- Asked last: most DDL is not about the template at all.
    IF tenant.internal_work_active() THEN
        RETURN;
    END IF;
    INSERT INTO tenant.template_changes (command_tag, privileges) VALUES (TG_TAG, tenant.template_privileges());
END
$$;
-- Triggers, policies and rules have no schema of their own: pg_event_trigger_ddl_commands()
-- gives them none, and their table's schema is the one that counts.
CREATE FUNCTION tenant.table_schema_of(classid oid, objid oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname::text FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
     WHERE r.oid = CASE classid
                   WHEN 'pg_catalog.pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = objid)
                   WHEN 'pg_catalog.pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = objid)
                   WHEN 'pg_catalog.pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite w WHERE w.oid = objid)
                   END
$$;
COMMENT ON FUNCTION tenant.table_schema_of(oid, oid) IS
    'Internal: the schema of the table a trigger, policy or rule belongs to (NULL for other objects).';

CREATE OR REPLACE FUNCTION tenant.quota_ddl_guard() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    watched text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.quota_state <> 'OK' AND t.status <> 'DROPPED')
       OR tenant.internal_work_active() THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        -- The trigger is gone from pg_trigger here: its name is all that is left.
        SELECT o.object_identity INTO watched FROM pg_event_trigger_dropped_objects() o
         WHERE o.object_type = 'trigger' AND o.original AND o.object_identity LIKE 'tc\_quota\_guard on %';
        IF watched IS NOT NULL THEN
            RAISE EXCEPTION 'the storage quota guard "%" cannot be dropped', watched
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'It goes away by itself once the tenant is below its warning level (tenant.refresh_storage).';
        END IF;
        RETURN;
    END IF;
    FOR watched IN
        SELECT DISTINCT t.schema_name FROM pg_event_trigger_ddl_commands() c
          JOIN tenant.tenant_schemas t
            ON t.schema_name = COALESCE(c.schema_name, tenant.table_schema_of(c.classid, c.objid))
         WHERE t.quota_state <> 'OK' AND t.status <> 'DROPPED'
    LOOP
        IF TG_TAG = 'ALTER TRIGGER' OR EXISTS (
               SELECT 1 FROM pg_trigger g
                WHERE g.tgfoid = 'tenant.quota_guard()'::regprocedure AND g.tgenabled IN ('D', 'R')
                  AND g.tgrelid IN (SELECT tenant.schema_objects(watched, 'pg_catalog.pg_class'))) THEN
            RAISE EXCEPTION 'the storage quota guard of schema "%" cannot be disabled or renamed', watched
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'ALTER TRIGGER, DISABLE TRIGGER and ENABLE REPLICA TRIGGER are refused while the tenant is near or over its quota.';
        END IF;
        PERFORM tenant.quota_check_ddl(watched);
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant.quota_check_ddl(text) IS
    'Internal: tenant.quota_check_growth for DDL; DDL run by a superuser (pg_restore) is not refused.';
COMMENT ON FUNCTION tenant.internal_work_active() IS
    'Internal: whether the extension''s own work on tenant schemas is under way in this backend (a mark in backend memory, not a setting; never inside a security-restricted operation).';

-- Names starting with tc_ belong to the extension in the template and in
-- every tenant schema (its quota guards, its policies): a tenant that could
-- name a trigger tc_quota_guard could pass it off as a guard. Relations,
-- types, functions and every other schema object are checked, and so are the
-- sub-objects of a relation the command touched (triggers, policies, rules,
-- constraints, indexes). The extension's own work, and a guard trigger
-- (which calls tenant.quota_guard(), which no tenant may execute), pass.
CREATE FUNCTION tenant.object_names(classid oid, objid oid) RETURNS TABLE (kind text, name text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.type, a.object_names[pg_catalog.array_upper(a.object_names, 1)]
      FROM pg_catalog.pg_identify_object_as_address(classid, objid, 0) a
     -- Types are named below without their schema; a column default is named after its column.
     WHERE classid <> ALL (ARRAY['pg_catalog.pg_type'::regclass, 'pg_catalog.pg_attrdef'::regclass])
       AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE classid = 'pg_catalog.pg_trigger'::regclass AND g.oid = objid
                                                    AND g.tgfoid = 'tenant.quota_guard()'::regprocedure)
    UNION ALL
    SELECT 'type', t.typname::text FROM pg_type t WHERE classid = 'pg_catalog.pg_type'::regclass AND t.oid = objid
    UNION ALL
    SELECT 'trigger', g.tgname::text FROM pg_trigger g
     WHERE classid = 'pg_catalog.pg_class'::regclass AND g.tgrelid = objid
       AND NOT g.tgisinternal AND g.tgfoid <> 'tenant.quota_guard()'::regprocedure
    UNION ALL
    SELECT 'policy', p.polname::text FROM pg_policy p WHERE classid = 'pg_catalog.pg_class'::regclass AND p.polrelid = objid
    UNION ALL
    SELECT 'rule', r.rulename::text FROM pg_rewrite r WHERE classid = 'pg_catalog.pg_class'::regclass AND r.ev_class = objid
    UNION ALL
    SELECT 'constraint', k.conname::text FROM pg_constraint k
     WHERE (classid = 'pg_catalog.pg_class'::regclass AND k.conrelid = objid)
        OR (classid = 'pg_catalog.pg_type'::regclass AND k.contypid = objid)
    UNION ALL
    SELECT 'index', i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE classid = 'pg_catalog.pg_class'::regclass AND x.indrelid = objid
$$;
COMMENT ON FUNCTION tenant.object_names(oid, oid) IS
    'Internal: the name of a schema object and, for a relation, the names of its triggers (guards excepted), policies, rules, constraints and indexes.';

CREATE FUNCTION tenant.reserved_names_guard() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    touched record;
    taken record;
BEGIN
    -- First: the extension's own DDL (a whole template copy) skips the catalog look-ups.
    IF tenant.internal_work_active() THEN
        RETURN;
    END IF;
    FOR touched IN
        SELECT o.classid, o.objid, o.schema_name FROM (
            SELECT c.classid, c.objid, COALESCE(c.schema_name, tenant.table_schema_of(c.classid, c.objid)) AS schema_name
              FROM pg_event_trigger_ddl_commands() c
             WHERE c.objid <> 0) o
         WHERE o.schema_name = 'tenant_template'
            OR o.schema_name IN (SELECT t.schema_name FROM tenant.tenant_schemas t WHERE t.status <> 'DROPPED')
    LOOP
        SELECT n.kind, n.name INTO taken FROM tenant.object_names(touched.classid, touched.objid) n
         WHERE starts_with(n.name, 'tc_') LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '% name "%" in schema "%" is reserved', taken.kind, taken.name, touched.schema_name
                USING ERRCODE = 'reserved_name',
                      DETAIL = 'Names starting with tc_ belong to tenant_control in the template and in tenant schemas.',
                      HINT = 'Choose a name that does not start with tc_.';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant.reserved_names_guard() IS
    'Internal: event trigger refusing (42939) names starting with tc_ in the template and in tenant schemas, except in the extension''s own work.';
CREATE EVENT TRIGGER tenant_control_reserved_names ON ddl_command_end EXECUTE FUNCTION tenant.reserved_names_guard();
ALTER EVENT TRIGGER tenant_control_reserved_names ENABLE ALWAYS;

-- DROP EXTENSION tenant_control (or DROP SCHEMA tenant, which takes it along)
-- would discard the registry, the operation log and the backup catalogue
-- while the tenants' schemas, roles and backups stayed behind, unmanaged. A C
-- function: only the command's parse tree says which extension is dropped.
CREATE FUNCTION tenant.refuse_drop_with_tenants() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'tc_refuse_drop_with_tenants';
COMMENT ON FUNCTION tenant.refuse_drop_with_tenants() IS
    'Internal: event trigger refusing (2BP01) to drop the extension while institutions or backups exist, unless tenant_control.allow_drop_with_tenants is on.';
CREATE EVENT TRIGGER tenant_control_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA') EXECUTE FUNCTION tenant.refuse_drop_with_tenants();
ALTER EVENT TRIGGER tenant_control_drop_extension ENABLE ALWAYS;
REVOKE ALL ON FUNCTION tenant.internal_work_active(), tenant.quota_check_ddl(text), tenant.object_names(oid, oid),
    tenant.table_schema_of(oid, oid),
    tenant.reserved_names_guard(), tenant.refuse_drop_with_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.internal_work_active(), tenant.quota_check_ddl(text), tenant.object_names(oid, oid),
    tenant.table_schema_of(oid, oid),
    tenant.reserved_names_guard(), tenant.refuse_drop_with_tenants() TO tenant_control_admin;
-- tenant.current_institution() for a tenant's role inside a tenant context.
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
-- privilege boundary: data movement
--
-- Backups and restores load rows as the tenant's role, restore_table changes
-- rows as the tenant's role, rows are hashed through record_out, and a drop
-- hands the tenant's objects to a fresh backup role: all in the library, no
-- SQL object changed for them. Hashes are those 0.1.0 computed (record_out
-- gives the text r::text gave), so backups sealed by 0.1.0 still verify.

-- cleanup_backups refuses a zero or negative max_age (22023) instead of
-- removing every backup.
CREATE OR REPLACE PROCEDURE tenant.cleanup_backups(keep_last integer DEFAULT NULL, max_age interval DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    keep integer := COALESCE(keep_last,
                             NULLIF(pg_catalog.current_setting('tenant_control.backup_keep_last', true), '')::integer, 0);
    age interval := COALESCE(max_age,
                             NULLIF(pg_catalog.current_setting('tenant_control.backup_max_age', true), '')::interval);
    doomed record;
    outcome record;
    removed integer := 0;
    failed integer := 0;
BEGIN
    IF keep OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'keep_last must be zero or more, not %', keep USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A negative age would put the cut-off in the future: every backup would go.
    IF age OPERATOR(pg_catalog.<=) '0'::interval THEN
        RAISE EXCEPTION 'max_age must be a positive interval, not %', age USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass max_age => NULL (or leave tenant_control.backup_max_age empty) for no age rule.';
    END IF;
    IF keep OPERATOR(pg_catalog.=) 0 AND age IS NULL THEN
        RAISE NOTICE 'no retention rule (keep_last, max_age, tenant_control.backup_keep_last, tenant_control.backup_max_age): nothing removed';
        RETURN;
    END IF;
    FOR doomed IN
        SELECT r.backup_id, r.backup_schema FROM (
            SELECT b.backup_id, b.backup_schema, b.created_at,
                   pg_catalog.row_number() OVER (PARTITION BY COALESCE(b.institution_id, b.schema_id)
                                                 ORDER BY b.created_at DESC, b.backup_id) AS newest
              FROM tenant.backups b) r
         WHERE (keep OPERATOR(pg_catalog.=) 0 OR r.newest OPERATOR(pg_catalog.>) keep)
           AND (age IS NULL OR r.created_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) age))
         ORDER BY r.created_at
    LOOP
        SELECT * INTO outcome FROM tenant.remove_backup(doomed.backup_id, 'retention');
        IF outcome.status = 'SUCCESS' THEN
            removed := removed OPERATOR(pg_catalog.+) 1;
        ELSE
            failed := failed OPERATOR(pg_catalog.+) 1;
        END IF;
        RAISE NOTICE '%: %', outcome.status, outcome.message;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'retention removed % backup(s), % failed (keep_last %, max_age %)', removed, failed, keep, age;
END
$$;

-- A tenant dropped by 0.1.0 left its role, renamed after the backup, with its
-- members: they could DROP OWNED the backup's tables. A backup's role has no
-- members from 0.2.0 on.
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT DISTINCT r.rolname::text AS role, u.rolname::text AS member
               FROM tenant.schema_backups b
               JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) b.backup_role
               JOIN pg_catalog.pg_auth_members a ON a.roleid OPERATOR(pg_catalog.=) r.oid
               JOIN pg_catalog.pg_roles u ON u.oid OPERATOR(pg_catalog.=) a.member
              WHERE b.reason OPERATOR(pg_catalog.=) 'DROP'
    LOOP
        EXECUTE pg_catalog.format('REVOKE %I FROM %I', m.role, m.member);
    END LOOP;
END
$$;
-- data lifecycle (issue 16)
-- Retention with archive: a new operation type, the rules and archives
-- tables, three Rust functions and the apply_retention procedure.
ALTER TABLE tenant.schema_operations DROP CONSTRAINT schema_operations_operation_type_check;
ALTER TABLE tenant.schema_operations ADD CONSTRAINT schema_operations_operation_type_check
    CHECK (operation_type IN ('CREATE', 'DROP', 'BACKUP', 'RESTORE', 'OPTIMIZE', 'MIGRATE',
                              'INTEGRITY_CHECK', 'QUOTA_CHECK', 'QUOTA_SET', 'STATUS_CHANGE',
                              'USAGE_SNAPSHOT', 'RETENTION'));
COMMENT ON COLUMN tenant.schema_operations.operation_type IS 'CREATE, DROP, BACKUP, RESTORE, OPTIMIZE, MIGRATE, INTEGRITY_CHECK, QUOTA_CHECK, QUOTA_SET, STATUS_CHANGE, USAGE_SNAPSHOT or RETENTION.';

CREATE FUNCTION tenant."set_retention"(
	"table_name" TEXT, /* Option < & str > */
	"date_column" TEXT, /* Option < & str > */
	"keep" interval, /* Option < Interval > */
	"archive" bool /* Option < bool > */
) RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_retention_wrapper';

CREATE FUNCTION tenant."retention_batch"(
	"schema_id" uuid, /* Option < pgrx :: Uuid > */
	"table_name" TEXT, /* Option < & str > */
	"started_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"batch_size" INT /* Option < i32 > */
) RETURNS TABLE (
	"removed" bigint,  /* i64 */
	"archive_table" TEXT,  /* Option < String > */
	"cutoff" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"skipped" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'retention_batch_wrapper';

CREATE FUNCTION tenant."note_retention"(
	"schema_id" uuid, /* Option < pgrx :: Uuid > */
	"table_name" TEXT, /* Option < & str > */
	"details" jsonb, /* Option < pgrx :: JsonB > */
	"sqlstate" TEXT, /* Option < & str > */
	"message" TEXT /* Option < & str > */
) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'note_retention_wrapper';

-- Data lifecycle (issue 16): retention with archive.
-- The rules, one per template table; an institution's config may override
-- keep and archive per table (config -> 'retention' -> '<table>').
CREATE TABLE tenant.retention_rules (
    table_name      text        NOT NULL PRIMARY KEY,
    date_column     text        NOT NULL,
    keep            interval    NOT NULL CHECK (keep > interval '0'),
    archive         boolean     NOT NULL,
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by          text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE tenant.retention_rules IS
    'Retention rules per template table (tenant.set_retention), applied to every institution by tenant.apply_retention.';
COMMENT ON COLUMN tenant.retention_rules.table_name IS 'Table of the template (tenant_template) the rule applies to, in every institution.';
COMMENT ON COLUMN tenant.retention_rules.date_column IS 'Column (date, timestamp or timestamptz) that dates a row; rows with NULL are kept.';
COMMENT ON COLUMN tenant.retention_rules.keep IS 'How long rows are kept: rows dated before (start of the run - keep) are removed.';
COMMENT ON COLUMN tenant.retention_rules.archive IS 'Whether removed rows are first copied into <table>_archive in the institution''s schema.';
COMMENT ON COLUMN tenant.retention_rules.set_at IS 'When the rule was last set.';
COMMENT ON COLUMN tenant.retention_rules.set_by IS 'session_user that last set it.';

-- The archive tables the extension created in institution schemas: the
-- integrity check consults it (they are not in the template, and are no drift).
CREATE TABLE tenant.retention_archives (
    schema_id       uuid        NOT NULL REFERENCES tenant.tenant_schemas (id),
    table_name      text        NOT NULL,
    archive_table   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (schema_id, archive_table)
);
COMMENT ON TABLE tenant.retention_archives IS
    'Archive tables (<table>_archive) created by tenant.apply_retention in institution schemas; not drift for the integrity check.';
COMMENT ON COLUMN tenant.retention_archives.schema_id IS 'Registry id of the institution schema that holds the archive.';
COMMENT ON COLUMN tenant.retention_archives.table_name IS 'The table whose old rows the archive receives.';
COMMENT ON COLUMN tenant.retention_archives.archive_table IS 'Name of the archive table in the institution schema.';
COMMENT ON COLUMN tenant.retention_archives.created_at IS 'When the extension created it.';
SELECT pg_catalog.pg_extension_config_dump('tenant.retention_rules', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.retention_archives', '');

-- Every institution and rule, one transaction per batch: a batch failing
-- (a lock not granted in time, a tenant trigger raising) is logged, the
-- institution's other tables and the other institutions go on, and the
-- procedure raises at the end so that pg_cron shows the failure.
CREATE PROCEDURE tenant.apply_retention(batch_size integer DEFAULT 10000)
LANGUAGE plpgsql
AS $$
DECLARE
    started timestamptz := pg_catalog.now();
    pending record;
    step_removed bigint;
    step_archive text;
    step_cutoff timestamptz;
    step_skipped text;
    removed bigint;
    batches integer;
    failed_state text;
    failed_message text;
    last_state text;
    last_message text;
    failed integer := 0;
    done integer := 0;
BEGIN
    IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR pending IN
        SELECT t.id, t.schema_name, r.table_name FROM tenant.tenant_schemas t CROSS JOIN tenant.retention_rules r
         WHERE t.status OPERATOR(pg_catalog.<>) ALL (ARRAY['DROPPED', 'SPARE'])
         ORDER BY t.schema_name, r.table_name
    LOOP
        removed := 0;
        batches := 0;
        step_archive := NULL;
        step_cutoff := NULL;
        step_skipped := NULL;
        failed_state := NULL;
        failed_message := NULL;
        LOOP
            BEGIN
                SELECT b.removed, b.archive_table, b.cutoff, b.skipped
                  INTO STRICT step_removed, step_archive, step_cutoff, step_skipped
                  FROM tenant.retention_batch(pending.id, pending.table_name, started, batch_size) b;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
            END;
            EXIT WHEN failed_state IS NOT NULL OR step_skipped IS NOT NULL;
            removed := removed OPERATOR(pg_catalog.+) step_removed;
            batches := batches OPERATOR(pg_catalog.+) 1;
            COMMIT;
            EXIT WHEN step_removed OPERATOR(pg_catalog.<) batch_size;
        END LOOP;
        PERFORM tenant.note_retention(pending.id, pending.table_name,
            pg_catalog.jsonb_build_object('removed', removed, 'archived', CASE WHEN step_archive IS NULL THEN 0 ELSE removed END,
                                          'archive_table', step_archive, 'batches', batches,
                                          'cutoff', step_cutoff, 'skipped', step_skipped),
            failed_state, failed_message);
        COMMIT;
        IF failed_state IS NOT NULL THEN
            failed := failed OPERATOR(pg_catalog.+) 1;
            last_state := failed_state;
            last_message := failed_message;
            RAISE NOTICE '%.%: failed after % row(s): %', pending.schema_name, pending.table_name, removed, failed_message;
        ELSIF step_skipped IS NOT NULL THEN
            RAISE NOTICE '%.%: skipped, %', pending.schema_name, pending.table_name, step_skipped;
        ELSE
            done := done OPERATOR(pg_catalog.+) 1;
            RAISE NOTICE '%.%: % row(s) older than % %', pending.schema_name, pending.table_name, removed, step_cutoff,
                CASE WHEN step_archive IS NULL THEN 'deleted' ELSE 'moved to ' OPERATOR(pg_catalog.||) step_archive END;
        END IF;
    END LOOP;
    IF failed OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'retention failed for % institution table(s), the last with: %', failed, last_message
            USING ERRCODE = last_state, HINT = 'See the FAILED RETENTION rows in tenant.schema_operations.';
    END IF;
    RAISE NOTICE 'retention applied to % institution table(s)', done;
END
$$;
COMMENT ON PROCEDURE tenant.apply_retention(integer) IS
    'Apply the retention rules to every institution: old rows archived to <table>_archive and/or deleted, in batches of batch_size rows, one commit per batch; one RETENTION log row per institution and table. Safe from pg_cron.';
COMMENT ON FUNCTION tenant.set_retention(text, text, interval, boolean) IS
    'Set the retention rule of a template table: rows whose date_column is older than keep are removed by tenant.apply_retention (archive => true: moved to <table>_archive in the institution''s schema); keep NULL removes the rule.';
COMMENT ON FUNCTION tenant.retention_batch(uuid, text, timestamptz, integer) IS
    'Internal: one batch of tenant.apply_retention for one institution and table, run as the tenant''s role.';
COMMENT ON FUNCTION tenant.note_retention(uuid, text, jsonb, text, text) IS
    'Internal: the RETENTION operation-log row of one institution and table, written by tenant.apply_retention.';
REVOKE ALL ON PROCEDURE tenant.apply_retention(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.set_retention(text, text, interval, boolean), tenant.retention_batch(uuid, text, timestamptz, integer),
    tenant.note_retention(uuid, text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.apply_retention(integer) TO tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.set_retention(text, text, interval, boolean), tenant.retention_batch(uuid, text, timestamptz, integer),
    tenant.note_retention(uuid, text, jsonb, text, text) TO tenant_control_admin;
REVOKE ALL ON tenant.retention_rules, tenant.retention_archives FROM PUBLIC;
GRANT SELECT ON tenant.retention_rules, tenant.retention_archives TO tenant_control_admin;

-- Data lifecycle (issue 16): the usage and cost report.
-- Storage is the time integral of the usage snapshots' sizes: each snapshot's
-- size holds until the tenant's next snapshot (the last one until the end of
-- the period, now, or the tenant's drop, whichever comes first), the
-- snapshot before the period carrying into it. Rows written are those the
-- snapshots taken in the period recorded. Queries and execution time come from
-- pg_stat_statements by the tenant's role, which counts since its last reset.
CREATE FUNCTION tenant.usage_report(period tstzrange, rates jsonb DEFAULT '{}')
RETURNS TABLE (schema_id uuid, institution_id uuid, schema_name text, status text,
               storage_gb_months numeric, rows_written bigint, queries bigint, execution_ms double precision,
               queries_since timestamptz, cost jsonb, total_cost numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    home name;
    bad text;
    statements text := 'SELECT NULL::oid AS userid, NULL::bigint AS calls, NULL::float8 AS ms WHERE false';
    since text := 'NULL::timestamptz';
BEGIN
    IF period IS NULL OR isempty(period) OR lower_inf(period) OR upper_inf(period) THEN
        RAISE EXCEPTION 'period must be a bounded, non-empty range of timestamps, not %', COALESCE(period::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For a month: tstzrange(''2026-11-01'', ''2026-12-01'').';
    END IF;
    IF rates IS NULL OR jsonb_typeof(rates) <> 'object' THEN
        RAISE EXCEPTION 'rates must be a json object such as {"storage_gb_month": 0.25}, not %', COALESCE(rates::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r.key INTO bad FROM jsonb_each(rates) r
     WHERE r.key NOT IN ('storage_gb_month', 'thousand_queries', 'execution_hour', 'million_rows_written')
        OR jsonb_typeof(r.value) <> 'number' OR (CASE WHEN jsonb_typeof(r.value) = 'number' THEN r.value::numeric < 0 END)
     ORDER BY r.key LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'invalid rate "%": %', bad, rates -> bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Rates are numbers of zero or more for storage_gb_month, thousand_queries, execution_hour and million_rows_written.';
    END IF;
    SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_stat_statements';
    IF home IS NOT NULL THEN
        statements := format(
            'SELECT s.userid, sum(s.calls)::bigint AS calls, sum(s.total_exec_time) AS ms FROM %I.pg_stat_statements s
              WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
              GROUP BY s.userid', home);
        since := format('(SELECT i.stats_reset FROM %I.pg_stat_statements_info i)', home);
    END IF;
    RETURN QUERY EXECUTE format(
        $query$
        WITH bounds AS (SELECT pg_catalog.lower($1) AS from_at, pg_catalog.upper($1) AS to_at),
        tenants AS (
            SELECT t.id, t.institution_id, t.schema_name, t.status, t.owner_role,
                   LEAST(b.to_at, pg_catalog.now(), CASE WHEN t.status = 'DROPPED' THEN t.updated_at END) AS end_at
              FROM tenant.tenant_schemas t, bounds b
             WHERE t.status <> 'SPARE' AND NOT (t.status = 'DROPPED' AND t.updated_at < b.from_at)
               AND (t.created_at < b.to_at
                    OR EXISTS (SELECT 1 FROM tenant.usage_snapshots u WHERE u.schema_id = t.id AND u.taken_at < b.to_at))),
        segments AS (
            SELECT u.schema_id, u.storage_bytes,
                   GREATEST(u.taken_at, b.from_at) AS seg_start,
                   LEAST(pg_catalog.lead(u.taken_at) OVER w, t.end_at) AS seg_end
              FROM tenant.usage_snapshots u JOIN tenants t ON t.id = u.schema_id, bounds b
             WHERE u.taken_at < b.to_at
               AND u.taken_at >= COALESCE((SELECT pg_catalog.max(p.taken_at) FROM tenant.usage_snapshots p
                                            WHERE p.schema_id = u.schema_id AND p.taken_at <= b.from_at), '-infinity')
            WINDOW w AS (PARTITION BY u.schema_id ORDER BY u.taken_at, u.id)),
        storage AS (
            SELECT s.schema_id,
                   pg_catalog.sum(s.storage_bytes::numeric
                                  * GREATEST(0, pg_catalog.date_part('epoch', s.seg_end - s.seg_start))::numeric) AS byte_seconds
              FROM segments s GROUP BY s.schema_id),
        written AS (
            SELECT u.schema_id, pg_catalog.sum(u.inserted + u.updated + u.deleted)::bigint AS rows
              FROM tenant.usage_snapshots u, bounds b
             WHERE u.taken_at >= b.from_at AND u.taken_at < b.to_at GROUP BY u.schema_id),
        statements AS (%s),
        measured AS (
            SELECT t.id, t.institution_id, t.schema_name, t.status,
                   pg_catalog.round(COALESCE(s.byte_seconds, 0) / 1073741824 / 2592000, 6) AS gb_months,
                   COALESCE(w.rows, 0) AS rows, q.calls, q.ms
              FROM tenants t
              LEFT JOIN storage s ON s.schema_id = t.id
              LEFT JOIN written w ON w.schema_id = t.id
              LEFT JOIN pg_catalog.pg_roles o ON o.rolname = t.owner_role
              LEFT JOIN statements q ON q.userid = o.oid),
        priced AS (
            SELECT m.*, (SELECT pg_catalog.jsonb_object_agg(c.item, pg_catalog.round(c.amount, 4))
                           FROM (VALUES ('storage', 'storage_gb_month', m.gb_months),
                                        ('queries', 'thousand_queries', COALESCE(m.calls, 0) / 1000.0),
                                        ('execution', 'execution_hour', COALESCE(m.ms, 0)::numeric / 3600000),
                                        ('rows_written', 'million_rows_written', m.rows / 1000000.0)) AS v(item, rate, quantity),
                                LATERAL (SELECT v.item, v.quantity * ($2 ->> v.rate)::numeric AS amount) c
                          WHERE $2 ? v.rate) AS cost
              FROM measured m)
        SELECT p.id, p.institution_id, p.schema_name, p.status, p.gb_months, p.rows,
               COALESCE(p.calls, CASE WHEN $3 THEN 0 END), COALESCE(p.ms, CASE WHEN $3 THEN 0 END), %s, COALESCE(p.cost, '{}'),
               COALESCE((SELECT pg_catalog.sum(e.value::numeric) FROM pg_catalog.jsonb_each_text(p.cost) e), 0)
          FROM priced p ORDER BY p.schema_name
        $query$, statements, since) USING period, rates, home IS NOT NULL;
END
$$;
COMMENT ON FUNCTION tenant.usage_report(tstzrange, jsonb) IS
    'Usage and cost per institution for a period: storage in GB-months from the usage snapshots, rows written, queries and execution time of its role (pg_stat_statements, since its last reset), and the cost at the given rates (storage_gb_month, thousand_queries, execution_hour, million_rows_written).';
REVOKE ALL ON FUNCTION tenant.usage_report(tstzrange, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.usage_report(tstzrange, jsonb) TO tenant_control_admin;

-- Data lifecycle (issue 16): per-institution limits.
-- Bounds, in each setting's base unit, within which tenant.set_limits accepts
-- an institution's values, where a superuser wants other bounds than the
-- built-in ones (see the documentation). Empty at installation: rows the
-- extension inserted itself would collide with the dumped rows on pg_restore.
CREATE TABLE tenant.limit_bounds (
    setting         text        NOT NULL PRIMARY KEY
                    CHECK (setting IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout',
                                       'work_mem', 'max_transactions')),
    min_value       bigint      NOT NULL CHECK (min_value >= 0),
    max_value       bigint      NOT NULL,
    CHECK (max_value >= min_value)
);
COMMENT ON TABLE tenant.limit_bounds IS
    'Bounds of the per-institution limits tenant.set_limits accepts, in each setting''s base unit (ms, kB, transactions), overriding the built-in ones.';
COMMENT ON COLUMN tenant.limit_bounds.setting IS 'statement_timeout, lock_timeout, idle_in_transaction_session_timeout, work_mem or max_transactions.';
COMMENT ON COLUMN tenant.limit_bounds.min_value IS 'Smallest value allowed.';
COMMENT ON COLUMN tenant.limit_bounds.max_value IS 'Largest value allowed.';

CREATE TABLE tenant.institution_limits (
    schema_id       uuid        NOT NULL PRIMARY KEY REFERENCES tenant.tenant_schemas (id),
    limits          jsonb       NOT NULL,
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by          text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE tenant.institution_limits IS
    'Per-institution limits (tenant.set_limits): settings tenant.set_context applies to the transaction, and max_transactions.';
COMMENT ON COLUMN tenant.institution_limits.schema_id IS 'Registry id of the institution schema.';
COMMENT ON COLUMN tenant.institution_limits.limits IS 'The limits, as validated: {"statement_timeout": "5s", "work_mem": "16MB", "max_transactions": 20, ...}.';
COMMENT ON COLUMN tenant.institution_limits.set_at IS 'When they were last set.';
COMMENT ON COLUMN tenant.institution_limits.set_by IS 'session_user that last set them.';
SELECT pg_catalog.pg_extension_config_dump('tenant.limit_bounds', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.institution_limits', '');
REVOKE ALL ON tenant.limit_bounds, tenant.institution_limits FROM PUBLIC;
GRANT SELECT ON tenant.limit_bounds, tenant.institution_limits TO tenant_control_admin;

CREATE FUNCTION tenant."set_limits"(
	"schema_id" uuid, /* Option < pgrx :: Uuid > */
	"limits" jsonb /* Option < pgrx :: JsonB > */
) RETURNS jsonb /* pgrx :: JsonB */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_limits_wrapper';

CREATE FUNCTION tenant."context_limits"(
	"institution_id" uuid /* Option < pgrx :: Uuid > */
) RETURNS TABLE (
	"name" TEXT,  /* String */
	"value" TEXT  /* String */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'context_limits_wrapper';

COMMENT ON FUNCTION tenant.set_limits(uuid, jsonb) IS
    'Set an institution''s limits: statement_timeout, lock_timeout, idle_in_transaction_session_timeout, work_mem (applied by tenant.set_context for the transaction) and max_transactions (concurrent transactions in its context; over it set_context fails with 53300); NULL or {} removes them.';
COMMENT ON FUNCTION tenant.context_limits(uuid) IS
    'Internal: for tenant.set_context, the settings of an institution''s limits after taking one of its transaction slots (53300 when none is free).';
REVOKE ALL ON FUNCTION tenant.set_limits(uuid, jsonb), tenant.context_limits(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.set_limits(uuid, jsonb), tenant.context_limits(uuid) TO tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.context_limits(uuid) TO tenant_control_app;

CREATE FUNCTION tenant."set_row_limit"(
	"schema_id" uuid, /* Option < pgrx :: Uuid > */
	"table_name" TEXT, /* Option < & str > */
	"max_rows" bigint /* Option < i64 > */
) RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_row_limit_wrapper';

-- Row limits: one counter row per limited table of an institution, kept by
-- the tc_row_limit_* statement triggers tenant.set_row_limit puts on it.
CREATE TABLE tenant.row_limits (
    schema_id       uuid        NOT NULL REFERENCES tenant.tenant_schemas (id),
    table_name      text        NOT NULL,
    max_rows        bigint      NOT NULL CHECK (max_rows >= 0),
    row_count       bigint      NOT NULL,
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by          text        NOT NULL DEFAULT session_user,
    PRIMARY KEY (schema_id, table_name)
);
COMMENT ON TABLE tenant.row_limits IS
    'Row limits of institutions'' tables (tenant.set_row_limit), with the row count kept by the tables'' tc_row_limit_* triggers.';
COMMENT ON COLUMN tenant.row_limits.schema_id IS 'Registry id of the institution schema.';
COMMENT ON COLUMN tenant.row_limits.table_name IS 'The limited table (a table of the template) in that schema.';
COMMENT ON COLUMN tenant.row_limits.max_rows IS 'Most rows the table may hold: an insert that would go over it fails with 53400.';
COMMENT ON COLUMN tenant.row_limits.row_count IS 'Rows in the table, counted when the limit was set and kept by the triggers since.';
COMMENT ON COLUMN tenant.row_limits.set_at IS 'When the limit was last set.';
COMMENT ON COLUMN tenant.row_limits.set_by IS 'session_user that last set it.';
SELECT pg_catalog.pg_extension_config_dump('tenant.row_limits', '');
REVOKE ALL ON tenant.row_limits FROM PUBLIC;
GRANT SELECT ON tenant.row_limits TO tenant_control_admin;

-- The counter row is updated by each statement's net change: a concurrent
-- insert waits for the row lock and then sees the committed count, so the
-- limit is exact. It reads no tenant object but the statement's transition rows.
CREATE FUNCTION tenant.row_limit_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed bigint;
    counted bigint;
    cap bigint;
    owner_id uuid := (SELECT t.id FROM tenant.tenant_schemas t
                       WHERE t.schema_name = TG_TABLE_SCHEMA AND t.status <> 'DROPPED');
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE tenant.row_limits l SET row_count = 0 WHERE l.schema_id = owner_id AND l.table_name = TG_TABLE_NAME;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
    ELSE
        SELECT -count(*) INTO changed FROM old_rows;
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE tenant.row_limits l SET row_count = l.row_count + changed
     WHERE l.schema_id = owner_id AND l.table_name = TG_TABLE_NAME
    RETURNING l.row_count, l.max_rows INTO counted, cap;
    IF changed > 0 AND counted > cap THEN
        RAISE EXCEPTION 'table "%" of institution schema "%" may hold at most % rows', TG_TABLE_NAME, TG_TABLE_SCHEMA, cap
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('This statement would bring it to %s rows.', counted),
                  HINT = 'Delete rows, or raise the limit with tenant.set_row_limit.';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tenant.row_limit_guard() IS
    'Internal: statement trigger (tc_row_limit_insert/delete/truncate) keeping tenant.row_limits.row_count and refusing (53400) inserts over max_rows.';
COMMENT ON FUNCTION tenant.set_row_limit(uuid, text, bigint) IS
    'Limit the rows of one template table of an institution (an insert over it fails with 53400, exactly, also under concurrent inserts); NULL removes the limit.';
REVOKE ALL ON FUNCTION tenant.row_limit_guard(), tenant.set_row_limit(uuid, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.set_row_limit(uuid, text, bigint) TO tenant_control_admin;

-- portable institutions (issue 14)
-- Scheduled fleet backups: tenant.backup_all, and schedule_maintenance gains
-- its fleet_backup job (a new argument, so the function is replaced).
DROP FUNCTION tenant.schedule_maintenance(text, text, text, text, text);
-- Scheduled backups of the fleet: every ACTIVE institution whose last backup
-- is older than older_than gets a verified backup, one commit each, the
-- longest-unsaved first. A failure (its FAILED BACKUP row is written by
-- backup_institution_schema) does not stop the rest; the procedure raises at
-- the end, after its commits, so pg_cron reports it. Run again, it backs up
-- only the institutions still due: an interrupted run resumes where it was.
CREATE PROCEDURE tenant.backup_all(older_than interval DEFAULT '1 day')
LANGUAGE plpgsql
AS $$
DECLARE
    due record;
    outcome record;
    done integer := 0;
    failed integer := 0;
    failed_state text;
    failed_message text;
BEGIN
    IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) '0'::interval THEN
        RAISE EXCEPTION 'older_than must be zero or a positive interval, not %', COALESCE(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR due IN
        SELECT t.id, t.schema_name FROM tenant.tenant_schemas t
         WHERE t.status OPERATOR(pg_catalog.=) 'ACTIVE' AND t.institution_id IS NOT NULL
           AND (t.last_backup IS NULL
                OR t.last_backup OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than))
         ORDER BY t.last_backup NULLS FIRST, t.schema_name
    LOOP
        -- The list was read before the first commit: skip an institution
        -- suspended, dropped or backed up (by a concurrent run) meanwhile.
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM tenant.tenant_schemas t
             WHERE t.id OPERATOR(pg_catalog.=) due.id AND t.status OPERATOR(pg_catalog.=) 'ACTIVE'
               AND (t.last_backup IS NULL
                    OR t.last_backup OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)));
        BEGIN
            SELECT * INTO outcome FROM tenant.backup_institution_schema(due.id, true);
            IF outcome.status OPERATOR(pg_catalog.=) 'SUCCESS' THEN
                done := done OPERATOR(pg_catalog.+) 1;
            ELSE
                failed := failed OPERATOR(pg_catalog.+) 1;
                failed_state := outcome.sqlstate;
                failed_message := pg_catalog.format('%s: %s', due.schema_name, outcome.message);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- Raised rather than reported (no FAILED row yet): log it here.
            GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
            PERFORM tenant.note_job_failure('BACKUP', due.id,
                                            pg_catalog.format('back up institution schema %s (scheduled)', due.id),
                                            failed_state, failed_message);
            failed := failed OPERATOR(pg_catalog.+) 1;
            failed_message := pg_catalog.format('%s: %s', due.schema_name, failed_message);
        END;
        COMMIT;
    END LOOP;
    IF failed OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION '% of % institution(s) could not be backed up, the last: %', failed,
            failed OPERATOR(pg_catalog.+) done, failed_message USING ERRCODE = COALESCE(failed_state, 'P0001'),
            HINT = 'See the FAILED BACKUP rows in tenant.schema_operations; CALL tenant.backup_all() again backs up only the institutions still due.';
    END IF;
    RAISE NOTICE 'backed up % institution(s), verified', done;
END
$$;
COMMENT ON PROCEDURE tenant.backup_all(interval) IS
    'Scheduled fleet backup: a verified backup of every ACTIVE institution whose last backup is older than older_than, one commit each; failures are logged, the rest go on, and the procedure raises at the end. Resumable; safe from pg_cron.';

-- pg_cron: one call (re)schedules the recommended jobs. Job names carry the
-- database, so several databases can share one pg_cron; pg_cron updates a
-- job of the same name instead of adding one, so calling this again is safe.
CREATE FUNCTION tenant.schedule_maintenance(
    quota_refresh text DEFAULT '* * * * *',
    usage_snapshot text DEFAULT '0 * * * *',
    integrity_check text DEFAULT '30 2 * * *',
    backup_retention text DEFAULT '0 3 * * *',
    maintenance text DEFAULT '30 3 * * 0',
    fleet_backup text DEFAULT '0 1 * * *')
RETURNS TABLE (job_name text, schedule text, command text, scheduled boolean, statement text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    here boolean := EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron');
    job record;
BEGIN
    FOR job IN
        SELECT j.name, j.cron, j.sql FROM (VALUES
            (1, 'quota_refresh', quota_refresh, 'CALL tenant.refresh_all_storage()'),
            (2, 'usage_snapshot', usage_snapshot, 'CALL tenant.take_usage_snapshot()'),
            (3, 'integrity_check', integrity_check, 'CALL tenant.run_integrity_check()'),
            (4, 'backup_retention', backup_retention, 'CALL tenant.cleanup_backups()'),
            (5, 'maintenance', maintenance, 'CALL tenant.run_maintenance()'),
            (6, 'fleet_backup', fleet_backup, 'CALL tenant.backup_all()')) AS j(n, name, cron, sql)
         WHERE j.cron IS NOT NULL ORDER BY j.n
    LOOP
        job_name := format('tenant_control %s: %s', current_database(), job.name);
        schedule := job.cron;
        command := job.sql;
        statement := format('SELECT cron.schedule_in_database(%L, %L, %L, %L)', job_name, job.cron, job.sql, current_database());
        scheduled := here;
        IF here THEN
            EXECUTE statement;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant.schedule_maintenance(text, text, text, text, text, text) IS
    'Schedule the recommended pg_cron jobs (quota refresh, usage snapshot, integrity check, backup retention, maintenance, fleet backup); with pg_cron in another database, returns the statements to run there. NULL skips a job.';
REVOKE ALL ON PROCEDURE tenant.backup_all(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.schedule_maintenance(text, text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.backup_all(interval) TO tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.schedule_maintenance(text, text, text, text, text, text) TO tenant_control_admin;

-- Recovery drills: restore_institution_schema(backup_id, target_schema => a new
-- name) of a live institution's backup is catalogued with reason DRILL.
ALTER TABLE tenant.schema_backups DROP CONSTRAINT schema_backups_reason_check,
    ADD CONSTRAINT schema_backups_reason_check CHECK (reason IN ('DROP', 'BACKUP', 'RESTORE', 'DRILL'));
COMMENT ON COLUMN tenant.schema_backups.reason IS 'Why the backup exists: BACKUP (a copy taken by backup_institution_schema), DROP (the tenant schema itself, detached when the tenant was dropped) or RESTORE (the live schema a restore replaced) or DRILL (a live institution''s backup restored under a new name by restore_institution_schema, readable by no tenant role).';
COMMENT ON FUNCTION tenant.restore_institution_schema(uuid, text, boolean) IS
    'Restore an institution from a backup, in place (the replaced schema is kept as a backup), for a dropped tenant under its old or a new name, or for a live one under a new name as a recovery drill (catalogued as a DRILL backup, readable by no tenant role). Logs a RESTORE operation.';
COMMENT ON COLUMN tenant.backups.reason IS 'BACKUP (backup_institution_schema), DROP (left by drop_institution_schema), RESTORE (the schema a restore replaced) or DRILL (a live institution''s backup restored under a new name).';
