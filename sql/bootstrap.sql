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
    -- Application login roles are granted this role: it may call
    -- tenant.set_context and assume any tenant's role with it, but NOINHERIT
    -- keeps the tenants' privileges out of its members' reach otherwise.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_control_app') THEN
        CREATE ROLE tenant_control_app NOLOGIN NOINHERIT;
    END IF;
    -- Institution administrators: granted by tenant.grant_institution_admin,
    -- they read (and change the config of) their own institutions' rows only.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_control_institution_admin') THEN
        CREATE ROLE tenant_control_institution_admin NOLOGIN;
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
                    CHECK (status IN ('ACTIVE', 'SUSPENDED', 'MAINTENANCE', 'DROPPED', 'SPARE', 'MOVED')),
    owner_role      text        NOT NULL CHECK (owner_role = schema_name || '_owner'),
    config          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version         integer     NOT NULL DEFAULT 0,
    table_count     integer     NOT NULL DEFAULT 0,
    storage_used    bigint      NOT NULL DEFAULT 0,
    quota_limit     bigint      CHECK (quota_limit > 0),
    quota_state     text        NOT NULL DEFAULT 'OK' CHECK (quota_state IN ('OK', 'WARNING', 'EXCEEDED')),
    quota_state_since timestamptz,
    last_optimized  timestamptz,
    last_backup     timestamptz,
    backup_storage  bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_accessed_at timestamptz,
    CHECK ((status = 'SPARE') = (institution_id IS NULL))
);

-- A dropped tenant keeps its row for the audit trail, so uniqueness holds
-- among the tenants that still exist: the institution or the name can come back.
CREATE UNIQUE INDEX tenant_schemas_institution_live
    ON tenant.tenant_schemas (institution_id) WHERE status <> 'DROPPED';
CREATE UNIQUE INDEX tenant_schemas_schema_name_live
    ON tenant.tenant_schemas (schema_name) WHERE status <> 'DROPPED';
-- A warm-pool claim takes the oldest spare at the current version: without
-- this index it read the whole registry (every institution) on each sign-up.
CREATE INDEX tenant_schemas_spares
    ON tenant.tenant_schemas (version, created_at) WHERE status = 'SPARE';
-- The DDL event trigger asks on every DDL statement whether any tenant is near its quota.
CREATE INDEX tenant_schemas_quota_watched
    ON tenant.tenant_schemas (schema_name) WHERE quota_state <> 'OK' AND status <> 'DROPPED';

COMMENT ON TABLE tenant.tenant_schemas IS
    'Registry of institution (tenant) schemas. Changed only through the tenant.* functions.';
