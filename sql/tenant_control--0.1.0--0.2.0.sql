-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit

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
