-- Sequences: options, ownership, use in defaults, and their positions.
CREATE SEQUENCE plain_seq;
CREATE SEQUENCE small_seq AS smallint INCREMENT BY 3 MINVALUE 10 MAXVALUE 1000 START WITH 20 CACHE 5;
CREATE SEQUENCE down_seq INCREMENT BY -2 MINVALUE -1000 MAXVALUE -1 START WITH -10 CYCLE;
CREATE UNLOGGED SEQUENCE unlogged_seq;
CREATE TABLE invoices (id integer DEFAULT nextval('plain_seq') PRIMARY KEY, number bigint DEFAULT nextval('small_seq'), ref integer);
CREATE SEQUENCE owned_seq OWNED BY invoices.ref;
ALTER TABLE invoices ALTER COLUMN ref SET DEFAULT nextval('owned_seq');
COMMENT ON SEQUENCE plain_seq IS 'invoice ids';
-- @tenant
INSERT INTO invoices DEFAULT VALUES;
INSERT INTO invoices DEFAULT VALUES;
SELECT nextval('down_seq');
SELECT setval('unlogged_seq', 41);