COMMENT ON COLUMN tenant.tenant_schemas.id IS 'Registry id of the tenant schema (the schema_id the functions take).';
COMMENT ON COLUMN tenant.tenant_schemas.institution_id IS 'The institution this schema belongs to; unique among tenants that are not DROPPED; NULL for a SPARE schema.';
COMMENT ON COLUMN tenant.tenant_schemas.schema_name IS 'Name of the PostgreSQL schema; unique among tenants that are not DROPPED.';
COMMENT ON COLUMN tenant.tenant_schemas.status IS 'ACTIVE, SUSPENDED (tenant role locked out), MAINTENANCE (tenant role locked out for DBA work), DROPPED, SPARE (a ready copy of the template in the warm pool), or MOVED (moved to another server by tenant.move_institution; the schema here is kept, locked out, until dropped).';
COMMENT ON COLUMN tenant.tenant_schemas.owner_role IS 'The tenant''s NOLOGIN role: USAGE and CREATE on this schema only.';
COMMENT ON COLUMN tenant.tenant_schemas.config IS 'Free-form per-tenant settings for the application.';
COMMENT ON COLUMN tenant.tenant_schemas.version IS 'Schema version (migration number) the tenant is at.';
COMMENT ON COLUMN tenant.tenant_schemas.table_count IS 'Number of tables in the schema when last counted.';
COMMENT ON COLUMN tenant.tenant_schemas.storage_used IS 'Bytes used by the schema''s relations (heap, indexes, TOAST, maps, sequences) when last counted.';
COMMENT ON COLUMN tenant.tenant_schemas.quota_limit IS 'Storage limit in bytes; NULL means unlimited.';
COMMENT ON COLUMN tenant.tenant_schemas.quota_state IS 'OK, WARNING (at or above tenant_control.quota_warning_percent of quota_limit) or EXCEEDED (at or above quota_limit: writes refused with SQLSTATE 53400), as of the last storage count.';
COMMENT ON COLUMN tenant.tenant_schemas.quota_state_since IS 'When quota_state last changed.';
COMMENT ON COLUMN tenant.tenant_schemas.last_optimized IS 'When the schema was last optimized (ANALYZE).';
COMMENT ON COLUMN tenant.tenant_schemas.last_backup IS 'When the last backup of the schema was taken.';
COMMENT ON COLUMN tenant.tenant_schemas.backup_storage IS 'Bytes held by the tenant''s backups (tenant.backups), counted apart from storage_used.';
COMMENT ON COLUMN tenant.tenant_schemas.created_at IS 'When the tenant was created.';
COMMENT ON COLUMN tenant.tenant_schemas.updated_at IS 'When the registry row last changed.';
COMMENT ON COLUMN tenant.tenant_schemas.last_accessed_at IS 'When an application last entered the institution with tenant.set_context (recorded at most once a minute per connection); NULL if never.';

-- The operation log, the usage snapshots and the audit trail are partitioned
-- by month (tenant.maintain_history creates and drops the partitions). The
-- parents carry no index: pg_dump writes a run-time partition as a table of
-- its own that it attaches, then adds that table's indexes, and an index on
-- the parent (created again by CREATE EXTENSION) would already have given the
-- attached table one, so the restore would fail on a second primary key.
-- Each partition has its own primary key and indexes instead.
-- No foreign key to the registry either (registry rows are never deleted, and
-- attaching a partition would have to lock the registry; see
-- tenant.maintain_history).
CREATE TABLE tenant.schema_operations (
    id              bigint      GENERATED BY DEFAULT AS IDENTITY,
    schema_id       uuid,
    operation_type  text        NOT NULL
                    CHECK (operation_type IN ('CREATE', 'DROP', 'BACKUP', 'RESTORE', 'OPTIMIZE', 'MIGRATE',
                                              'INTEGRITY_CHECK', 'QUOTA_CHECK', 'QUOTA_SET', 'STATUS_CHANGE',
                                              'USAGE_SNAPSHOT', 'RETENTION', 'FLEET_RUN')),
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
) PARTITION BY RANGE (started_at);
-- The DEFAULT partition takes rows of any month that has no partition yet, so
-- an insert never fails; tenant.maintain_history moves them out.
CREATE TABLE tenant.schema_operations_default PARTITION OF tenant.schema_operations DEFAULT;
ALTER TABLE tenant.schema_operations_default ADD PRIMARY KEY (id);
COMMENT ON TABLE tenant.schema_operations_default IS 'Rows of the months that have no partition of their own (tenant.maintain_history moves them out).';
CREATE INDEX schema_operations_default_schema_started ON tenant.schema_operations_default (schema_id, started_at);
CREATE INDEX schema_operations_default_started ON tenant.schema_operations_default (started_at);

COMMENT ON TABLE tenant.schema_operations IS
    'Operation log: one row per operation on a tenant schema, kept for failures too.';
