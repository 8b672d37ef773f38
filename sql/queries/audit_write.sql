-- Write audit events (tenant.audit_events) other than refused calls (see
-- audit_write_refused.sql). $1: a jsonb array of events, $2: whether the
-- caller's transaction committed. Runs in the caller's transaction (as the
-- trail's owner, search_path pinned) or in the audit worker; every name and
-- operator is qualified all the same. Kept this plain on purpose: every
-- operation's commit plans it, afresh after a warm-pool claim's rename.
INSERT INTO tenant.audit_events
       (occurred_at, event_class, action, outcome, schema_id, institution_id, session_role,
        caller_committed, error_sqlstate, error_message, detail)
SELECT pg_catalog.to_timestamp(e.at), e.class, e.action, e.outcome, e.schema_id,
       COALESCE(e.institution_id,
                (SELECT t.institution_id FROM tenant.tenant_schemas t WHERE t.id OPERATOR(pg_catalog.=) e.schema_id)),
       pg_catalog.pg_get_userbyid(e.who), $2, e.sqlstate, e.message, COALESCE(e.detail, '{}'::jsonb)
  FROM pg_catalog.jsonb_to_recordset($1) AS e(at double precision, class text, action text, outcome text,
                                              schema_id uuid, institution_id uuid, who oid, sqlstate text,
                                              message text, detail jsonb)
