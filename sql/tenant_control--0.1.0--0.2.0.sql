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
