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
     WHERE list_institutions.status IS NULL OR t.status = upper(list_institutions.status)
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
         WHERE t.id = key_id OR t.institution_id = key_id OR t.schema_name = key
         ORDER BY t.created_at;
END
$$;

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

-- Privileges: nothing for PUBLIC; the platform administrator role gets the
-- functions and read access to the registry, the log and the backup catalogue.
DO $privileges$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'tenant'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO tenant_control_admin', fn);
    END LOOP;
END
$privileges$;

REVOKE ALL ON ALL TABLES IN SCHEMA tenant FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant TO tenant_control_admin;
GRANT SELECT ON tenant.tenant_schemas, tenant.schema_operations, tenant.schema_backups, tenant.migrations
    TO tenant_control_admin;
