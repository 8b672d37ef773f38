-- Rules on tables and views.
CREATE TABLE entries (id integer PRIMARY KEY, body text, deleted boolean DEFAULT false);
CREATE TABLE entry_log (id integer, what text);
CREATE RULE entries_soft_delete AS ON DELETE TO entries DO INSTEAD UPDATE entries SET deleted = true WHERE id = OLD.id;
CREATE RULE entries_log AS ON INSERT TO entries DO ALSO INSERT INTO entry_log VALUES (NEW.id, 'insert');
CREATE VIEW live_entries AS SELECT id, body FROM entries WHERE NOT deleted;
CREATE RULE live_entries_insert AS ON INSERT TO live_entries DO INSTEAD INSERT INTO entries (id, body) VALUES (NEW.id, NEW.body);
COMMENT ON RULE entries_log ON entries IS 'logs inserts';
-- @tenant
INSERT INTO live_entries VALUES (1, 'one');