COMMENT ON COLUMN tenant.schema_operations.id IS 'Increasing operation number.';
COMMENT ON COLUMN tenant.schema_operations.schema_id IS 'Registry id of the tenant; NULL when the operation failed before a tenant existed.';
COMMENT ON COLUMN tenant.schema_operations.operation_type IS 'CREATE, DROP, BACKUP, RESTORE, OPTIMIZE, MIGRATE, INTEGRITY_CHECK, QUOTA_CHECK, QUOTA_SET, STATUS_CHANGE, USAGE_SNAPSHOT, RETENTION or FLEET_RUN (a statement run in many institutions).';
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
    backup_role     regrole     NOT NULL,
    reason          text        NOT NULL CHECK (reason IN ('DROP', 'BACKUP', 'RESTORE', 'DRILL')),
    size_bytes      bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    source_version  integer,
    row_count       bigint,
    duration_ms     numeric(14, 3),
    verified_at     timestamptz
);

COMMENT ON TABLE tenant.schema_backups IS
    'Backup catalogue: schemas that hold a copy of a tenant, reachable by no tenant role.';
COMMENT ON COLUMN tenant.schema_backups.id IS 'Backup id.';
COMMENT ON COLUMN tenant.schema_backups.schema_id IS 'Registry id of the tenant the backup was taken from.';
COMMENT ON COLUMN tenant.schema_backups.backup_schema IS 'Schema holding the backup.';
COMMENT ON COLUMN tenant.schema_backups.source_schema IS 'Name the tenant schema had when the backup was taken.';
COMMENT ON COLUMN tenant.schema_backups.backup_role IS 'The role that stands for the tenant''s role inside the backup (owns its objects, named by its grants and policies): tc_backup_..._owner, or for a RESTORE backup the tenant''s own role, which keeps no USAGE on it.';
COMMENT ON COLUMN tenant.schema_backups.reason IS 'Why the backup exists: BACKUP (a copy taken by backup_institution_schema), DROP (the tenant schema itself, detached when the tenant was dropped) or RESTORE (the live schema a restore replaced) or DRILL (a live institution''s backup restored under a new name by restore_institution_schema, readable by no tenant role).';
COMMENT ON COLUMN tenant.schema_backups.size_bytes IS 'Bytes the backup occupies.';
COMMENT ON COLUMN tenant.schema_backups.created_at IS 'When the backup was taken.';
COMMENT ON COLUMN tenant.schema_backups.source_version IS 'Schema version (migration number) of the tenant when the backup was taken.';
COMMENT ON COLUMN tenant.schema_backups.row_count IS 'Rows in all the backup''s tables.';
COMMENT ON COLUMN tenant.schema_backups.duration_ms IS 'Milliseconds the backup took.';
COMMENT ON COLUMN tenant.schema_backups.verified_at IS 'When tenant.verify_backup (or the drop that made the backup) last proved its tables match their recorded row counts and hashes; NULL if never.';

-- What each table of a backup held when it was taken: the rows copied (counted
-- in the copy's snapshot) and the content hash (recorded at the copy when it
-- was verified, or by the first verification).
CREATE TABLE tenant.backup_tables (
    backup_id       uuid        NOT NULL REFERENCES tenant.schema_backups (id) ON DELETE CASCADE,
    table_name      text        NOT NULL,
    row_count       bigint      NOT NULL,
    content_hash    numeric,
    PRIMARY KEY (backup_id, table_name)
);
COMMENT ON TABLE tenant.backup_tables IS 'Per-table manifest of each backup: rows copied and content hash.';
COMMENT ON COLUMN tenant.backup_tables.backup_id IS 'The backup (tenant.schema_backups.id).';
COMMENT ON COLUMN tenant.backup_tables.table_name IS 'Table name inside the backup schema.';
COMMENT ON COLUMN tenant.backup_tables.row_count IS 'Rows the table held in the snapshot the backup was copied in.';
COMMENT ON COLUMN tenant.backup_tables.content_hash IS 'Order-independent hash of the rows (sum of 64-bit row hashes); NULL until recorded.';

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
COMMENT ON COLUMN tenant.migrations.script IS 'SQL run as the role that stands for the tenant (tenant_template_owner, <schema>_owner) with search_path <schema> (pg_catalog searched first); names in it are unqualified.';
COMMENT ON COLUMN tenant.migrations.registered_at IS 'When the migration was registered (and applied to the template).';
COMMENT ON COLUMN tenant.migrations.registered_by IS 'session_user that registered it.';

