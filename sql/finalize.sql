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

-- Procedures commit after each schema, so they take no SET clause and name
-- everything with its schema.

CREATE PROCEDURE tenant.apply_migrations(dry_run boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    target integer := (SELECT COALESCE(pg_catalog.max(m.version), 0) FROM tenant.migrations m);
    pending record;
    outcome record;
    done integer := 0;
    failed integer := 0;
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
        COMMIT;
    END LOOP;
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
-- relations are locked (DDL under way) is skipped and retried once at the end,
-- so the job never queues behind DDL; a tenant dropped meanwhile is skipped.
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
    'Migrate every schema behind the template, one transaction per schema; failures are logged and the rest go on. dry_run lists what would run where.';
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
-- the limit, and the guard triggers cannot be dropped, disabled or renamed by
-- anyone but the extension.
CREATE FUNCTION tenant.quota_ddl_guard() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    watched text;
BEGIN
    IF current_setting('tenant_control.internal_ddl', true) = 'on'
       OR NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.quota_state <> 'OK' AND t.status <> 'DROPPED') THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
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
        SELECT DISTINCT c.schema_name FROM pg_event_trigger_ddl_commands() c
          JOIN tenant.tenant_schemas t ON t.schema_name = c.schema_name
         WHERE t.quota_state <> 'OK' AND t.status <> 'DROPPED'
    LOOP
        IF TG_TAG = 'ALTER TRIGGER' OR EXISTS (
               SELECT 1 FROM pg_trigger g
                WHERE g.tgname = 'tc_quota_guard' AND g.tgenabled = 'D'
                  AND g.tgrelid IN (SELECT tenant.schema_objects(watched, 'pg_catalog.pg_class'))) THEN
            RAISE EXCEPTION 'the storage quota guard of schema "%" cannot be disabled or renamed', watched
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'ALTER TRIGGER and DISABLE TRIGGER are refused while the tenant is near or over its quota.';
        END IF;
        PERFORM tenant.quota_check_growth(watched);
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant.quota_ddl_guard() IS
    'Internal: event trigger refusing CREATE/ALTER in a tenant over its quota (53400), and any tampering with the quota guards.';
CREATE EVENT TRIGGER tenant_control_quota_ddl ON ddl_command_end EXECUTE FUNCTION tenant.quota_ddl_guard();
CREATE EVENT TRIGGER tenant_control_quota_drop ON sql_drop EXECUTE FUNCTION tenant.quota_ddl_guard();
ALTER EVENT TRIGGER tenant_control_quota_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER tenant_control_quota_drop ENABLE ALWAYS;

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
COMMENT ON COLUMN tenant.backups.reason IS 'BACKUP (backup_institution_schema), DROP (left by drop_institution_schema) or RESTORE (the schema a restore replaced).';
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
    'Restore an institution from a backup, in place (the replaced schema is kept as a backup) or for a dropped tenant under its old or a new name. Logs a RESTORE operation.';
COMMENT ON FUNCTION tenant.restore_table(uuid, text, text) IS
    'Bring one table back from a backup into the live schema: missing rows by primary key, or replace. Logs a RESTORE operation.';
COMMENT ON FUNCTION tenant.remove_backup(uuid, text) IS 'Remove a backup schema, its role and its catalogue row; logs a BACKUP operation.';
COMMENT ON FUNCTION tenant.backup_free_space() IS 'Bytes free on the data directory''s file system, as backups check it.';

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
-- Shared-table policies call this as the querying role (by oid: no USAGE on the schema needed).
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
GRANT SELECT ON tenant.tenant_schemas, tenant.schema_operations, tenant.schema_backups, tenant.migrations,
                tenant.migration_status, tenant.warm_pool, tenant.institution_admins
    TO tenant_control_admin;
GRANT SELECT ON tenant.backups, tenant.backup_tables TO tenant_control_admin;
