-- Functions and procedures in SQL and PL/pgSQL, with every option CREATE FUNCTION takes.
CREATE TABLE accounts (id integer PRIMARY KEY, balance numeric NOT NULL DEFAULT 0);
CREATE FUNCTION add(a integer, b integer DEFAULT 1) RETURNS integer LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT a + b';
CREATE FUNCTION total() RETURNS numeric LANGUAGE sql STABLE BEGIN ATOMIC SELECT coalesce(sum(balance), 0) FROM accounts; END;
CREATE FUNCTION doubled(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE RETURN x * 2;
CREATE FUNCTION rich(min numeric) RETURNS SETOF accounts LANGUAGE sql STABLE ROWS 10 AS $$ SELECT * FROM accounts WHERE balance >= min $$;
CREATE FUNCTION summary(OUT n bigint, OUT s numeric) LANGUAGE sql AS $$ SELECT count(*), sum(balance) FROM accounts $$;
CREATE FUNCTION listing() RETURNS TABLE (id integer, balance numeric) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT a.id, a.balance FROM accounts a ORDER BY a.id;
END $$;
CREATE FUNCTION greatest_of(VARIADIC xs integer[]) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT max(x) FROM unnest(xs) x';
CREATE FUNCTION slow(x integer) RETURNS integer LANGUAGE plpgsql VOLATILE COST 500 SECURITY DEFINER
    SET search_path = tenant_template, pg_temp SET work_mem = '8MB'
AS $$ BEGIN PERFORM pg_catalog.pg_sleep(0); RETURN x; END $$;
CREATE FUNCTION quiet() RETURNS void LANGUAGE plpgsql SET client_min_messages = warning AS $$ BEGIN END $$;
CREATE FUNCTION is_rich(a accounts) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT a.balance > 100 $$;
CREATE FUNCTION overloaded(x integer) RETURNS text LANGUAGE sql AS $$ SELECT 'int' $$;
CREATE FUNCTION overloaded(x text) RETURNS text LANGUAGE sql AS $$ SELECT 'text' $$;
CREATE PROCEDURE deposit(account integer, amount numeric) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET balance = balance + amount WHERE id = account;
END $$;
CREATE PROCEDURE reset_all() LANGUAGE sql BEGIN ATOMIC UPDATE accounts SET balance = 0; END;
COMMENT ON FUNCTION add(integer, integer) IS 'adds';
COMMENT ON PROCEDURE deposit(integer, numeric) IS 'puts money in';
-- @tenant
INSERT INTO accounts VALUES (1, 50), (2, 150);
