-- Properties that CREATE statements leave out: key indexes' storage parameters, CLUSTER ON,
-- toast.* parameters, column storage, compression, statistics and options, replica identity,
-- defaults on view columns.
CREATE TABLE accounts (
    id integer CONSTRAINT accounts_pkey PRIMARY KEY WITH (fillfactor = 70),
    email text NOT NULL,
    body text,
    note text,
    CONSTRAINT accounts_email_key UNIQUE (email) WITH (fillfactor = 80)
) WITH (fillfactor = 90, toast.autovacuum_enabled = false);
CREATE INDEX accounts_note ON accounts (note) WITH (fillfactor = 60);
ALTER TABLE accounts CLUSTER ON accounts_note;
ALTER TABLE accounts ALTER COLUMN body SET STORAGE EXTERNAL, ALTER COLUMN note SET STATISTICS 500,
                     ALTER COLUMN note SET COMPRESSION pglz, ALTER COLUMN id SET (n_distinct = -1);
ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_email_key;
CREATE TABLE events (id integer, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
CREATE TABLE quiet (id integer);
ALTER TABLE quiet REPLICA IDENTITY NOTHING;
CREATE INDEX events_expr ON events ((id + 1));
ALTER INDEX events_expr ALTER COLUMN 1 SET STATISTICS 300;
CREATE MATERIALIZED VIEW event_ids WITH (fillfactor = 80) AS SELECT id FROM events;
CREATE VIEW recent AS SELECT id, payload FROM events;
ALTER VIEW recent ALTER COLUMN payload SET DEFAULT 'none';
-- @tenant
INSERT INTO accounts VALUES (1, 'a@b.c', 'body', 'note');
INSERT INTO recent (id) VALUES (1);
