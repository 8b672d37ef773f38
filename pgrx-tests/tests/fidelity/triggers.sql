-- Row and statement triggers, transition tables, conditions, column lists, constraint triggers, INSTEAD OF, states.
CREATE TABLE orders (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'new', total numeric, updated_at timestamptz);
CREATE TABLE order_log (id bigint GENERATED ALWAYS AS IDENTITY, order_id integer, what text);
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := '2024-01-01 00:00:00+00'; RETURN NEW; END $$;
CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO order_log (order_id, what) VALUES (NEW.id, TG_OP); RETURN NEW; END $$;
CREATE FUNCTION count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO order_log (what) SELECT 'batch of ' || count(*) FROM new_rows; RETURN NULL; END $$;
CREATE FUNCTION check_total() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.total < 0 THEN RAISE EXCEPTION 'negative'; END IF; RETURN NULL; END $$;
CREATE TRIGGER orders_stamp BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE TRIGGER orders_status AFTER UPDATE OF status ON orders FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION log_change();
CREATE TRIGGER orders_batch AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
CREATE CONSTRAINT TRIGGER orders_total AFTER INSERT OR UPDATE ON orders DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_total();
CREATE TRIGGER orders_truncate BEFORE TRUNCATE ON orders FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
ALTER TABLE orders DISABLE TRIGGER orders_truncate;
CREATE TRIGGER orders_replica AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION log_change();
ALTER TABLE orders ENABLE REPLICA TRIGGER orders_replica;
CREATE TRIGGER orders_always AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_change();
ALTER TABLE orders ENABLE ALWAYS TRIGGER orders_always;
CREATE VIEW open_orders AS SELECT id, status FROM orders WHERE status <> 'done';
CREATE FUNCTION open_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO orders (id, status) VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
CREATE TRIGGER open_orders_insert INSTEAD OF INSERT ON open_orders FOR EACH ROW EXECUTE FUNCTION open_insert();
COMMENT ON TRIGGER orders_stamp ON orders IS 'keeps updated_at';
-- @tenant
INSERT INTO orders (id, total) VALUES (1, 10), (2, 20);
UPDATE orders SET status = 'paid' WHERE id = 1;
INSERT INTO open_orders VALUES (3, 'new');
