-- tenant_control 0.1.0 -> 0.2.0 (ALTER EXTENSION tenant_control UPDATE TO '0.2.0').
--
-- Every change to the extension's SQL objects since release 0.1.0 (tag v0.1.0)
-- lands here, in the order it was made, until 0.2.0 is released; from then on
-- this file is never edited again. The upgrade test proves that a database
-- upgraded through this script holds the same objects as a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION tenant_control UPDATE" to load this file. \quit
