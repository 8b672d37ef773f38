-- Write one audit event (tenant.audit_events) other than a refused call (see
-- audit_write_refused.sql). $1: when, in seconds since the Unix epoch; $2
-- class; $3 action; $4 outcome; $5 schema id; $6 institution id; $7 the
-- session user's oid; $8 whether the caller's transaction committed; $9
-- SQLSTATE; $10 message; $11 detail. Runs in the caller's transaction (as the
-- trail's owner, search_path pinned) or in the audit worker; every name is
-- qualified all the same. Kept this plain on purpose: every operation's
-- commit plans it (afresh after a create or a claim: a schema's creation or
-- rename resets the backend's plans), so it reads nothing but its parameters.
INSERT INTO tenant.audit_events
       (occurred_at, event_class, action, outcome, schema_id, institution_id, session_role,
        caller_committed, error_sqlstate, error_message, detail)
VALUES (pg_catalog.to_timestamp($1), $2, $3, $4, $5, $6, pg_catalog.pg_get_userbyid($7),
        $8, $9, $10, $11)
