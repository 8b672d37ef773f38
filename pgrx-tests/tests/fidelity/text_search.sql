-- Text search configurations and dictionaries of the template's own.
CREATE TEXT SEARCH DICTIONARY english_simple (TEMPLATE = pg_catalog.simple, STOPWORDS = english);
CREATE TEXT SEARCH CONFIGURATION plain_english (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION plain_english ALTER MAPPING FOR asciiword WITH english_simple;
CREATE TABLE articles (id integer PRIMARY KEY, body text, words tsvector GENERATED ALWAYS AS (to_tsvector('plain_english', body)) STORED);
CREATE INDEX articles_words ON articles USING gin (words);
-- @tenant
INSERT INTO articles (id, body) VALUES (1, 'The quick brown fox');
