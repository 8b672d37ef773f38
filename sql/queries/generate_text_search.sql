-- Text search dictionaries and configurations (with their mappings, one
-- statement per list of dictionaries). Templates, parsers and dictionaries
-- outside the schema are named qualified (tenant.name_in).
SELECT s.statement, s.unit FROM (
    SELECT 0 AS step, d.oid, pg_catalog.format('CREATE TEXT SEARCH DICTIONARY %I (TEMPLATE = %s%s)', d.dictname,
           tenant.name_in($1::text, t.tmplnamespace, t.tmplname), COALESCE(', ' || d.dictinitoption, '')) AS statement,
           'pg_ts_dict:' || d.oid AS unit, NULL::text AS tokens
      FROM pg_catalog.pg_ts_dict d JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate
     WHERE d.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_dict') AS so(oid))
    UNION ALL
    SELECT 1, c.oid, pg_catalog.format('CREATE TEXT SEARCH CONFIGURATION %I (PARSER = %s)', c.cfgname,
           tenant.name_in($1::text, p.prsnamespace, p.prsname)), 'pg_ts_config:' || c.oid, NULL
      FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser
     WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_config') AS so(oid))
    UNION ALL
    SELECT 2, m.cfg, pg_catalog.format('ALTER TEXT SEARCH CONFIGURATION %I ADD MAPPING FOR %s WITH %s', m.cfgname,
           pg_catalog.string_agg(m.alias, ', ' ORDER BY m.alias), m.dictionaries), 'pg_ts_config:' || m.cfg, pg_catalog.min(m.alias)
      FROM (SELECT c.oid AS cfg, c.cfgname, pg_catalog.quote_ident(tt.alias) AS alias,
                   pg_catalog.string_agg(tenant.name_in($1::text, d.dictnamespace, d.dictname), ', ' ORDER BY x.mapseqno) AS dictionaries
              FROM pg_catalog.pg_ts_config c
              JOIN pg_catalog.pg_ts_config_map x ON x.mapcfg = c.oid
              JOIN pg_catalog.pg_ts_dict d ON d.oid = x.mapdict
              JOIN pg_catalog.ts_token_type(c.cfgparser) tt ON tt.tokid = x.maptokentype
             WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_ts_config') AS so(oid))
             GROUP BY c.oid, c.cfgname, tt.alias) m
     GROUP BY m.cfg, m.cfgname, m.dictionaries
) s ORDER BY s.step, s.oid, s.tokens