-- The objects of one catalog that live in a schema, found through the
-- dependencies on the schema (an index), not by scanning the catalog: with
-- thousands of tenant schemas a scan of pg_class costs tens of milliseconds.
-- Indexes, and the row and array types of relations, depend on their relation
-- instead. Written to be inlined: no SET clause, every name qualified.
-- Inlined only when called in FROM; called in a select list (`c.oid IN
-- (SELECT tenant.schema_objects(...))`) it is planned as a function whose
-- row estimate is ROWS: a schema's objects of one catalog are tens, and the
-- default of 1000 made the planner hash-join catalogs that grow with every
-- tenant (pg_enum, pg_attribute) instead of probing their indexes.
CREATE FUNCTION tenant.schema_objects(schema_name text, catalog regclass)
RETURNS SETOF oid LANGUAGE sql STABLE ROWS 50
AS $$
    SELECT d.objid FROM pg_catalog.pg_depend d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace(schema_name)
       AND d.refobjsubid OPERATOR(pg_catalog.=) 0
       AND d.classid OPERATOR(pg_catalog.=) catalog
       AND d.deptype OPERATOR(pg_catalog.=) 'n'
$$;
COMMENT ON FUNCTION tenant.schema_objects(text, regclass) IS
    'Internal: oids of the objects of a catalog (pg_class, pg_proc, pg_type, ...) that live in a schema, found through pg_depend.';

-- A function setting as parts of a statement: literal text, and a
-- {"slot": "schema"} where the search_path names `schema_name`. The copy puts
-- its own schema in the slot: a list element of a catalog entry is rebound,
-- no text is searched and replaced. proconfig holds a search_path as its
-- elements, quoted where they need it ("$user", "" for an empty one): each
-- is unquoted, then written as a string literal (SET search_path = '' works,
-- = "" does not).
CREATE FUNCTION tenant.setting_parts(setting text, schema_name text)
RETURNS jsonb LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN setting LIKE 'search_path=%' THEN
               jsonb_build_array(' SET search_path = ')
               || (SELECT jsonb_agg(v.part ORDER BY e.n, v.k)
                     FROM regexp_matches(substr(setting, length('search_path=') + 1), '"(?:[^"]|"")*"|[^,\s][^,]*', 'g')
                              WITH ORDINALITY AS e(element, n),
                          LATERAL (SELECT CASE WHEN e.element[1] LIKE '"%'
                                               THEN replace(substr(e.element[1], 2, length(e.element[1]) - 2), '""', '"')
                                               ELSE rtrim(e.element[1]) END AS name) u,
                          LATERAL (VALUES (1, CASE WHEN e.n > 1 THEN to_jsonb(', '::text) END),
                                          (2, CASE WHEN u.name = schema_name THEN '{"slot": "schema"}'::jsonb
                                                   ELSE to_jsonb(quote_literal(u.name)) END)) AS v(k, part)
                    WHERE v.part IS NOT NULL)
           ELSE jsonb_build_array(format(' SET %s = %L', split_part(setting, '=', 1), substr(setting, strpos(setting, '=') + 1)))
           END
$$;
COMMENT ON FUNCTION tenant.setting_parts(text, text) IS
    'Internal: a function setting as statement parts, with the schema''s place in a search_path marked as a slot.';

