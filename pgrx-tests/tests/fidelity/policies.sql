-- Row-level security: enabled, forced, permissive and restrictive policies for each command and role.
DO $$ BEGIN CREATE ROLE fidelity_auditor NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE notes (id integer PRIMARY KEY, owner_name text NOT NULL DEFAULT current_user, body text, hidden boolean DEFAULT false);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_read ON notes FOR SELECT USING (NOT hidden);
CREATE POLICY notes_own ON notes FOR ALL TO tenant_template_owner USING (owner_name = current_user) WITH CHECK (owner_name = current_user);
CREATE POLICY notes_insert ON notes FOR INSERT TO tenant_template_owner, fidelity_auditor WITH CHECK (body IS NOT NULL);
CREATE POLICY notes_update ON notes FOR UPDATE USING (true) WITH CHECK (length(body) < 1000);
CREATE POLICY notes_delete ON notes AS RESTRICTIVE FOR DELETE TO PUBLIC USING (NOT hidden);
CREATE POLICY notes_audit ON notes FOR SELECT TO fidelity_auditor USING (true);
CREATE TABLE only_enabled (id integer);
ALTER TABLE only_enabled ENABLE ROW LEVEL SECURITY;
COMMENT ON POLICY notes_read ON notes IS 'hidden notes stay hidden';
-- @tenant
INSERT INTO notes (id, owner_name, body) VALUES (1, 'someone', 'hello');
