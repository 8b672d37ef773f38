-- Index methods, expressions, predicates, INCLUDE, ordering, operator classes, storage parameters.
CREATE TABLE docs (id integer PRIMARY KEY, title text, body text, tags text[], meta jsonb, place point, created timestamptz, score numeric);
CREATE INDEX docs_title ON docs (title);
CREATE INDEX docs_title_hash ON docs USING hash (title);
CREATE INDEX docs_tags ON docs USING gin (tags);
CREATE INDEX docs_meta ON docs USING gin (meta jsonb_path_ops);
CREATE INDEX docs_place ON docs USING gist (place);
CREATE INDEX docs_created ON docs USING brin (created) WITH (pages_per_range = 32);
CREATE INDEX docs_lower_title ON docs (lower(title)) WHERE body IS NOT NULL;
CREATE INDEX docs_score_desc ON docs (score DESC NULLS LAST, created ASC NULLS FIRST);
CREATE INDEX docs_pattern ON docs (title text_pattern_ops) WITH (fillfactor = 50);
CREATE UNIQUE INDEX docs_title_unique ON docs (title, id) INCLUDE (score);
CREATE UNIQUE INDEX docs_title_nulls ON docs (body) NULLS NOT DISTINCT;
CREATE INDEX docs_collated ON docs (title COLLATE "C");
CREATE INDEX docs_fts ON docs USING gin (to_tsvector('english'::regconfig, body));
COMMENT ON INDEX docs_title IS 'for lookups by title';
-- @tenant
INSERT INTO docs VALUES (1, 'One', 'first body', '{a}', '{"k": 1}', '(1,1)', '2024-01-01 00:00:00+00', 1.5);