-- A deparsing function (pg_get_viewdef, pg_get_expr, format_type, ...) applied
-- with one schema alone on the search_path, so that it leaves that schema's
-- names unqualified. The catalog queries that call it run with search_path
-- pg_catalog, pg_temp: no operator or function a tenant defines binds in them.
-- Defined here (not by pgrx) because tenant.function_statement needs it.
CREATE FUNCTION tenant.deparse_in(schema_name text, what text, object oid, expression text DEFAULT NULL, modifier integer DEFAULT NULL)
RETURNS text LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'deparse_in_wrapper';
COMMENT ON FUNCTION tenant.deparse_in(text, text, oid, text, integer) IS
    'Internal: a deparsing function applied with one schema alone on the search_path (what: view, expression, constraint, index, trigger, type, collation, arguments, identity arguments, result, sql body, partition key, rule, statistics).';

-- The CREATE FUNCTION/PROCEDURE statement of a function, as statement parts,
-- with the names of schema_name's objects left unqualified (tenant.deparse_in).
CREATE FUNCTION tenant.function_statement(function_oid oid, schema_name text)
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
COMMENT ON FUNCTION tenant.function_statement(oid, text) IS
    'Internal: the statement that recreates a function of the template in a copy, as parts.';

-- Whether an expression object (a CHECK constraint, a column default) calls a
-- function of schema_name: such an expression is created on its own, once
-- that function exists (the function may read the table, or take the domain).
CREATE FUNCTION tenant.calls_schema_function(catalog regclass, object oid, schema_name text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid
                    WHERE d.classid = catalog AND d.objid = object AND d.refclassid = 'pg_proc'::regclass
                      AND p.pronamespace = to_regnamespace(schema_name))
$$;
COMMENT ON FUNCTION tenant.calls_schema_function(regclass, oid, text) IS
    'Internal: whether a check or default calls a function of the schema (it is then created after that function).';

