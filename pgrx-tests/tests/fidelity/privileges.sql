-- Grants to the tenant's role, to PUBLIC and to other roles, column grants, grant options,
-- objects owned by the tenant's role, and privileges it revoked from itself.
DO $$ BEGIN CREATE ROLE fidelity_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE open_data (id integer PRIMARY KEY, secret text, public_part text);
GRANT SELECT ON open_data TO PUBLIC;
GRANT SELECT (id, public_part), UPDATE (public_part) ON open_data TO fidelity_reader;
GRANT INSERT ON open_data TO tenant_template_owner WITH GRANT OPTION;
CREATE SEQUENCE tickets;
GRANT USAGE ON SEQUENCE tickets TO fidelity_reader;
CREATE FUNCTION guarded() RETURNS integer LANGUAGE sql AS 'SELECT 1';
REVOKE ALL ON FUNCTION guarded() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guarded() TO tenant_template_owner;
CREATE TYPE level AS ENUM ('low', 'high');
REVOKE USAGE ON TYPE level FROM PUBLIC;
GRANT USAGE ON TYPE level TO tenant_template_owner;
CREATE TABLE owned (id integer, note text);
ALTER TABLE owned OWNER TO tenant_template_owner;
GRANT SELECT ON owned TO fidelity_reader;
CREATE TABLE owned_limited (id integer);
ALTER TABLE owned_limited OWNER TO tenant_template_owner;
REVOKE DELETE, TRUNCATE ON owned_limited FROM tenant_template_owner;
CREATE FUNCTION owned_fn() RETURNS integer LANGUAGE sql AS 'SELECT 2';
ALTER FUNCTION owned_fn() OWNER TO tenant_template_owner;
REVOKE EXECUTE ON FUNCTION owned_fn() FROM tenant_template_owner;
CREATE VIEW owned_view AS SELECT id FROM owned;
ALTER VIEW owned_view OWNER TO tenant_template_owner;
-- @tenant
INSERT INTO open_data VALUES (1, 's', 'p');
INSERT INTO owned VALUES (1, 'n');
INSERT INTO owned_limited VALUES (1);
