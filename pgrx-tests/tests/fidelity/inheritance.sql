-- Table inheritance, multiple parents, inherited and local constraints.
CREATE TABLE vehicles (id integer, name text NOT NULL, CHECK (name <> ''));
CREATE TABLE cars (doors integer DEFAULT 4) INHERITS (vehicles);
CREATE TABLE trackable (tracker text);
CREATE TABLE trucks (load numeric, CHECK (load >= 0)) INHERITS (vehicles, trackable);
-- @tenant
INSERT INTO cars (id, name) VALUES (1, 'mini');
INSERT INTO trucks (id, name, load) VALUES (2, 'big', 10);