-- The name of an object for a copy's DDL: unqualified when it lives in the
-- schema being copied (the copy's own object then answers to it), qualified
-- otherwise. For support functions, operators, parsers, templates and
-- dictionaries named in CREATE AGGREGATE, CREATE TYPE ... AS RANGE and text
-- search DDL.
CREATE FUNCTION tenant.name_in(schema_name text, namespace oid, object_name text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN n.nspname = schema_name THEN quote_ident(object_name)
                ELSE format('%I.%I', n.nspname, object_name) END
      FROM pg_namespace n WHERE n.oid = namespace
$$;
COMMENT ON FUNCTION tenant.name_in(text, oid, text) IS
    'Internal: an object''s name for a copy''s DDL, unqualified inside the schema being copied, qualified outside it.';

-- Whether a copy creates a foreign key inside CREATE TABLE: a valid one that
-- references a table created before (a lower oid: no cycle of tables) through
-- that table's primary key or UNIQUE constraint (not a bare unique index,
-- which is created after the tables). Not a partition's clone of its
-- parent's key: that one comes with the parent's.
CREATE FUNCTION tenant.inline_foreign_key(constraint_oid oid)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.convalidated AND k.conparentid = 0 AND k.confrelid <= k.conrelid
           AND EXISTS (SELECT 1 FROM pg_constraint u
                        WHERE u.conrelid = k.confrelid AND u.conindid = k.conindid AND u.contype IN ('p', 'u'))
      FROM pg_constraint k WHERE k.oid = constraint_oid
$$;
COMMENT ON FUNCTION tenant.inline_foreign_key(oid) IS
    'Internal: whether a copy creates a foreign key of the template inside its CREATE TABLE.';

-- Every change to the template, so that copies know when the DDL they
-- generated from it is stale. An append-only table: no row lock is shared
-- between the sessions that note changes.
CREATE TABLE tenant.template_changes (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    command_tag text        NOT NULL,
    privileges  text        NOT NULL
);
COMMENT ON TABLE tenant.template_changes IS
    'Internal: DDL that touched (or may have touched) tenant_template; copies regenerate their DDL after a new row.';
COMMENT ON COLUMN tenant.template_changes.id IS 'Change number.';
COMMENT ON COLUMN tenant.template_changes.changed_at IS 'When the change was made.';
COMMENT ON COLUMN tenant.template_changes.command_tag IS 'The DDL command.';
COMMENT ON COLUMN tenant.template_changes.privileges IS 'Hash of the template''s privileges after the change (see tenant.template_privileges).';

-- A hash of every privilege granted on the template's objects. GRANT and
-- REVOKE name no schema to an event trigger: comparing this hash tells
-- whether one touched the template.
CREATE FUNCTION tenant.template_privileges() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    -- OFFSET 0 keeps each lookup a per-object index probe: this runs on every GRANT.
    SELECT md5(COALESCE(string_agg(acl, ';' ORDER BY acl), '')) FROM (
        SELECT x.acl FROM tenant.schema_objects('tenant_template', 'pg_class') AS o(oid),
               LATERAL (SELECT c.oid::text || ':' || c.relacl::text AS acl FROM pg_class c
                         WHERE c.oid = o.oid AND c.relacl IS NOT NULL
                        UNION ALL
                        SELECT a.attrelid::text || '.' || a.attnum || ':' || a.attacl::text FROM pg_attribute a
                         WHERE a.attrelid = o.oid AND a.attnum > 0 AND a.attacl IS NOT NULL
                        OFFSET 0) x
        UNION ALL
        SELECT x.acl FROM tenant.schema_objects('tenant_template', 'pg_proc') AS o(oid),
               LATERAL (SELECT p.oid::text || ':' || p.proacl::text AS acl FROM pg_proc p
                         WHERE p.oid = o.oid AND p.proacl IS NOT NULL OFFSET 0) x
        UNION ALL
        SELECT x.acl FROM tenant.schema_objects('tenant_template', 'pg_type') AS o(oid),
               LATERAL (SELECT t.oid::text || ':' || t.typacl::text AS acl FROM pg_type t
                         WHERE t.oid = o.oid AND t.typacl IS NOT NULL OFFSET 0) x) acls
$$;
COMMENT ON FUNCTION tenant.template_privileges() IS 'Internal: hash of the privileges on tenant_template''s objects.';
INSERT INTO tenant.template_changes (command_tag, privileges) VALUES ('CREATE EXTENSION', tenant.template_privileges());

-- Whether a GRANT or REVOKE names an object of tenant_template: the command
-- lists its objects (src/api/grant_filter.rs), so no GRANT elsewhere in the
-- database pays for a look at the template's privileges.
CREATE FUNCTION tenant.grant_touches_template(command pg_ddl_command) RETURNS boolean
LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'tc_grant_touches_template';
COMMENT ON FUNCTION tenant.grant_touches_template(pg_ddl_command) IS
    'Internal: whether a GRANT/REVOKE collected by an event trigger names a relation, function or type of tenant_template.';
REVOKE ALL ON FUNCTION tenant.grant_touches_template(pg_ddl_command) FROM PUBLIC;

-- Event triggers see DDL on the template (tenant.ddl_event_dispatch in
-- finalize.sql calls this with the trigger's event and command tag); the
-- extension's own DDL on tenant schemas is marked in backend memory
-- (tenant.internal_work_active(), a C function: calling it loads the library,
-- and no setting can fake it) and is skipped. GRANT and REVOKE count when
-- they name an object of the template.
CREATE FUNCTION tenant.note_template_change(tg_event text, tg_tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tg_event = 'sql_drop' THEN
        IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                        WHERE o.schema_name = 'tenant_template'
                           OR (o.object_type = 'schema' AND o.object_identity = 'tenant_template')) THEN
            RETURN;
        END IF;
    ELSIF tg_tag IN ('GRANT', 'REVOKE') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c WHERE tenant.grant_touches_template(c.command)) THEN
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
    INSERT INTO tenant.template_changes (command_tag, privileges) VALUES (tg_tag, tenant.template_privileges());
END
$$;
COMMENT ON FUNCTION tenant.note_template_change(text, text) IS
    'Internal: records a change to tenant_template; called by the event trigger function tenant.ddl_event_dispatch() (event, command tag).';
REVOKE ALL ON FUNCTION tenant.note_template_change(text, text) FROM PUBLIC;

CREATE TABLE tenant.institution_admins (
    role_name       text        NOT NULL,
    institution_id  uuid        NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    granted_by      text        NOT NULL DEFAULT session_user,
    PRIMARY KEY (role_name, institution_id)
);
COMMENT ON TABLE tenant.institution_admins IS
    'Which roles administer which institutions (tenant.grant_institution_admin): they see their institutions'' rows of the registry and the operation log, and nothing else.';
COMMENT ON COLUMN tenant.institution_admins.role_name IS 'The administering role (its members administer too).';
COMMENT ON COLUMN tenant.institution_admins.institution_id IS 'The institution it administers.';
COMMENT ON COLUMN tenant.institution_admins.granted_at IS 'When the right was granted.';
COMMENT ON COLUMN tenant.institution_admins.granted_by IS 'session_user that granted it.';

-- Row-level security: the platform administrators see every row, an
-- institution administrator its own institutions' rows. The extension's
-- functions run as the tables' owner, which these policies do not restrict.
ALTER TABLE tenant.institution_admins ENABLE ROW LEVEL SECURITY;
CREATE POLICY platform_admin ON tenant.institution_admins TO tenant_control_admin USING (true);
CREATE POLICY own_grants ON tenant.institution_admins TO tenant_control_institution_admin
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE r.rolname = role_name AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')));

ALTER TABLE tenant.tenant_schemas ENABLE ROW LEVEL SECURITY;
CREATE POLICY platform_admin ON tenant.tenant_schemas TO tenant_control_admin USING (true);
CREATE POLICY own_institutions ON tenant.tenant_schemas TO tenant_control_institution_admin
    USING (institution_id IN (SELECT a.institution_id FROM tenant.institution_admins a));

ALTER TABLE tenant.schema_operations ENABLE ROW LEVEL SECURITY;
CREATE POLICY platform_admin ON tenant.schema_operations TO tenant_control_admin USING (true);
-- The registry rows the reader may see decide which log rows it may see.
CREATE POLICY own_institutions ON tenant.schema_operations TO tenant_control_institution_admin
    USING (schema_id IN (SELECT t.id FROM tenant.tenant_schemas t));

COMMENT ON POLICY platform_admin ON tenant.institution_admins IS 'Platform administrators see every grant.';
COMMENT ON POLICY own_grants ON tenant.institution_admins IS 'An institution administrator sees the grants of the roles it is a member of.';
COMMENT ON POLICY platform_admin ON tenant.tenant_schemas IS 'Platform administrators see every tenant.';
COMMENT ON POLICY own_institutions ON tenant.tenant_schemas IS 'An institution administrator sees, and may change the config of, its own institutions'' rows.';
COMMENT ON POLICY platform_admin ON tenant.schema_operations IS 'Platform administrators see the whole log.';
COMMENT ON POLICY own_institutions ON tenant.schema_operations IS 'An institution administrator sees the log of its own institutions.';

-- pg_dump skips extension tables unless they are marked as configuration.
SELECT pg_catalog.pg_extension_config_dump('tenant.tenant_schemas', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_operations', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_operations_default', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_operations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.schema_backups', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.backup_tables', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.migrations', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.institution_admins', '');

-- Usage per tenant and period, for billing: one row per tenant each time
-- tenant.take_usage_snapshot() runs (from pg_cron, typically hourly or daily).
CREATE TABLE tenant.usage_snapshots (
    id              bigint      GENERATED BY DEFAULT AS IDENTITY,
    taken_at        timestamptz NOT NULL,
    schema_id       uuid        NOT NULL,
    schema_name     text        NOT NULL,
    status          text        NOT NULL,
    table_count     integer     NOT NULL,
    storage_bytes   bigint      NOT NULL,
    row_estimate    bigint      NOT NULL,
    seq_scans       bigint      NOT NULL,
    idx_scans       bigint      NOT NULL,
    tup_inserted    bigint      NOT NULL,
    tup_updated     bigint      NOT NULL,
    tup_deleted     bigint      NOT NULL,
    period_start    timestamptz,
    inserted        bigint      NOT NULL,
    updated         bigint      NOT NULL,
    deleted         bigint      NOT NULL
) PARTITION BY RANGE (taken_at);
CREATE TABLE tenant.usage_snapshots_default PARTITION OF tenant.usage_snapshots DEFAULT;
ALTER TABLE tenant.usage_snapshots_default ADD PRIMARY KEY (id);
COMMENT ON TABLE tenant.usage_snapshots_default IS 'Rows of the months that have no partition of their own (tenant.maintain_history moves them out).';
CREATE INDEX usage_snapshots_default_schema_taken ON tenant.usage_snapshots_default (schema_id, taken_at);
CREATE INDEX usage_snapshots_default_taken ON tenant.usage_snapshots_default (taken_at);

COMMENT ON TABLE tenant.usage_snapshots IS
    'Per-tenant storage and activity, one row per tenant per snapshot (tenant.take_usage_snapshot); the period of a row runs from period_start to taken_at.';
COMMENT ON COLUMN tenant.usage_snapshots.id IS 'Increasing snapshot row number.';
COMMENT ON COLUMN tenant.usage_snapshots.taken_at IS 'When the snapshot was taken (the same for every tenant of one snapshot).';
COMMENT ON COLUMN tenant.usage_snapshots.schema_id IS 'Registry id of the tenant.';
COMMENT ON COLUMN tenant.usage_snapshots.schema_name IS 'Schema name at the time of the snapshot.';
COMMENT ON COLUMN tenant.usage_snapshots.status IS 'Registry status at the time of the snapshot.';
COMMENT ON COLUMN tenant.usage_snapshots.table_count IS 'Tables in the schema.';
COMMENT ON COLUMN tenant.usage_snapshots.storage_bytes IS 'Bytes used by the schema''s relations (heap, indexes, TOAST, maps, sequences).';
COMMENT ON COLUMN tenant.usage_snapshots.row_estimate IS 'Sum of the planner''s row estimates (pg_class.reltuples) of the tables.';
COMMENT ON COLUMN tenant.usage_snapshots.seq_scans IS 'Sequential scans of the tables since statistics were last reset (cumulative).';
COMMENT ON COLUMN tenant.usage_snapshots.idx_scans IS 'Index scans of the tables since statistics were last reset (cumulative).';
COMMENT ON COLUMN tenant.usage_snapshots.tup_inserted IS 'Rows inserted since statistics were last reset (cumulative, pg_stat_user_tables).';
COMMENT ON COLUMN tenant.usage_snapshots.tup_updated IS 'Rows updated since statistics were last reset (cumulative).';
COMMENT ON COLUMN tenant.usage_snapshots.tup_deleted IS 'Rows deleted since statistics were last reset (cumulative).';
COMMENT ON COLUMN tenant.usage_snapshots.period_start IS 'taken_at of the tenant''s previous snapshot; NULL for its first one.';
COMMENT ON COLUMN tenant.usage_snapshots.inserted IS 'Rows inserted during the period (the whole cumulative count for a first snapshot or after a statistics reset).';
COMMENT ON COLUMN tenant.usage_snapshots.updated IS 'Rows updated during the period.';
COMMENT ON COLUMN tenant.usage_snapshots.deleted IS 'Rows deleted during the period.';
SELECT pg_catalog.pg_extension_config_dump('tenant.usage_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.usage_snapshots_default', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.usage_snapshots_id_seq', '');
