-- A public sample database's shape, written for this corpus: a DVD rental shop
-- (films, actors, stores, staff, customers, inventory, rentals and payments).
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155);

CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_update := CURRENT_TIMESTAMP;
    RETURN NEW;
END $$;

CREATE TABLE language (
    language_id serial PRIMARY KEY,
    name character(20) NOT NULL,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE TABLE category (
    category_id serial PRIMARY KEY,
    name text NOT NULL,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE TABLE actor (
    actor_id serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE INDEX idx_actor_last_name ON actor (last_name);
CREATE TABLE film (
    film_id serial PRIMARY KEY,
    title text NOT NULL,
    description text,
    release_year year,
    language_id integer NOT NULL REFERENCES language ON UPDATE CASCADE ON DELETE RESTRICT,
    original_language_id integer REFERENCES language ON UPDATE CASCADE ON DELETE RESTRICT,
    rental_duration smallint NOT NULL DEFAULT 3,
    rental_rate numeric(4, 2) NOT NULL DEFAULT 4.99,
    length smallint,
    replacement_cost numeric(5, 2) NOT NULL DEFAULT 19.99,
    rating mpaa_rating DEFAULT 'G',
    last_update timestamp without time zone NOT NULL DEFAULT now(),
    special_features text[],
    fulltext tsvector NOT NULL DEFAULT ''
);
CREATE INDEX film_fulltext_idx ON film USING gist (fulltext);
CREATE INDEX idx_title ON film (title);
CREATE INDEX idx_fk_language_id ON film (language_id);
CREATE FUNCTION film_fulltext() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.fulltext := to_tsvector('pg_catalog.english', coalesce(NEW.title, '') || ' ' || coalesce(NEW.description, ''));
    RETURN NEW;
END $$;
CREATE TRIGGER film_fulltext_trigger BEFORE INSERT OR UPDATE ON film FOR EACH ROW EXECUTE FUNCTION film_fulltext();
CREATE TABLE film_actor (
    actor_id integer NOT NULL REFERENCES actor ON UPDATE CASCADE ON DELETE RESTRICT,
    film_id integer NOT NULL REFERENCES film ON UPDATE CASCADE ON DELETE RESTRICT,
    last_update timestamp without time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, film_id)
);
CREATE INDEX idx_fk_film_id ON film_actor (film_id);
CREATE TABLE film_category (
    film_id integer NOT NULL REFERENCES film ON UPDATE CASCADE ON DELETE RESTRICT,
    category_id integer NOT NULL REFERENCES category ON UPDATE CASCADE ON DELETE RESTRICT,
    last_update timestamp without time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (film_id, category_id)
);
CREATE TABLE country (
    country_id serial PRIMARY KEY,
    country text NOT NULL,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE TABLE city (
    city_id serial PRIMARY KEY,
    city text NOT NULL,
    country_id integer NOT NULL REFERENCES country,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE INDEX idx_fk_country_id ON city (country_id);
CREATE TABLE address (
    address_id serial PRIMARY KEY,
    address text NOT NULL,
    address2 text,
    district text NOT NULL,
    city_id integer NOT NULL REFERENCES city,
    postal_code text,
    phone text NOT NULL,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE INDEX idx_fk_city_id ON address (city_id);
CREATE TABLE store (
    store_id serial PRIMARY KEY,
    manager_staff_id integer NOT NULL,
    address_id integer NOT NULL REFERENCES address ON UPDATE CASCADE ON DELETE RESTRICT,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE TABLE staff (
    staff_id serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    address_id integer NOT NULL REFERENCES address ON UPDATE CASCADE ON DELETE RESTRICT,
    email text,
    store_id integer NOT NULL REFERENCES store,
    active boolean NOT NULL DEFAULT true,
    username text NOT NULL,
    password text,
    last_update timestamp without time zone NOT NULL DEFAULT now(),
    picture bytea
);
ALTER TABLE store ADD CONSTRAINT store_manager_staff_id_fkey FOREIGN KEY (manager_staff_id) REFERENCES staff
    ON UPDATE CASCADE ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;
CREATE UNIQUE INDEX idx_unq_manager_staff_id ON store (manager_staff_id);
CREATE TABLE customer (
    customer_id serial PRIMARY KEY,
    store_id integer NOT NULL REFERENCES store ON UPDATE CASCADE ON DELETE RESTRICT,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text,
    address_id integer NOT NULL REFERENCES address ON UPDATE CASCADE ON DELETE RESTRICT,
    activebool boolean NOT NULL DEFAULT true,
    create_date date NOT NULL DEFAULT CURRENT_DATE,
    last_update timestamp without time zone DEFAULT now(),
    active integer
);
CREATE INDEX idx_last_name ON customer (last_name);
CREATE TABLE inventory (
    inventory_id serial PRIMARY KEY,
    film_id integer NOT NULL REFERENCES film ON UPDATE CASCADE ON DELETE RESTRICT,
    store_id integer NOT NULL REFERENCES store ON UPDATE CASCADE ON DELETE RESTRICT,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE INDEX idx_store_id_film_id ON inventory (store_id, film_id);
CREATE TABLE rental (
    rental_id serial PRIMARY KEY,
    rental_date timestamp without time zone NOT NULL,
    inventory_id integer NOT NULL REFERENCES inventory ON UPDATE CASCADE ON DELETE RESTRICT,
    customer_id integer NOT NULL REFERENCES customer ON UPDATE CASCADE ON DELETE RESTRICT,
    return_date timestamp without time zone,
    staff_id integer NOT NULL REFERENCES staff,
    last_update timestamp without time zone NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX idx_unq_rental_rental_date_inventory_id_customer_id ON rental (rental_date, inventory_id, customer_id);
CREATE TABLE payment (
    payment_id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customer ON UPDATE CASCADE ON DELETE RESTRICT,
    staff_id integer NOT NULL REFERENCES staff ON UPDATE CASCADE ON DELETE RESTRICT,
    rental_id integer REFERENCES rental ON UPDATE CASCADE ON DELETE SET NULL,
    amount numeric(5, 2) NOT NULL CHECK (amount >= 0),
    payment_date timestamp without time zone NOT NULL
);
CREATE INDEX idx_fk_customer_id ON payment (customer_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['actor', 'category', 'film', 'film_actor', 'film_category', 'language', 'country', 'city',
                             'address', 'store', 'staff', 'customer', 'inventory', 'rental'] LOOP
        EXECUTE format('CREATE TRIGGER last_updated BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION last_updated()', t);
    END LOOP;
END $$;

CREATE VIEW actor_info AS
    SELECT a.actor_id, a.first_name, a.last_name,
           string_agg(DISTINCT c.name || ': ' || f.title, '; ') AS film_info
      FROM actor a
      LEFT JOIN film_actor fa ON fa.actor_id = a.actor_id
      LEFT JOIN film_category fc ON fc.film_id = fa.film_id
      LEFT JOIN category c ON c.category_id = fc.category_id
      LEFT JOIN film f ON f.film_id = fa.film_id
     GROUP BY a.actor_id, a.first_name, a.last_name;
CREATE VIEW customer_list AS
    SELECT cu.customer_id AS id, cu.first_name || ' ' || cu.last_name AS name, a.address, a.postal_code AS "zip code",
           a.phone, ci.city, co.country, CASE WHEN cu.activebool THEN 'active' ELSE '' END AS notes, cu.store_id AS sid
      FROM customer cu
      JOIN address a ON cu.address_id = a.address_id
      JOIN city ci ON a.city_id = ci.city_id
      JOIN country co ON ci.country_id = co.country_id;
CREATE VIEW film_list AS
    SELECT f.film_id AS fid, f.title, f.description, c.name AS category, f.rental_rate AS price, f.length, f.rating
      FROM film f
      LEFT JOIN film_category fc ON fc.film_id = f.film_id
      LEFT JOIN category c ON c.category_id = fc.category_id;
CREATE VIEW sales_by_store AS
    SELECT ci.city || ',' || co.country AS store, m.first_name || ' ' || m.last_name AS manager, sum(p.amount) AS total_sales
      FROM payment p
      JOIN rental r ON p.rental_id = r.rental_id
      JOIN inventory i ON r.inventory_id = i.inventory_id
      JOIN store s ON i.store_id = s.store_id
      JOIN address a ON s.address_id = a.address_id
      JOIN city ci ON a.city_id = ci.city_id
      JOIN country co ON ci.country_id = co.country_id
      JOIN staff m ON s.manager_staff_id = m.staff_id
     GROUP BY co.country, ci.city, s.store_id, m.first_name, m.last_name;
CREATE MATERIALIZED VIEW rental_by_category AS
    SELECT c.name AS category, sum(p.amount) AS total_sales
      FROM payment p
      JOIN rental r ON p.rental_id = r.rental_id
      JOIN inventory i ON r.inventory_id = i.inventory_id
      JOIN film f ON i.film_id = f.film_id
      JOIN film_category fc ON f.film_id = fc.film_id
      JOIN category c ON fc.category_id = c.category_id
     GROUP BY c.name;
CREATE UNIQUE INDEX rental_category ON rental_by_category (category);

CREATE FUNCTION inventory_in_stock(p_inventory_id integer) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_rentals integer;
    v_out integer;
BEGIN
    SELECT count(*) INTO v_rentals FROM rental WHERE inventory_id = p_inventory_id;
    IF v_rentals = 0 THEN
        RETURN true;
    END IF;
    SELECT count(rental_id) INTO v_out FROM inventory LEFT JOIN rental USING (inventory_id)
     WHERE inventory.inventory_id = p_inventory_id AND rental.return_date IS NULL;
    RETURN v_out = 0;
END $$;
CREATE FUNCTION film_in_stock(p_film_id integer, p_store_id integer, OUT p_film_count integer) RETURNS SETOF integer
LANGUAGE sql AS $$
    SELECT inventory_id FROM inventory
     WHERE film_id = $1 AND store_id = $2 AND inventory_in_stock(inventory_id);
$$;
CREATE FUNCTION get_customer_balance(p_customer_id integer, p_effective_date timestamp without time zone) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    v_rentfees numeric(5, 2);
    v_payments numeric(5, 2);
BEGIN
    SELECT coalesce(sum(film.rental_rate), 0) INTO v_rentfees
      FROM film, inventory, rental
     WHERE film.film_id = inventory.film_id AND inventory.inventory_id = rental.inventory_id
       AND rental.rental_date <= p_effective_date AND rental.customer_id = p_customer_id;
    SELECT coalesce(sum(payment.amount), 0) INTO v_payments FROM payment
     WHERE payment.payment_date <= p_effective_date AND payment.customer_id = p_customer_id;
    RETURN v_rentfees - v_payments;
END $$;
CREATE FUNCTION rewards_report(min_monthly_purchases integer, min_dollar_amount_purchased numeric) RETURNS SETOF customer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = tenant_template, pg_temp AS $$
BEGIN
    IF min_monthly_purchases = 0 THEN
        RAISE EXCEPTION 'Minimum monthly purchases parameter must be > 0';
    END IF;
    RETURN QUERY
    SELECT c.* FROM customer c
     WHERE c.customer_id IN (SELECT p.customer_id FROM payment p GROUP BY p.customer_id
                              HAVING sum(p.amount) > min_dollar_amount_purchased AND count(*) > min_monthly_purchases);
END $$;
COMMENT ON TABLE film IS 'films that can be rented';
COMMENT ON COLUMN film.fulltext IS 'kept up to date by film_fulltext_trigger';
-- @tenant
INSERT INTO language (name) VALUES ('English'), ('French');
INSERT INTO category (name) VALUES ('Comedy');
INSERT INTO actor (first_name, last_name) VALUES ('Ann', 'Lee');
INSERT INTO film (title, description, release_year, language_id, special_features) VALUES ('Sky High', 'A flying comedy', 2006, 1, '{Trailers}');
INSERT INTO film_actor VALUES (1, 1);
INSERT INTO film_category VALUES (1, 1);
INSERT INTO country (country) VALUES ('France');
INSERT INTO city (city, country_id) VALUES ('Paris', 1);
INSERT INTO address (address, district, city_id, phone) VALUES ('1 rue', 'Centre', 1, '123');
BEGIN;
INSERT INTO store (manager_staff_id, address_id) VALUES (1, 1);
INSERT INTO staff (first_name, last_name, address_id, store_id, username) VALUES ('Bob', 'Ray', 1, 1, 'bob');
COMMIT;
INSERT INTO customer (store_id, first_name, last_name, address_id) VALUES (1, 'Cy', 'Dee', 1);
INSERT INTO inventory (film_id, store_id) VALUES (1, 1);
INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id) VALUES ('2024-01-01 10:00', 1, 1, 1);
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date) VALUES (1, 1, 1, 4.99, '2024-01-01 10:05');
REFRESH MATERIALIZED VIEW rental_by_category;
