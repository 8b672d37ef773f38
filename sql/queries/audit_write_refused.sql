-- Write a refused call (class SECURITY) to the audit trail; parameters as in
-- audit_write.sql ($3 is not used). A refused call counts only when it names
-- one of the extension's routines: its action is that routine's name. The
-- names are compared as `name`, so pg_proc's name index finds them: compared
-- as text, pg_proc is read whole, and in a database of thousands of tenants
-- (each with the template's functions) that estimate crossed jit_above_cost,
-- and the commit spent 20 ms compiling the statement.
INSERT INTO tenant.audit_events
       (occurred_at, event_class, action, outcome, schema_id, institution_id, session_role,
        caller_committed, error_sqlstate, error_message, detail)
SELECT pg_catalog.to_timestamp($1), $2, refused.proname::text, $4, $5, $6, pg_catalog.pg_get_userbyid($7),
       $8, $9, $10, $11
  FROM (SELECT p.proname FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'tenant'::pg_catalog.regnamespace
           AND p.proname OPERATOR(pg_catalog.=)
               ANY (pg_catalog.regexp_split_to_array($10, '[^a-z0-9_]+')::pg_catalog.name[])
         ORDER BY pg_catalog.length(p.proname) DESC LIMIT 1) AS refused
