-- Range types (and their multiranges) of the template's own.
CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE TYPE daterange2 AS RANGE (subtype = date, multirange_type_name = daterange2_set);
CREATE TABLE shifts (id integer PRIMARY KEY, hours floatrange, days daterange2, many daterange2_set);
-- @tenant
INSERT INTO shifts VALUES (1, '[1.5, 2.5)', '[2024-01-01, 2024-01-05)', '{[2024-01-01, 2024-01-02)}');
