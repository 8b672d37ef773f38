-- tenant_control bootstrap: roles, tables and their comments.
-- Runs before the Rust functions are created. Every object here lives in the
-- extension schema `tenant` (fixed by the control file).

-- The platform administrator role. Roles are cluster-wide, so a second
-- database installing the extension finds it already there.
-- The template's role stands for "the tenant's role" inside the template:
-- what it owns or is granted there, each tenant's role owns or is granted in
-- its copy.
DO $bootstrap$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_control_admin') THEN
        CREATE ROLE tenant_control_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_template_owner') THEN
        CREATE ROLE tenant_template_owner NOLOGIN;
    END IF;
END
$bootstrap$;

CREATE SCHEMA tenant_template;
COMMENT ON SCHEMA tenant_template IS
    'The template every new institution schema is copied from. Fill it with ordinary DDL; change it with tenant.register_migration.';
-- Tables and sequences the installing role creates in the template are usable
-- by the tenant's role in every copy.
ALTER DEFAULT PRIVILEGES IN SCHEMA tenant_template
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES TO tenant_template_owner;
ALTER DEFAULT PRIVILEGES IN SCHEMA tenant_template
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO tenant_template_owner;
GRANT USAGE ON SCHEMA tenant_template TO tenant_template_owner;

COMMENT ON SCHEMA tenant IS
    'tenant_control: registry, operation log and functions for schema-per-tenant multi-tenancy';

CREATE TABLE tenant.tenant_schemas (
    id              uuid        NOT NULL DEFAULT pg_catalog.gen_random_uuid() PRIMARY KEY,
    institution_id  uuid,
    schema_name     text        NOT NULL CHECK (schema_name ~ '^[a-z][a-z0-9_]{0,56}$'),
    status          text        NOT NULL DEFAULT 'ACTIVE'
                    CHECK (status IN ('ACTIVE', 'SUSPENDED', 'MAINTENANCE', 'DROPPED', 'SPARE')),
    owner_role      text        NOT NULL CHECK (owner_role = schema_name || '_owner'),
    config          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version         integer     NOT NULL DEFAULT 0,
    table_count     integer     NOT NULL DEFAULT 0,
    storage_used    bigint      NOT NULL DEFAULT 0,
    quota_limit     bigint      CHECK (quota_limit > 0),
    last_optimized  timestamptz,
    last_backup     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((status = 'SPARE') = (institution_id IS NULL))
);

-- A dropped tenant keeps its row for the audit trail, so uniqueness holds
-- among the tenants that still exist: the institution or the name can come back.
CREATE UNIQUE INDEX tenant_schemas_institution_live
    ON tenant.tenant_schemas (institution_id) WHERE status <> 'DROPPED';
CREATE UNIQUE INDEX tenant_schemas_schema_name_live
    ON tenant.tenant_schemas (schema_name) WHERE status <> 'DROPPED';

COMMENT ON TABLE tenant.tenant_schemas IS
    'Registry of institution (tenant) schemas. Changed only through the tenant.* functions.';
COMMENT ON COLUMN tenant.tenant_schemas.id IS 'Registry id of the tenant schema (the schema_id the functions take).';
COMMENT ON COLUMN tenant.tenant_schemas.institution_id IS 'The institution this schema belongs to; unique among tenants that are not DROPPED; NULL for a SPARE schema.';
COMMENT ON COLUMN tenant.tenant_schemas.schema_name IS 'Name of the PostgreSQL schema; unique among tenants that are not DROPPED.';
COMMENT ON COLUMN tenant.tenant_schemas.status IS 'ACTIVE, SUSPENDED (tenant role locked out), MAINTENANCE (tenant role locked out for DBA work), DROPPED, or SPARE (a ready copy of the template in the warm pool).';
COMMENT ON COLUMN tenant.tenant_schemas.owner_role IS 'The tenant''s NOLOGIN role: USAGE and CREATE on this schema only.';
COMMENT ON COLUMN tenant.tenant_schemas.config IS 'Free-form per-tenant settings for the application.';
COMMENT ON COLUMN tenant.tenant_schemas.version IS 'Schema version (migration number) the tenant is at.';
COMMENT ON COLUMN tenant.tenant_schemas.table_count IS 'Number of tables in the schema when last counted.';
COMMENT ON COLUMN tenant.tenant_schemas.storage_used IS 'Bytes used by the schema''s relations (heap, indexes, TOAST, maps, sequences) when last counted.';
COMMENT ON COLUMN tenant.tenant_schemas.quota_limit IS 'Storage limit in bytes; NULL means unlimited.';
COMMENT ON COLUMN tenant.tenant_schemas.last_optimized IS 'When the schema was last optimized (ANALYZE).';
COMMENT ON COLUMN tenant.tenant_schemas.last_backup IS 'When the last backup of the schema was taken.';
COMMENT ON COLUMN tenant.tenant_schemas.created_at IS 'When the tenant was created.';
COMMENT ON COLUMN tenant.tenant_schemas.updated_at IS 'When the registry row last changed.';

CREATE TABLE tenant.schema_operations (
    id              bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    schema_id       uuid        REFERENCES tenant.tenant_schemas (id),
    operation_type  text        NOT NULL
                    CHECK (operation_type IN ('CREATE', 'DROP', 'BACKUP', 'RESTORE', 'OPTIMIZE', 'MIGRATE',
                                              'INTEGRITY_CHECK', 'QUOTA_CHECK', 'STATUS_CHANGE')),
    status          text        NOT NULL
                    CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
    description     text        NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error_sqlstate  text        CHECK (error_sqlstate ~ '^[0-9A-Z]{5}$'),
    error_message   text,
    started_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    duration_ms     numeric(14, 3),
    requested_by    text        NOT NULL,
    CHECK ((status = 'FAILED') = (error_sqlstate IS NOT NULL))
);

