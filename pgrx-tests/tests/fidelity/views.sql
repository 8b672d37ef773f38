-- Views over views, options, check options, recursive views, materialized views with their indexes.
CREATE TABLE items (id integer PRIMARY KEY, parent_id integer REFERENCES items, name text NOT NULL, price numeric);
CREATE VIEW cheap AS SELECT id, name, price FROM items WHERE price < 10;
CREATE VIEW cheap_names WITH (security_barrier = true) AS SELECT name FROM cheap ORDER BY name;
CREATE VIEW checked AS SELECT id, name, price FROM items WHERE price > 0 WITH CASCADED CHECK OPTION;
CREATE VIEW invoker WITH (security_invoker = true) AS SELECT count(*) AS n FROM items;
CREATE RECURSIVE VIEW tree (id, depth) AS
    SELECT id, 0 FROM items WHERE parent_id IS NULL
    UNION ALL SELECT i.id, t.depth + 1 FROM items i JOIN tree t ON i.parent_id = t.id;
CREATE MATERIALIZED VIEW price_totals AS SELECT parent_id, sum(price) AS total FROM items GROUP BY parent_id;
CREATE UNIQUE INDEX price_totals_parent ON price_totals (parent_id);
CREATE MATERIALIZED VIEW empty_totals AS SELECT count(*) AS n FROM items WITH NO DATA;
CREATE MATERIALIZED VIEW totals_of_totals AS SELECT sum(total) AS grand FROM price_totals;
COMMENT ON VIEW cheap IS 'under ten';
COMMENT ON MATERIALIZED VIEW price_totals IS 'per parent';
COMMENT ON COLUMN cheap.name IS 'the name';
-- @tenant
INSERT INTO items VALUES (1, NULL, 'root', 5), (2, 1, 'leaf', 20);
REFRESH MATERIALIZED VIEW price_totals;
