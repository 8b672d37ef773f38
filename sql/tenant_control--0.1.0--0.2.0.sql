-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit

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
