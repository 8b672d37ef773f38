-- tenant_control finalize: SQL conveniences, comments on functions, and the
-- privilege model. Runs after every Rust function has been created.

CREATE FUNCTION tenant.suspend_institution(schema_id uuid, reason text DEFAULT NULL)
RETURNS TABLE (status text, message text, sqlstate text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM tenant.set_institution_status(schema_id, 'SUSPENDED', reason) $$;

CREATE FUNCTION tenant.activate_institution(schema_id uuid, reason text DEFAULT NULL)
RETURNS TABLE (status text, message text, sqlstate text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM tenant.set_institution_status(schema_id, 'ACTIVE', reason) $$;

CREATE FUNCTION tenant.start_maintenance(schema_id uuid, reason text DEFAULT NULL)
RETURNS TABLE (status text, message text, sqlstate text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM tenant.set_institution_status(schema_id, 'MAINTENANCE', reason) $$;

CREATE FUNCTION tenant.list_institutions(status text DEFAULT NULL)
RETURNS SETOF tenant.tenant_schemas
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM tenant.tenant_schemas t
     WHERE t.status <> 'SPARE'
       AND (list_institutions.status IS NULL OR t.status = upper(list_institutions.status))
     ORDER BY t.schema_name, t.created_at
$$;

-- One look-up for whatever identifier the DBA has at hand.
CREATE FUNCTION tenant.find_institution(key text)
RETURNS SETOF tenant.tenant_schemas
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_id uuid;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'argument "key" must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    BEGIN
        key_id := key::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        key_id := NULL;
    END;
    RETURN QUERY
        SELECT t.* FROM tenant.tenant_schemas t
         WHERE t.status <> 'SPARE' AND (t.id = key_id OR t.institution_id = key_id OR t.schema_name = key)
         ORDER BY t.created_at;
END
$$;

-- Procedures commit after each schema (or batch of schemas), so they take no
-- SET clause and name everything with its schema.

-- Each schema is migrated in a subtransaction of its own
-- (migrate_institution_schema: all of its migrations or none, its own
-- operation-log row); the procedure commits every 16 schemas or every quarter
-- of a second, whichever comes first, and at the end: one commit's flush to
-- disk costs more than a one-column ALTER, and a subtransaction's locks are
-- held until its commit, so batches stay small and short.
CREATE PROCEDURE tenant.apply_migrations(dry_run boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    target integer := (SELECT COALESCE(pg_catalog.max(m.version), 0) FROM tenant.migrations m);
    pending record;
    outcome record;
    done integer := 0;
    failed integer := 0;
    uncommitted integer := 0;
    batch_started timestamptz := pg_catalog.clock_timestamp();
BEGIN
    FOR pending IN
        SELECT t.id, t.schema_name, t.version FROM tenant.tenant_schemas t
         WHERE t.status OPERATOR(pg_catalog.<>) 'DROPPED' AND t.version OPERATOR(pg_catalog.<) target
         ORDER BY t.schema_name
    LOOP
        IF dry_run THEN
            RAISE NOTICE 'would migrate % from version % to %: migrations %', pending.schema_name, pending.version, target,
                (SELECT pg_catalog.string_agg(m.version::text, ', ' ORDER BY m.version) FROM tenant.migrations m
                  WHERE m.version OPERATOR(pg_catalog.>) pending.version);
            CONTINUE;
        END IF;
        SELECT * INTO outcome FROM tenant.migrate_institution_schema(pending.id);
        IF outcome.status = 'SUCCESS' THEN
            done := done + 1;
        ELSE
            failed := failed + 1;
        END IF;
        RAISE NOTICE '%: %', outcome.status, outcome.message;
        uncommitted := uncommitted OPERATOR(pg_catalog.+) 1;
        IF uncommitted OPERATOR(pg_catalog.>=) 16
           OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) batch_started OPERATOR(pg_catalog.>=) interval '250 milliseconds' THEN
            COMMIT;
            uncommitted := 0;
            batch_started := pg_catalog.clock_timestamp();
        END IF;
    END LOOP;
    IF uncommitted OPERATOR(pg_catalog.>) 0 THEN
        COMMIT;
    END IF;
    IF NOT dry_run THEN
        RAISE NOTICE 'migrations applied to % schema(s), % failed; the template is at version %', done, failed, target;
    END IF;
END
$$;

CREATE PROCEDURE tenant.fill_pool(spares integer DEFAULT 5)
LANGUAGE plpgsql
AS $$
DECLARE
    ready integer;
    outcome record;
BEGIN
    IF spares IS NULL OR spares OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'spares must be zero or more, not %', spares USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        SELECT pg_catalog.count(*) INTO ready FROM tenant.tenant_schemas t
         WHERE t.status = 'SPARE'
           AND t.version = (SELECT COALESCE(pg_catalog.max(m.version), 0) FROM tenant.migrations m);
        EXIT WHEN ready OPERATOR(pg_catalog.>=) spares;
        SELECT * INTO outcome FROM tenant.add_spare_schema();
        IF outcome.status OPERATOR(pg_catalog.<>) 'SUCCESS' THEN
            RAISE EXCEPTION 'could not add a spare schema: %', outcome.message USING ERRCODE = outcome.sqlstate;
        END IF;
        COMMIT;
    END LOOP;
END
$$;

-- Recount every tenant's storage, one transaction each. A tenant whose
-- registry row is locked (an operation under way) is skipped and retried once
-- at the end, so the job never queues behind it (DDL on its tables holds
-- nothing up: sizes come from the files); a tenant dropped meanwhile is skipped.
CREATE PROCEDURE tenant.refresh_all_storage()
LANGUAGE plpgsql
AS $$
DECLARE
    pending uuid[];
    retry uuid[] := '{}';
    tenant_id uuid;
    attempt integer;
    refreshed integer := 0;
BEGIN
    SELECT pg_catalog.array_agg(t.id ORDER BY t.schema_name) INTO pending FROM tenant.tenant_schemas t
     WHERE t.status OPERATOR(pg_catalog.<>) ALL (ARRAY['DROPPED', 'SPARE']);
    FOR attempt IN 1..2 LOOP
        FOREACH tenant_id IN ARRAY COALESCE(pending, '{}') LOOP
            BEGIN
                PERFORM tenant.refresh_storage(tenant_id);
                refreshed := refreshed OPERATOR(pg_catalog.+) 1;
            EXCEPTION
                WHEN lock_not_available THEN
                    retry := retry OPERATOR(pg_catalog.||) tenant_id;
                WHEN object_not_in_prerequisite_state OR undefined_object THEN
                    NULL;  -- dropped or gone meanwhile
            END;
            COMMIT;
        END LOOP;
        pending := retry;
        retry := '{}';
    END LOOP;
    RAISE NOTICE 'storage recounted for % tenant(s), % skipped because they stayed locked',
        refreshed, COALESCE(pg_catalog.array_length(pending, 1), 0);
END
$$;
COMMENT ON PROCEDURE tenant.refresh_all_storage() IS
    'Recount every tenant''s storage into the registry, one transaction each; locked tenants are retried once, then skipped. Safe from pg_cron.';
COMMENT ON FUNCTION tenant.set_quota(uuid, text) IS
    'Set a tenant''s storage limit (quota_limit) from a size such as ''5 GB''; NULL removes it. Logs a QUOTA_SET operation.';

CREATE VIEW tenant.migration_status AS
SELECT t.id AS schema_id, t.schema_name, t.status, t.version,
       target.version AS template_version,
       target.version - t.version AS pending,
       last_run.status AS last_migration_status,
       last_run.error_sqlstate AS last_migration_sqlstate,
       last_run.error_message AS last_migration_error,
       last_run.completed_at AS last_migration_at
  FROM tenant.tenant_schemas t
 CROSS JOIN (SELECT COALESCE(max(m.version), 0) AS version FROM tenant.migrations m) target
  LEFT JOIN LATERAL (SELECT o.status, o.error_sqlstate, o.error_message, o.completed_at
                       FROM tenant.schema_operations o
                      WHERE o.schema_id = t.id AND o.operation_type = 'MIGRATE'
                      ORDER BY o.id DESC LIMIT 1) last_run ON true
 WHERE t.status <> 'DROPPED';

COMMENT ON VIEW tenant.migration_status IS 'Which schema (institutions'' and spares) is at which version, and how its last migration went.';
COMMENT ON COLUMN tenant.migration_status.schema_id IS 'Registry id.';
COMMENT ON COLUMN tenant.migration_status.schema_name IS 'Schema name.';
COMMENT ON COLUMN tenant.migration_status.status IS 'Registry status (SPARE for the warm pool).';
COMMENT ON COLUMN tenant.migration_status.version IS 'Version the schema is at.';
COMMENT ON COLUMN tenant.migration_status.template_version IS 'Version of the template (newest migration).';
COMMENT ON COLUMN tenant.migration_status.pending IS 'Migrations still to apply.';
COMMENT ON COLUMN tenant.migration_status.last_migration_status IS 'COMPLETED or FAILED: the last MIGRATE operation on the schema.';
COMMENT ON COLUMN tenant.migration_status.last_migration_sqlstate IS 'SQLSTATE of the last migration''s failure.';
COMMENT ON COLUMN tenant.migration_status.last_migration_error IS 'Error of the last migration''s failure.';
COMMENT ON COLUMN tenant.migration_status.last_migration_at IS 'When the last migration finished.';

CREATE VIEW tenant.warm_pool AS
SELECT t.id AS schema_id, t.schema_name, t.version,
       t.version = (SELECT COALESCE(max(m.version), 0) FROM tenant.migrations m) AS ready, t.created_at
  FROM tenant.tenant_schemas t WHERE t.status = 'SPARE';

COMMENT ON VIEW tenant.warm_pool IS 'Spare schemas waiting to be claimed by create_institution_schema.';
COMMENT ON COLUMN tenant.warm_pool.schema_id IS 'Registry id.';
COMMENT ON COLUMN tenant.warm_pool.schema_name IS 'Schema name (tc_spare_...).';
COMMENT ON COLUMN tenant.warm_pool.version IS 'Version the spare is at.';
COMMENT ON COLUMN tenant.warm_pool.ready IS 'Whether it is at the template''s version, and so can be claimed.';
COMMENT ON COLUMN tenant.warm_pool.created_at IS 'When the spare was built.';

COMMENT ON PROCEDURE tenant.apply_migrations(boolean) IS
    'Migrate every schema behind the template, each atomically on its own (a subtransaction), committing every 16 schemas or quarter second; failures are logged and the rest go on. dry_run lists what would run where.';
COMMENT ON PROCEDURE tenant.fill_pool(integer) IS 'Build spare schemas until the warm pool holds this many ready ones.';
COMMENT ON FUNCTION tenant.register_migration(integer, text, text) IS
    'Register the next migration script and apply it to the template (superuser only).';
COMMENT ON FUNCTION tenant.migrate_institution_schema(uuid) IS 'Apply every pending migration to one schema, atomically; logs a MIGRATE operation.';
COMMENT ON FUNCTION tenant.add_spare_schema() IS 'Build one spare schema for the warm pool.';

COMMENT ON FUNCTION tenant.set_context(uuid) IS
    'Point the current transaction at one institution: search_path, the tenant''s role where the caller may assume it, and tenant_control.institution_id. Transaction-local; call it inside BEGIN ... COMMIT.';
COMMENT ON FUNCTION tenant.enter_context(uuid) IS
    'Internal: checks that an institution may be entered, records it as the transaction''s institution, and returns its schema and role for set_context.';

COMMENT ON FUNCTION tenant.create_institution_schema(uuid, text) IS
    'Create the schema, NOLOGIN role and registry row of an institution; returns SUCCESS or ERROR with the SQLSTATE, and logs a CREATE operation either way.';
COMMENT ON FUNCTION tenant.drop_institution_schema(uuid) IS
    'Detach a tenant schema into a backup schema, drop its role and mark the registry row DROPPED; logs a DROP operation.';
COMMENT ON FUNCTION tenant.set_institution_status(uuid, text, text) IS
    'Set a tenant to ACTIVE, SUSPENDED or MAINTENANCE; only ACTIVE tenants'' roles may use their schema. Logs a STATUS_CHANGE operation.';
COMMENT ON FUNCTION tenant.refresh_storage(uuid) IS
    'Recount a tenant''s tables and storage (heap, indexes, TOAST, maps, sequences) into the registry; returns the bytes.';
COMMENT ON FUNCTION tenant.suspend_institution(uuid, text) IS 'set_institution_status(schema_id, ''SUSPENDED'', reason).';
COMMENT ON FUNCTION tenant.activate_institution(uuid, text) IS 'set_institution_status(schema_id, ''ACTIVE'', reason).';
COMMENT ON FUNCTION tenant.start_maintenance(uuid, text) IS 'set_institution_status(schema_id, ''MAINTENANCE'', reason).';
COMMENT ON FUNCTION tenant.list_institutions(text) IS 'Registry rows, all or those with the given status.';
COMMENT ON FUNCTION tenant.find_institution(text) IS 'Registry rows whose id, institution id or schema name is the given key.';

-- Quota enforcement. The guard is a statement-level trigger that
-- tenant.refresh_storage puts on the tables of a tenant near or over its
-- quota (and takes off again); tenants below their warning level have none.
CREATE FUNCTION tenant.quota_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant.quota_check_growth(TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tenant.quota_guard() IS
    'Internal: trigger (tc_quota_guard) on the tables of a tenant near or over its quota: 53400 when over, a WARNING when near.';
COMMENT ON FUNCTION tenant.quota_check_growth(text) IS
    'Internal: refuse (53400) or warn about a statement that makes a tenant''s schema grow.';

-- DDL in a tenant near or over its quota: CREATE and ALTER are refused over
-- the limit (except when a superuser runs them: pg_restore recreating an
-- over-quota tenant's keys), and the guard triggers cannot be dropped,
-- disabled, made replica-only or renamed by anyone but the extension. A guard
-- is a trigger calling tenant.quota_guard(), whatever its name; tc_ names are
-- reserved (tenant.reserved_names_guard), so a tenant cannot plant a
-- look-alike.
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

CREATE FUNCTION tenant.quota_ddl_guard(tg_event text, tg_tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    watched text;
BEGIN
    -- GRANT and REVOKE grow nothing and touch no trigger: the common case, asked first.
    IF tg_tag IN ('GRANT', 'REVOKE') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.quota_state <> 'OK' AND t.status <> 'DROPPED')
       OR tenant.internal_work_active() THEN
        RETURN;
    END IF;
    IF tg_event = 'sql_drop' THEN
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
        IF tg_tag = 'ALTER TRIGGER' OR EXISTS (
               SELECT 1 FROM pg_trigger g
                WHERE g.tgfoid = 'tenant.quota_guard()'::regprocedure AND g.tgenabled IN ('D', 'R')
                  AND g.tgrelid IN (SELECT so.oid FROM tenant.schema_objects(watched, 'pg_catalog.pg_class') AS so(oid))) THEN
            RAISE EXCEPTION 'the storage quota guard of schema "%" cannot be disabled or renamed', watched
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'ALTER TRIGGER, DISABLE TRIGGER and ENABLE REPLICA TRIGGER are refused while the tenant is near or over its quota.';
        END IF;
        PERFORM tenant.quota_check_ddl(watched);
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant.quota_ddl_guard(text, text) IS
    'Internal: refuses CREATE/ALTER in a tenant over its quota (53400), and any tampering with the quota guards; called by tenant.ddl_event_dispatch() (event, command tag).';
REVOKE ALL ON FUNCTION tenant.quota_ddl_guard(text, text) FROM PUBLIC;
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

CREATE FUNCTION tenant.reserved_names_guard(tg_event text, tg_tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    touched record;
    taken record;
BEGIN
    -- GRANT/REVOKE name nothing new; the extension's own DDL skips the catalog look-ups.
    IF tg_tag IN ('GRANT', 'REVOKE') OR tenant.internal_work_active() THEN
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
COMMENT ON FUNCTION tenant.reserved_names_guard(text, text) IS
    'Internal: refuses (42939) names starting with tc_ in the template and in tenant schemas, except in the extension''s own work; called by tenant.ddl_event_dispatch() (event, command tag).';
REVOKE ALL ON FUNCTION tenant.reserved_names_guard(text, text) FROM PUBLIC;

-- The extension's one event trigger function for ddl_command_end and
-- sql_drop (src/api/event_dispatch.rs): it reads the collected commands in C
-- and calls the checks above (quota, reserved names, template notes) only for
-- commands that may concern them, so DDL and GRANT/REVOKE elsewhere in the
-- database pay one C call. Not SECURITY DEFINER: that would switch the user
-- and search_path on every command in the database; it runs no SQL as the
-- caller and switches to its owner, search_path pinned, only to read the
-- registry or call the checks (which are SECURITY DEFINER themselves).
-- ENABLE ALWAYS: also under session_replication_role = replica, a stale copy
-- or an unguarded tenant is worse than a trigger call.
CREATE FUNCTION tenant.ddl_event_dispatch() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'tc_ddl_event_dispatch';
COMMENT ON FUNCTION tenant.ddl_event_dispatch() IS
    'Internal: event trigger function calling quota_ddl_guard, reserved_names_guard and note_template_change for DDL that touches the template or a tenant schema.';
REVOKE ALL ON FUNCTION tenant.ddl_event_dispatch() FROM PUBLIC;
CREATE EVENT TRIGGER tenant_control_ddl ON ddl_command_end EXECUTE FUNCTION tenant.ddl_event_dispatch();
CREATE EVENT TRIGGER tenant_control_drop ON sql_drop EXECUTE FUNCTION tenant.ddl_event_dispatch();
ALTER EVENT TRIGGER tenant_control_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER tenant_control_drop ENABLE ALWAYS;

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

-- Institution administrators.
CREATE FUNCTION tenant.grant_institution_admin(institution_id uuid, role_name text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF institution_id IS NULL OR role_name IS NULL THEN
        RAISE EXCEPTION 'institution_id and role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    IF role_name LIKE 'tenant\_control\_%' OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name AND r.rolsuper) THEN
        RAISE EXCEPTION 'role "%" cannot be an institution administrator', role_name
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Superusers and the extension''s own roles see everything already.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t
                    WHERE t.institution_id = grant_institution_admin.institution_id AND t.status <> 'DROPPED') THEN
        RAISE EXCEPTION 'no institution schema for institution %', institution_id USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('GRANT tenant_control_institution_admin TO %I', role_name);
    INSERT INTO tenant.institution_admins (role_name, institution_id)
    VALUES (grant_institution_admin.role_name, grant_institution_admin.institution_id)
    ON CONFLICT DO NOTHING;
    RETURN format('role "%s" administers institution %s', role_name, institution_id);
END
$$;
COMMENT ON FUNCTION tenant.grant_institution_admin(uuid, text) IS
    'Let a role (and its members) see the registry and operation-log rows of one institution, and change that institution''s config.';

CREATE FUNCTION tenant.revoke_institution_admin(institution_id uuid, role_name text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM tenant.institution_admins a
     WHERE a.role_name = revoke_institution_admin.role_name AND a.institution_id = revoke_institution_admin.institution_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not administer institution %', role_name, institution_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenant.institution_admins a WHERE a.role_name = revoke_institution_admin.role_name)
       AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name) THEN
        EXECUTE format('REVOKE tenant_control_institution_admin FROM %I', role_name);
    END IF;
    RETURN format('role "%s" no longer administers institution %s', role_name, institution_id);
END
$$;
COMMENT ON FUNCTION tenant.revoke_institution_admin(uuid, text) IS 'Take back tenant.grant_institution_admin.';

COMMENT ON FUNCTION tenant.current_institution() IS
    'The institution the current transaction was pointed at by tenant.set_context, or NULL. Shared-table policies compare rows with it.';
COMMENT ON FUNCTION tenant.enable_shared_table_isolation(text, text) IS
    'Put a shared table (one row per institution, a uuid tenant column) under a forced RLS policy keyed on tenant.current_institution().';

-- Backups. The catalogue lists every backup schema with what it holds.
CREATE VIEW tenant.backups AS
SELECT b.id AS backup_id, b.schema_id, t.institution_id, b.source_schema, b.backup_schema, b.reason,
       b.created_at, b.size_bytes, b.row_count,
       (SELECT count(*) FROM tenant.backup_tables bt WHERE bt.backup_id = b.id) AS table_count,
       b.verified_at IS NOT NULL AS verified, b.verified_at, b.source_version, b.duration_ms,
       t.schema_name AS tenant_schema, t.status AS tenant_status
  FROM tenant.schema_backups b JOIN tenant.tenant_schemas t ON t.id = b.schema_id;

COMMENT ON VIEW tenant.backups IS 'Backup catalogue: one row per backup schema, newest last per institution.';
COMMENT ON COLUMN tenant.backups.backup_id IS 'Backup id, the argument of verify_backup, restore_institution_schema, restore_table and remove_backup.';
COMMENT ON COLUMN tenant.backups.schema_id IS 'Registry id of the tenant the backup was taken from.';
COMMENT ON COLUMN tenant.backups.institution_id IS 'Institution of that tenant.';
COMMENT ON COLUMN tenant.backups.source_schema IS 'Name the tenant''s schema had when the backup was taken.';
COMMENT ON COLUMN tenant.backups.backup_schema IS 'Schema holding the backup (tc_backup_...), reachable by no tenant role.';
COMMENT ON COLUMN tenant.backups.reason IS 'BACKUP (backup_institution_schema), DROP (left by drop_institution_schema), RESTORE (the schema a restore replaced) or DRILL (a live institution''s backup restored under a new name).';
COMMENT ON COLUMN tenant.backups.created_at IS 'When the backup was taken.';
COMMENT ON COLUMN tenant.backups.size_bytes IS 'Bytes the backup occupies.';
COMMENT ON COLUMN tenant.backups.row_count IS 'Rows in all its tables (NULL for a RESTORE backup until verified).';
COMMENT ON COLUMN tenant.backups.table_count IS 'Tables in its manifest.';
COMMENT ON COLUMN tenant.backups.verified IS 'Whether a verification proved it matches its manifest.';
COMMENT ON COLUMN tenant.backups.verified_at IS 'When it was last proved to match.';
COMMENT ON COLUMN tenant.backups.source_version IS 'Schema version of the tenant when the backup was taken.';
COMMENT ON COLUMN tenant.backups.duration_ms IS 'Milliseconds taking the backup took.';
COMMENT ON COLUMN tenant.backups.tenant_schema IS 'The tenant''s schema name now.';
COMMENT ON COLUMN tenant.backups.tenant_status IS 'The tenant''s status now.';

-- Retention: per institution, keep the newest keep_last backups and those
-- younger than max_age; remove the others, one commit each. A procedure that
-- commits, so no SET clause; every name qualified.
CREATE PROCEDURE tenant.cleanup_backups(keep_last integer DEFAULT NULL, max_age interval DEFAULT NULL)
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

COMMENT ON PROCEDURE tenant.cleanup_backups(integer, interval) IS
    'Retention: per institution keep the newest keep_last backups and those younger than max_age (defaults: tenant_control.backup_keep_last, tenant_control.backup_max_age); remove the rest, one commit each, each logged. Safe from pg_cron.';
COMMENT ON FUNCTION tenant.backup_institution_schema(uuid, boolean) IS
    'Back up one institution into a new backup schema, consistent as of one snapshot; verify => true also proves the copy hashes like the source. Logs a BACKUP operation.';
COMMENT ON FUNCTION tenant.verify_backup(uuid, boolean) IS
    'Row counts and content hashes of a backup''s tables against its manifest (and the live schema with against_live); one row per table. Logs an INTEGRITY_CHECK operation.';
COMMENT ON FUNCTION tenant.restore_institution_schema(uuid, text, boolean) IS
    'Restore an institution from a backup, in place (the replaced schema is kept as a backup), for a dropped tenant under its old or a new name, or for a live one under a new name as a recovery drill (catalogued as a DRILL backup, readable by no tenant role). Logs a RESTORE operation.';
COMMENT ON FUNCTION tenant.restore_table(uuid, text, text) IS
    'Bring one table back from a backup into the live schema: missing rows by primary key, or replace. Logs a RESTORE operation.';
COMMENT ON FUNCTION tenant.remove_backup(uuid, text) IS 'Remove a backup schema, its role and its catalogue row; logs a BACKUP operation.';
COMMENT ON FUNCTION tenant.backup_free_space() IS 'Bytes free on the data directory''s file system, as backups check it.';

-- Monitoring: what a DBA queries directly. Statistics come from the
-- pg_stat_get_* functions per relation (found through pg_depend), so a view
-- over one tenant does not aggregate the statistics of the whole database.
CREATE VIEW tenant.table_stats AS
SELECT t.id AS schema_id, t.schema_name, t.status, r.table_name, r.kind,
       r.total_bytes - r.index_bytes - r.toast_bytes AS table_bytes, r.index_bytes, r.toast_bytes, r.total_bytes,
       r.row_estimate, r.seq_scan, r.idx_scan, r.live_tuples, r.dead_tuples, r.last_vacuum, r.last_analyze,
       r.tup_inserted, r.tup_updated, r.tup_deleted
  FROM tenant.tenant_schemas t
 CROSS JOIN LATERAL (
    SELECT c.relname::text AS table_name, CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind,
           pg_catalog.pg_total_relation_size(c.oid) AS total_bytes,
           pg_catalog.pg_indexes_size(c.oid) AS index_bytes,
           CASE WHEN c.reltoastrelid <> 0 THEN pg_catalog.pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS toast_bytes,
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS row_estimate,
           pg_catalog.pg_stat_get_numscans(c.oid) AS seq_scan,
           (SELECT COALESCE(sum(pg_catalog.pg_stat_get_numscans(i.indexrelid)), 0)::bigint
              FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid) AS idx_scan,
           pg_catalog.pg_stat_get_live_tuples(c.oid) AS live_tuples,
           pg_catalog.pg_stat_get_dead_tuples(c.oid) AS dead_tuples,
           GREATEST(pg_catalog.pg_stat_get_last_vacuum_time(c.oid), pg_catalog.pg_stat_get_last_autovacuum_time(c.oid)) AS last_vacuum,
           GREATEST(pg_catalog.pg_stat_get_last_analyze_time(c.oid), pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid)) AS last_analyze,
           pg_catalog.pg_stat_get_tuples_inserted(c.oid) AS tup_inserted,
           pg_catalog.pg_stat_get_tuples_updated(c.oid) AS tup_updated,
           pg_catalog.pg_stat_get_tuples_deleted(c.oid) AS tup_deleted
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects(t.schema_name, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p', 'm')) r
 WHERE t.status <> 'DROPPED';

COMMENT ON VIEW tenant.table_stats IS 'Size and activity of every table and materialized view of every tenant (not DROPPED).';
COMMENT ON COLUMN tenant.table_stats.schema_id IS 'Registry id.';
COMMENT ON COLUMN tenant.table_stats.schema_name IS 'Schema name.';
COMMENT ON COLUMN tenant.table_stats.status IS 'Registry status.';
COMMENT ON COLUMN tenant.table_stats.table_name IS 'Table (or materialized view) name.';
COMMENT ON COLUMN tenant.table_stats.kind IS 'table or materialized view.';
COMMENT ON COLUMN tenant.table_stats.table_bytes IS 'Bytes of the heap with its free-space and visibility maps.';
COMMENT ON COLUMN tenant.table_stats.index_bytes IS 'Bytes of its indexes.';
COMMENT ON COLUMN tenant.table_stats.toast_bytes IS 'Bytes of its TOAST table and TOAST index.';
COMMENT ON COLUMN tenant.table_stats.total_bytes IS 'table_bytes + index_bytes + toast_bytes.';
COMMENT ON COLUMN tenant.table_stats.row_estimate IS 'The planner''s row estimate (pg_class.reltuples); NULL before the first VACUUM or ANALYZE.';
COMMENT ON COLUMN tenant.table_stats.seq_scan IS 'Sequential scans since statistics were reset.';
COMMENT ON COLUMN tenant.table_stats.idx_scan IS 'Index scans (all its indexes) since statistics were reset.';
COMMENT ON COLUMN tenant.table_stats.live_tuples IS 'Estimated live rows.';
COMMENT ON COLUMN tenant.table_stats.dead_tuples IS 'Estimated dead rows (what VACUUM would reclaim).';
COMMENT ON COLUMN tenant.table_stats.last_vacuum IS 'Last VACUUM, manual or automatic.';
COMMENT ON COLUMN tenant.table_stats.last_analyze IS 'Last ANALYZE, manual or automatic.';
COMMENT ON COLUMN tenant.table_stats.tup_inserted IS 'Rows inserted since statistics were reset.';
COMMENT ON COLUMN tenant.table_stats.tup_updated IS 'Rows updated since statistics were reset.';
COMMENT ON COLUMN tenant.table_stats.tup_deleted IS 'Rows deleted since statistics were reset.';

CREATE VIEW tenant.tenant_stats AS
SELECT t.id AS schema_id, t.schema_name, t.status,
       COALESCE(s.tables, 0) AS tables, COALESCE(s.table_bytes, 0) AS table_bytes, COALESCE(s.index_bytes, 0) AS index_bytes,
       COALESCE(s.toast_bytes, 0) AS toast_bytes, COALESCE(s.total_bytes, 0) AS total_bytes,
       COALESCE(s.row_estimate, 0) AS row_estimate, COALESCE(s.seq_scans, 0) AS seq_scans, COALESCE(s.idx_scans, 0) AS idx_scans,
       COALESCE(s.dead_tuples, 0) AS dead_tuples, s.last_vacuum, s.last_analyze, COALESCE(s.never_analyzed, 0) AS never_analyzed,
       COALESCE(s.tup_inserted, 0) AS tup_inserted, COALESCE(s.tup_updated, 0) AS tup_updated, COALESCE(s.tup_deleted, 0) AS tup_deleted,
       snap.taken_at AS snapshot_at,
       -- Counters below the snapshot's mean the statistics were reset since: all of the current count is new.
       CASE WHEN snap.taken_at IS NULL OR COALESCE(s.tup_inserted, 0) < snap.tup_inserted THEN COALESCE(s.tup_inserted, 0)
            ELSE COALESCE(s.tup_inserted, 0) - snap.tup_inserted END AS inserted_since_snapshot,
       CASE WHEN snap.taken_at IS NULL OR COALESCE(s.tup_updated, 0) < snap.tup_updated THEN COALESCE(s.tup_updated, 0)
            ELSE COALESCE(s.tup_updated, 0) - snap.tup_updated END AS updated_since_snapshot,
       CASE WHEN snap.taken_at IS NULL OR COALESCE(s.tup_deleted, 0) < snap.tup_deleted THEN COALESCE(s.tup_deleted, 0)
            ELSE COALESCE(s.tup_deleted, 0) - snap.tup_deleted END AS deleted_since_snapshot
  FROM tenant.tenant_schemas t
  LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.kind = 'table')::integer AS tables, sum(x.table_bytes)::bigint AS table_bytes,
           sum(x.index_bytes)::bigint AS index_bytes, sum(x.toast_bytes)::bigint AS toast_bytes,
           sum(x.total_bytes)::bigint AS total_bytes, sum(x.row_estimate)::bigint AS row_estimate,
           sum(x.seq_scan)::bigint AS seq_scans, sum(x.idx_scan)::bigint AS idx_scans, sum(x.dead_tuples)::bigint AS dead_tuples,
           max(x.last_vacuum) AS last_vacuum, max(x.last_analyze) AS last_analyze,
           count(*) FILTER (WHERE x.last_analyze IS NULL)::integer AS never_analyzed,
           sum(x.tup_inserted)::bigint AS tup_inserted, sum(x.tup_updated)::bigint AS tup_updated,
           sum(x.tup_deleted)::bigint AS tup_deleted
      FROM tenant.table_stats x WHERE x.schema_id = t.id) s ON true
  LEFT JOIN LATERAL (
    SELECT u.taken_at, u.tup_inserted, u.tup_updated, u.tup_deleted FROM tenant.usage_snapshots u
     WHERE u.schema_id = t.id ORDER BY u.taken_at DESC, u.id DESC LIMIT 1) snap ON true
 WHERE t.status <> 'DROPPED';

COMMENT ON VIEW tenant.tenant_stats IS 'Per-tenant size and activity (sums of tenant.table_stats), with the rows written since the tenant''s last usage snapshot.';
COMMENT ON COLUMN tenant.tenant_stats.schema_id IS 'Registry id.';
COMMENT ON COLUMN tenant.tenant_stats.schema_name IS 'Schema name.';
COMMENT ON COLUMN tenant.tenant_stats.status IS 'Registry status.';
COMMENT ON COLUMN tenant.tenant_stats.tables IS 'Tables in the schema.';
COMMENT ON COLUMN tenant.tenant_stats.table_bytes IS 'Bytes of the heaps (with their maps).';
COMMENT ON COLUMN tenant.tenant_stats.index_bytes IS 'Bytes of the indexes.';
COMMENT ON COLUMN tenant.tenant_stats.toast_bytes IS 'Bytes of the TOAST tables.';
COMMENT ON COLUMN tenant.tenant_stats.total_bytes IS 'All of the above.';
COMMENT ON COLUMN tenant.tenant_stats.row_estimate IS 'Sum of the planner''s row estimates.';
COMMENT ON COLUMN tenant.tenant_stats.seq_scans IS 'Sequential scans since statistics were reset.';
COMMENT ON COLUMN tenant.tenant_stats.idx_scans IS 'Index scans since statistics were reset.';
COMMENT ON COLUMN tenant.tenant_stats.dead_tuples IS 'Estimated dead rows.';
COMMENT ON COLUMN tenant.tenant_stats.last_vacuum IS 'The most recent VACUUM of any of its tables.';
COMMENT ON COLUMN tenant.tenant_stats.last_analyze IS 'The most recent ANALYZE of any of its tables.';
COMMENT ON COLUMN tenant.tenant_stats.never_analyzed IS 'Tables and materialized views never analyzed.';
COMMENT ON COLUMN tenant.tenant_stats.tup_inserted IS 'Rows inserted since statistics were reset.';
COMMENT ON COLUMN tenant.tenant_stats.tup_updated IS 'Rows updated since statistics were reset.';
COMMENT ON COLUMN tenant.tenant_stats.tup_deleted IS 'Rows deleted since statistics were reset.';
COMMENT ON COLUMN tenant.tenant_stats.snapshot_at IS 'When the tenant''s last usage snapshot was taken; NULL if none.';
COMMENT ON COLUMN tenant.tenant_stats.inserted_since_snapshot IS 'Rows inserted since the last snapshot (since the statistics reset, or ever, when there is none).';
COMMENT ON COLUMN tenant.tenant_stats.updated_since_snapshot IS 'Rows updated since the last snapshot.';
COMMENT ON COLUMN tenant.tenant_stats.deleted_since_snapshot IS 'Rows deleted since the last snapshot.';

-- The slowest statements per tenant, attributed by the role that ran them
-- (tenant.set_context switches to the tenant's role). pg_stat_statements is
-- optional: without it the function says so (55000).
CREATE FUNCTION tenant.slow_queries(max_rows integer DEFAULT 5)
RETURNS TABLE (schema_id uuid, schema_name text, queryid bigint, calls bigint, total_ms double precision,
               mean_ms double precision, max_ms double precision, rows bigint, query text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    home name;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more, not %', max_rows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_stat_statements';
    IF home IS NULL THEN
        RAISE EXCEPTION 'pg_stat_statements is not installed in database %', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add pg_stat_statements to shared_preload_libraries, restart, and run CREATE EXTENSION pg_stat_statements.';
    END IF;
    RETURN QUERY EXECUTE format(
        $query$
        SELECT r.schema_id, r.schema_name, r.queryid, r.calls, r.total_ms, r.mean_ms, r.max_ms, r.rows, r.query FROM (
            SELECT t.id AS schema_id, t.schema_name, s.queryid, s.calls, s.total_exec_time AS total_ms,
                   s.mean_exec_time AS mean_ms, s.max_exec_time AS max_ms, s.rows, s.query,
                   pg_catalog.row_number() OVER (PARTITION BY t.id ORDER BY s.mean_exec_time DESC) AS rank
              FROM %I.pg_stat_statements s
              JOIN pg_catalog.pg_roles o ON o.oid = s.userid
              JOIN tenant.tenant_schemas t ON t.owner_role = o.rolname AND t.status <> 'DROPPED'
             WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())) r
         WHERE r.rank <= $1 ORDER BY r.schema_name, r.mean_ms DESC
        $query$, home) USING max_rows;
END
$$;
COMMENT ON FUNCTION tenant.slow_queries(integer) IS
    'The slowest statements (by mean time) of each tenant''s role, from pg_stat_statements; 55000 when it is not installed.';

-- Health: one row per check, and a verdict per tenant and for the fleet.
-- The checks of many tenants in one statement (fleet_health asks for every
-- tenant at once): a function call per tenant, and a to_regclass per template
-- table per tenant, cost about 0.5 ms per tenant; here each tenant costs a few
-- index probes (its relations through pg_depend, the template's tables by name
-- in its schema). Rows of unknown and DROPPED ids are left out (health_checks
-- raises for them).
CREATE FUNCTION tenant.health_check_rows(schema_ids uuid[])
RETURNS TABLE (schema_id uuid, n integer, check_name text, state text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH template AS MATERIALIZED (
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
         WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects('tenant_template', 'pg_catalog.pg_class') AS o(oid))
           AND c.relkind IN ('r', 'p')
    ), settings AS MATERIALIZED (
        SELECT (SELECT COALESCE(max(m.version), 0) FROM tenant.migrations m) AS template_version,
               tenant.health_backup_max_age() AS max_age
    )
    SELECT t.id, c.n, c.check_name, c.state, c.detail
      FROM tenant.tenant_schemas t
     CROSS JOIN settings s
      LEFT JOIN pg_namespace ns ON ns.nspname = t.schema_name
      LEFT JOIN pg_roles r ON r.rolname = t.owner_role
     CROSS JOIN LATERAL (
        SELECT r.oid IS NOT NULL AND pg_catalog.has_schema_privilege(r.oid, ns.oid, 'USAGE') AS reachable,
               t.status IN ('ACTIVE', 'SPARE') AS wanted
     ) a
     -- The template's tables, each looked up by name in the tenant's schema.
     CROSS JOIN LATERAL (
        SELECT array_agg(p.relname::text ORDER BY p.relname) FILTER (WHERE x.oid IS NULL) AS missing,
               array_agg(p.relname::text ORDER BY p.relname)
                   FILTER (WHERE (p.relrowsecurity AND NOT x.relrowsecurity) OR (p.relforcerowsecurity AND NOT x.relforcerowsecurity))
                   AS unprotected
          FROM template p LEFT JOIN pg_class x ON x.relname = p.relname AND x.relnamespace = ns.oid
     ) tables
     -- The activity counters, as tenant.tenant_stats sums them (without the
     -- relation sizes that view also measures).
     CROSS JOIN LATERAL (
        SELECT COALESCE(sum(pg_stat_get_tuples_inserted(c.oid)), 0) AS inserted,
               COALESCE(sum(pg_stat_get_tuples_updated(c.oid)), 0) AS updated,
               COALESCE(sum(pg_stat_get_tuples_deleted(c.oid)), 0) AS deleted,
               COALESCE(sum(pg_stat_get_numscans(c.oid)
                            + (SELECT COALESCE(sum(pg_stat_get_numscans(i.indexrelid)), 0)
                                 FROM pg_index i WHERE i.indrelid = c.oid)), 0) AS scans
          FROM pg_class c
         WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects(t.schema_name, 'pg_catalog.pg_class') AS o(oid))
           AND c.relkind IN ('r', 'p', 'm')
     ) counters
      LEFT JOIN LATERAL (SELECT u.taken_at, u.tup_inserted, u.tup_updated, u.tup_deleted FROM tenant.usage_snapshots u
                          WHERE u.schema_id = t.id ORDER BY u.taken_at DESC, u.id DESC LIMIT 1) snap ON true
     CROSS JOIN LATERAL (
        SELECT snap.taken_at AS snapshot_at,
               CASE WHEN snap.taken_at IS NULL OR counters.inserted < snap.tup_inserted THEN counters.inserted ELSE counters.inserted - snap.tup_inserted END
               + CASE WHEN snap.taken_at IS NULL OR counters.updated < snap.tup_updated THEN counters.updated ELSE counters.updated - snap.tup_updated END
               + CASE WHEN snap.taken_at IS NULL OR counters.deleted < snap.tup_deleted THEN counters.deleted ELSE counters.deleted - snap.tup_deleted END AS writes,
               counters.scans
     ) activity
     CROSS JOIN LATERAL (VALUES
        (1, 'status', CASE WHEN t.status IN ('ACTIVE', 'SPARE') THEN 'ok' ELSE 'warning' END, t.status),
        (2, 'schema_present', CASE WHEN ns.oid IS NULL THEN 'failed' ELSE 'ok' END,
            CASE WHEN ns.oid IS NULL
                 THEN format('schema "%s" does not exist (tenant.check_integrity(..., fix => true) recreates it)', t.schema_name)
                 ELSE t.schema_name END),
        (3, 'reachable', CASE WHEN r.oid IS NOT NULL AND a.reachable = a.wanted THEN 'ok' ELSE 'failed' END,
            CASE WHEN r.oid IS NULL THEN format('role "%s" does not exist', t.owner_role)
                 WHEN a.reachable THEN format('role "%s" can use the schema', t.owner_role)
                 ELSE format('role "%s" cannot use the schema', t.owner_role) END
            || CASE WHEN r.oid IS NOT NULL AND a.reachable <> a.wanted
                    THEN format(' (a %s tenant''s role should%s)', t.status, CASE WHEN a.wanted THEN '' ELSE ' not' END)
                    ELSE '' END),
        (4, 'tables_present',
            CASE WHEN t.version <> s.template_version THEN 'warning' WHEN tables.missing IS NULL THEN 'ok' ELSE 'failed' END,
            CASE WHEN t.version <> s.template_version
                 THEN format('at version %s, the template at %s: run tenant.apply_migrations()', t.version, s.template_version)
                 WHEN tables.missing IS NULL THEN 'every table of the template is present'
                 ELSE 'missing: ' || array_to_string(tables.missing, ', ') END),
        (5, 'row_level_security', CASE WHEN tables.unprotected IS NULL THEN 'ok' ELSE 'failed' END,
            CASE WHEN tables.unprotected IS NULL THEN 'as in the template'
                 ELSE 'disabled or not forced where the template has it: ' || array_to_string(tables.unprotected, ', ') END),
        (6, 'recent_activity',
            CASE WHEN activity.writes > 0 OR activity.snapshot_at IS NULL AND activity.scans > 0 THEN 'ok' ELSE 'info' END,
            CASE WHEN activity.snapshot_at IS NULL
                 THEN format('%s row(s) written, %s scan(s) since statistics were reset', activity.writes, activity.scans)
                 ELSE format('%s row(s) written since the usage snapshot of %s', activity.writes, activity.snapshot_at) END),
        (7, 'backup_age',
            CASE WHEN s.max_age = 0 THEN 'ok' WHEN t.last_backup IS NULL THEN 'warning'
                 WHEN now() - t.last_backup > make_interval(secs => s.max_age) THEN 'warning' ELSE 'ok' END,
            CASE WHEN s.max_age = 0 THEN 'not checked (tenant_control.health_backup_max_age = 0)'
                 WHEN t.last_backup IS NULL THEN 'never backed up'
                 ELSE format('last backup %s ago (at most %s)', date_trunc('second', now() - t.last_backup), make_interval(secs => s.max_age)) END),
        -- The state the quota enforcement itself is in (see Storage quotas).
        (8, 'quota',
            CASE WHEN t.quota_limit IS NULL THEN 'ok' WHEN t.quota_state = 'EXCEEDED' THEN 'failed'
                 WHEN t.quota_state = 'WARNING' THEN 'warning' ELSE 'ok' END,
            CASE WHEN t.quota_limit IS NULL THEN 'no limit'
                 ELSE format('%s: %s of %s used (%s%%, last counted)', t.quota_state, pg_size_pretty(t.storage_used),
                             pg_size_pretty(t.quota_limit), round(100.0 * t.storage_used / t.quota_limit, 1)) END)
     ) c(n, check_name, state, detail)
     WHERE t.id = ANY (schema_ids) AND t.status <> 'DROPPED'
       -- Without its schema, a tenant has nothing more to check.
       AND (ns.oid IS NOT NULL OR c.n <= 2)
$$;
COMMENT ON FUNCTION tenant.health_check_rows(uuid[]) IS
    'Internal: the rows of tenant.health_checks for many tenants at once (unknown and DROPPED ids left out), numbered in check order.';

CREATE FUNCTION tenant.health_checks(schema_id uuid)
RETURNS TABLE (check_name text, state text, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known_status text;
BEGIN
    IF health_checks.schema_id IS NULL THEN
        RAISE EXCEPTION 'argument "schema_id" must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT r.status INTO known_status FROM tenant.tenant_schemas r WHERE r.id = health_checks.schema_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no institution schema with id % in tenant.tenant_schemas', health_checks.schema_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF known_status = 'DROPPED' THEN
        RAISE EXCEPTION 'institution schema "%" (%) is DROPPED',
            (SELECT r.schema_name FROM tenant.tenant_schemas r WHERE r.id = health_checks.schema_id), health_checks.schema_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN QUERY SELECT h.check_name, h.state, h.detail FROM tenant.health_check_rows(ARRAY[health_checks.schema_id]) h ORDER BY h.n;
END
$$;
COMMENT ON FUNCTION tenant.health_checks(uuid) IS
    'One row per health check of a tenant: status, schema_present, reachable, tables_present, row_level_security, recent_activity, backup_age, quota; state ok, info, warning or failed.';

CREATE FUNCTION tenant.institution_health(schema_id uuid)
RETURNS TABLE (schema_name text, health text, failing text[], checks jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT t.schema_name FROM tenant.tenant_schemas t WHERE t.id = institution_health.schema_id),
           CASE WHEN bool_or(c.state = 'failed') THEN 'unhealthy' WHEN bool_or(c.state = 'warning') THEN 'degraded' ELSE 'healthy' END,
           COALESCE(array_agg(c.check_name ORDER BY c.n) FILTER (WHERE c.state IN ('failed', 'warning')), '{}'),
           jsonb_object_agg(c.check_name, jsonb_build_object('state', c.state, 'detail', c.detail))
      FROM tenant.health_checks(institution_health.schema_id) WITH ORDINALITY AS c(check_name, state, detail, n)
$$;
COMMENT ON FUNCTION tenant.institution_health(uuid) IS
    'A tenant''s health: healthy, degraded (a warning) or unhealthy (a failed check), the checks that are not ok, and every check as jsonb.';

CREATE VIEW tenant.fleet_health AS
SELECT t.id AS schema_id, t.schema_name, t.status, h.health, h.failing, h.checks
  FROM tenant.tenant_schemas t
  JOIN (SELECT c.schema_id,
               CASE WHEN bool_or(c.state = 'failed') THEN 'unhealthy' WHEN bool_or(c.state = 'warning') THEN 'degraded' ELSE 'healthy' END AS health,
               COALESCE(array_agg(c.check_name ORDER BY c.n) FILTER (WHERE c.state IN ('failed', 'warning')), '{}') AS failing,
               jsonb_object_agg(c.check_name, jsonb_build_object('state', c.state, 'detail', c.detail)) AS checks
          FROM tenant.health_check_rows(ARRAY(SELECT s.id FROM tenant.tenant_schemas s WHERE s.status NOT IN ('DROPPED', 'SPARE'))) c
         GROUP BY c.schema_id) h ON h.schema_id = t.id
 WHERE t.status NOT IN ('DROPPED', 'SPARE');
COMMENT ON VIEW tenant.fleet_health IS 'tenant.institution_health for every institution (not DROPPED, not SPARE).';
COMMENT ON COLUMN tenant.fleet_health.schema_id IS 'Registry id.';
COMMENT ON COLUMN tenant.fleet_health.schema_name IS 'Schema name.';
COMMENT ON COLUMN tenant.fleet_health.status IS 'Registry status.';
COMMENT ON COLUMN tenant.fleet_health.health IS 'healthy, degraded or unhealthy.';
COMMENT ON COLUMN tenant.fleet_health.failing IS 'Checks in state warning or failed.';
COMMENT ON COLUMN tenant.fleet_health.checks IS 'Every check: {"name": {"state": ..., "detail": ...}}.';

CREATE VIEW tenant.fleet_health_summary AS
SELECT count(*) AS tenants,
       count(*) FILTER (WHERE h.health = 'healthy') AS healthy,
       count(*) FILTER (WHERE h.health = 'degraded') AS degraded,
       count(*) FILTER (WHERE h.health = 'unhealthy') AS unhealthy,
       CASE WHEN count(*) FILTER (WHERE h.health = 'unhealthy') > 0 THEN 'unhealthy'
            WHEN count(*) FILTER (WHERE h.health = 'degraded') > 0 THEN 'degraded' ELSE 'healthy' END AS health
  FROM tenant.fleet_health h;
COMMENT ON VIEW tenant.fleet_health_summary IS 'The fleet in one row: how many tenants are healthy, degraded, unhealthy, and the worst state.';
COMMENT ON COLUMN tenant.fleet_health_summary.tenants IS 'Institutions checked.';
COMMENT ON COLUMN tenant.fleet_health_summary.healthy IS 'Institutions that are healthy.';
COMMENT ON COLUMN tenant.fleet_health_summary.degraded IS 'Institutions that are degraded.';
COMMENT ON COLUMN tenant.fleet_health_summary.unhealthy IS 'Institutions that are unhealthy.';
COMMENT ON COLUMN tenant.fleet_health_summary.health IS 'The worst health in the fleet.';

-- Scheduled jobs. A job's failure must show in cron.job_run_details (the
-- procedure raises) and in the operation log (the FAILED row is committed
-- first), so the procedures commit and take no SET clause.
CREATE PROCEDURE tenant.take_usage_snapshot()
LANGUAGE plpgsql
AS $$
DECLARE
    outcome record;
BEGIN
    SELECT * INTO outcome FROM tenant.record_usage_snapshot();
    COMMIT;
    IF outcome.status OPERATOR(pg_catalog.<>) 'SUCCESS' THEN
        RAISE EXCEPTION 'usage snapshot failed: %', outcome.message USING ERRCODE = outcome.sqlstate;
    END IF;
    RAISE NOTICE '%', outcome.message;
END
$$;
COMMENT ON PROCEDURE tenant.take_usage_snapshot() IS
    'Record one usage row per tenant in tenant.usage_snapshots (one statement) and commit; raises after logging if it failed. Safe from pg_cron.';

CREATE PROCEDURE tenant.run_integrity_check(fix boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    findings bigint;
    unrepaired bigint;
    failed_state text;
    failed_message text;
BEGIN
    BEGIN
        SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE c.severity = 'ERROR' AND NOT c.fixed)
          INTO findings, unrepaired FROM tenant.check_integrity(NULL, fix) c;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
    END;
    IF failed_state IS NOT NULL THEN
        PERFORM tenant.note_job_failure('INTEGRITY_CHECK', NULL, 'integrity check of every institution schema (scheduled)',
                                        failed_state, failed_message);
        COMMIT;
        RAISE EXCEPTION 'integrity check failed: %', failed_message USING ERRCODE = failed_state;
    END IF;
    RAISE NOTICE 'integrity check: % finding(s), % unrepaired error(s); see the INTEGRITY_CHECK row of tenant.schema_operations',
        findings, unrepaired;
END
$$;
COMMENT ON PROCEDURE tenant.run_integrity_check(boolean) IS
    'tenant.check_integrity over the fleet for pg_cron: findings go to the INTEGRITY_CHECK log row; a failure is logged, committed, then raised.';

CREATE PROCEDURE tenant.run_maintenance()
LANGUAGE plpgsql
AS $$
DECLARE
    pending record;
    done integer := 0;
    failed integer := 0;
    failed_state text;
    failed_message text;
BEGIN
    FOR pending IN
        SELECT t.id, t.schema_name FROM tenant.tenant_schemas t
         WHERE t.status OPERATOR(pg_catalog.<>) ALL (ARRAY['DROPPED', 'SPARE']) ORDER BY t.schema_name
    LOOP
        BEGIN
            PERFORM pg_catalog.count(*) FROM tenant.optimize_institution_schema(pending.id);
            done := done OPERATOR(pg_catalog.+) 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
            PERFORM tenant.note_job_failure('OPTIMIZE', pending.id,
                                            pg_catalog.format('optimize institution schema %s (scheduled)', pending.id),
                                            failed_state, failed_message);
            failed := failed OPERATOR(pg_catalog.+) 1;
        END;
        COMMIT;
    END LOOP;
    IF failed OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION '% of % tenant(s) could not be analyzed, the last with: %', failed, failed OPERATOR(pg_catalog.+) done,
            failed_message USING ERRCODE = failed_state,
            HINT = 'See the FAILED OPTIMIZE rows in tenant.schema_operations.';
    END IF;
    RAISE NOTICE 'analyzed % tenant(s)', done;
END
$$;
COMMENT ON PROCEDURE tenant.run_maintenance() IS
    'ANALYZE every institution (tenant.optimize_institution_schema), one transaction each; failures are logged and the procedure raises at the end. Safe from pg_cron.';

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
    fleet_backup text DEFAULT '0 1 * * *',
    data_retention text DEFAULT '15 4 * * *',
    history text DEFAULT '45 4 * * *',
    history_keep interval DEFAULT '13 months',
    move_resolver text DEFAULT '* * * * *')
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
            (6, 'fleet_backup', fleet_backup, 'CALL tenant.backup_all()'),
            (7, 'data_retention', data_retention, 'CALL tenant.apply_retention()'),
            (8, 'history', history,
             format('CALL tenant.maintain_history(%L)', history_keep)),
            (9, 'move_resolver', move_resolver, 'SELECT count(*) FROM tenant.resolve_moves()')) AS j(n, name, cron, sql)
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
COMMENT ON FUNCTION tenant.schedule_maintenance(text, text, text, text, text, text, text, text, interval, text) IS
    'Schedule the recommended pg_cron jobs (quota refresh, usage snapshot, integrity check, backup retention, maintenance, fleet backup, data retention, history retention keeping history_keep, the resolver of interrupted moves); with pg_cron in another database, returns the statements to run there. NULL skips a job.';
COMMENT ON FUNCTION tenant.check_integrity(uuid, boolean) IS
    'Integrity check of one tenant or (NULL) the fleet: registry vs catalogs, drift from the template, orphaned rows, counters; fix => true repairs what is safe. Logs INTEGRITY_CHECK.';
COMMENT ON FUNCTION tenant.record_usage_snapshot() IS 'Record one usage row per tenant (tenant.usage_snapshots); logs USAGE_SNAPSHOT. Called by tenant.take_usage_snapshot.';
COMMENT ON FUNCTION tenant.optimize_institution_schema(uuid) IS
    'ANALYZE a tenant''s tables, set last_optimized, log OPTIMIZE; returns the VACUUM and REINDEX CONCURRENTLY statements (kind VACUUM, REINDEX) and pg_cron schedules for them (kind CRON).';
COMMENT ON FUNCTION tenant.note_job_failure(text, uuid, text, text, text) IS 'Internal: the FAILED log row of a scheduled job whose procedure caught an error.';
COMMENT ON FUNCTION tenant.health_backup_max_age() IS 'Internal: tenant_control.health_backup_max_age in seconds.';


-- Privileges: nothing for PUBLIC; the platform administrator role gets the
-- functions and read access to the registry, the log and the backup catalogue.
DO $privileges$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'tenant'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', fn);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO tenant_control_admin', fn);
    END LOOP;
END
$privileges$;

-- Applications: the tenant context and nothing else.
GRANT USAGE ON SCHEMA tenant TO tenant_control_app;
GRANT EXECUTE ON FUNCTION tenant.set_context(uuid), tenant.enter_context(uuid) TO tenant_control_app;
-- Shared-table policies, and applications inside a tenant context (running
-- as the tenant's role), call this. USAGE on the schema lets any role name
-- it; it exposes nothing else: no table, view or sequence of the schema
-- grants anything to PUBLIC, and current_institution() is its only function
-- PUBLIC may execute (pgrx-tests/tests/shared_tables.rs checks both).
-- (USAGE to PUBLIC is granted last, below: an upgraded 0.1.0 database grants
-- it last too, and the schema's privileges then read the same.)
GRANT EXECUTE ON FUNCTION tenant.current_institution() TO PUBLIC;

-- Institution administrators: their rows of the registry and the log.
GRANT USAGE ON SCHEMA tenant TO tenant_control_institution_admin;
GRANT SELECT ON tenant.tenant_schemas, tenant.schema_operations, tenant.institution_admins
    TO tenant_control_institution_admin;
GRANT UPDATE (config) ON tenant.tenant_schemas TO tenant_control_institution_admin;
GRANT EXECUTE ON FUNCTION tenant.list_institutions(text), tenant.find_institution(text)
    TO tenant_control_institution_admin;

REVOKE ALL ON ALL TABLES IN SCHEMA tenant FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant TO tenant_control_admin;
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
GRANT SELECT ON tenant.tenant_schemas, tenant.schema_operations, tenant.schema_backups, tenant.migrations,
                tenant.migration_status, tenant.warm_pool, tenant.institution_admins
    TO tenant_control_admin;
GRANT SELECT ON tenant.backups, tenant.backup_tables TO tenant_control_admin;

GRANT SELECT ON tenant.usage_snapshots, tenant.table_stats, tenant.tenant_stats, tenant.fleet_health,
                tenant.fleet_health_summary
    TO tenant_control_admin;

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

COMMENT ON FUNCTION tenant.set_limits(uuid, jsonb) IS
    'Set an institution''s limits: statement_timeout, lock_timeout, idle_in_transaction_session_timeout, work_mem (applied by tenant.set_context for the transaction) and max_transactions (concurrent transactions in its context; over it set_context fails with 53300); NULL or {} removes them.';
COMMENT ON FUNCTION tenant.context_limits(uuid) IS
    'Internal: for tenant.set_context, the settings of an institution''s limits after taking one of its transaction slots (53300 when none is free).';
REVOKE ALL ON FUNCTION tenant.set_limits(uuid, jsonb), tenant.context_limits(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.set_limits(uuid, jsonb), tenant.context_limits(uuid) TO tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.context_limits(uuid) TO tenant_control_app;

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

-- fleet work (issue 15) ------------------------------------------------------
-- Runs of tenant.run_in_each_committed: the statement and one row per
-- institution, committed as the run goes, so that a killed run can resume.

CREATE TABLE tenant.fleet_runs (
    id                   bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    statement            text        NOT NULL,
    parameters           text[],
    lock_timeout_ms      integer     NOT NULL,
    statement_timeout_ms integer     NOT NULL,
    status               text        NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'COMPLETED')),
    requested_by         text        NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at         timestamptz
);
COMMENT ON TABLE tenant.fleet_runs IS
    'Runs of tenant.run_in_each_committed: one row per run; its institutions are in tenant.fleet_run_items.';
COMMENT ON COLUMN tenant.fleet_runs.statement IS 'The statement run in each institution.';
COMMENT ON COLUMN tenant.fleet_runs.parameters IS 'The values bound to $1, $2, ... (as text).';
COMMENT ON COLUMN tenant.fleet_runs.status IS 'RUNNING until no institution is PENDING, then COMPLETED.';

CREATE TABLE tenant.fleet_run_items (
    run_id         bigint      NOT NULL REFERENCES tenant.fleet_runs (id) ON DELETE CASCADE,
    position       integer     NOT NULL,
    institution_id uuid        NOT NULL,
    schema_name    text,
    status         text        NOT NULL DEFAULT 'PENDING'
                   CHECK (status IN ('PENDING', 'SUCCESS', 'ERROR', 'SKIPPED')),
    row_count      bigint,
    result         jsonb,
    sqlstate       text,
    message        text,
    duration_ms    double precision,
    finished_at    timestamptz,
    PRIMARY KEY (run_id, institution_id)
);
COMMENT ON TABLE tenant.fleet_run_items IS
    'One row per institution of a tenant.run_in_each_committed run: PENDING until its transaction commits with the outcome.';

SELECT pg_catalog.pg_extension_config_dump('tenant.fleet_runs', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.fleet_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.fleet_run_items', '');

CREATE VIEW tenant.fleet_run_progress AS
SELECT r.id AS run_id, r.status, r.statement, r.requested_by, r.started_at, r.completed_at,
       pg_catalog.count(i.institution_id) AS institutions,
       pg_catalog.count(i.institution_id) FILTER (WHERE i.status = 'PENDING') AS pending,
       pg_catalog.count(i.institution_id) FILTER (WHERE i.status = 'SUCCESS') AS succeeded,
       pg_catalog.count(i.institution_id) FILTER (WHERE i.status = 'ERROR') AS failed,
       pg_catalog.count(i.institution_id) FILTER (WHERE i.status = 'SKIPPED') AS skipped,
       pg_catalog.max(i.finished_at) AS last_progress_at
  FROM tenant.fleet_runs r
  LEFT JOIN tenant.fleet_run_items i ON i.run_id = r.id
 GROUP BY r.id;
COMMENT ON VIEW tenant.fleet_run_progress IS
    'Progress of each tenant.run_in_each_committed run: how many institutions are pending, succeeded, failed, skipped.';

-- The procedures commit after each institution, so they take no SET clause
-- and qualify every name and operator.
CREATE PROCEDURE tenant.resume_fleet_run(run_id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    item record;
    outcome record;
    total bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tenant.fleet_runs r WHERE r.id OPERATOR(pg_catalog.=) resume_fleet_run.run_id) THEN
        RAISE EXCEPTION 'no fleet run % in tenant.fleet_runs', resume_fleet_run.run_id
            USING ERRCODE = 'undefined_object', HINT = 'See tenant.fleet_run_progress for the runs.';
    END IF;
    SELECT pg_catalog.count(*) INTO total FROM tenant.fleet_run_items i
     WHERE i.run_id OPERATOR(pg_catalog.=) resume_fleet_run.run_id;
    FOR item IN
        SELECT i.institution_id, i.position FROM tenant.fleet_run_items i
         WHERE i.run_id OPERATOR(pg_catalog.=) resume_fleet_run.run_id AND i.status OPERATOR(pg_catalog.=) 'PENDING'
         ORDER BY i.position
    LOOP
        FOR outcome IN SELECT * FROM tenant.fleet_run_step(resume_fleet_run.run_id, item.institution_id) LOOP
            RAISE NOTICE '[%/%] %: %', item.position, total,
                COALESCE(outcome.schema_name, outcome.institution_id::text), outcome.status OPERATOR(pg_catalog.||)
                CASE WHEN outcome.status OPERATOR(pg_catalog.=) 'SUCCESS' THEN pg_catalog.format(' (%s rows)', outcome.row_count)
                     ELSE pg_catalog.format(' %s %s', outcome.sqlstate, outcome.message) END;
        END LOOP;
        COMMIT;
    END LOOP;
    RAISE NOTICE '%', tenant.fleet_run_finish(resume_fleet_run.run_id);
    COMMIT;
END
$$;

CREATE PROCEDURE tenant.run_in_each_committed(
    statement text,
    institutions uuid[] DEFAULT NULL,
    parameters text[] DEFAULT NULL,
    dry_run boolean DEFAULT false,
    lock_timeout interval DEFAULT NULL,
    statement_timeout interval DEFAULT NULL,
    config_filter jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    planned record;
    new_run bigint;
BEGIN
    IF dry_run THEN
        FOR planned IN
            SELECT * FROM tenant.run_in_each(statement, institutions, parameters, true, lock_timeout,
                                             statement_timeout, config_filter)
        LOOP
            RAISE NOTICE '%: % %', COALESCE(planned.schema_name, planned.institution_id::text), planned.status,
                COALESCE(planned.sqlstate OPERATOR(pg_catalog.||) ' ', '') OPERATOR(pg_catalog.||) planned.message;
        END LOOP;
        RETURN;
    END IF;
    new_run := tenant.fleet_run_start(statement, institutions, parameters, lock_timeout, statement_timeout,
                                      config_filter);
    RAISE NOTICE 'fleet run %: after an interruption, CALL tenant.resume_fleet_run(%) to finish it', new_run, new_run;
    COMMIT;
    CALL tenant.resume_fleet_run(new_run);
END
$$;

REVOKE ALL ON PROCEDURE tenant.run_in_each_committed(text, uuid[], text[], boolean, interval, interval, jsonb),
                        tenant.resume_fleet_run(bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.run_in_each_committed(text, uuid[], text[], boolean, interval, interval, jsonb),
                           tenant.resume_fleet_run(bigint) TO tenant_control_admin;
GRANT SELECT ON tenant.fleet_runs, tenant.fleet_run_items, tenant.fleet_run_progress TO tenant_control_admin;

COMMENT ON FUNCTION tenant.run_in_each(text, uuid[], text[], boolean, interval, interval, jsonb) IS
    'Run a statement in each chosen institution (NULL: every ACTIVE one) as the institution''s role with its schema on search_path, each in its own subtransaction; one result row per institution. Logged as FLEET_RUN.';
COMMENT ON PROCEDURE tenant.run_in_each_committed(text, uuid[], text[], boolean, interval, interval, jsonb) IS
    'tenant.run_in_each with one commit per institution: progress as NOTICEs and in tenant.fleet_run_progress, resumable with tenant.resume_fleet_run. Safe from pg_cron.';
COMMENT ON PROCEDURE tenant.resume_fleet_run(bigint) IS
    'Finish a tenant.run_in_each_committed run that was interrupted: runs the institutions still PENDING, one commit each.';
COMMENT ON FUNCTION tenant.fleet_run_start(text, uuid[], text[], interval, interval, jsonb) IS
    'Internal (tenant.run_in_each_committed): record a run and its PENDING institutions; returns the run id.';
COMMENT ON FUNCTION tenant.fleet_run_step(bigint, uuid) IS
    'Internal (tenant.run_in_each_committed): run one PENDING institution of a run.';
COMMENT ON FUNCTION tenant.fleet_run_finish(bigint) IS
    'Internal (tenant.run_in_each_committed): close a run and log it as a FLEET_RUN operation.';

-- Fleet views (tenant.create_fleet_view): which exist, and a digest of the
-- text they were last built from (a refresh that would give the same text
-- does nothing).
CREATE TABLE tenant.fleet_views (
    view_name      text        PRIMARY KEY,
    template_table text        NOT NULL,
    definition_md5 text,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    refreshed_at   timestamptz
);
COMMENT ON TABLE tenant.fleet_views IS
    'Fleet views made by tenant.create_fleet_view: view tenant.<view_name> over every ACTIVE institution''s copy of tenant_template.<template_table>.';
COMMENT ON COLUMN tenant.fleet_views.definition_md5 IS 'md5 of the view text last built; NULL when a refresh is due.';
SELECT pg_catalog.pg_extension_config_dump('tenant.fleet_views', '');

-- The fleet views follow the registry (institutions created, dropped,
-- suspended, renamed, migrated) and the template (a migration registered).
-- A refresh that cannot get its lock (a long report reads the view) does not
-- fail the operation that changed the registry: the view is marked due and a
-- WARNING says to run tenant.refresh_fleet_views().
CREATE FUNCTION tenant.fleet_views_follow_now() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        PERFORM tenant.refresh_fleet_views();
    EXCEPTION WHEN lock_not_available THEN
        UPDATE tenant.fleet_views SET definition_md5 = NULL;
        RAISE WARNING 'fleet views could not be refreshed now (a report holds one of them)'
            USING HINT = 'Run SELECT tenant.refresh_fleet_views(); once the report is done.';
    END;
END
$$;
-- The trigger function is C (src/ops/registry_follow.rs): it fires on every
-- create and warm-pool claim, and almost always finds no fleet view. It
-- looks for a row of tenant.fleet_views without SQL and calls
-- tenant.fleet_views_follow_now() only when there is one.
CREATE FUNCTION tenant.fleet_views_follow() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'tc_fleet_views_follow';
-- Row triggers, not statement triggers: the extension inserts registry rows
-- with INSERT ... RETURNING under an SPI row limit, which ends the statement
-- before PostgreSQL fires its AFTER STATEMENT triggers. Only rows that are
-- or were ACTIVE concern the views (spares of the warm pool do not).
CREATE TRIGGER tc_fleet_views_follow_new
    AFTER INSERT ON tenant.tenant_schemas FOR EACH ROW WHEN (NEW.status = 'ACTIVE')
    EXECUTE FUNCTION tenant.fleet_views_follow();
CREATE TRIGGER tc_fleet_views_follow_change
    AFTER UPDATE OF status, schema_name, version ON tenant.tenant_schemas
    FOR EACH ROW WHEN (NEW.status = 'ACTIVE' OR OLD.status = 'ACTIVE')
    EXECUTE FUNCTION tenant.fleet_views_follow();
CREATE TRIGGER tc_fleet_views_follow_gone
    AFTER DELETE ON tenant.tenant_schemas FOR EACH ROW WHEN (OLD.status = 'ACTIVE')
    EXECUTE FUNCTION tenant.fleet_views_follow();
CREATE TRIGGER tc_fleet_views_follow_template
    AFTER INSERT OR DELETE ON tenant.migrations
    FOR EACH ROW EXECUTE FUNCTION tenant.fleet_views_follow();

-- Per-institution figures and their totals: the query runs in each
-- institution through tenant.run_in_each (as the institution's role); its
-- first row is the institution's figures, and the TOTAL row sums every
-- numeric column over the institutions where it succeeded.
CREATE FUNCTION tenant.fleet_report(query text, institutions uuid[] DEFAULT NULL, parameters text[] DEFAULT NULL)
RETURNS TABLE (institution_id uuid, schema_name text, status text, figures jsonb, sqlstate text, message text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    WITH runs AS MATERIALIZED (
        SELECT r.* FROM tenant.run_in_each(query, institutions, parameters) r
    ), totals AS (
        SELECT e.key, pg_catalog.sum((e.value #>> '{}')::numeric) AS total
          FROM runs r, pg_catalog.jsonb_each(r.result -> 0) e
         WHERE r.status = 'SUCCESS' AND pg_catalog.jsonb_typeof(e.value) = 'number'
         GROUP BY e.key
    )
    SELECT r.institution_id, r.schema_name, r.status, r.result -> 0, r.sqlstate, r.message FROM runs r
    UNION ALL
    SELECT NULL, NULL, 'TOTAL',
           COALESCE((SELECT pg_catalog.jsonb_object_agg(t.key, t.total) FROM totals t), '{}'::jsonb), NULL,
           pg_catalog.format('%s institution(s) counted, %s failed, %s skipped',
                             (SELECT pg_catalog.count(*) FROM runs r WHERE r.status = 'SUCCESS'),
                             (SELECT pg_catalog.count(*) FROM runs r WHERE r.status = 'ERROR'),
                             (SELECT pg_catalog.count(*) FROM runs r WHERE r.status = 'SKIPPED'))
$$;

REVOKE ALL ON FUNCTION tenant.fleet_report(text, uuid[], text[]), tenant.fleet_views_follow(),
                        tenant.fleet_views_follow_now() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.fleet_report(text, uuid[], text[]) TO tenant_control_admin;
GRANT SELECT ON tenant.fleet_views TO tenant_control_admin;
COMMENT ON FUNCTION tenant.fleet_report(text, uuid[], text[]) IS
    'Run a query in each chosen institution (as its role) and return its first row per institution as jsonb, plus a TOTAL row summing the numeric columns.';
COMMENT ON FUNCTION tenant.fleet_views_follow() IS
    'Internal: trigger that refreshes the fleet views when the registry or the migrations change (C: calls tenant.fleet_views_follow_now() only when a fleet view exists).';
COMMENT ON FUNCTION tenant.fleet_views_follow_now() IS
    'Internal (tenant.fleet_views_follow): refresh the fleet views; a refresh that cannot get its lock marks them due and raises a WARNING instead.';
COMMENT ON FUNCTION tenant.create_fleet_view(text, text) IS
    'Create view tenant.<view_name> over every ACTIVE institution''s copy of tenant_template.<template_table>, with institution_id and schema_name; kept up to date automatically.';
COMMENT ON FUNCTION tenant.drop_fleet_view(text) IS 'Drop a fleet view made by tenant.create_fleet_view.';
COMMENT ON FUNCTION tenant.refresh_fleet_views() IS
    'Rebuild the fleet views whose definition changed (done automatically; run it by hand after a WARNING said a refresh was skipped). Returns how many were rebuilt.';

-- Last access (recorded by tenant.set_context at most once a minute per
-- institution per connection): institutions by how long they have been idle.
CREATE VIEW tenant.idle_institutions AS
SELECT t.id AS schema_id, t.institution_id, t.schema_name, t.status, t.last_accessed_at, t.created_at,
       pg_catalog.now() - COALESCE(t.last_accessed_at, t.created_at) AS idle_for
  FROM tenant.tenant_schemas t
 WHERE t.status <> ALL (ARRAY['DROPPED', 'SPARE'])
 ORDER BY idle_for DESC, t.schema_name;
COMMENT ON VIEW tenant.idle_institutions IS
    'Institutions by time since an application last entered them with tenant.set_context (since creation if never): SELECT * FROM tenant.idle_institutions WHERE idle_for > interval ''90 days''.';
GRANT SELECT ON tenant.idle_institutions TO tenant_control_admin;

-- The application's institutions table wired to the registry
-- (tenant.link_institutions_table): row triggers on that table create the
-- institution's schema on INSERT, drop it (keeping its backup) on DELETE, and
-- map a status column to ACTIVE / SUSPENDED / MAINTENANCE. on_failure 'fail'
-- (the default) makes the application's statement fail with the reason;
-- 'retry' keeps the application's row, records the failure in
-- tenant.institution_link_failures (with a WARNING) and
-- CALL tenant.retry_institution_links() tries again (from pg_cron, say).
CREATE TABLE tenant.institution_link_failures (
    institution_id  uuid        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('CREATE', 'DROP', 'STATUS')),
    wanted_status   text        CHECK (wanted_status IN ('ACTIVE', 'SUSPENDED', 'MAINTENANCE')),
    sqlstate        text,
    message         text,
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_failed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (institution_id, action)
);
COMMENT ON TABLE tenant.institution_link_failures IS
    'Changes of the linked institutions table whose schema work failed (on_failure => ''retry''): CALL tenant.retry_institution_links() tries them again.';
SELECT pg_catalog.pg_extension_config_dump('tenant.institution_link_failures', '');

-- ACTIVE / SUSPENDED / MAINTENANCE from the application's status value:
-- the same words in any case, plus the usual synonyms.
CREATE FUNCTION tenant.institution_status_of(value text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE pg_catalog.upper(pg_catalog.btrim(value))
               WHEN 'ACTIVE' THEN 'ACTIVE' WHEN 'ENABLED' THEN 'ACTIVE'
               WHEN 'SUSPENDED' THEN 'SUSPENDED' WHEN 'INACTIVE' THEN 'SUSPENDED' WHEN 'DISABLED' THEN 'SUSPENDED'
               WHEN 'MAINTENANCE' THEN 'MAINTENANCE'
           END
$$;

-- One institution's schema work; returns NULL on success, else sqlstate || ' ' || message.
CREATE FUNCTION tenant.institution_link_apply(institution uuid, action text, wanted_status text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    outcome record;
    live record;
BEGIN
    SELECT t.id, t.status INTO live FROM tenant.tenant_schemas t
     WHERE t.institution_id = institution AND t.status <> 'DROPPED';
    IF action = 'CREATE' THEN
        IF live.id IS NULL THEN
            SELECT * INTO outcome FROM tenant.create_institution_schema(institution);
            IF outcome.status <> 'SUCCESS' THEN
                RETURN outcome.sqlstate || ' ' || outcome.message;
            END IF;
            live.id := outcome.schema_id;
            live.status := 'ACTIVE';
        END IF;
    ELSIF action = 'DROP' THEN
        IF live.id IS NOT NULL THEN
            SELECT * INTO outcome FROM tenant.drop_institution_schema(live.id);
            IF outcome.status <> 'SUCCESS' THEN
                RETURN outcome.sqlstate || ' ' || outcome.message;
            END IF;
        END IF;
        RETURN NULL;
    ELSIF live.id IS NULL THEN
        RETURN '42704 no institution schema for institution ' || institution;
    END IF;
    IF wanted_status IS NOT NULL AND wanted_status <> live.status THEN
        SELECT * INTO outcome FROM tenant.set_institution_status(live.id, wanted_status, 'linked institutions table');
        IF outcome.status <> 'SUCCESS' THEN
            RETURN outcome.sqlstate || ' ' || outcome.message;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- The row trigger on the institutions table. TG_ARGV: id column, status
-- column ('' if none), on_failure ('fail' or 'retry').
CREATE FUNCTION tenant.institutions_table_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id_column text := TG_ARGV[0];
    status_column text := NULLIF(TG_ARGV[1], '');
    on_failure text := TG_ARGV[2];
    row_of record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    institution uuid;
    status_value text;
    wanted text;
    todo text := CASE TG_OP WHEN 'INSERT' THEN 'CREATE' WHEN 'DELETE' THEN 'DROP' ELSE 'STATUS' END;
    id_changed boolean;
    failure text;
BEGIN
    EXECUTE pg_catalog.format('SELECT ($1).%I::uuid', id_column) INTO institution USING row_of;
    IF status_column IS NOT NULL AND TG_OP <> 'DELETE' THEN
        EXECUTE pg_catalog.format('SELECT ($1).%I::text', status_column) INTO status_value USING row_of;
        wanted := tenant.institution_status_of(status_value);
        IF status_value IS NOT NULL AND wanted IS NULL THEN
            RAISE EXCEPTION 'institution %: status "%" of column %.% maps to no tenant status', institution, status_value,
                TG_TABLE_NAME, status_column
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use active/enabled, suspended/inactive/disabled or maintenance (any case).';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE pg_catalog.format('SELECT ($1).%I::uuid IS DISTINCT FROM ($2).%I::uuid', id_column, id_column)
           INTO id_changed USING OLD, NEW;
        IF id_changed THEN
            RAISE EXCEPTION 'institution %: the id of a linked institution cannot change', institution
                USING ERRCODE = 'feature_not_supported', HINT = 'Delete the row and insert a new one.';
        END IF;
    END IF;
    failure := tenant.institution_link_apply(institution, todo, wanted);
    IF failure IS NULL THEN
        DELETE FROM tenant.institution_link_failures f WHERE f.institution_id = institution AND f.action = todo;
    ELSIF on_failure = 'retry' THEN
        INSERT INTO tenant.institution_link_failures AS f (institution_id, action, wanted_status, sqlstate, message)
        VALUES (institution, todo, wanted, pg_catalog.left(failure, 5), pg_catalog.substr(failure, 7))
        ON CONFLICT (institution_id, action) DO UPDATE
           SET attempts = f.attempts + 1, last_failed_at = pg_catalog.now(), wanted_status = EXCLUDED.wanted_status,
               sqlstate = EXCLUDED.sqlstate, message = EXCLUDED.message;
        RAISE WARNING 'institution %: % failed, kept for retry: %', institution, pg_catalog.lower(todo), failure
            USING HINT = 'CALL tenant.retry_institution_links() retries; see tenant.institution_link_failures.';
    ELSE
        RAISE EXCEPTION 'institution %: % of its schema failed: %', institution, pg_catalog.lower(todo),
            pg_catalog.substr(failure, 7)
            USING ERRCODE = pg_catalog.left(failure, 5);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION tenant.link_institutions_table(status_column text DEFAULT NULL, on_failure text DEFAULT 'fail')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_name text;
    id_column text;
    relation regclass;
    column_type text;
BEGIN
    -- Load the library first: it defines the settings as superuser-only and
    -- discards a value a session set before (a placeholder anyone can set).
    PERFORM tenant.current_institution();
    table_name := pg_catalog.current_setting('tenant_control.institutions_table', true);
    id_column := COALESCE(NULLIF(pg_catalog.current_setting('tenant_control.institutions_id_column', true), ''), 'id');
    IF table_name IS NULL OR pg_catalog.btrim(table_name) = '' THEN
        RAISE EXCEPTION 'tenant_control.institutions_table is not set'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER DATABASE ... SET tenant_control.institutions_table = ''public.institutions'' (and reconnect).';
    END IF;
    IF on_failure IS NULL OR on_failure NOT IN ('fail', 'retry') THEN
        RAISE EXCEPTION 'on_failure must be ''fail'' or ''retry'', not %', COALESCE(on_failure, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    relation := pg_catalog.to_regclass(table_name);
    IF relation IS NULL THEN
        RAISE EXCEPTION 'institutions table "%" does not exist', table_name USING ERRCODE = 'undefined_table';
    END IF;
    FOR column_type IN
        SELECT c.name || ':' || COALESCE(pg_catalog.format_type(a.atttypid, a.atttypmod), '-')
          FROM (VALUES (id_column), (status_column)) AS c(name)
          LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = relation AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.name IS NOT NULL
    LOOP
        IF pg_catalog.split_part(column_type, ':', 2) = '-' THEN
            RAISE EXCEPTION 'column "%" of institutions table % does not exist', pg_catalog.split_part(column_type, ':', 1), relation
                USING ERRCODE = 'undefined_column';
        END IF;
        IF pg_catalog.split_part(column_type, ':', 1) = id_column AND pg_catalog.split_part(column_type, ':', 2) <> 'uuid' THEN
            RAISE EXCEPTION 'column "%" of institutions table % is %, not uuid', id_column, relation,
                pg_catalog.split_part(column_type, ':', 2) USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tc_institutions_link ON %s', relation);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tc_institutions_link_status ON %s', relation);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER tc_institutions_link AFTER INSERT OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION tenant.institutions_table_sync(%L, %L, %L)',
        relation, id_column, COALESCE(status_column, ''), on_failure);
    IF status_column IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER tc_institutions_link_status AFTER UPDATE OF %I, %I ON %s FOR EACH ROW EXECUTE FUNCTION tenant.institutions_table_sync(%L, %L, %L)',
            id_column, status_column, relation, id_column, status_column, on_failure);
    END IF;
    RETURN pg_catalog.format('%s is linked: INSERT creates a schema, DELETE drops it (keeping a backup)%s; on failure: %s',
        relation, CASE WHEN status_column IS NULL THEN '' ELSE pg_catalog.format(', column %I sets the status', status_column) END,
        on_failure);
END
$$;

CREATE FUNCTION tenant.unlink_institutions_table() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    linked record;
    unlinked text[] := '{}';
BEGIN
    FOR linked IN
        SELECT DISTINCT t.tgrelid::regclass AS relation FROM pg_catalog.pg_trigger t
         WHERE t.tgname IN ('tc_institutions_link', 'tc_institutions_link_status')
           AND t.tgfoid = 'tenant.institutions_table_sync()'::regprocedure
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tc_institutions_link ON %s', linked.relation);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS tc_institutions_link_status ON %s', linked.relation);
        unlinked := unlinked || linked.relation::text;
    END LOOP;
    IF pg_catalog.cardinality(unlinked) = 0 THEN
        RETURN 'no institutions table was linked';
    END IF;
    RETURN pg_catalog.format('unlinked %s: its rows no longer create or drop schemas', pg_catalog.array_to_string(unlinked, ', '));
END
$$;

CREATE PROCEDURE tenant.retry_institution_links()
LANGUAGE plpgsql
AS $$
DECLARE
    pending record;
    failure text;
    done integer := 0;
    still integer := 0;
BEGIN
    FOR pending IN
        SELECT f.institution_id, f.action, f.wanted_status FROM tenant.institution_link_failures f
         ORDER BY f.first_failed_at
    LOOP
        failure := tenant.institution_link_apply(pending.institution_id, pending.action, pending.wanted_status);
        IF failure IS NULL THEN
            DELETE FROM tenant.institution_link_failures f
             WHERE f.institution_id OPERATOR(pg_catalog.=) pending.institution_id
               AND f.action OPERATOR(pg_catalog.=) pending.action;
            done := done OPERATOR(pg_catalog.+) 1;
        ELSE
            UPDATE tenant.institution_link_failures f
               SET attempts = f.attempts OPERATOR(pg_catalog.+) 1, last_failed_at = pg_catalog.now(),
                   sqlstate = pg_catalog.left(failure, 5), message = pg_catalog.substr(failure, 7)
             WHERE f.institution_id OPERATOR(pg_catalog.=) pending.institution_id
               AND f.action OPERATOR(pg_catalog.=) pending.action;
            still := still OPERATOR(pg_catalog.+) 1;
        END IF;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'institution links: % retried successfully, % still failing', done, still;
END
$$;

REVOKE ALL ON FUNCTION tenant.institution_status_of(text), tenant.institution_link_apply(uuid, text, text),
                       tenant.institutions_table_sync(), tenant.link_institutions_table(text, text),
                       tenant.unlink_institutions_table() FROM PUBLIC;
REVOKE ALL ON PROCEDURE tenant.retry_institution_links() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.link_institutions_table(text, text), tenant.unlink_institutions_table(),
                          tenant.institution_status_of(text) TO tenant_control_admin;
GRANT EXECUTE ON PROCEDURE tenant.retry_institution_links() TO tenant_control_admin;
GRANT SELECT ON tenant.institution_link_failures TO tenant_control_admin;
COMMENT ON FUNCTION tenant.link_institutions_table(text, text) IS
    'Keep schemas in step with the table named by tenant_control.institutions_table: INSERT creates the schema, DELETE drops it (keeping a backup), the status column (if given) sets ACTIVE/SUSPENDED/MAINTENANCE. on_failure: fail (the statement fails) or retry (kept in tenant.institution_link_failures).';
COMMENT ON FUNCTION tenant.unlink_institutions_table() IS 'Remove the triggers link_institutions_table put on the institutions table.';
COMMENT ON PROCEDURE tenant.retry_institution_links() IS
    'Retry the institution schema work that failed under on_failure => ''retry'', one commit each. Safe from pg_cron.';
COMMENT ON FUNCTION tenant.institution_status_of(text) IS
    'The tenant status (ACTIVE, SUSPENDED, MAINTENANCE) an application status value maps to, or NULL.';
COMMENT ON FUNCTION tenant.institution_link_apply(uuid, text, text) IS
    'Internal: create, drop or set the status of one institution''s schema for the linked institutions table; NULL or the error.';
COMMENT ON FUNCTION tenant.institutions_table_sync() IS 'Internal: row trigger on the linked institutions table.';

-- Reference data kept in sync (tenant.sync_reference): the declared sources,
-- what was last written into each institution (a digest per row), and the
-- conflicts the last sync found.
CREATE TABLE tenant.reference_sources (
    id           bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    source       text        NOT NULL,
    target_table text        NOT NULL,
    key_column   text        NOT NULL,
    columns      text[]      NOT NULL,
    on_conflict  text        NOT NULL CHECK (on_conflict IN ('report', 'keep_local', 'overwrite')),
    declared_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (source, target_table)
);
COMMENT ON TABLE tenant.reference_sources IS
    'Shared tables copied into a table of every institution by tenant.sync_reference: the key column, the columns copied and the conflict policy.';

CREATE TABLE tenant.reference_rows (
    source_id  bigint      NOT NULL REFERENCES tenant.reference_sources (id) ON DELETE CASCADE,
    schema_id  uuid        NOT NULL REFERENCES tenant.tenant_schemas (id),
    key        text        NOT NULL,
    synced_md5 text        NOT NULL,
    synced_at  timestamptz NOT NULL,
    PRIMARY KEY (source_id, schema_id, key)
);
COMMENT ON TABLE tenant.reference_rows IS
    'When each reference row was last synced into each institution, and the md5 of what was written (a local change shows as a different digest).';

CREATE TABLE tenant.reference_conflict_rows (
    source_id   bigint      NOT NULL REFERENCES tenant.reference_sources (id) ON DELETE CASCADE,
    schema_id   uuid        NOT NULL REFERENCES tenant.tenant_schemas (id),
    key         text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('CHANGED', 'DELETED', 'LOCAL')),
    local_row   jsonb,
    source_row  jsonb       NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, schema_id, key)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.reference_sources', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.reference_sources_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.reference_rows', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.reference_conflict_rows', '');

CREATE VIEW tenant.reference_conflicts AS
SELECT s.source, s.target_table, s.key_column, s.on_conflict, t.institution_id, t.schema_name, c.key, c.kind,
       c.local_row, c.source_row, c.detected_at
  FROM tenant.reference_conflict_rows c
  JOIN tenant.reference_sources s ON s.id = c.source_id
  JOIN tenant.tenant_schemas t ON t.id = c.schema_id;
COMMENT ON VIEW tenant.reference_conflicts IS
    'Rows the last tenant.sync_reference did not overwrite under the report policy: CHANGED or DELETED by the institution since the last sync, or LOCAL (made by the institution with a key of the source), with both versions.';

CREATE PROCEDURE tenant.sync_reference(source regclass, target_table text, key_column text, on_conflict text DEFAULT 'report')
LANGUAGE plpgsql
AS $$
DECLARE
    source_id bigint;
    institution record;
    outcome record;
    failed integer := 0;
BEGIN
    source_id := tenant.reference_declare(source, target_table, key_column, on_conflict);
    COMMIT;
    FOR institution IN
        SELECT t.id, t.schema_name FROM tenant.tenant_schemas t
         WHERE t.status OPERATOR(pg_catalog.=) 'ACTIVE' ORDER BY t.schema_name
    LOOP
        BEGIN
            SELECT * INTO outcome FROM tenant.reference_sync_one(source_id, institution.id);
            RAISE NOTICE '%: % inserted, % updated, % conflict(s)%', institution.schema_name, outcome.inserted,
                outcome.updated, outcome.conflicts, COALESCE(' (skipped: ' OPERATOR(pg_catalog.||) outcome.skipped OPERATOR(pg_catalog.||) ')', '');
        EXCEPTION WHEN OTHERS THEN
            failed := failed OPERATOR(pg_catalog.+) 1;
            RAISE WARNING '%: reference sync failed: % (%)', institution.schema_name, SQLERRM, SQLSTATE;
        END;
        COMMIT;
    END LOOP;
    IF failed OPERATOR(pg_catalog.>) 0 THEN
        RAISE WARNING '% institution(s) could not be synced; CALL tenant.sync_reference again once fixed', failed;
    END IF;
END
$$;

-- New institutions (created, or claimed from the warm pool) get the data.
-- The trigger function is C (src/ops/registry_follow.rs), as
-- tenant.fleet_views_follow: it looks for a row of tenant.reference_sources
-- without SQL and calls tenant.reference_sync_new(NEW.id) only when there is one.
CREATE FUNCTION tenant.reference_follow_new() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'tc_reference_follow_new';
CREATE TRIGGER tc_reference_new_institution
    AFTER INSERT ON tenant.tenant_schemas FOR EACH ROW WHEN (NEW.status = 'ACTIVE')
    EXECUTE FUNCTION tenant.reference_follow_new();
CREATE TRIGGER tc_reference_claimed_spare
    AFTER UPDATE OF status ON tenant.tenant_schemas FOR EACH ROW WHEN (OLD.status = 'SPARE' AND NEW.status = 'ACTIVE')
    EXECUTE FUNCTION tenant.reference_follow_new();

REVOKE ALL ON PROCEDURE tenant.sync_reference(regclass, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.reference_follow_new() FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.sync_reference(regclass, text, text, text) TO tenant_control_admin;
GRANT SELECT ON tenant.reference_sources, tenant.reference_rows, tenant.reference_conflict_rows,
                tenant.reference_conflicts TO tenant_control_admin;
COMMENT ON PROCEDURE tenant.sync_reference(regclass, text, text, text) IS
    'Declare a shared table as the source of a table in every institution (matched on key_column) and sync it, one commit per institution; conflicts per on_conflict: report, keep_local or overwrite. New institutions get the data at creation.';
COMMENT ON FUNCTION tenant.reference_declare(oid, text, text, text) IS 'Internal (tenant.sync_reference): declare a reference source.';
COMMENT ON FUNCTION tenant.reference_sync_one(bigint, uuid) IS 'Internal (tenant.sync_reference): sync one source into one institution.';
COMMENT ON FUNCTION tenant.reference_sync_new(uuid) IS 'Internal: give a new institution the data of every reference source.';
COMMENT ON FUNCTION tenant.reference_follow_new() IS
    'Internal: trigger that syncs the reference sources into a new institution (C: calls tenant.reference_sync_new only when a reference source exists).';

-- The audit trail (issue 16). Rows are written only by the extension's
-- library (src/core/audit): by a committing transaction just before it
-- commits, or by the extension's background worker for a transaction that
-- rolled back. No role is granted INSERT, UPDATE or DELETE.
CREATE TABLE tenant.audit_events (
    id               bigint      GENERATED BY DEFAULT AS IDENTITY,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event_class      text        NOT NULL CHECK (event_class IN ('OPERATION', 'REGISTRY_CHANGE', 'SECURITY')),
    action           text        NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN ('COMPLETED', 'FAILED', 'CHANGED', 'ROLLED_BACK', 'REFUSED')),
    schema_id        uuid,
    institution_id   uuid,
    session_role     text        NOT NULL,
    caller_committed boolean     NOT NULL,
    error_sqlstate   text        CHECK (error_sqlstate ~ '^[0-9A-Z]{5}$'),
    error_message    text,
    detail           jsonb       NOT NULL DEFAULT '{}'::jsonb
) PARTITION BY RANGE (occurred_at);
-- Partitioned by month like the operation log (see sql/bootstrap.sql).
CREATE TABLE tenant.audit_events_default PARTITION OF tenant.audit_events DEFAULT;
ALTER TABLE tenant.audit_events_default ADD PRIMARY KEY (id);
COMMENT ON TABLE tenant.audit_events_default IS 'Rows of the months that have no partition of their own (tenant.maintain_history moves them out).';
CREATE INDEX audit_events_default_occurred ON tenant.audit_events_default (occurred_at);
CREATE INDEX audit_events_default_institution_occurred ON tenant.audit_events_default (institution_id, occurred_at);
COMMENT ON TABLE tenant.audit_events IS
    'Audit trail: every operation attempt, registry change (config, quota, status, administrator grants, limits, row limits, retention rules) and refused call of the extension''s routines, kept whether or not the caller committed. Written only by the extension.';
COMMENT ON COLUMN tenant.audit_events.id IS 'Increasing event number (in the order events were written).';
COMMENT ON COLUMN tenant.audit_events.occurred_at IS 'When it happened.';
COMMENT ON COLUMN tenant.audit_events.recorded_at IS 'When the row was written (at the caller''s commit, or by the audit worker after its rollback).';
COMMENT ON COLUMN tenant.audit_events.event_class IS 'OPERATION (an operation of the operation log), REGISTRY_CHANGE or SECURITY (a call PostgreSQL refused, 42501).';
COMMENT ON COLUMN tenant.audit_events.action IS 'The operation type (CREATE, MIGRATE, ...), what changed (CONFIG, QUOTA, STATUS, ADMIN_GRANT, ADMIN_REVOKE, LIMITS, ROW_LIMIT, RETENTION_RULE), or the refused routine''s name.';
COMMENT ON COLUMN tenant.audit_events.outcome IS 'COMPLETED or FAILED (operations), CHANGED or ROLLED_BACK (registry changes), REFUSED (security events).';
COMMENT ON COLUMN tenant.audit_events.schema_id IS 'Registry id of the tenant concerned, if any.';
COMMENT ON COLUMN tenant.audit_events.institution_id IS 'The institution concerned, if known.';
COMMENT ON COLUMN tenant.audit_events.session_role IS 'session_user of the connection that did it.';
COMMENT ON COLUMN tenant.audit_events.caller_committed IS 'Whether the caller''s transaction committed (false: it rolled back, and the row was written by the audit worker).';
COMMENT ON COLUMN tenant.audit_events.error_sqlstate IS 'SQLSTATE of a failed operation or a refusal.';
COMMENT ON COLUMN tenant.audit_events.error_message IS 'Error message of a failed operation or a refusal.';
COMMENT ON COLUMN tenant.audit_events.detail IS 'Details: the operation''s description, the old and new values of a change, the refused statement.';

ALTER TABLE tenant.audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY platform_admin ON tenant.audit_events FOR SELECT TO tenant_control_admin USING (true);
CREATE POLICY own_institutions ON tenant.audit_events FOR SELECT TO tenant_control_institution_admin
    USING (institution_id IN (SELECT a.institution_id FROM tenant.institution_admins a));
COMMENT ON POLICY platform_admin ON tenant.audit_events IS 'Platform administrators see the whole trail.';
COMMENT ON POLICY own_institutions ON tenant.audit_events IS 'An institution administrator sees the events of its own institutions.';
GRANT SELECT ON tenant.audit_events TO tenant_control_admin, tenant_control_institution_admin;
SELECT pg_catalog.pg_extension_config_dump('tenant.audit_events', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.audit_events_default', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.audit_events_id_seq', '');

CREATE TRIGGER tc_audit_config AFTER UPDATE OF config ON tenant.tenant_schemas
    FOR EACH ROW WHEN (OLD.config IS DISTINCT FROM NEW.config) EXECUTE FUNCTION tenant.audit_registry_change('CONFIG');
CREATE TRIGGER tc_audit_quota AFTER UPDATE OF quota_limit ON tenant.tenant_schemas
    FOR EACH ROW WHEN (OLD.quota_limit IS DISTINCT FROM NEW.quota_limit) EXECUTE FUNCTION tenant.audit_registry_change('QUOTA');
CREATE TRIGGER tc_audit_status AFTER UPDATE OF status ON tenant.tenant_schemas
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION tenant.audit_registry_change('STATUS');
CREATE TRIGGER tc_audit_admins AFTER INSERT OR DELETE ON tenant.institution_admins
    FOR EACH ROW EXECUTE FUNCTION tenant.audit_registry_change('ADMIN');
CREATE TRIGGER tc_audit_limits AFTER INSERT OR UPDATE OR DELETE ON tenant.institution_limits
    FOR EACH ROW EXECUTE FUNCTION tenant.audit_registry_change('LIMITS');
CREATE TRIGGER tc_audit_row_limit_set AFTER INSERT OR DELETE ON tenant.row_limits
    FOR EACH ROW EXECUTE FUNCTION tenant.audit_registry_change('ROW_LIMIT');
CREATE TRIGGER tc_audit_row_limit_changed AFTER UPDATE OF max_rows ON tenant.row_limits
    FOR EACH ROW WHEN (OLD.max_rows IS DISTINCT FROM NEW.max_rows) EXECUTE FUNCTION tenant.audit_registry_change('ROW_LIMIT');
CREATE TRIGGER tc_audit_retention_rules AFTER INSERT OR UPDATE OR DELETE ON tenant.retention_rules
    FOR EACH ROW EXECUTE FUNCTION tenant.audit_registry_change('RETENTION_RULE');
REVOKE ALL ON FUNCTION tenant.audit_registry_change() FROM PUBLIC, tenant_control_admin;
COMMENT ON FUNCTION tenant.audit_registry_change() IS
    'Internal: trigger noting registry changes (config, quota, status, administrator grants, limits, row limits, retention rules) for the audit trail.';

CREATE FUNCTION tenant.audit_report(institution_id uuid DEFAULT NULL, from_time timestamptz DEFAULT NULL,
                                    to_time timestamptz DEFAULT NULL)
RETURNS TABLE (event_class text, action text, outcome text, error_sqlstate text, session_role text,
               security_event boolean, events bigint, not_committed bigint,
               first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.event_class, e.action, e.outcome, e.error_sqlstate, e.session_role,
           e.event_class = 'SECURITY' OR e.error_sqlstate IS NOT DISTINCT FROM '42501',
           count(*), count(*) FILTER (WHERE NOT e.caller_committed), min(e.occurred_at), max(e.occurred_at)
      FROM tenant.audit_events e
     WHERE (audit_report.institution_id IS NULL OR e.institution_id = audit_report.institution_id)
       AND (from_time IS NULL OR e.occurred_at >= from_time)
       AND (to_time IS NULL OR e.occurred_at < to_time)
     GROUP BY e.event_class, e.action, e.outcome, e.error_sqlstate, e.session_role
     ORDER BY e.event_class, e.action, e.outcome, e.error_sqlstate NULLS FIRST, e.session_role
$$;
REVOKE ALL ON FUNCTION tenant.audit_report(uuid, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.audit_report(uuid, timestamptz, timestamptz)
    TO tenant_control_admin, tenant_control_institution_admin;
COMMENT ON FUNCTION tenant.audit_report(uuid, timestamptz, timestamptz) IS
    'The audit trail of one institution (NULL: all events) between from_time (inclusive) and to_time (exclusive): events per class, action, outcome, SQLSTATE and session role, with security events flagged and the count whose caller rolled back. Reads what the caller may see (row-level security).';
-- Template statements shared by every connection (issue 12): what copies of
-- the template run, generated once and stored (src/copy/statements.rs). Only
-- the extension's owner writes or reads it: its DDL is run by the extension.
CREATE TABLE tenant.template_statements (
    change       bigint      NOT NULL PRIMARY KEY,
    statements   jsonb       NOT NULL,
    names        jsonb       NOT NULL,
    tables       integer     NOT NULL,
    version      integer     NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON tenant.template_statements FROM PUBLIC;
COMMENT ON TABLE tenant.template_statements IS
    'Internal: the statements a copy of the template runs, generated at a change of the template (tenant.template_changes) and shared by every connection; writable by the extension''s owner only.';
COMMENT ON COLUMN tenant.template_statements.change IS 'The last change of the template (tenant.template_changes.id) when they were generated.';
COMMENT ON COLUMN tenant.template_statements.statements IS 'One array of parts per statement: text, or {"slot": "schema"|"role"} for the copy''s own schema and role.';
COMMENT ON COLUMN tenant.template_statements.names IS 'What the template''s objects name outside it ([classid, objid, objsubid, identity]): the statements are stale once one has another identity.';
COMMENT ON COLUMN tenant.template_statements.tables IS 'Tables in a copy.';
COMMENT ON COLUMN tenant.template_statements.version IS 'The template version (newest migration) they copy.';
COMMENT ON COLUMN tenant.template_statements.generated_at IS 'When they were generated.';

-- Reference rows of the template (issue 12): tables whose rows every new
-- tenant gets (src/copy/template_rows.rs).
CREATE TABLE tenant.template_row_tables (
    table_name text        NOT NULL PRIMARY KEY,
    marked_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    marked_by  text        NOT NULL DEFAULT session_user
);
REVOKE ALL ON tenant.template_row_tables FROM PUBLIC;
GRANT SELECT ON tenant.template_row_tables TO tenant_control_admin;
SELECT pg_catalog.pg_extension_config_dump('tenant.template_row_tables', '');
COMMENT ON TABLE tenant.template_row_tables IS
    'Tables of tenant_template whose rows are copied into every new tenant (tenant.set_template_rows).';
COMMENT ON COLUMN tenant.template_row_tables.table_name IS 'The table, in tenant_template.';
COMMENT ON COLUMN tenant.template_row_tables.marked_at IS 'When it was marked.';
COMMENT ON COLUMN tenant.template_row_tables.marked_by IS 'session_user that marked it.';
REVOKE ALL ON FUNCTION tenant.set_template_rows(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.set_template_rows(text, boolean) TO tenant_control_admin;
COMMENT ON FUNCTION tenant.set_template_rows(text, boolean) IS
    'Mark a table of tenant_template so that its rows are copied into every new institution, as its role (copy => false removes the mark).';
-- Moving an institution to another server (issue 14) -------------------------
-- tenant.move_institution streams the tenant's schema to another server by
-- logical replication, then stops writes for a moment to cut over. Every step
-- commits and records itself in tenant.institution_moves, so a move that was
-- interrupted (either server killed) is resumed, or cancelled, by running it
-- again (tenant.cancel_move). The target is reached through dblink (contrib),
-- which runs each remote command in the target's own transaction: that is how
-- CREATE SUBSCRIPTION, which refuses a transaction block, runs there.
CREATE TABLE tenant.institution_moves (
    schema_id        uuid        PRIMARY KEY REFERENCES tenant.tenant_schemas (id),
    institution_id   uuid        NOT NULL,
    location         text        NOT NULL,
    step             text        NOT NULL
                     CHECK (step IN ('PREPARED', 'SYNCING', 'CATCHING_UP', 'SYNCED', 'FROZEN', 'ACTIVATING', 'MOVED')),
    target_schema_id uuid        NOT NULL,
    frozen_at        timestamptz,
    pause_ms         numeric(14, 3),
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE tenant.institution_moves IS
    'Moves of institutions to other servers (tenant.move_institution): one row per moved schema, kept once MOVED as the record of where the institution lives.';
COMMENT ON COLUMN tenant.institution_moves.location IS 'The target''s connection string without its password: where the institution lives once MOVED.';
COMMENT ON COLUMN tenant.institution_moves.step IS 'PREPARED (target schema and publication ready), SYNCING (initial copy), CATCHING_UP, SYNCED (target caught up; source still ACTIVE), FROZEN (source writes stopped, not decided: an interruption rolls back here), ACTIVATING (decided: the institution belongs to the target, which is being activated) or MOVED.';
COMMENT ON COLUMN tenant.institution_moves.target_schema_id IS 'Registry id of the institution''s schema on the target.';
COMMENT ON COLUMN tenant.institution_moves.frozen_at IS 'When writes stopped on the source.';
COMMENT ON COLUMN tenant.institution_moves.pause_ms IS 'Milliseconds from the source''s freeze to the target''s activation.';
SELECT pg_catalog.pg_extension_config_dump('tenant.institution_moves', '');

-- Markers written on the source and replicated with the tenant's tables: when
-- a marker has arrived on the target, so has every change committed before it.
CREATE TABLE tenant.move_signals (
    schema_id uuid NOT NULL,
    step      text NOT NULL,
    PRIMARY KEY (schema_id, step)
);
COMMENT ON TABLE tenant.move_signals IS
    'Internal (tenant.move_institution): markers replicated to the target behind the tenant''s changes.';

CREATE FUNCTION tenant.move_object_name(schema_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'tc_move_' OPERATOR(pg_catalog.||) pg_catalog.replace(schema_id::text, '-', '') $$;

-- dblink may live in any schema: find it, and run a command (or a one-value
-- query) on the named connection. Remote errors keep their SQLSTATE.
CREATE FUNCTION tenant.move_remote(conn text, command text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp name := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = 'dblink');
    result text;
BEGIN
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'moving an institution needs the dblink extension in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'CREATE EXTENSION dblink;';
    END IF;
    IF command ~* '^\s*(select|with)\s' THEN
        EXECUTE format('SELECT r.v FROM %I.dblink($1, $2) AS r(v text)', nsp) INTO result USING conn, command;
    ELSE
        EXECUTE format('SELECT %I.dblink_exec($1, $2)', nsp) INTO result USING conn, command;
    END IF;
    RETURN result;
END
$$;

CREATE FUNCTION tenant.move_connect(conn text, target text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp name := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = 'dblink');
    open boolean;
BEGIN
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'moving an institution needs the dblink extension in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'CREATE EXTENSION dblink;';
    END IF;
    EXECUTE format('SELECT $1 = ANY (COALESCE(%I.dblink_get_connections(), ''{}''))', nsp) INTO open USING conn;
    IF open THEN
        EXECUTE format('SELECT %I.dblink_disconnect($1)', nsp) USING conn;
    END IF;
    EXECUTE format('SELECT %I.dblink_connect($1, $2)', nsp) USING conn, target;
END
$$;

CREATE FUNCTION tenant.move_disconnect(conn text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp name := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = 'dblink');
    open boolean;
BEGIN
    IF nsp IS NOT NULL THEN
        EXECUTE format('SELECT $1 = ANY (COALESCE(%I.dblink_get_connections(), ''{}''))', nsp) INTO open USING conn;
        IF open THEN
            EXECUTE format('SELECT %I.dblink_disconnect($1)', nsp) USING conn;
        END IF;
    END IF;
END
$$;

-- The tables of a schema, sorted, as one text (to compare two servers).
CREATE FUNCTION tenant.move_table_list(schema_name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
SELECT COALESCE(string_agg(c.relname::text, ',' ORDER BY c.relname), '')
  FROM pg_class c WHERE c.relnamespace = schema_name::regnamespace AND c.relkind IN ('r', 'p')
$$;

-- What this server must offer before a move starts; raises a clear error.
CREATE FUNCTION tenant.move_check_source(schema_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenant_schemas;
    obj text := tenant.move_object_name(schema_id);
    bad text;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'moving an institution needs a superuser (publications of a schema and replication slots)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF current_setting('wal_level') <> 'logical' THEN
        RAISE EXCEPTION 'wal_level is %: moving an institution needs wal_level = logical', current_setting('wal_level')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER SYSTEM SET wal_level = logical; then restart the server.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj)
       AND (SELECT count(*) FROM pg_replication_slots) + 2 > current_setting('max_replication_slots')::integer THEN
        RAISE EXCEPTION 'no free replication slots: a move needs 2 (max_replication_slots = %, % in use)',
                current_setting('max_replication_slots'), (SELECT count(*) FROM pg_replication_slots)
            USING ERRCODE = 'configuration_limit_exceeded',
                  HINT = 'Raise max_replication_slots (restart), or drop unused slots (pg_replication_slots).';
    END IF;
    IF (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'walsender') + 2
       > current_setting('max_wal_senders')::integer THEN
        RAISE EXCEPTION 'no free WAL senders: a move needs 2 (max_wal_senders = %)', current_setting('max_wal_senders')
            USING ERRCODE = 'configuration_limit_exceeded', HINT = 'Raise max_wal_senders (restart).';
    END IF;
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = move_check_source.schema_id;
    -- UPDATE and DELETE of a published table need a replica identity, or the
    -- tenant's own updates would fail during the move.
    SELECT string_agg(format('%I.%I', t.schema_name, c.relname), ', ') INTO bad
      FROM pg_class c
     WHERE c.relnamespace = t.schema_name::regnamespace AND c.relkind IN ('r', 'p')
       AND c.relreplident <> 'f'
       AND NOT (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
       AND NOT (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident));
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table(s) % have no replica identity: their updates could not be replicated', bad
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Give each table a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL.';
    END IF;
END
$$;

-- What the target must offer: tenant_control with its template at the
-- tenant's version and the same tables, a superuser connection (in
-- PostgreSQL 15 a subscription's owner is a superuser), a free worker.
CREATE FUNCTION tenant.move_check_target(conn text, schema_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenant_schemas;
    answer text;
    there text;
BEGIN
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = move_check_target.schema_id;
    answer := tenant.move_remote(conn, 'SELECT concat_ws(''|'', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
        EXISTS (SELECT 1 FROM pg_extension WHERE extname = ''tenant_control''),
        current_setting(''max_logical_replication_workers'')::integer - (SELECT count(*) FROM pg_stat_subscription))');
    IF split_part(answer, '|', 1) <> 't' THEN
        RAISE EXCEPTION 'the connection to the target must be a superuser''s (it creates a subscription)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF split_part(answer, '|', 2) <> 't' THEN
        RAISE EXCEPTION 'tenant_control is not installed in the target database'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'CREATE EXTENSION tenant_control; there, with the same template.';
    END IF;
    IF split_part(answer, '|', 3)::integer < 1 THEN
        RAISE EXCEPTION 'the target has no free logical replication worker (max_logical_replication_workers)'
            USING ERRCODE = 'configuration_limit_exceeded';
    END IF;
    answer := tenant.move_remote(conn, 'SELECT COALESCE(max(version), 0)::text FROM tenant.migrations');
    IF answer::integer <> t.version THEN
        RAISE EXCEPTION 'the target''s template is at version %, institution schema "%" at version %', answer, t.schema_name, t.version
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A move builds the schema from the target''s template and cannot migrate on arrival: bring both to the same version first (tenant.register_migration here or there, then tenant.migrate_institution_schema), or copy it with tenant.copy_institution_from(..., migrate => true).';
    END IF;
    there := tenant.move_remote(conn, 'SELECT tenant.move_table_list(''tenant_template'')');
    IF there <> tenant.move_table_list(t.schema_name) THEN
        RAISE EXCEPTION 'institution schema "%" has other tables than the target''s template', t.schema_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('here: %s; target template: %s', tenant.move_table_list(t.schema_name), there),
                  HINT = 'The target builds the schema from its own template: a tenant whose tables drifted cannot move.';
    END IF;
END
$$;

-- What a copy or a move brings along besides the schema's objects and rows
-- (issue 14): the registry's config (retention overrides included) and
-- quota, the limits of tenant.set_limits, the row limits of
-- tenant.set_row_limit with their counts, the archive tables retention made
-- in the schema (tenant.retention_archives), and the institution's
-- administrators (tenant.grant_institution_admin). One jsonb document, read
-- on the source in the copy's snapshot and applied on the target.
CREATE FUNCTION tenant.institution_settings(schema_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenant_schemas;
BEGIN
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = institution_settings.schema_id AND s.status <> 'SPARE';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no institution schema with id % in tenant.tenant_schemas', institution_settings.schema_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN jsonb_build_object(
        'config', t.config,
        'quota_limit', t.quota_limit,
        'limits', (SELECT l.limits FROM tenant.institution_limits l WHERE l.schema_id = t.id),
        'row_limits', COALESCE((SELECT jsonb_agg(jsonb_build_object('table_name', r.table_name, 'max_rows', r.max_rows,
                                                                    'row_count', r.row_count) ORDER BY r.table_name)
                                  FROM tenant.row_limits r WHERE r.schema_id = t.id), '[]'::jsonb),
        'archives', COALESCE((SELECT jsonb_agg(jsonb_build_object('table_name', a.table_name, 'archive_table', a.archive_table)
                                               ORDER BY a.archive_table)
                                FROM tenant.retention_archives a WHERE a.schema_id = t.id), '[]'::jsonb),
        'admins', COALESCE((SELECT jsonb_agg(a.role_name ORDER BY a.role_name) FROM tenant.institution_admins a
                             WHERE a.institution_id = t.institution_id), '[]'::jsonb));
END
$$;

-- Apply such a document to an institution here: its config and quota are
-- replaced, its limits and row limits become the document's (through
-- tenant.set_limits and tenant.set_row_limit, which validate them), the
-- archive tables of the document found in its schema are recorded as its
-- retention archives (and no others), and its administrators are granted where their role exists here (the others are
-- returned in admins_skipped). counted: the rows are already in and the
-- document's row counts are exact (a move's cut-over): a row limit that is
-- already in place takes the count instead of counting the table again.
CREATE FUNCTION tenant.receive_institution_settings(schema_id uuid, settings jsonb, counted boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- set_row_limit's DROP TRIGGER IF EXISTS would say "does not exist, skipping" thrice a limit.
SET client_min_messages = warning
AS $$
DECLARE
    t tenant.tenant_schemas;
    r record;
    skipped text[] := '{}';
BEGIN
    IF schema_id IS NULL OR settings IS NULL THEN
        RAISE EXCEPTION 'argument "%" must not be NULL', CASE WHEN schema_id IS NULL THEN 'schema_id' ELSE 'settings' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(settings) <> 'object' OR jsonb_typeof(COALESCE(settings->'row_limits', '[]')) <> 'array'
       OR jsonb_typeof(COALESCE(settings->'archives', '[]')) <> 'array'
       OR jsonb_typeof(COALESCE(settings->'admins', '[]')) <> 'array' THEN
        RAISE EXCEPTION 'settings must be a json object as tenant.institution_settings returns it'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO t FROM tenant.tenant_schemas s
     WHERE s.id = receive_institution_settings.schema_id AND s.status NOT IN ('DROPPED', 'SPARE', 'MOVED') FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no live institution schema with id % in tenant.tenant_schemas', receive_institution_settings.schema_id
            USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE tenant.tenant_schemas s
       SET config = COALESCE(settings->'config', '{}'::jsonb), quota_limit = (settings->>'quota_limit')::bigint,
           updated_at = now()
     WHERE s.id = t.id;
    PERFORM tenant.set_limits(t.id, NULLIF(settings->'limits', 'null'::jsonb));
    FOR r IN SELECT l.table_name FROM tenant.row_limits l
              WHERE l.schema_id = t.id
                AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(settings->'row_limits') e WHERE e->>'table_name' = l.table_name)
    LOOP
        PERFORM tenant.set_row_limit(t.id, r.table_name, NULL);
    END LOOP;
    FOR r IN SELECT e->>'table_name' AS table_name, (e->>'max_rows')::bigint AS max_rows, (e->>'row_count')::bigint AS row_count
               FROM jsonb_array_elements(COALESCE(settings->'row_limits', '[]')) e
    LOOP
        IF counted AND r.row_count IS NOT NULL AND EXISTS (
               SELECT 1 FROM tenant.row_limits l
                WHERE l.schema_id = t.id AND l.table_name = r.table_name AND l.max_rows = r.max_rows) THEN
            UPDATE tenant.row_limits l SET row_count = r.row_count WHERE l.schema_id = t.id AND l.table_name = r.table_name;
        ELSE
            PERFORM tenant.set_row_limit(t.id, r.table_name, r.max_rows);
        END IF;
    END LOOP;
    DELETE FROM tenant.retention_archives a WHERE a.schema_id = t.id;
    INSERT INTO tenant.retention_archives (schema_id, table_name, archive_table)
    SELECT t.id, e->>'table_name', e->>'archive_table'
      FROM jsonb_array_elements(COALESCE(settings->'archives', '[]')) e
     WHERE EXISTS (SELECT 1 FROM pg_class c
                    WHERE c.relnamespace = to_regnamespace(t.schema_name) AND c.relname = e->>'archive_table'
                      AND c.relkind = 'r');
    FOR r IN SELECT jsonb_array_elements_text(COALESCE(settings->'admins', '[]')) AS role_name LOOP
        IF EXISTS (SELECT 1 FROM pg_roles x WHERE x.rolname = r.role_name AND NOT x.rolsuper)
           AND r.role_name NOT LIKE 'tenant\_control\_%' THEN
            PERFORM tenant.grant_institution_admin(t.institution_id, r.role_name);
        ELSE
            skipped := skipped || r.role_name;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('admins_skipped', to_jsonb(skipped));
END
$$;

-- One remote transaction: the institution's schema on the target, from the
-- target's own template, locked (MAINTENANCE) and emptied for the copy, and
-- marked as arriving. A schema left by an interrupted attempt is reused.
CREATE FUNCTION tenant.move_prepare_target(conn text, t tenant.tenant_schemas) RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer text;
    target_id uuid;
BEGIN
    answer := tenant.move_remote(conn, format(
        'SELECT concat_ws(''|'', s.id, s.status, EXISTS (SELECT 1 FROM tenant.move_signals g
                                                         WHERE g.schema_id = s.id AND g.step = ''ARRIVING''))
           FROM tenant.tenant_schemas s WHERE s.institution_id = %L AND s.status <> ''DROPPED''', t.institution_id));
    IF answer IS NOT NULL THEN
        IF split_part(answer, '|', 3) <> 't' THEN
            RAISE EXCEPTION 'institution % already has a schema on the target (status %)', t.institution_id, split_part(answer, '|', 2)
                USING ERRCODE = 'duplicate_object';
        END IF;
        RETURN split_part(answer, '|', 1)::uuid;
    END IF;
    PERFORM tenant.move_remote(conn, 'BEGIN');
    answer := tenant.move_remote(conn, format(
        'SELECT concat_ws(''|'', status, schema_id, sqlstate, message) FROM tenant.create_institution_schema(%L, %L)',
        t.institution_id, t.schema_name));
    IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
        RAISE EXCEPTION 'the target could not create institution schema "%": %', t.schema_name, split_part(answer, '|', 4)
            USING ERRCODE = split_part(answer, '|', 3);
    END IF;
    target_id := split_part(answer, '|', 2)::uuid;
    answer := tenant.move_remote(conn, format(
        'SELECT concat_ws(''|'', status, sqlstate, message) FROM tenant.set_institution_status(%L, ''MAINTENANCE'', ''arriving by move'')',
        target_id));
    IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
        RAISE EXCEPTION 'the target could not lock its new schema: %', split_part(answer, '|', 3)
            USING ERRCODE = split_part(answer, '|', 2);
    END IF;
    PERFORM tenant.move_remote(conn, format(
        'DO $m$ BEGIN EXECUTE COALESCE((SELECT ''TRUNCATE '' || string_agg(c.oid::regclass::text, '', '')
                                          FROM pg_class c WHERE c.relnamespace = %L::regnamespace AND c.relkind IN (''r'', ''p'')),
                                        ''SELECT 1''); END $m$', t.schema_name));
    PERFORM tenant.move_remote(conn, format('INSERT INTO tenant.move_signals VALUES (%L, ''ARRIVING'')', target_id));
    -- The institution's settings come along now (a refused one stops the
    -- move before anything streams) and again at the cut-over.
    answer := tenant.move_remote(conn, format('SELECT tenant.receive_institution_settings(%L, %L)::text',
                                              target_id, tenant.institution_settings(t.id)));
    IF answer::jsonb->'admins_skipped' <> '[]'::jsonb THEN
        RAISE NOTICE 'not granted on the target (no such role there): institution administrator(s) %', answer::jsonb->'admins_skipped';
    END IF;
    PERFORM tenant.move_remote(conn, 'COMMIT');
    RETURN target_id;
END
$$;

-- The replication slot is created on its own, in a transaction that has
-- written nothing (PostgreSQL requires it), once the move is PREPARED.
CREATE FUNCTION tenant.move_ensure_slot(schema_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := tenant.move_object_name(schema_id);
BEGIN
    IF EXISTS (SELECT 1 FROM tenant.institution_moves m WHERE m.schema_id = move_ensure_slot.schema_id AND m.step = 'PREPARED')
       AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = name) THEN
        PERFORM pg_create_logical_replication_slot(name, 'pgoutput');
    END IF;
END
$$;

-- One step of a move; returns the step reached, WAIT (poll again), or DONE.
-- Each step runs in its own transaction (the procedure commits after it).
CREATE FUNCTION tenant.move_step(schema_id uuid, conn text, source text, location text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid constant uuid := move_step.schema_id;
    obj constant text := tenant.move_object_name(move_step.schema_id);
    t tenant.tenant_schemas;
    m tenant.institution_moves;
    answer text;
    statement text;
BEGIN
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = sid FOR NO KEY UPDATE;
    SELECT * INTO m FROM tenant.institution_moves x WHERE x.schema_id = sid FOR UPDATE;
    IF NOT FOUND THEN
        IF t.status <> 'ACTIVE' THEN
            RAISE EXCEPTION 'institution schema "%" (%) is %: only an ACTIVE institution can move', t.schema_name, sid, t.status
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM tenant.move_check_source(sid);
        PERFORM tenant.move_check_target(conn, sid);
        m.target_schema_id := tenant.move_prepare_target(conn, t);
        IF NOT EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = obj) THEN
            EXECUTE format('CREATE PUBLICATION %I FOR TABLES IN SCHEMA %I, TABLE tenant.move_signals WHERE (schema_id = %L::uuid)',
                           obj, t.schema_name, sid);
        END IF;
        INSERT INTO tenant.institution_moves (schema_id, institution_id, location, step, target_schema_id)
        VALUES (sid, t.institution_id, location, 'PREPARED', m.target_schema_id);
        RETURN 'PREPARED';
    END IF;
    IF m.location <> location THEN
        RAISE EXCEPTION 'institution schema "%" is being moved to %, not %', t.schema_name, m.location, location
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run tenant.move_institution with that target to resume, or tenant.cancel_move to roll back.';
    END IF;
    CASE m.step
    WHEN 'PREPARED' THEN
        answer := tenant.move_remote(conn, format('SELECT count(*)::text FROM pg_subscription WHERE subname = %L', obj));
        IF answer = '0' THEN
            -- synchronous_commit on: the workers' own commits (a table's copy
            -- done, before its temporary slot on the source is dropped) must
            -- survive a crash of this server, or its restart waits for a slot
            -- that no longer exists.
            PERFORM tenant.move_remote(conn, format(
                'CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (create_slot = false, slot_name = %L, copy_data = true, synchronous_commit = on)',
                obj, source, obj, obj));
        END IF;
        m.step := 'SYNCING';
    WHEN 'SYNCING' THEN
        answer := tenant.move_remote(conn, format(
            'SELECT concat_ws(''|'', count(*), count(*) FILTER (WHERE r.srsubstate <> ''r''))
               FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid WHERE s.subname = %L', obj));
        IF split_part(answer, '|', 1) = '0' OR split_part(answer, '|', 2) <> '0' THEN
            RETURN 'WAIT';
        END IF;
        INSERT INTO tenant.move_signals VALUES (sid, 'SYNCED') ON CONFLICT DO NOTHING;
        m.step := 'CATCHING_UP';
    WHEN 'CATCHING_UP' THEN
        IF NOT tenant.move_remote(conn, format(
                'SELECT EXISTS (SELECT 1 FROM tenant.move_signals WHERE schema_id = %L AND step = ''SYNCED'')::text', sid))::boolean THEN
            RETURN 'WAIT';
        END IF;
        m.step := 'SYNCED';
    WHEN 'SYNCED' THEN
        -- The cut-over: wait for writers in flight (EXCLUSIVE lets reads on),
        -- then lock the tenant role out. Writers queued behind the locks meet
        -- the revoked USAGE when this commits.
        IF tenant.move_remote(conn, format('SELECT tenant.move_table_list(%L)', t.schema_name))
           <> tenant.move_table_list(t.schema_name) THEN
            RAISE EXCEPTION 'the tables of institution schema "%" changed during the move', t.schema_name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'DDL is not replicated: run tenant.cancel_move, then move again.';
        END IF;
        SET LOCAL lock_timeout = '2s';
        SELECT 'LOCK TABLE ' || string_agg(c.oid::regclass::text, ', ') || ' IN EXCLUSIVE MODE' INTO statement
          FROM pg_class c WHERE c.relnamespace = t.schema_name::regnamespace AND c.relkind IN ('r', 'p');
        IF statement IS NOT NULL THEN
            EXECUTE statement;
        END IF;
        SELECT concat_ws('|', r.status, r.sqlstate, r.message) INTO answer
          FROM tenant.set_institution_status(sid, 'MAINTENANCE', 'moving to ' || location) r;
        IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
            RAISE EXCEPTION 'could not stop writes: %', split_part(answer, '|', 3) USING ERRCODE = split_part(answer, '|', 2);
        END IF;
        -- The marker names this freeze: a freeze rolled back and done again
        -- must not be taken for caught up by the first one's marker.
        m.frozen_at := clock_timestamp();
        INSERT INTO tenant.move_signals VALUES (sid, tenant.move_freeze_marker(m.frozen_at)) ON CONFLICT DO NOTHING;
        m.step := 'FROZEN';
    WHEN 'FROZEN' THEN
        -- Not decided yet: the target is never activated before this side
        -- has committed ACTIVATING, so an interruption here rolls back.
        IF NOT tenant.move_remote(conn, format(
                'SELECT EXISTS (SELECT 1 FROM tenant.move_signals WHERE schema_id = %L AND step = %L)::text',
                sid, tenant.move_freeze_marker(m.frozen_at)))::boolean THEN
            RETURN 'WAIT';
        END IF;
        m.step := 'ACTIVATING';
    WHEN 'ACTIVATING' THEN
        -- Decided: the institution belongs to the target. Activate it there
        -- (unless it already took over before an interruption), then record it.
        IF tenant.move_take_over(conn, t, m) THEN
            UPDATE tenant.institution_moves x
               SET pause_ms = round((extract(epoch FROM clock_timestamp() - m.frozen_at) * 1000)::numeric, 3), updated_at = now()
             WHERE x.schema_id = sid;
            RETURN 'ACTIVATED';
        END IF;
        PERFORM tenant.move_mark_moved(sid);
        RETURN 'MOVED';
    WHEN 'MOVED' THEN
        IF NOT EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = obj)
           AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj) THEN
            RETURN 'DONE';
        END IF;
        EXECUTE format('DROP PUBLICATION IF EXISTS %I', obj);
        -- The walsender lets go of the slot once the target dropped its subscription.
        IF EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj AND s.active) THEN
            RETURN 'WAIT';
        END IF;
        PERFORM pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s WHERE s.slot_name = obj;
        DELETE FROM tenant.move_signals g WHERE g.schema_id = sid;
        -- Not DONE yet: a call that only removed what a resolved move left
        -- reports the move's success, not "already moved".
        RETURN 'MOVED';
    END CASE;
    UPDATE tenant.institution_moves x
       SET step = m.step, frozen_at = m.frozen_at, pause_ms = m.pause_ms, updated_at = now()
     WHERE x.schema_id = sid;
    RETURN m.step;
END
$$;

-- One remote transaction: the subscription goes (its slot stays on the
-- source, dropped there), the sequences take the source's positions, the
-- markers go, and the institution becomes ACTIVE on the target.
CREATE FUNCTION tenant.move_activate_target(conn text, t tenant.tenant_schemas, m tenant.institution_moves) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name constant text := tenant.move_object_name(t.id);
    setvals text;
    answer text;
BEGIN
    SELECT 'SELECT count(pg_catalog.setval(x.s::regclass, x.v, x.called))::text FROM (VALUES '
           || string_agg(format('(%L, %s::bigint, %s)', format('%I.%I', t.schema_name, s.sequencename),
                                COALESCE(s.last_value, s.start_value),
                                CASE WHEN s.last_value IS NULL THEN 'false' ELSE 'true' END), ', ')
           || ') AS x(s, v, called)'
      INTO setvals
      FROM pg_sequences s WHERE s.schemaname = t.schema_name;
    PERFORM tenant.move_remote(conn, 'BEGIN');
    PERFORM tenant.move_remote(conn, format('ALTER SUBSCRIPTION %I DISABLE', name));
    PERFORM tenant.move_remote(conn, format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', name));
    PERFORM tenant.move_remote(conn, format('DROP SUBSCRIPTION %I', name));
    IF setvals IS NOT NULL THEN
        PERFORM tenant.move_remote(conn, setvals);
    END IF;
    PERFORM tenant.move_remote(conn, format('DELETE FROM tenant.move_signals WHERE schema_id IN (%L, %L)', t.id, m.target_schema_id));
    -- Settings changed here during the move, and the row limits' counts as
    -- writes stopped them (the rows arrived under replication, which fires
    -- no counting trigger): exact, and no table is counted during the pause.
    PERFORM tenant.move_remote(conn, format('SELECT tenant.receive_institution_settings(%L, %L, counted => true)::text',
                                            m.target_schema_id, tenant.institution_settings(t.id)));
    answer := tenant.move_remote(conn, format(
        'SELECT concat_ws(''|'', status, sqlstate, message) FROM tenant.set_institution_status(%L, ''ACTIVE'', ''moved here'')',
        m.target_schema_id));
    IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
        RAISE EXCEPTION 'the target could not activate the institution: %', split_part(answer, '|', 3)
            USING ERRCODE = split_part(answer, '|', 2);
    END IF;
    PERFORM tenant.move_remote(conn, 'COMMIT');
END
$$;

-- The marker of one freeze (a freeze rolled back and done again writes another).
CREATE FUNCTION tenant.move_freeze_marker(frozen_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'FROZEN ' OPERATOR(pg_catalog.||) pg_catalog.date_part('epoch', frozen_at)::text $$;

-- The second key of the advisory lock a running move_institution holds for
-- its whole run (a session lock, first key 0x7463 like the extension's other
-- locks): while it is held the move has a live coordinator; a crash or a
-- restart of this server releases it.
CREATE FUNCTION tenant.move_lock_key(schema_id uuid) RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext('move:' OPERATOR(pg_catalog.||) schema_id::text) $$;

-- The recorded location, as a connection string that gives up on an
-- unreachable target after 2 s (the resolver may run inside set_context).
CREATE FUNCTION tenant.move_reach(location text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN location ~* 'connect_timeout' THEN location
            WHEN location ~* '^[a-z]+://' THEN location || CASE WHEN strpos(location, '?') > 0 THEN '&' ELSE '?' END || 'connect_timeout=2'
            ELSE location || ' connect_timeout=2' END
$$;

-- The decided half of a cut-over: activate the institution on the target
-- unless it already took over. True when it was activated now.
CREATE FUNCTION tenant.move_take_over(conn text, t tenant.tenant_schemas, m tenant.institution_moves) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer text := tenant.move_remote(conn, format('SELECT status FROM tenant.tenant_schemas WHERE id = %L', m.target_schema_id));
BEGIN
    IF answer = 'ACTIVE' THEN
        RETURN false;
    ELSIF answer IS DISTINCT FROM 'MAINTENANCE' THEN
        RAISE EXCEPTION 'the target has no arriving schema of institution schema "%" (status there: %)', t.schema_name, COALESCE(answer, 'none')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM tenant.move_activate_target(conn, t, m);
    RETURN true;
END
$$;

-- The target took over: the schema here is the locked-out copy.
CREATE FUNCTION tenant.move_mark_moved(schema_id uuid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
UPDATE tenant.tenant_schemas s SET status = 'MOVED', updated_at = now() WHERE s.id = move_mark_moved.schema_id;
UPDATE tenant.institution_moves x
   SET step = 'MOVED', updated_at = now(),
       pause_ms = COALESCE(x.pause_ms, round((extract(epoch FROM clock_timestamp() - x.frozen_at) * 1000)::numeric, 3))
 WHERE x.schema_id = move_mark_moved.schema_id;
$$;

-- Roll back a cut-over that was not decided: ACTIVE here again, the move
-- back at SYNCED (the target keeps streaming; running the move resumes).
CREATE FUNCTION tenant.move_unfreeze(schema_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid constant uuid := move_unfreeze.schema_id;
    answer text;
BEGIN
    -- The step first: a status change is refused while a move is FROZEN.
    UPDATE tenant.institution_moves x SET step = 'SYNCED', frozen_at = NULL, updated_at = now() WHERE x.schema_id = sid;
    DELETE FROM tenant.move_signals g WHERE g.schema_id = sid AND g.step LIKE 'FROZEN%';
    SELECT concat_ws('|', r.status, r.sqlstate, r.message) INTO answer
      FROM tenant.set_institution_status(sid, 'ACTIVE', 'cut-over of a move rolled back') r;
    IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
        RAISE EXCEPTION 'could not reopen the institution: %', split_part(answer, '|', 3) USING ERRCODE = split_part(answer, '|', 2);
    END IF;
END
$$;

-- The resolver of one move whose coordinator is gone (its session lock is
-- free): FROZEN (not decided) rolls back here, ACTIVATING (decided) rolls
-- forward (the target activated, MOVED here), MOVED removes the publication
-- and the slot left behind. Returns NONE, BUSY (a coordinator or another
-- resolver has it), ROLLED_BACK, ROLLED_FORWARD or CLEANED; raises when the
-- target cannot be reached to roll forward.
CREATE FUNCTION tenant.move_resolve(schema_id uuid) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid constant uuid := move_resolve.schema_id;
    obj constant text := tenant.move_object_name(move_resolve.schema_id);
    conn constant text := 'tenant_control_move_resolve';
    m tenant.institution_moves;
    t tenant.tenant_schemas;
BEGIN
    -- The coordinator's key first: while a move runs, a caller (an
    -- application's set_context) takes no lock that could hold its next step.
    IF NOT pg_try_advisory_xact_lock(29795, tenant.move_lock_key(sid)) THEN
        RETURN 'BUSY';
    END IF;
    SELECT * INTO m FROM tenant.institution_moves x WHERE x.schema_id = sid FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN CASE WHEN EXISTS (SELECT 1 FROM tenant.institution_moves x WHERE x.schema_id = sid) THEN 'BUSY' ELSE 'NONE' END;
    ELSIF m.step NOT IN ('FROZEN', 'ACTIVATING', 'MOVED') THEN
        RETURN 'NONE';
    END IF;
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = sid FOR NO KEY UPDATE;
    IF m.step = 'FROZEN' THEN
        PERFORM tenant.move_unfreeze(sid);
        RETURN 'ROLLED_BACK';
    ELSIF m.step = 'ACTIVATING' THEN
        -- A cancel (which OTHERS does not catch) must close the connection
        -- too: left open in the caller's session, it would be a superuser's
        -- session on the target that the caller could use through dblink.
        BEGIN
            PERFORM tenant.move_connect(conn, tenant.move_reach(m.location));
            PERFORM tenant.move_take_over(conn, t, m);
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            PERFORM tenant.move_disconnect(conn);
            RAISE;
        END;
        PERFORM tenant.move_disconnect(conn);
        PERFORM tenant.move_mark_moved(sid);
        RETURN 'ROLLED_FORWARD';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = obj)
       AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj) THEN
        RETURN 'NONE';
    END IF;
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', obj);
    IF EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj AND s.active) THEN
        RETURN 'BUSY';
    END IF;
    PERFORM pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s WHERE s.slot_name = obj;
    DELETE FROM tenant.move_signals g WHERE g.schema_id = sid;
    RETURN 'CLEANED';
END
$$;

-- What set_context and locate_institution call for an institution that is
-- MAINTENANCE here (never on their common path): resolve an interrupted
-- cut-over of its move, then NULL when none remains, or the message of the
-- one still running ("is moving to ..."). Never raises.
CREATE FUNCTION tenant.move_settle(institution_id uuid) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid uuid;
    location text;
    step text;
    failure text;
BEGIN
    SELECT t.id, m.location INTO sid, location
      FROM tenant.tenant_schemas t JOIN tenant.institution_moves m ON m.schema_id = t.id
     WHERE t.institution_id = move_settle.institution_id AND t.status = 'MAINTENANCE' AND m.step IN ('FROZEN', 'ACTIVATING');
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM tenant.move_resolve(sid);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
    END;
    step := (SELECT m.step FROM tenant.institution_moves m WHERE m.schema_id = sid);
    IF step NOT IN ('FROZEN', 'ACTIVATING') THEN
        RETURN NULL;
    END IF;
    RETURN format('institution %s is moving to %s: %s', institution_id, location,
                  CASE WHEN step = 'FROZEN' THEN 'its writes are paused for the cut-over (step FROZEN)'
                       ELSE 'the cut-over is decided and the target is taking it over (step ACTIVATING)' END)
           || COALESCE('; the target could not be reached to finish it: ' || failure, '');
END
$$;

-- Resolve every move interrupted in its cut-over whose coordinator is gone
-- (see tenant.move_resolve), and remove what finished moves left behind.
-- One row per move looked at. tenant.schedule_maintenance runs it every minute.
-- SECURITY DEFINER like the other scheduled jobs, so that a platform
-- administrator (tenant_control_admin) can run it and own its pg_cron job.
-- It takes no argument: the only place it connects to is a move's recorded
-- location, which only tenant.move_institution (superusers) writes.
CREATE FUNCTION tenant.resolve_moves()
RETURNS TABLE (schema_name text, step text, outcome text, message text, sqlstate text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pending record;
    result text;
    note text;
    code text;
BEGIN
    FOR pending IN
        SELECT m.schema_id, t.schema_name, m.step, m.location
          FROM tenant.institution_moves m JOIN tenant.tenant_schemas t ON t.id = m.schema_id
         WHERE m.step IN ('FROZEN', 'ACTIVATING')
            OR (m.step = 'MOVED' AND (EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = tenant.move_object_name(m.schema_id))
                                      OR EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = tenant.move_object_name(m.schema_id))))
         ORDER BY t.schema_name
    LOOP
        code := NULL;
        BEGIN
            result := tenant.move_resolve(pending.schema_id);
            note := CASE result
                WHEN 'ROLLED_BACK' THEN 'the cut-over was not decided: ACTIVE here again, the move is back at step SYNCED (run it again to resume)'
                WHEN 'ROLLED_FORWARD' THEN format('the cut-over was decided: ACTIVE on %s, MOVED here', pending.location)
                WHEN 'CLEANED' THEN 'the publication and the replication slot of the finished move are removed'
                WHEN 'BUSY' THEN 'a running tenant.move_institution (or another resolver) has it'
                ELSE 'nothing to do' END;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, note = MESSAGE_TEXT;
            result := 'ERROR';
            note := format('the cut-over was decided but %s could not finish it: %s', pending.location, note);
        END;
        RETURN QUERY SELECT pending.schema_name::text, pending.step, result, note, code;
    END LOOP;
END
$$;

-- Where an institution's schema is: NULL when here, the target's location
-- when it moved away. Applications call it (tenant_control_app). An
-- institution in a move's cut-over whose coordinator is gone is resolved
-- first (tenant.move_settle), so the answer is where it is usable.
CREATE FUNCTION tenant.locate_institution(institution_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hit record;
    known boolean;
BEGIN
    IF institution_id IS NULL THEN
        RAISE EXCEPTION 'argument "institution_id" must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR attempt IN 1..2 LOOP
        SELECT m.location, t.status INTO hit
          FROM tenant.tenant_schemas t
          LEFT JOIN tenant.institution_moves m ON m.schema_id = t.id AND m.step = 'MOVED'
         WHERE t.institution_id = locate_institution.institution_id AND (t.status <> 'DROPPED' OR m.location IS NOT NULL)
         ORDER BY t.status = 'DROPPED', t.created_at DESC
         LIMIT 1;
        known := FOUND;
        EXIT WHEN NOT known OR attempt = 2 OR hit.status <> 'MAINTENANCE';
        PERFORM tenant.move_settle(institution_id);
    END LOOP;
    IF NOT known THEN
        RAISE EXCEPTION 'institution % has no schema here and did not move from here', institution_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN hit.location;
END
$$;

-- The move itself. A procedure: it commits after each step, so it must be
-- CALLed outside a transaction block, and it takes no SET clause (every name
-- is qualified). Errors end it with an ERROR row; what the earlier steps
-- committed stays, and running it again resumes from there.
CREATE PROCEDURE tenant.move_institution(
    schema_id uuid,
    target text,
    source text DEFAULT NULL,
    stop_after text DEFAULT NULL,
    max_wait interval DEFAULT '1 hour',
    INOUT status text DEFAULT NULL,
    INOUT message text DEFAULT NULL,
    INOUT sqlstate text DEFAULT NULL,
    INOUT pause_ms numeric DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    conn constant text := 'tenant_control_move';
    location text;
    step text;
    first_step text;
    waiting_since timestamptz;
    code text;
    msg text;
    detail text;
    hint text;
    done_row record;
    -- The coordinator's session lock (see tenant.move_lock_key).
    lock_key integer;
BEGIN
    BEGIN
        IF move_institution.schema_id IS NULL OR move_institution.target IS NULL THEN
            RAISE EXCEPTION 'argument "%" must not be NULL', CASE WHEN move_institution.schema_id IS NULL THEN 'schema_id' ELSE 'target' END
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF stop_after IS NOT NULL AND pg_catalog.upper(stop_after) OPERATOR(pg_catalog.<>) ALL (ARRAY['PREPARED', 'SYNCED', 'FROZEN', 'ACTIVATING', 'ACTIVATED']) THEN
            RAISE EXCEPTION 'unknown step "%" for stop_after', stop_after
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use PREPARED, SYNCED, FROZEN, ACTIVATING or ACTIVATED.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.id OPERATOR(pg_catalog.=) move_institution.schema_id
                                                                AND t.status OPERATOR(pg_catalog.<>) ALL (ARRAY['DROPPED', 'SPARE'])) THEN
            RAISE EXCEPTION 'no institution schema with id % in tenant.tenant_schemas', move_institution.schema_id
                USING ERRCODE = 'undefined_object';
        END IF;
        -- Keep the password out of the registry: the location is for people and applications.
        location := pg_catalog.btrim(pg_catalog.regexp_replace(pg_catalog.regexp_replace(move_institution.target,
                        '\s*password\s*=\s*(''([^''\\]|\\.)*''|\S+)', '', 'gi'), '(://[^:@/]*):[^@/]*@', '\1@'));
        IF move_institution.source IS NULL THEN
            source := pg_catalog.format('host=%s port=%s dbname=%s user=%s',
                          COALESCE(NULLIF(pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1), ''), 'localhost'),
                          pg_catalog.current_setting('port'), pg_catalog.current_database(), session_user);
        END IF;
        PERFORM tenant.move_connect(conn, move_institution.target);
        -- One coordinator per move; while it runs, the resolver leaves the
        -- move alone. Taken last in this block: nothing after it can fail.
        lock_key := tenant.move_lock_key(move_institution.schema_id);
        IF NOT pg_catalog.pg_try_advisory_lock(29795, lock_key) THEN
            RAISE EXCEPTION 'institution schema % is being moved or resolved by another session', move_institution.schema_id
                USING ERRCODE = 'object_in_use', HINT = 'Wait for that call to end, then run the move again.';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        PERFORM tenant.move_disconnect(conn);
        move_institution.status := 'ERROR';
        move_institution.message := msg || COALESCE(' (' || NULLIF(detail, '') || ')', '');
        move_institution.sqlstate := code;
        RETURN;
    END;
    LOOP
        BEGIN
            PERFORM tenant.move_ensure_slot(move_institution.schema_id);
            step := tenant.move_step(move_institution.schema_id, conn, move_institution.source, location);
            IF step OPERATOR(pg_catalog.=) 'WAIT' THEN
                waiting_since := COALESCE(waiting_since, pg_catalog.clock_timestamp());
                IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) waiting_since OPERATOR(pg_catalog.>) max_wait THEN
                    RAISE EXCEPTION 'the target did not catch up within %', max_wait
                        USING ERRCODE = 'query_canceled',
                              HINT = 'Check the target''s server log (pg_stat_subscription); run the move again to resume, or tenant.cancel_move.';
                END IF;
            ELSE
                waiting_since := NULL;
            END IF;
        -- query_canceled too (max_wait, a cancel): OTHERS does not include it.
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            PERFORM tenant.move_disconnect(conn);
            SELECT m.step INTO step FROM tenant.institution_moves m WHERE m.schema_id OPERATOR(pg_catalog.=) move_institution.schema_id;
            IF step OPERATOR(pg_catalog.=) 'FROZEN' THEN
                -- Not decided: the coordinator rolls its cut-over back itself
                -- rather than leave the institution frozen.
                BEGIN
                    PERFORM tenant.move_resolve(move_institution.schema_id);
                    step := 'SYNCED (the cut-over was rolled back: the institution is ACTIVE here again)';
                EXCEPTION WHEN OTHERS THEN
                    NULL;  -- stays FROZEN: the resolver of set_context or resolve_moves retries
                END;
            END IF;
            PERFORM pg_catalog.pg_advisory_unlock(29795, lock_key);
            move_institution.status := 'ERROR';
            move_institution.message := msg || COALESCE(' (' || NULLIF(detail, '') || ')', '')
                                        || CASE WHEN step OPERATOR(pg_catalog.=) 'ACTIVATING'
                                                THEN '; the cut-over is decided (step ACTIVATING): the target takes over when the move is run again or tenant.resolve_moves() reaches it'
                                                ELSE COALESCE('; the move stays at step ' || step || ': run it again to resume, or tenant.cancel_move', '') END;
            move_institution.sqlstate := code;
            RETURN;
        END;
        COMMIT;
        first_step := COALESCE(first_step, step);
        EXIT WHEN step OPERATOR(pg_catalog.=) 'DONE';
        IF step OPERATOR(pg_catalog.=) 'WAIT' THEN
            -- Writes are stopped while FROZEN: poll fast then, gently before.
            PERFORM pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM tenant.institution_moves m
                                                          WHERE m.schema_id OPERATOR(pg_catalog.=) move_institution.schema_id
                                                            AND m.step OPERATOR(pg_catalog.=) 'FROZEN')
                                             THEN 0.002 ELSE 0.05 END);
        ELSIF step OPERATOR(pg_catalog.=) pg_catalog.upper(stop_after) THEN
            PERFORM tenant.move_disconnect(conn);
            PERFORM pg_catalog.pg_advisory_unlock(29795, lock_key);
            move_institution.status := 'STOPPED';
            move_institution.message := pg_catalog.format('the move stopped after step %s as asked; run it again to go on', step);
            RETURN;
        END IF;
    END LOOP;
    PERFORM tenant.move_disconnect(conn);
    PERFORM pg_catalog.pg_advisory_unlock(29795, lock_key);
    SELECT m.location AS where_to, m.pause_ms AS pause, t.schema_name INTO done_row
      FROM tenant.institution_moves m JOIN tenant.tenant_schemas t ON t.id OPERATOR(pg_catalog.=) m.schema_id
     WHERE m.schema_id OPERATOR(pg_catalog.=) move_institution.schema_id;
    IF first_step OPERATOR(pg_catalog.=) 'DONE' THEN
        move_institution.status := 'ERROR';
        move_institution.message := pg_catalog.format('institution schema "%s" has already moved to %s', done_row.schema_name, done_row.where_to);
        move_institution.sqlstate := '55000';
        RETURN;
    END IF;
    move_institution.status := 'SUCCESS';
    move_institution.message := pg_catalog.format('institution schema "%s" moved to %s; its data here is kept, locked out, until dropped',
                                                  done_row.schema_name, done_row.where_to);
    move_institution.pause_ms := done_row.pause;
END
$$;

-- Roll back a move that has not cut over: the target's subscription and
-- schema go (the schema into a backup there), the publication and the slot
-- here, and the institution is ACTIVE here again.
CREATE FUNCTION tenant.cancel_move(schema_id uuid, target text)
RETURNS TABLE (status text, message text, sqlstate text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conn constant text := 'tenant_control_move_cancel';
    obj constant text := tenant.move_object_name(cancel_move.schema_id);
    m tenant.institution_moves;
    t tenant.tenant_schemas;
    answer text;
    code text;
    msg text;
BEGIN
    SELECT * INTO t FROM tenant.tenant_schemas s WHERE s.id = cancel_move.schema_id FOR NO KEY UPDATE;
    SELECT * INTO m FROM tenant.institution_moves x WHERE x.schema_id = cancel_move.schema_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'ERROR', format('no move of institution schema %s is in progress', cancel_move.schema_id), '55000';
        RETURN;
    ELSIF m.step = 'MOVED' THEN
        RETURN QUERY SELECT 'ERROR', format('institution schema "%s" has already moved to %s', t.schema_name, m.location), '55000';
        RETURN;
    ELSIF m.step = 'ACTIVATING' THEN
        RETURN QUERY SELECT 'ERROR', format('the cut-over of institution schema "%s" is decided: it belongs to %s now; finish the move with tenant.move_institution or tenant.resolve_moves()',
                                            t.schema_name, m.location), '55000';
        RETURN;
    ELSIF NOT pg_try_advisory_xact_lock(29795, tenant.move_lock_key(t.id)) THEN
        RETURN QUERY SELECT 'ERROR', format('institution schema "%s" is being moved by another session: cancel it when that call has ended', t.schema_name), '55006';
        RETURN;
    END IF;
    PERFORM tenant.move_connect(conn, target);
    answer := tenant.move_remote(conn, format('SELECT status FROM tenant.tenant_schemas WHERE id = %L', m.target_schema_id));
    IF answer = 'ACTIVE' THEN
        PERFORM tenant.move_disconnect(conn);
        RETURN QUERY SELECT 'ERROR', format('the target has taken over institution schema "%s": finish the move with tenant.move_institution', t.schema_name), '55000';
        RETURN;
    END IF;
    IF tenant.move_remote(conn, format('SELECT count(*)::text FROM pg_subscription WHERE subname = %L', obj)) <> '0' THEN
        PERFORM tenant.move_remote(conn, format('ALTER SUBSCRIPTION %I DISABLE', obj));
        PERFORM tenant.move_remote(conn, format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', obj));
        PERFORM tenant.move_remote(conn, format('DROP SUBSCRIPTION %I', obj));
    END IF;
    IF answer IS NOT NULL AND answer <> 'DROPPED' THEN
        answer := tenant.move_remote(conn, format(
            'SELECT concat_ws(''|'', status, sqlstate, message) FROM tenant.drop_institution_schema(%L)', m.target_schema_id));
        IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
            RAISE EXCEPTION 'the target could not drop the arriving schema: %', split_part(answer, '|', 3)
                USING ERRCODE = split_part(answer, '|', 2);
        END IF;
    END IF;
    PERFORM tenant.move_remote(conn, format('DELETE FROM tenant.move_signals WHERE schema_id IN (%L, %L)', t.id, m.target_schema_id));
    PERFORM tenant.move_disconnect(conn);
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', obj);
    -- The walsender lets go of the slot moments after the subscription went.
    FOR i IN 1..500 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = obj AND s.active);
        PERFORM pg_sleep(0.01);
    END LOOP;
    PERFORM pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s WHERE s.slot_name = obj;
    DELETE FROM tenant.move_signals g WHERE g.schema_id = t.id;
    DELETE FROM tenant.institution_moves x WHERE x.schema_id = t.id;
    IF t.status = 'MAINTENANCE' THEN
        SELECT concat_ws('|', r.status, r.sqlstate, r.message) INTO answer
          FROM tenant.set_institution_status(t.id, 'ACTIVE', 'move cancelled') r;
        IF split_part(answer, '|', 1) <> 'SUCCESS' THEN
            RAISE EXCEPTION 'could not reopen the institution: %', split_part(answer, '|', 3) USING ERRCODE = split_part(answer, '|', 2);
        END IF;
    END IF;
    RETURN QUERY SELECT 'SUCCESS', format('the move of institution schema "%s" to %s was cancelled; it is ACTIVE here', t.schema_name, m.location), NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM tenant.move_disconnect(conn);
    RETURN QUERY SELECT 'ERROR', msg, code;
END
$$;

REVOKE ALL ON FUNCTION tenant.move_object_name(uuid), tenant.move_remote(text, text), tenant.move_connect(text, text),
    tenant.move_disconnect(text), tenant.move_table_list(text), tenant.move_check_source(uuid),
    tenant.move_check_target(text, uuid), tenant.move_prepare_target(text, tenant.tenant_schemas),
    tenant.move_ensure_slot(uuid), tenant.move_step(uuid, text, text, text),
    tenant.move_activate_target(text, tenant.tenant_schemas, tenant.institution_moves),
    tenant.locate_institution(uuid), tenant.cancel_move(uuid, text),
    tenant.move_freeze_marker(timestamptz), tenant.move_lock_key(uuid), tenant.move_reach(text),
    tenant.move_take_over(text, tenant.tenant_schemas, tenant.institution_moves), tenant.move_mark_moved(uuid),
    tenant.move_unfreeze(uuid), tenant.move_resolve(uuid), tenant.move_settle(uuid), tenant.resolve_moves() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.institution_settings(uuid), tenant.receive_institution_settings(uuid, jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.institution_settings(uuid), tenant.receive_institution_settings(uuid, jsonb, boolean)
    TO tenant_control_admin;
COMMENT ON FUNCTION tenant.institution_settings(uuid) IS
    'An institution''s settings as one jsonb document: config, quota_limit, limits (tenant.set_limits), row_limits (tenant.set_row_limit, with counts), archives (tenant.retention_archives) and admins (tenant.grant_institution_admin). Read on the source by tenant.copy_institution_from and tenant.move_institution.';
COMMENT ON FUNCTION tenant.receive_institution_settings(uuid, jsonb, boolean) IS
    'Apply a document of tenant.institution_settings to an institution here (config and quota replaced, limits and row limits validated and set, archive tables present in its schema recorded, administrators granted where their role exists; returns admins_skipped). counted => true takes the document''s row counts for row limits already in place.';
REVOKE ALL ON PROCEDURE tenant.move_institution(uuid, text, text, text, interval, text, text, text, numeric) FROM PUBLIC;
REVOKE ALL ON tenant.institution_moves, tenant.move_signals FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.locate_institution(uuid) TO tenant_control_app, tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.resolve_moves() TO tenant_control_admin;
GRANT SELECT ON tenant.institution_moves TO tenant_control_admin;
COMMENT ON FUNCTION tenant.move_object_name(uuid) IS 'Internal (tenant.move_institution): the name of a move''s publication, slot and subscription.';
COMMENT ON FUNCTION tenant.move_remote(text, text) IS 'Internal (tenant.move_institution): run a command or a one-value query on the target through dblink.';
COMMENT ON FUNCTION tenant.move_connect(text, text) IS 'Internal (tenant.move_institution): open the dblink connection to the target.';
COMMENT ON FUNCTION tenant.move_disconnect(text) IS 'Internal (tenant.move_institution): close the dblink connection to the target.';
COMMENT ON FUNCTION tenant.move_table_list(text) IS 'Internal (tenant.move_institution): a schema''s tables, sorted, to compare two servers.';
COMMENT ON FUNCTION tenant.move_check_source(uuid) IS 'Internal (tenant.move_institution): check this server''s settings and the tenant''s tables before a move.';
COMMENT ON FUNCTION tenant.move_check_target(text, uuid) IS 'Internal (tenant.move_institution): check the target (superuser, tenant_control, template version and tables, a free worker).';
COMMENT ON FUNCTION tenant.move_prepare_target(text, tenant.tenant_schemas) IS 'Internal (tenant.move_institution): build the arriving schema on the target from its template, locked and empty.';
COMMENT ON FUNCTION tenant.move_ensure_slot(uuid) IS 'Internal (tenant.move_institution): create the move''s logical replication slot.';
COMMENT ON FUNCTION tenant.move_step(uuid, text, text, text) IS 'Internal (tenant.move_institution): advance a move by one step.';
COMMENT ON FUNCTION tenant.move_activate_target(text, tenant.tenant_schemas, tenant.institution_moves) IS 'Internal (tenant.move_institution): drop the subscription, set the sequences and activate the institution on the target.';
COMMENT ON FUNCTION tenant.locate_institution(uuid) IS 'Where an institution lives: NULL when its schema is in this database, the target''s location (without password) when it moved away.';
COMMENT ON FUNCTION tenant.move_freeze_marker(timestamptz) IS 'Internal (tenant.move_institution): the marker of one freeze of a cut-over.';
COMMENT ON FUNCTION tenant.move_lock_key(uuid) IS 'Internal (tenant.move_institution): second key of the session advisory lock a running move holds (first key 29795).';
COMMENT ON FUNCTION tenant.move_reach(text) IS 'Internal (tenant.move_resolve): a move''s location as a connection string with a 2 s connect_timeout.';
COMMENT ON FUNCTION tenant.move_take_over(text, tenant.tenant_schemas, tenant.institution_moves) IS 'Internal (tenant.move_institution): activate the institution on the target unless it already took over; true when activated now.';
COMMENT ON FUNCTION tenant.move_mark_moved(uuid) IS 'Internal (tenant.move_institution): record that the target took over (MOVED here).';
COMMENT ON FUNCTION tenant.move_unfreeze(uuid) IS 'Internal (tenant.move_resolve): roll back an undecided cut-over (ACTIVE here again, step SYNCED).';
COMMENT ON FUNCTION tenant.move_resolve(uuid) IS 'Internal (tenant.resolve_moves): resolve one move whose coordinator is gone: FROZEN rolls back, ACTIVATING rolls forward, MOVED leftovers are removed.';
COMMENT ON FUNCTION tenant.move_settle(uuid) IS 'Internal (tenant.set_context, tenant.locate_institution): resolve an interrupted cut-over of an institution; NULL, or the message of the cut-over still running.';
COMMENT ON FUNCTION tenant.resolve_moves() IS
    'Resolve every move interrupted in its cut-over whose tenant.move_institution call is gone (FROZEN: rolled back here; ACTIVATING: the target activated, MOVED here) and remove what finished moves left; one row per move. Scheduled by tenant.schedule_maintenance.';
COMMENT ON FUNCTION tenant.cancel_move(uuid, text) IS 'Roll back a move that has not cut over: the target''s subscription and arriving schema go, and the institution is ACTIVE here again.';
COMMENT ON PROCEDURE tenant.move_institution(uuid, text, text, text, interval, text, text, text, numeric) IS
    'Move an institution to another server online: logical replication of its schema, then a sub-second cut-over; the source keeps its data locked out (MOVED). Resumes when run again.';
-- Copies between databases (issue 14).
COMMENT ON FUNCTION tenant.copy_institution_from(text, uuid, text, boolean, boolean) IS
    'Copy an institution from another database or server running tenant_control (source: a connection string or a foreign server; needs dblink): as a new institution, in place of the local one (the replaced schema kept as a backup), or under a new name beside it as a DRILL backup; from a dropped institution''s newest backup on the source. One snapshot, verified by both sides'' hashes; refuses a template version mismatch (55000) unless migrate => true. Superuser only. Logs RESTORE here and BACKUP on the source.';
COMMENT ON FUNCTION tenant.institution_structure(uuid, uuid) IS
    'The statements that rebuild an institution''s schema (or, with backup_id, one of its backups) elsewhere, each with its generator''s kind; a jsonb array of text parts and {"slot": "schema"} / {"slot": "role"} places. Read by tenant.copy_institution_from on the target.';
COMMENT ON FUNCTION tenant.institution_manifest(uuid, uuid, text) IS
    'Row count and content hash of every table of an institution''s schema (or of one of its backups) in the caller''s snapshot; logged as a BACKUP operation with copied_to. Read by tenant.copy_institution_from on the target.';
REVOKE ALL ON FUNCTION tenant.copy_institution_from(text, uuid, text, boolean, boolean),
    tenant.institution_structure(uuid, uuid), tenant.institution_manifest(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.copy_institution_from(text, uuid, text, boolean, boolean),
    tenant.institution_structure(uuid, uuid), tenant.institution_manifest(uuid, uuid, text) TO tenant_control_admin;

-- History retention (issue 16): the operation log, the usage snapshots and the
-- audit trail are partitioned by month (UTC). CALL tenant.maintain_history()
-- creates the partitions of the coming months, moves rows that landed in a
-- DEFAULT partition into a partition of their month, and drops whole
-- partitions older than the retention period: no long DELETE. Each partition
-- is created or dropped in a transaction of its own: attaching one locks its
-- table's DEFAULT partition, and an operation that has written to one history
-- table and then writes to another must never wait for a transaction that
-- holds a lock on the first (no foreign key from these tables to the registry
-- either, for the same reason: attaching would lock the registry too).
CREATE FUNCTION tenant.history_months(parent text, months_ahead integer)
RETURNS SETOF date
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT DISTINCT pg_catalog.date_trunc(''month'', %I AT TIME ZONE ''UTC'')::date FROM tenant.%I
         UNION SELECT (pg_catalog.date_trunc(''month'', pg_catalog.now() AT TIME ZONE ''UTC'') + n * interval ''1 month'')::date
           FROM pg_catalog.generate_series(0, $1) n ORDER BY 1',
        tenant.history_time_column(parent), parent || '_default') USING months_ahead;
END
$$;

CREATE FUNCTION tenant.history_time_column(parent text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE parent WHEN 'schema_operations' THEN 'started_at' WHEN 'usage_snapshots' THEN 'taken_at'
                       WHEN 'audit_events' THEN 'occurred_at'
                       ELSE tenant.history_bad_table(parent) END;
END
$$;

CREATE FUNCTION tenant.history_bad_table(parent text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'tenant_control: "%" is not a history table', parent USING ERRCODE = '22023';
END
$$;

CREATE FUNCTION tenant.history_partition(parent text, month date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s'
AS $$
DECLARE
    time_col text := tenant.history_time_column(parent);
    key_col text := CASE parent WHEN 'audit_events' THEN 'institution_id' ELSE 'schema_id' END;
    first_day date := pg_catalog.date_trunc('month', month)::date;
    lo timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part text := parent || '_p' || pg_catalog.to_char(first_day, 'YYYYMM');
    moved bigint;
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('tenant.%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Built apart and attached, so that rows of the month already in the
    -- DEFAULT partition can move in first (CREATE TABLE ... PARTITION OF
    -- would fail on them). No row may be on its way in meanwhile: a statement
    -- that chose the DEFAULT partition before the attachment and wrote to it
    -- after would fail its partition constraint (23514). So the parent is
    -- locked against writers (readers go on) and the DEFAULT partition
    -- exclusively, both without waiting, since waiting would queue every new
    -- history row behind this step (55P03 when busy: the caller tries again).
    EXECUTE pg_catalog.format('LOCK TABLE tenant.%I IN EXCLUSIVE MODE NOWAIT', parent);
    EXECUTE pg_catalog.format('LOCK TABLE tenant.%I IN ACCESS EXCLUSIVE MODE NOWAIT', parent || '_default');
    -- An operation still running updates its log row when it ends; a row
    -- moved under it would make that update fail: such a month waits.
    IF parent = 'schema_operations' AND EXISTS (
            SELECT 1 FROM tenant.schema_operations_default o
             WHERE o.started_at >= lo AND o.started_at < hi AND o.status IN ('PENDING', 'RUNNING')) THEN
        RAISE EXCEPTION 'an operation logged in % is still running', part USING ERRCODE = '55006';
    END IF;
    EXECUTE pg_catalog.format('CREATE TABLE tenant.%I (LIKE tenant.%I INCLUDING CONSTRAINTS)', part, parent);
    EXECUTE pg_catalog.format('ALTER TABLE tenant.%I ADD PRIMARY KEY (id)', part);
    EXECUTE pg_catalog.format('CREATE INDEX ON tenant.%I (%I)', part, time_col);
    EXECUTE pg_catalog.format('CREATE INDEX ON tenant.%I (%I, %I)', part, key_col, time_col);
    EXECUTE pg_catalog.format(
        'WITH moved AS (DELETE FROM tenant.%I WHERE %I >= $1 AND %I < $2 RETURNING *) INSERT INTO tenant.%I SELECT * FROM moved',
        parent || '_default', time_col, time_col, part) USING lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE pg_catalog.format('ALTER TABLE tenant.%I ATTACH PARTITION tenant.%I FOR VALUES FROM (%L) TO (%L)',
                              parent, part, lo, hi);
    RETURN moved;
END
$$;

-- Drops the oldest partition of parent whose month ended more than keep ago;
-- NULL when there is none.
CREATE FUNCTION tenant.history_drop_oldest(parent text, keep interval, OUT partition_name text, OUT row_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s'
AS $$
BEGIN
    PERFORM tenant.history_time_column(parent);
    SELECT c.relname INTO partition_name
      FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = pg_catalog.format('tenant.%I', parent)::regclass
       AND c.relname ~ ('^' || parent || '_p[0-9]{6}$')
       AND ((pg_catalog.to_date(pg_catalog.right(c.relname, 6), 'YYYYMM') + interval '1 month')::timestamp
            AT TIME ZONE 'UTC') <= pg_catalog.now() - keep
     ORDER BY c.relname LIMIT 1;
    IF partition_name IS NOT NULL THEN
        -- Dropping a partition locks its parent exclusively: without waiting, as above.
        EXECUTE pg_catalog.format('LOCK TABLE tenant.%I IN ACCESS EXCLUSIVE MODE NOWAIT', parent);
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM tenant.%I', partition_name) INTO row_count;
        EXECUTE pg_catalog.format('DROP TABLE tenant.%I', partition_name);
    END IF;
END
$$;

CREATE PROCEDURE tenant.maintain_history(keep interval DEFAULT '13 months', months_ahead integer DEFAULT 2)
LANGUAGE plpgsql
AS $$
DECLARE
    parent text;
    month date;
    moved bigint;
    dropped record;
    created integer := 0;
    removed integer := 0;
    busy integer := 0;
    attempt integer;
BEGIN
    IF keep IS NOT NULL AND keep <= interval '0' THEN
        RAISE EXCEPTION 'tenant.maintain_history: keep must be a positive interval, not %', keep
            USING ERRCODE = '22023', HINT = 'NULL keeps the history for ever.';
    END IF;
    IF months_ahead IS NULL OR months_ahead NOT BETWEEN 0 AND 24 THEN
        RAISE EXCEPTION 'tenant.maintain_history: months_ahead must be between 0 and 24, not %', months_ahead
            USING ERRCODE = '22023';
    END IF;
    FOREACH parent IN ARRAY ARRAY['schema_operations', 'usage_snapshots', 'audit_events'] LOOP
        -- Months whose rows are in the DEFAULT partition, then the coming months.
        FOR month IN SELECT m FROM tenant.history_months(parent, months_ahead) m LOOP
            -- A table busy for 10 seconds is left for the next run: the
            -- partitions are made months ahead.
            FOR attempt IN 1..20 LOOP
                BEGIN
                    moved := tenant.history_partition(parent, month);
                    EXIT;
                EXCEPTION WHEN lock_not_available THEN
                    moved := -1;
                WHEN object_in_use THEN
                    moved := -1;
                    EXIT;
                END;
                PERFORM pg_catalog.pg_sleep(0.5);
            END LOOP;
            IF moved = -1 THEN
                busy := busy + 1;
                RAISE NOTICE 'busy: %_p% not created (its table stayed locked, or an operation logged in that month is still running), next run',
                    parent, pg_catalog.to_char(month, 'YYYYMM');
            ELSIF moved IS NOT NULL THEN
                created := created + 1;
                RAISE NOTICE 'created %_p% (% row(s) moved in)', parent, pg_catalog.to_char(month, 'YYYYMM'), moved;
            END IF;
            COMMIT;
        END LOOP;
        -- Whole months that ended before now() - keep go, one by one.
        attempt := 0;
        LOOP
            EXIT WHEN keep IS NULL;
            BEGIN
                SELECT * INTO dropped FROM tenant.history_drop_oldest(parent, keep);
            EXCEPTION WHEN lock_not_available THEN
                attempt := attempt + 1;
                IF attempt < 20 THEN
                    PERFORM pg_catalog.pg_sleep(0.5);
                    CONTINUE;
                END IF;
                busy := busy + 1;
                RAISE NOTICE 'busy: old partitions of % not dropped, next run', parent;
                EXIT;
            END;
            EXIT WHEN dropped.partition_name IS NULL;
            removed := removed + 1;
            RAISE NOTICE 'dropped % (% row(s))', dropped.partition_name, dropped.row_count;
            COMMIT;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'history: % partition(s) created, % dropped', created, removed;
    IF busy > 0 THEN
        RAISE WARNING 'history: % step(s) left for the next run: their tables stayed busy', busy;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION tenant.history_months(text, integer), tenant.history_time_column(text),
                       tenant.history_bad_table(text), tenant.history_partition(text, date),
                       tenant.history_drop_oldest(text, interval) FROM PUBLIC;
-- The procedure runs as its caller and calls the SECURITY DEFINER helpers.
GRANT EXECUTE ON FUNCTION tenant.history_months(text, integer), tenant.history_time_column(text),
                          tenant.history_bad_table(text), tenant.history_partition(text, date),
                          tenant.history_drop_oldest(text, interval) TO tenant_control_admin;
REVOKE ALL ON PROCEDURE tenant.maintain_history(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.maintain_history(interval, integer) TO tenant_control_admin;
COMMENT ON FUNCTION tenant.history_months(text, integer) IS
    'Internal: the months (UTC) of the rows in a history table''s DEFAULT partition and the coming months_ahead months.';
COMMENT ON FUNCTION tenant.history_time_column(text) IS 'Internal: the column a history table is partitioned by.';
COMMENT ON FUNCTION tenant.history_bad_table(text) IS 'Internal: the error for a name that is not a history table.';
COMMENT ON FUNCTION tenant.history_partition(text, date) IS
    'Internal: create the partition of one month of a history table (schema_operations, usage_snapshots, audit_events), moving that month''s rows out of its DEFAULT partition; returns the rows moved, NULL if the partition existed.';
COMMENT ON FUNCTION tenant.history_drop_oldest(text, interval) IS
    'Internal: drop the oldest partition of a history table whose month ended more than keep ago; returns its name and row count, NULL if there is none.';
COMMENT ON PROCEDURE tenant.maintain_history(interval, integer) IS
    'Keep the extension''s history bounded: create the monthly partitions of the operation log, the usage snapshots and the audit trail for this month and months_ahead more, move rows out of their DEFAULT partitions, and drop the partitions of months that ended more than keep ago (NULL: never), one commit each. Safe from pg_cron; scheduled daily by tenant.schedule_maintenance.';

-- Moves between shared tables and an institution's schema (issue 16):
-- tenant.move_to_schema / tenant.move_to_shared, one commit per batch; the
-- state of a move lives here, so that a move stopped by its time limit (or
-- an error, or a crash) resumes where it stopped.
CREATE TABLE tenant.shared_table_mappings (
    shared_schema text NOT NULL,
    shared_name   text NOT NULL,
    table_name    text NOT NULL,
    columns       jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.=) 'object'),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (shared_schema, shared_name)
);
CREATE TABLE tenant.shared_moves (
    institution_id  uuid PRIMARY KEY,
    schema_id       uuid NOT NULL REFERENCES tenant.tenant_schemas (id) ON DELETE CASCADE,
    direction       text NOT NULL CHECK (direction IN ('TO_SCHEMA', 'TO_SHARED')),
    plan            jsonb NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at     timestamptz,
    batches         bigint NOT NULL DEFAULT 0,
    calls           integer NOT NULL DEFAULT 1,
    verify_attempts integer NOT NULL DEFAULT 0
);
CREATE INDEX shared_moves_schema ON tenant.shared_moves (schema_id);
CREATE TABLE tenant.shared_move_tables (
    institution_id uuid NOT NULL REFERENCES tenant.shared_moves (institution_id) ON DELETE CASCADE,
    position       integer NOT NULL,
    table_name     text NOT NULL,
    shared_table   text NOT NULL,
    rows_total     bigint NOT NULL,
    rows_copied    bigint NOT NULL DEFAULT 0,
    last_key       text[],
    copied         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (institution_id, position)
);
CREATE VIEW tenant.shared_move_progress AS
SELECT m.institution_id, s.schema_name, m.direction,
       CASE WHEN m.finished_at IS NOT NULL THEN 'DONE'
            WHEN pg_catalog.bool_and(t.copied) THEN 'VERIFYING' ELSE 'COPYING' END AS state,
       pg_catalog.count(*) FILTER (WHERE t.copied) AS tables_copied, pg_catalog.count(*) AS tables,
       pg_catalog.sum(t.rows_copied)::bigint AS rows_copied, pg_catalog.sum(t.rows_total)::bigint AS rows_total,
       m.batches, m.calls, m.started_at, m.updated_at, m.finished_at
  FROM tenant.shared_moves m
  JOIN tenant.tenant_schemas s ON s.id OPERATOR(pg_catalog.=) m.schema_id
  LEFT JOIN tenant.shared_move_tables t ON t.institution_id OPERATOR(pg_catalog.=) m.institution_id
 GROUP BY m.institution_id, s.schema_name;
COMMENT ON TABLE tenant.shared_table_mappings IS
    'Explicit mappings of shared tables to template tables (tenant.set_column_mapping): the template table and the columns whose names differ.';
COMMENT ON COLUMN tenant.shared_table_mappings.columns IS 'Template column -> shared column, for the columns whose names differ.';
COMMENT ON TABLE tenant.shared_moves IS
    'Moves between shared tables and institution schemas (tenant.move_to_schema, tenant.move_to_shared): one row per institution, the last move; finished_at NULL while it runs.';
COMMENT ON COLUMN tenant.shared_moves.plan IS 'The tables and columns the move copies, checked before anything moved.';
COMMENT ON COLUMN tenant.shared_moves.verify_attempts IS 'How many times a verification found a difference and the copy started again.';
COMMENT ON TABLE tenant.shared_move_tables IS 'Progress of a move, table by table: rows copied and the last key copied.';
COMMENT ON VIEW tenant.shared_move_progress IS
    'Progress of the moves between shared tables and institution schemas: state COPYING, VERIFYING or DONE, tables and rows copied.';
SELECT pg_catalog.pg_extension_config_dump('tenant.shared_table_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.shared_moves', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.shared_move_tables', '');
REVOKE ALL ON tenant.shared_table_mappings, tenant.shared_moves, tenant.shared_move_tables, tenant.shared_move_progress FROM PUBLIC;
GRANT SELECT ON tenant.shared_table_mappings, tenant.shared_move_progress TO tenant_control_admin;

-- Both procedures: a first step that starts the move (every check before
-- anything moves) or says that it resumes, then one step per transaction
-- until the move is done or time_limit has passed.
CREATE PROCEDURE tenant.move_to_schema(institution_id uuid, batch_size integer DEFAULT 10000, time_limit interval DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL tenant.shared_move_run(institution_id, 'TO_SCHEMA', batch_size, time_limit);
END
$$;
CREATE PROCEDURE tenant.move_to_shared(institution_id uuid, batch_size integer DEFAULT 10000, time_limit interval DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL tenant.shared_move_run(institution_id, 'TO_SHARED', batch_size, time_limit);
END
$$;
CREATE PROCEDURE tenant.shared_move_run(institution uuid, direction text, batch_size integer, time_limit interval)
LANGUAGE plpgsql
AS $$
DECLARE
    deadline timestamptz;
    step record;
BEGIN
    IF time_limit IS NOT NULL AND time_limit OPERATOR(pg_catalog.<=) interval '0' THEN
        RAISE EXCEPTION 'time_limit must be positive, not %', time_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) time_limit;
    SELECT s.finished, s.abandoned, s.message INTO STRICT step
      FROM tenant.shared_move_step(institution, direction, batch_size, true) s;
    COMMIT;
    RAISE NOTICE '%', step.message;
    LOOP
        SELECT s.finished, s.abandoned, s.message INTO STRICT step
          FROM tenant.shared_move_step(institution, direction, batch_size, false) s;
        COMMIT;
        IF step.abandoned THEN
            RAISE EXCEPTION '%', step.message USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = 'CALL the procedure again to start the move over.';
        END IF;
        RAISE NOTICE '%', step.message;
        EXIT WHEN step.finished;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline THEN
            RAISE NOTICE 'time limit of % reached: CALL the procedure again to resume', time_limit;
            EXIT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE tenant.move_to_schema(uuid, integer, interval) IS
    'Move an institution''s rows from the shared tables into its own schema (created from the template if it has none), batch_size rows per commit, verified by counts and content hashes before the shared rows are deleted; stops cleanly after time_limit and resumes at the next call.';
COMMENT ON PROCEDURE tenant.move_to_shared(uuid, integer, interval) IS
    'Move an institution''s rows from its schema back into the shared tables (adding the institution column), batch_size rows per commit, verified before the schema is retired into a backup; stops cleanly after time_limit and resumes at the next call.';
COMMENT ON PROCEDURE tenant.shared_move_run(uuid, text, integer, interval) IS
    'Internal: the loop of tenant.move_to_schema and tenant.move_to_shared.';
COMMENT ON FUNCTION tenant.shared_move_step(uuid, text, integer, boolean) IS
    'Internal: one step (start, batch, or verification and switch) of a move between shared tables and a schema, run by tenant.move_to_schema and tenant.move_to_shared.';
COMMENT ON FUNCTION tenant.set_column_mapping(text, text, jsonb) IS
    'Map a shared table to a template table (NULL: the one of the same name) and name the columns whose names differ ({"template column": "shared column"}); NULL and {} remove the mapping.';
REVOKE ALL ON PROCEDURE tenant.move_to_schema(uuid, integer, interval), tenant.move_to_shared(uuid, integer, interval),
    tenant.shared_move_run(uuid, text, integer, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.shared_move_step(uuid, text, integer, boolean), tenant.set_column_mapping(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.move_to_schema(uuid, integer, interval), tenant.move_to_shared(uuid, integer, interval),
    tenant.shared_move_run(uuid, text, integer, interval) TO tenant_control_admin;
GRANT EXECUTE ON FUNCTION tenant.shared_move_step(uuid, text, integer, boolean), tenant.set_column_mapping(text, text, jsonb)
    TO tenant_control_admin;

-- set_context's per-connection cache (issue 13): tenant.set_context keeps,
-- per connection and for a minute at most, the registry's answer for a
-- plainly ACTIVE institution (src/ops/context_cache.rs). These triggers make
-- every backend forget it when anything enter_context reads changes: they
-- queue a PostgreSQL relation-cache invalidation (naming the registry's
-- primary-key index, cheap to reload), sent to all backends at commit. Row triggers (see tc_fleet_views_follow_new
-- for why). A new row, or a row of limits or moves that goes, cannot make a
-- remembered ACTIVE answer wrong; TRUNCATE of the registry invalidates it
-- by itself.
CREATE FUNCTION tenant.context_cache_invalidate() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'tc_context_cache_invalidate';
COMMENT ON FUNCTION tenant.context_cache_invalidate() IS
    'Internal: trigger that makes every connection forget what tenant.set_context and the DDL event trigger remembered about institutions and tenant schemas (the registry changed).';
REVOKE ALL ON FUNCTION tenant.context_cache_invalidate() FROM PUBLIC;
CREATE TRIGGER tc_context_cache_change
    AFTER UPDATE ON tenant.tenant_schemas FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.schema_name IS DISTINCT FROM NEW.schema_name
          OR OLD.owner_role IS DISTINCT FROM NEW.owner_role OR OLD.institution_id IS DISTINCT FROM NEW.institution_id
          OR OLD.quota_state IS DISTINCT FROM NEW.quota_state)
    EXECUTE FUNCTION tenant.context_cache_invalidate();
CREATE TRIGGER tc_context_cache_gone
    AFTER DELETE ON tenant.tenant_schemas FOR EACH ROW EXECUTE FUNCTION tenant.context_cache_invalidate();
-- The DDL event trigger's per-connection answers to "is this a tenant
-- schema?" (src/ops/schema_cache.rs) follow the same messages: a new row
-- sends its own (naming the live-schema-name index), which set_context's
-- cache ignores. ENABLE ALWAYS, these three: a "no" kept after a change made
-- under session_replication_role = replica would let a tenant's DDL past
-- its checks.
CREATE TRIGGER tc_schema_cache_new
    AFTER INSERT ON tenant.tenant_schemas FOR EACH ROW WHEN (NEW.status <> 'DROPPED')
    EXECUTE FUNCTION tenant.context_cache_invalidate();
ALTER TABLE tenant.tenant_schemas ENABLE ALWAYS TRIGGER tc_context_cache_change;
ALTER TABLE tenant.tenant_schemas ENABLE ALWAYS TRIGGER tc_context_cache_gone;
ALTER TABLE tenant.tenant_schemas ENABLE ALWAYS TRIGGER tc_schema_cache_new;
COMMENT ON TRIGGER tc_schema_cache_new ON tenant.tenant_schemas IS
    'Makes every connection forget which schemas its DDL event trigger found not to be tenant schemas (a tenant was registered).';
CREATE TRIGGER tc_context_cache_limits
    AFTER INSERT OR UPDATE ON tenant.institution_limits FOR EACH ROW EXECUTE FUNCTION tenant.context_cache_invalidate();
CREATE TRIGGER tc_context_cache_shared_moves
    AFTER INSERT OR UPDATE ON tenant.shared_moves FOR EACH ROW EXECUTE FUNCTION tenant.context_cache_invalidate();
