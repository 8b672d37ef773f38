-- Extended statistics objects.
CREATE TABLE addresses (city text, zip text, country text);
CREATE STATISTICS addresses_city_zip (dependencies, ndistinct) ON city, zip FROM addresses;
CREATE STATISTICS addresses_mcv (mcv) ON city, country FROM addresses;
ALTER STATISTICS addresses_mcv SET STATISTICS 500;
CREATE STATISTICS addresses_expr ON lower(city), country FROM addresses;
-- @tenant
INSERT INTO addresses VALUES ('Paris', '75001', 'FR');
