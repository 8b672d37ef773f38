-- Partitioned tables: range, list, hash, default partitions, sub-partitions, partitioned keys and
-- indexes, foreign keys to and from partitioned tables, a partition attached later.
CREATE TABLE customers (id integer PRIMARY KEY, region text NOT NULL);
CREATE TABLE measurements (id bigint GENERATED ALWAYS AS IDENTITY, taken date NOT NULL, customer_id integer REFERENCES customers,
                           value numeric, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY HASH (id);
CREATE TABLE measurements_2025_even PARTITION OF measurements_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE measurements_2025_odd PARTITION OF measurements_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE measurements_old PARTITION OF measurements DEFAULT;
CREATE INDEX measurements_value ON measurements (value);
CREATE TABLE regions (name text, code integer) PARTITION BY LIST (name);
CREATE TABLE regions_rest PARTITION OF regions DEFAULT;
CREATE TABLE regions_north PARTITION OF regions FOR VALUES IN ('north', 'arctic');
CREATE TABLE buckets (id integer PRIMARY KEY) PARTITION BY HASH (id);
CREATE TABLE buckets_0 PARTITION OF buckets FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE buckets_1 PARTITION OF buckets FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE bucket_refs (bucket_id integer REFERENCES buckets);
CREATE TABLE measurements_2023 (LIKE measurements INCLUDING DEFAULTS);
ALTER TABLE measurements ATTACH PARTITION measurements_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
-- @tenant
INSERT INTO customers VALUES (1, 'north');
INSERT INTO measurements (taken, customer_id, value) VALUES ('2024-03-01', 1, 1.5), ('2025-03-01', 1, 2), ('2025-04-01', NULL, 3);
INSERT INTO buckets VALUES (1), (2);
INSERT INTO bucket_refs VALUES (1);
