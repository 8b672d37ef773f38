-- Aggregates, ordered-set and hypothetical-set ones included (the ORDER BY
-- in the arguments comes from pg_get_function_arguments).
SELECT pg_catalog.format('CREATE AGGREGATE %I(%s) (%s)', p.proname,
       CASE WHEN p.pronargs = 0 THEN '*' ELSE tenant.deparse_in($1::text, 'arguments', p.oid) END,
       pg_catalog.concat_ws(', ',
           'SFUNC = ' || fn.sfunc, 'STYPE = ' || tenant.deparse_in($1::text, 'type', a.aggtranstype, NULL, -1),
           'SSPACE = ' || NULLIF(a.aggtransspace, 0),
           'FINALFUNC = ' || fn.finalfunc,
           CASE WHEN a.aggfinalextra THEN 'FINALFUNC_EXTRA' END,
           CASE WHEN a.aggfinalfn <> 0 THEN 'FINALFUNC_MODIFY = ' || CASE a.aggfinalmodify WHEN 'r' THEN 'READ_ONLY'
                                                                   WHEN 's' THEN 'SHAREABLE' ELSE 'READ_WRITE' END END,
           'COMBINEFUNC = ' || fn.combinefunc, 'SERIALFUNC = ' || fn.serialfunc, 'DESERIALFUNC = ' || fn.deserialfunc,
           'INITCOND = ' || pg_catalog.quote_literal(a.agginitval),
           'MSFUNC = ' || fn.msfunc, 'MINVFUNC = ' || fn.minvfunc,
           CASE WHEN a.aggmtranstype <> 0 THEN 'MSTYPE = ' || tenant.deparse_in($1::text, 'type', a.aggmtranstype, NULL, -1) END,
           'MSSPACE = ' || NULLIF(a.aggmtransspace, 0),
           'MFINALFUNC = ' || fn.mfinalfunc,
           CASE WHEN a.aggmfinalextra THEN 'MFINALFUNC_EXTRA' END,
           CASE WHEN a.aggmfinalfn <> 0 THEN 'MFINALFUNC_MODIFY = ' || CASE a.aggmfinalmodify WHEN 'r' THEN 'READ_ONLY'
                                                                     WHEN 's' THEN 'SHAREABLE' ELSE 'READ_WRITE' END END,
           'MINITCOND = ' || pg_catalog.quote_literal(a.aggminitval),
           (SELECT pg_catalog.format('SORTOP = OPERATOR(%I.%s)', n.nspname, o.oprname)
              FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid = a.aggsortop),
           CASE p.proparallel WHEN 's' THEN 'PARALLEL = SAFE' WHEN 'r' THEN 'PARALLEL = RESTRICTED' END,
           CASE WHEN a.aggkind = 'h' THEN 'HYPOTHETICAL' END)),
       'pg_proc:' || p.oid
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid,
  LATERAL (SELECT pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggtransfn) AS sfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggfinalfn) AS finalfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggcombinefn) AS combinefunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggserialfn) AS serialfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggdeserialfn) AS deserialfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggmtransfn) AS msfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggminvtransfn) AS minvfunc,
                  pg_catalog.max(f.name) FILTER (WHERE f.oid = a.aggmfinalfn) AS mfinalfunc
             FROM (SELECT s.oid, tenant.name_in($1::text, s.pronamespace, s.proname) AS name
                     FROM pg_catalog.pg_proc s
                    WHERE s.oid IN (a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn,
                                    a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn)) f) fn
 WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS so(oid)) AND p.prokind = 'a'
 ORDER BY p.oid
