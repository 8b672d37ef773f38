-- Write refused calls (class SECURITY) to the audit trail; parameters as in
-- audit_write.sql. A refused call counts only when it names one of the
-- extension's routines: its action is that routine's name. The names are
-- compared as `name`, so pg_proc's name index finds them: compared as text,
-- pg_proc is read whole, and in a database of thousands of tenants (each with
-- the template's functions) that estimate crossed jit_above_cost, and the
-- commit spent 20 ms compiling the statement.
INSERT INTO tenant.audit_events
       (occurred_at, event_class, action, outcome, schema_id, institution_id, session_role,
        caller_committed, error_sqlstate, error_message, detail)
SELECT pg_catalog.to_timestamp(e.at), e.class, refused.proname::text, e.outcome, e.schema_id, e.institution_id,
       pg_catalog.pg_get_userbyid(e.who), $2, e.sqlstate, e.message, COALESCE(e.detail, '{}'::jsonb)
  FROM pg_catalog.jsonb_to_recordset($1) AS e(at double precision, class text, action text, outcome text,
                                              schema_id uuid, institution_id uuid, who oid, sqlstate text,
                                              message text, detail jsonb)
  JOIN LATERAL (
        SELECT p.proname FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'tenant'::pg_catalog.regnamespace
           AND p.proname OPERATOR(pg_catalog.=)
               ANY (pg_catalog.regexp_split_to_array(e.message, '[^a-z0-9_]+')::pg_catalog.name[])
         ORDER BY pg_catalog.length(p.proname) DESC LIMIT 1) AS refused ON true
