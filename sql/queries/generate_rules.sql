-- Rules (a view's own _RETURN rule aside), as pg_get_ruledef prints them
-- with the schema's names unqualified, and their enabled state. They come
-- after a backup's load: a rule ON INSERT would rewrite the loaded rows.
SELECT s.statement, 'pg_rewrite:' || s.oid FROM (
    -- pg_get_ruledef always qualifies the table after TO: that one token is rebuilt.
    SELECT w.oid, 0 AS step,
           pg_catalog.rtrim(overlay(d.def PLACING pg_catalog.format(' TO %I', c.relname)
                                    FROM pg_catalog.strpos(d.def, d.token) FOR pg_catalog.length(d.token)), ';') AS statement
      FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class c ON c.oid = w.ev_class,
      LATERAL (SELECT tenant.deparse_in($1::text, 'rule', w.oid) AS def,
                      pg_catalog.format(' TO %I.%I', $1::text, c.relname) AS token OFFSET 0) d
     WHERE w.ev_class IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND w.rulename <> '_RETURN'
       -- (followed by a space or a line break, not by more of a longer name)
       AND pg_catalog.strpos(d.def, d.token) > 0
       AND pg_catalog.substr(d.def, pg_catalog.strpos(d.def, d.token) + pg_catalog.length(d.token), 1) IN (' ', E'\n')
    UNION ALL
    SELECT w.oid, 1, pg_catalog.format('ALTER TABLE %I %s RULE %I', c.relname,
           CASE w.ev_enabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, w.rulename)
      FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class c ON c.oid = w.ev_class
     WHERE w.ev_class IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS so(oid)) AND w.rulename <> '_RETURN'
       AND w.ev_enabled <> 'O'
) s ORDER BY s.oid, s.step
