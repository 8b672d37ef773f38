-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit

-- fleet work (issue 15) ------------------------------------------------------
-- The registry column of last access, the FLEET_RUN operation type, the Rust
-- functions (as `cargo pgrx schema` generates them), then finalize.sql's section.
ALTER TABLE tenant.schema_operations
    DROP CONSTRAINT schema_operations_operation_type_check,
    ADD CONSTRAINT schema_operations_operation_type_check
        CHECK (operation_type IN ('CREATE', 'DROP', 'BACKUP', 'RESTORE', 'OPTIMIZE', 'MIGRATE',
                                  'INTEGRITY_CHECK', 'QUOTA_CHECK', 'QUOTA_SET', 'STATUS_CHANGE',
                                  'USAGE_SNAPSHOT', 'FLEET_RUN'));
COMMENT ON COLUMN tenant.schema_operations.operation_type IS 'CREATE, DROP, BACKUP, RESTORE, OPTIMIZE, MIGRATE, INTEGRITY_CHECK, QUOTA_CHECK, QUOTA_SET, STATUS_CHANGE, USAGE_SNAPSHOT or FLEET_RUN (a statement run in many institutions).';
ALTER TABLE tenant.tenant_schemas ADD COLUMN last_accessed_at timestamptz;
COMMENT ON COLUMN tenant.tenant_schemas.last_accessed_at IS 'When an application last entered the institution with tenant.set_context (recorded at most once a minute per connection); NULL if never.';

-- tenant_control::api_fleet::run_in_each
CREATE  FUNCTION "run_in_each"(
	"statement" TEXT, /* Option < & str > */
	"institutions" uuid[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < pgrx :: Uuid > > > */
	"parameters" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"dry_run" bool DEFAULT false, /* Option < bool > */
	"lock_timeout" interval DEFAULT NULL, /* Option < Interval > */
	"statement_timeout" interval DEFAULT NULL, /* Option < Interval > */
	"config_filter" jsonb DEFAULT NULL /* Option < pgrx :: JsonB > */
) RETURNS TABLE (
	"institution_id" uuid,  /* pgrx :: Uuid */
	"schema_name" TEXT,  /* Option < String > */
	"status" TEXT,  /* String */
	"row_count" bigint,  /* Option < i64 > */
	"result" jsonb,  /* Option < pgrx :: JsonB > */
	"sqlstate" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"duration_ms" double precision  /* f64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_in_each_wrapper';

-- tenant_control::api_fleet::fleet_run_start
CREATE  FUNCTION "fleet_run_start"(
	"statement" TEXT, /* Option < & str > */
	"institutions" uuid[], /* :: std :: option :: Option < Vec < Option < pgrx :: Uuid > > > */
	"parameters" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"lock_timeout" interval, /* Option < Interval > */
	"statement_timeout" interval, /* Option < Interval > */
	"config_filter" jsonb /* Option < pgrx :: JsonB > */
) RETURNS bigint /* i64 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'fleet_run_start_wrapper';

-- tenant_control::api_fleet::fleet_run_step
CREATE  FUNCTION "fleet_run_step"(
	"run_id" bigint, /* Option < i64 > */
	"institution_id" uuid /* Option < pgrx :: Uuid > */
) RETURNS TABLE (
	"institution_id" uuid,  /* pgrx :: Uuid */
	"schema_name" TEXT,  /* Option < String > */
	"status" TEXT,  /* String */
	"row_count" bigint,  /* Option < i64 > */
	"result" jsonb,  /* Option < pgrx :: JsonB > */
	"sqlstate" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"duration_ms" double precision  /* f64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'fleet_run_step_wrapper';

-- tenant_control::api_fleet::fleet_run_finish
CREATE  FUNCTION "fleet_run_finish"(
	"run_id" bigint /* Option < i64 > */
) RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'fleet_run_finish_wrapper';