CREATE INDEX schema_operations_schema_started ON tenant.schema_operations (schema_id, started_at);
CREATE INDEX schema_operations_started ON tenant.schema_operations (started_at);

COMMENT ON TABLE tenant.schema_operations IS
    'Operation log: one row per operation on a tenant schema, kept for failures too.';
COMMENT ON COLUMN tenant.schema_operations.id IS 'Increasing operation number.';
COMMENT ON COLUMN tenant.schema_operations.schema_id IS 'Registry id of the tenant; NULL when the operation failed before a tenant existed.';
COMMENT ON COLUMN tenant.schema_operations.operation_type IS 'CREATE, DROP, BACKUP, RESTORE, OPTIMIZE, MIGRATE, INTEGRITY_CHECK, QUOTA_CHECK or STATUS_CHANGE.';
COMMENT ON COLUMN tenant.schema_operations.status IS 'PENDING, RUNNING, COMPLETED or FAILED.';
COMMENT ON COLUMN tenant.schema_operations.description IS 'What was asked, in words.';
COMMENT ON COLUMN tenant.schema_operations.metadata IS 'Details of the operation (names, sizes, previous and new status, ...).';
COMMENT ON COLUMN tenant.schema_operations.error_sqlstate IS 'SQLSTATE of the error when status is FAILED.';
COMMENT ON COLUMN tenant.schema_operations.error_message IS 'Error message (with detail) when status is FAILED.';
COMMENT ON COLUMN tenant.schema_operations.started_at IS 'When the operation started (wall clock).';
COMMENT ON COLUMN tenant.schema_operations.completed_at IS 'When the operation finished, successfully or not.';
COMMENT ON COLUMN tenant.schema_operations.duration_ms IS 'Duration in milliseconds.';
COMMENT ON COLUMN tenant.schema_operations.requested_by IS 'session_user of the connection that asked for the operation.';

CREATE TABLE tenant.schema_backups (
    id              uuid        NOT NULL DEFAULT pg_catalog.gen_random_uuid() PRIMARY KEY,
    schema_id       uuid        NOT NULL REFERENCES tenant.tenant_schemas (id),
    backup_schema   text        NOT NULL UNIQUE,
    source_schema   text        NOT NULL,
    reason          text        NOT NULL CHECK (reason IN ('DROP')),
    size_bytes      bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE tenant.schema_backups IS
    'Backup catalogue: schemas that hold a copy of a tenant, reachable by no tenant role.';
COMMENT ON COLUMN tenant.schema_backups.id IS 'Backup id.';
COMMENT ON COLUMN tenant.schema_backups.schema_id IS 'Registry id of the tenant the backup was taken from.';
COMMENT ON COLUMN tenant.schema_backups.backup_schema IS 'Schema holding the backup.';
COMMENT ON COLUMN tenant.schema_backups.source_schema IS 'Name the tenant schema had when the backup was taken.';
COMMENT ON COLUMN tenant.schema_backups.reason IS 'Why the backup exists: DROP (the tenant schema itself, detached when the tenant was dropped).';
COMMENT ON COLUMN tenant.schema_backups.size_bytes IS 'Bytes the backup occupies.';
COMMENT ON COLUMN tenant.schema_backups.created_at IS 'When the backup was taken.';

CREATE TABLE tenant.migrations (
    version         integer     NOT NULL PRIMARY KEY CHECK (version > 0),
    description     text        NOT NULL,
    script          text        NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    registered_by   text        NOT NULL DEFAULT session_user
);

COMMENT ON TABLE tenant.migrations IS
    'Numbered migration scripts. The template is at the newest version; each tenant''s version is in tenant.tenant_schemas.';
COMMENT ON COLUMN tenant.migrations.version IS 'Migration number: 1, 2, 3, ... without gaps.';
COMMENT ON COLUMN tenant.migrations.description IS 'What the migration does.';
COMMENT ON COLUMN tenant.migrations.script IS 'SQL run with search_path set to the schema being migrated; names in it are unqualified.';
COMMENT ON COLUMN tenant.migrations.registered_at IS 'When the migration was registered (and applied to the template).';
COMMENT ON COLUMN tenant.migrations.registered_by IS 'session_user that registered it.';

-- A function's search_path setting ("search_path=a, b") with the element
-- naming schema from_schema replaced by to_schema: an element of a catalog
-- list, never a substring of code.
CREATE FUNCTION tenant.rebound_search_path(setting text, from_schema text, to_schema text)
RETURNS text LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN btrim(element, ' "') = from_schema THEN quote_ident(to_schema) ELSE btrim(element) END,
                      ', ' ORDER BY position)
      FROM regexp_split_to_table(substr(setting, length('search_path=') + 1), ',') WITH ORDINALITY AS e(element, position)
$$;
COMMENT ON FUNCTION tenant.rebound_search_path(text, text, text) IS
    'Internal: a function''s search_path setting with one schema element replaced (used when copying the template and claiming spares).';

-- pg_dump skips extension tables unless they are marked as configuration.
SELECT pg_catalog.pg_extension_config_dump('tenant.tenant_schemas', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_operations', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_operations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_backups', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.migrations', '');