-- tenant_control::api_fleet::create_fleet_view
CREATE  FUNCTION "create_fleet_view"(
	"template_table" TEXT, /* Option < & str > */
	"view_name" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_fleet_view_wrapper';

-- tenant_control::api_fleet::drop_fleet_view
CREATE  FUNCTION "drop_fleet_view"(
	"view_name" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_fleet_view_wrapper';

-- tenant_control::api_fleet::refresh_fleet_views
CREATE  FUNCTION "refresh_fleet_views"() RETURNS bigint /* i64 */
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'refresh_fleet_views_wrapper';

-- tenant_control::api_fleet::reference_declare
CREATE  FUNCTION "reference_declare"(
	"source" oid, /* Option < pg_sys :: Oid > */
	"target_table" TEXT, /* Option < & str > */
	"key_column" TEXT, /* Option < & str > */
	"on_conflict" TEXT /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'reference_declare_wrapper';

-- tenant_control::api_fleet::reference_sync_one
CREATE  FUNCTION "reference_sync_one"(
	"source_id" bigint, /* Option < i64 > */
	"schema_id" uuid /* Option < pgrx :: Uuid > */
) RETURNS TABLE (
	"inserted" bigint,  /* i64 */
	"updated" bigint,  /* i64 */
	"conflicts" bigint,  /* i64 */
	"skipped" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'reference_sync_one_wrapper';

-- tenant_control::api_fleet::reference_sync_new
CREATE  FUNCTION "reference_sync_new"(
	"schema_id" uuid /* Option < pgrx :: Uuid > */
) RETURNS bigint /* i64 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'reference_sync_new_wrapper';

REVOKE ALL ON FUNCTION tenant.run_in_each(text, uuid[], text[], boolean, interval, interval, jsonb),
                       tenant.fleet_run_start(text, uuid[], text[], interval, interval, jsonb),
                       tenant.fleet_run_step(bigint, uuid), tenant.fleet_run_finish(bigint),
                       tenant.create_fleet_view(text, text), tenant.drop_fleet_view(text),
                       tenant.refresh_fleet_views(),
                       tenant.reference_declare(oid, text, text, text), tenant.reference_sync_one(bigint, uuid),
                       tenant.reference_sync_new(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.run_in_each(text, uuid[], text[], boolean, interval, interval, jsonb),
                          tenant.fleet_run_start(text, uuid[], text[], interval, interval, jsonb),
                          tenant.fleet_run_step(bigint, uuid), tenant.fleet_run_finish(bigint),
                          tenant.create_fleet_view(text, text), tenant.drop_fleet_view(text),
                          tenant.refresh_fleet_views(),
                       tenant.reference_declare(oid, text, text, text), tenant.reference_sync_one(bigint, uuid),
                       tenant.reference_sync_new(uuid) TO tenant_control_admin;

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
CREATE FUNCTION tenant.fleet_views_follow() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant.fleet_views) THEN
        BEGIN
            PERFORM tenant.refresh_fleet_views();
        EXCEPTION WHEN lock_not_available THEN
            UPDATE tenant.fleet_views SET definition_md5 = NULL;
            RAISE WARNING 'fleet views could not be refreshed now (a report holds one of them)'
                USING HINT = 'Run SELECT tenant.refresh_fleet_views(); once the report is done.';
        END;
    END IF;
    RETURN NULL;
END
$$;
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

REVOKE ALL ON FUNCTION tenant.fleet_report(text, uuid[], text[]), tenant.fleet_views_follow() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.fleet_report(text, uuid[], text[]) TO tenant_control_admin;
GRANT SELECT ON tenant.fleet_views TO tenant_control_admin;
COMMENT ON FUNCTION tenant.fleet_report(text, uuid[], text[]) IS
    'Run a query in each chosen institution (as its role) and return its first row per institution as jsonb, plus a TOTAL row summing the numeric columns.';
COMMENT ON FUNCTION tenant.fleet_views_follow() IS
    'Internal: trigger that refreshes the fleet views when the registry or the migrations change.';
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
CREATE FUNCTION tenant.reference_follow_new() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant.reference_sources) THEN
        PERFORM tenant.reference_sync_new(NEW.id);
    END IF;
    RETURN NULL;
END
$$;
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
COMMENT ON FUNCTION tenant.reference_follow_new() IS 'Internal: trigger that syncs the reference sources into a new institution.';
