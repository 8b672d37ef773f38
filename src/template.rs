//! Faithful copies of the template schema.
//!
//! The DDL of a copy is generated from the catalogs while `search_path` is the
//! template alone: the deparsing functions (`pg_get_expr`, `pg_get_viewdef`,
//! `pg_get_constraintdef`, ...) then leave names inside the template
//! unqualified and qualify everything else. Run with `search_path` set to the
//! new schema, those unqualified names bind to the copy's own objects, so no
//! name is ever found and replaced in text. A final pg_depend check proves that
//! nothing in the copy still depends on the template.

use crate::db;
use crate::errors::{TcError, TcResult};
use crate::name::{RoleName, TenantName};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::lifecycle::LOCK_CLASS;

pub const TEMPLATE_SCHEMA: &str = "tenant_template";
/// Privileges granted to, and objects owned by, this role in the template go
/// to the tenant's role in every copy.
pub const TEMPLATE_ROLE: &str = "tenant_template_owner";

/// Object kinds a copy cannot reproduce faithfully, refused before anything is created.
const UNSUPPORTED: &str = r#"
SELECT format('%s %I.%I', kind, $1::text, name) FROM (
    SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                          ELSE 'partitioned index' END AS kind, c.relname::text AS name, c.oid
      FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('p', 'f', 'I')
    UNION ALL
    SELECT 'table with inheritance', c.relname, c.oid FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid WHERE c.relnamespace = $1::regnamespace
    UNION ALL
    SELECT 'typed table', c.relname, c.oid FROM pg_catalog.pg_class c
     WHERE c.relnamespace = $1::regnamespace AND c.reloftype <> 0
    UNION ALL
    SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' ELSE 'window function' END, p.proname, p.oid
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.prokind IN ('a', 'w')
    UNION ALL
    SELECT 'function naming the template schema in its body', p.proname, p.oid
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.prosqlbody IS NULL
       AND pg_catalog.strpos(pg_catalog.lower(p.prosrc), pg_catalog.lower($1::text) || '.') > 0
    UNION ALL
    SELECT CASE t.typtype WHEN 'r' THEN 'range type' WHEN 'm' THEN 'multirange type' ELSE 'base type' END,
           t.typname, t.oid
      FROM pg_catalog.pg_type t WHERE t.typnamespace = $1::regnamespace AND t.typtype IN ('r', 'm', 'b')
       AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
    UNION ALL
    SELECT 'operator', o.oprname, o.oid FROM pg_catalog.pg_operator o WHERE o.oprnamespace = $1::regnamespace
    UNION ALL
    SELECT 'collation', c.collname, c.oid FROM pg_catalog.pg_collation c WHERE c.collnamespace = $1::regnamespace
    UNION ALL
    SELECT 'statistics object', s.stxname, s.oid FROM pg_catalog.pg_statistic_ext s
     WHERE s.stxnamespace = $1::regnamespace
    UNION ALL
    SELECT 'rule', r.rulename, r.oid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
     WHERE c.relnamespace = $1::regnamespace AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'text search configuration', t.cfgname, t.oid FROM pg_catalog.pg_ts_config t
     WHERE t.cfgnamespace = $1::regnamespace
) unsupported ORDER BY oid
"#;

/// The generators, in the order their statements must run. Each query takes
/// the template schema ($1), the tenant schema ($2) and the tenant role ($3),
/// and returns one statement per row.
pub const GENERATORS: &[(&str, &str)] = &[
    ("types", TYPES),
    ("sequences", SEQUENCES),
    ("functions", FUNCTIONS),
    ("tables", TABLES),
    ("sequence ownership", SEQUENCE_OWNERSHIP),
    ("SQL-standard functions", SQL_STANDARD_FUNCTIONS),
    ("views", VIEWS),
    ("keys and checks", KEYS_AND_CHECKS),
    ("indexes", INDEXES),
    ("foreign keys", FOREIGN_KEYS),
    ("triggers", TRIGGERS),
    ("row-level security", ROW_LEVEL_SECURITY),
    ("policies", POLICIES),
    ("comments", COMMENTS),
    ("ownership", OWNERSHIP),
    ("grants", GRANTS),
];

const TYPES: &str = r#"
SELECT CASE t.typtype
    WHEN 'e' THEN pg_catalog.format('CREATE TYPE %I AS ENUM (%s)', t.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
           FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid))
    WHEN 'd' THEN pg_catalog.format('CREATE DOMAIN %I AS %s%s%s%s%s', t.typname,
        pg_catalog.format_type(t.typbasetype, t.typtypmod),
        CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM
                  (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)
             THEN ' COLLATE ' || t.typcollation::regcollation::text ELSE '' END,
        CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || pg_catalog.pg_get_expr(t.typdefaultbin, 0) ELSE '' END,
        CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END,
        (SELECT pg_catalog.string_agg(pg_catalog.format(' CONSTRAINT %I %s', c.conname, pg_catalog.pg_get_constraintdef(c.oid)), '' ORDER BY c.oid)
           FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid))
    ELSE pg_catalog.format('CREATE TYPE %I AS (%s)', t.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    END
  FROM pg_catalog.pg_type t
 WHERE t.typnamespace = $1::regnamespace
   AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
 ORDER BY t.oid
"#;

const SEQUENCES: &str = r#"
SELECT pg_catalog.format('CREATE %sSEQUENCE %I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
       CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, c.relname, pg_catalog.format_type(s.seqtypid, NULL),
       s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relnamespace = $1::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'i')
 ORDER BY c.oid
"#;

const FUNCTIONS: &str = r#"
SELECT pg_catalog.format('CREATE %s %I(%s)%s LANGUAGE %I%s%s%s%s AS %s',
       CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
       pg_catalog.pg_get_function_arguments(p.oid),
       CASE p.prokind WHEN 'p' THEN '' ELSE ' RETURNS ' || pg_catalog.pg_get_function_result(p.oid) END,
       l.lanname,
       CASE WHEN p.prokind = 'p' THEN '' ELSE
           CASE p.provolatile WHEN 'i' THEN ' IMMUTABLE' WHEN 's' THEN ' STABLE' ELSE ' VOLATILE' END
           || CASE WHEN p.proisstrict THEN ' STRICT' ELSE '' END
           || CASE p.proparallel WHEN 's' THEN ' PARALLEL SAFE' WHEN 'r' THEN ' PARALLEL RESTRICTED' ELSE '' END
           || pg_catalog.format(' COST %s', p.procost)
           || CASE WHEN p.proretset THEN pg_catalog.format(' ROWS %s', p.prorows) ELSE '' END END,
       CASE WHEN p.prosecdef THEN ' SECURITY DEFINER' ELSE '' END,
       CASE WHEN p.proleakproof THEN ' LEAKPROOF' ELSE '' END,
       (SELECT pg_catalog.string_agg(
                   CASE WHEN setting LIKE 'search_path=%'
                        THEN ' SET search_path = ' || tenant.rebound_search_path(setting, $1::text, $2::text)
                        ELSE pg_catalog.format(' SET %s = %L', pg_catalog.split_part(setting, '=', 1),
                                               pg_catalog.substr(setting, pg_catalog.strpos(setting, '=') + 1)) END, '')
          FROM pg_catalog.unnest(p.proconfig) setting),
       CASE WHEN l.lanname = 'c' THEN pg_catalog.format('%L, %L', p.probin, p.prosrc)
            ELSE pg_catalog.quote_literal(p.prosrc) END)
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = $1::regnamespace AND p.prokind IN ('f', 'p') AND p.prosqlbody IS NULL
 ORDER BY p.oid
"#;

const TABLES: &str = r#"
SELECT pg_catalog.format('CREATE %sTABLE %I (%s)%s',
       CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, c.relname,
       (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
                   || CASE WHEN a.attcollation <> 0 AND a.attcollation IS DISTINCT FROM
                                (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)
                           THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                   || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(ad.adbin, c.oid) || ') STORED'
                           WHEN a.attidentity IN ('a', 'd') THEN
                                CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' ELSE ' GENERATED BY DEFAULT AS IDENTITY' END
                                || (SELECT pg_catalog.format(' (INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s)',
                                           s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,
                                           CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
                                      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid
                                     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid
                                       AND d.refobjsubid = a.attnum AND d.deptype = 'i' AND d.classid = 'pg_catalog.pg_class'::regclass)
                           WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, c.oid)
                           ELSE '' END
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END)
  FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'
 ORDER BY c.oid
"#;

const SEQUENCE_OWNERSHIP: &str = r#"
SELECT pg_catalog.format('ALTER SEQUENCE %I OWNED BY %I.%I', s.relname, t.relname, a.attname)
  FROM pg_catalog.pg_class s
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a'
                              AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE s.relnamespace = $1::regnamespace AND s.relkind = 'S'
 ORDER BY s.oid
"#;

const SQL_STANDARD_FUNCTIONS: &str = r#"
SELECT pg_catalog.format('CREATE %s %I(%s)%s LANGUAGE sql%s %s',
       CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
       pg_catalog.pg_get_function_arguments(p.oid),
       CASE p.prokind WHEN 'p' THEN '' ELSE ' RETURNS ' || pg_catalog.pg_get_function_result(p.oid) END,
       CASE WHEN p.prokind = 'p' THEN '' ELSE
           CASE p.provolatile WHEN 'i' THEN ' IMMUTABLE' WHEN 's' THEN ' STABLE' ELSE ' VOLATILE' END
           || CASE WHEN p.proisstrict THEN ' STRICT' ELSE '' END
           || CASE p.proparallel WHEN 's' THEN ' PARALLEL SAFE' WHEN 'r' THEN ' PARALLEL RESTRICTED' ELSE '' END END,
       pg_catalog.pg_get_function_sqlbody(p.oid))
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = $1::regnamespace AND p.prokind IN ('f', 'p') AND p.prosqlbody IS NOT NULL
 ORDER BY p.oid
"#;

const VIEWS: &str = r#"
SELECT CASE c.relkind
       WHEN 'v' THEN pg_catalog.format('CREATE VIEW %I%s AS %s', c.relname,
            CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
            pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'))
       ELSE pg_catalog.format('CREATE MATERIALIZED VIEW %I AS %s WITH %sDATA', c.relname,
            pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'), CASE WHEN c.relispopulated THEN '' ELSE 'NO ' END) END
  FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('v', 'm')
 ORDER BY c.oid
"#;

const KEYS_AND_CHECKS: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, pg_catalog.pg_get_constraintdef(c.oid))
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.relnamespace = $1::regnamespace AND c.contype IN ('p', 'u', 'c', 'x')
 ORDER BY c.contype = 'c', c.oid
"#;

/// pg_get_indexdef always qualifies the table: its fixed prefix is rebuilt.
const INDEXES: &str = r#"
SELECT pg_catalog.format('CREATE %sINDEX %I ON %I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, c.relname, t.relname)
       || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid,
  LATERAL (SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def,
                  pg_catalog.format('CREATE %sINDEX %I ON %I.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                                    c.relname, $1::text, t.relname) AS prefix) d
 WHERE c.relnamespace = $1::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
   AND pg_catalog.starts_with(d.def, d.prefix)
 ORDER BY i.indexrelid
"#;

const FOREIGN_KEYS: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, pg_catalog.pg_get_constraintdef(c.oid))
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.relnamespace = $1::regnamespace AND c.contype = 'f'
 ORDER BY c.oid
"#;

const TRIGGERS: &str = r#"
SELECT statement FROM (
    -- pg_get_triggerdef always qualifies the table after ON: that one token is rebuilt.
    SELECT g.oid, 0 AS step,
           overlay(d.def PLACING pg_catalog.format(' ON %I ', c.relname)
                              FROM pg_catalog.strpos(d.def, d.token) FOR pg_catalog.length(d.token)) AS statement
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid,
      LATERAL (SELECT pg_catalog.pg_get_triggerdef(g.oid) AS def,
                      pg_catalog.format(' ON %I.%I ', $1::text, c.relname) AS token) d
     WHERE c.relnamespace = $1::regnamespace AND NOT g.tgisinternal AND pg_catalog.strpos(d.def, d.token) > 0
    UNION ALL
    SELECT g.oid, 1, pg_catalog.format('ALTER TABLE %I %s TRIGGER %I', c.relname,
           CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, g.tgname)
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE c.relnamespace = $1::regnamespace AND NOT g.tgisinternal AND g.tgenabled <> 'O'
) t ORDER BY t.oid, t.step
"#;

const ROW_LEVEL_SECURITY: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I %s ROW LEVEL SECURITY', c.relname, mode)
  FROM pg_catalog.pg_class c,
       LATERAL (VALUES (1, 'ENABLE', c.relrowsecurity), (2, 'FORCE', c.relforcerowsecurity)) AS m(step, mode, wanted)
 WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND m.wanted
 ORDER BY c.oid, m.step
"#;

const POLICIES: &str = r#"
SELECT pg_catalog.format('CREATE POLICY %I ON %I AS %s FOR %s TO %s%s%s', p.polname, c.relname,
       CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       (SELECT pg_catalog.string_agg(CASE WHEN pr.oid = 0 THEN 'PUBLIC'
                                          WHEN r.rolname = $4::text THEN pg_catalog.quote_ident($3::text)
                                          ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
          FROM pg_catalog.unnest(p.polroles) AS pr(oid)
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = pr.oid),
       CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END,
       CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END)
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = $1::regnamespace
 ORDER BY p.oid
"#;

const COMMENTS: &str = r#"
SELECT pg_catalog.format('COMMENT ON %s IS %L', target, d.description) FROM (
    SELECT d.description, c.oid, CASE
           WHEN d.objsubid > 0 THEN pg_catalog.format('COLUMN %I.%I', c.relname,
                (SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = d.objsubid))
           ELSE pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                            WHEN 'S' THEN 'SEQUENCE' WHEN 'i' THEN 'INDEX' ELSE 'TYPE' END, c.relname) END AS target
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_class'::regclass AND c.relnamespace = $1::regnamespace
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
           p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_proc p ON p.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_proc'::regclass AND p.pronamespace = $1::regnamespace
    UNION ALL
    SELECT d.description, t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON t.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_type'::regclass AND t.typnamespace = $1::regnamespace
    UNION ALL
    SELECT d.description, k.oid, pg_catalog.format('CONSTRAINT %I ON %I', k.conname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
     WHERE d.classoid = 'pg_catalog.pg_constraint'::regclass AND c.relnamespace = $1::regnamespace
    UNION ALL
    SELECT d.description, g.oid, pg_catalog.format('TRIGGER %I ON %I', g.tgname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_trigger g ON g.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE d.classoid = 'pg_catalog.pg_trigger'::regclass AND c.relnamespace = $1::regnamespace
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('POLICY %I ON %I', p.polname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_policy p ON p.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
     WHERE d.classoid = 'pg_catalog.pg_policy'::regclass AND c.relnamespace = $1::regnamespace
) d ORDER BY d.oid
"#;

const OWNERSHIP: &str = r#"
SELECT pg_catalog.format('ALTER %s OWNER TO %I', target, $3::text) FROM (
    SELECT c.oid, pg_catalog.format('%s %I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                             WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname) AS target, c.relowner AS owner
      FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'v', 'm', 'S')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
           pg_catalog.pg_get_function_identity_arguments(p.oid)), p.proowner
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::regnamespace
    UNION ALL
    SELECT t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname), t.typowner
      FROM pg_catalog.pg_type t WHERE t.typnamespace = $1::regnamespace AND t.typtype IN ('e', 'd', 'c')
       AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
) o WHERE o.owner = $4::regrole ORDER BY o.oid
"#;

const GRANTS: &str = r#"
SELECT CASE WHEN acl.privilege IS NULL THEN pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', acl.target)
            ELSE pg_catalog.format('GRANT %s ON %s TO %s%s', acl.privilege, acl.target,
                 CASE WHEN acl.grantee = 0 THEN 'PUBLIC'
                      WHEN acl.grantee = $4::regrole THEN pg_catalog.quote_ident($3::text)
                      ELSE pg_catalog.quote_ident(acl.grantee::regrole::text) END,
                 CASE WHEN acl.grantable THEN ' WITH GRANT OPTION' ELSE '' END) END
  FROM (
    SELECT c.oid, 0 AS step, pg_catalog.format('%s %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname) AS target,
           x.privilege_type AS privilege, x.grantee, x.is_grantable AS grantable, x.grantee = c.relowner AS own
      FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) x
     WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'v', 'm', 'S')
    UNION ALL
    SELECT c.oid, 1, pg_catalog.format('TABLE %I', c.relname), pg_catalog.format('%s (%I)', x.privilege_type, a.attname),
           x.grantee, x.is_grantable, false
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attacl IS NOT NULL,
           LATERAL pg_catalog.aclexplode(a.attacl) x
     WHERE c.relnamespace = $1::regnamespace
    UNION ALL
    SELECT p.oid, s.step, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
           pg_catalog.pg_get_function_identity_arguments(p.oid)), s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = p.proowner
                      FROM pg_catalog.aclexplode(p.proacl) x) s
     WHERE p.pronamespace = $1::regnamespace AND p.proacl IS NOT NULL
    UNION ALL
    SELECT t.oid, s.step, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname),
           s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_type t,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = t.typowner
                      FROM pg_catalog.aclexplode(t.typacl) x) s
     WHERE t.typnamespace = $1::regnamespace AND t.typacl IS NOT NULL AND t.typtype IN ('e', 'd', 'c')
  ) acl
 WHERE NOT acl.own
 ORDER BY acl.oid, acl.step
"#;

/// Objects of the copy that still depend on an object of the template.
const DEPENDS_ON_TEMPLATE: &str = r#"
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) || ' depends on '
       || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
  FROM pg_catalog.pg_depend d
  JOIN (SELECT 'pg_catalog.pg_class'::regclass AS classid, c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t WHERE t.typnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid FROM pg_catalog.pg_rewrite r
                   JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k
                   JOIN pg_catalog.pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, a.oid FROM pg_catalog.pg_attrdef a
                   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE c.relnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, g.oid FROM pg_catalog.pg_trigger g
                   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE c.relnamespace = $2::regnamespace
        UNION ALL SELECT 'pg_catalog.pg_policy'::regclass, p.oid FROM pg_catalog.pg_policy p
                   JOIN pg_catalog.pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = $2::regnamespace) mine
    ON mine.classid = d.classid AND mine.oid = d.objid
 WHERE (d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = $1::regnamespace)
    OR (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1::regnamespace))
    OR (d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid IN (SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = $1::regnamespace))
    OR (d.refclassid = 'pg_catalog.pg_type'::regclass AND d.refobjid IN (SELECT oid FROM pg_catalog.pg_type WHERE typnamespace = $1::regnamespace))
 LIMIT 1
"#;

pub struct Copied {
    pub statements: usize,
}

/// Fill the (new, empty) schema `target` with a copy of the template.
pub fn copy_into(target: &TenantName, role: &RoleName) -> TcResult<Copied> {
    let args = || [TEMPLATE_SCHEMA.into(), target.as_str().into(), role.as_str().into(), TEMPLATE_ROLE.into()];
    if let Some(object) = db::value::<String>(UNSUPPORTED, &args()[..1])? {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the template holds a {object}, which tenant_control cannot copy faithfully"),
        )
        .hint("Remove or replace it in the template; nothing was created."));
    }

    let mut script = Vec::new();
    db::with_setting("search_path", &quote_identifier(TEMPLATE_SCHEMA), || {
        for (_, generator) in GENERATORS {
            script.extend(db::rows(generator, &args(), |row| Ok(row.get::<String>(1)?.unwrap_or_default()))?);
        }
        Ok(())
    })?;

    db::with_setting("search_path", &target.quoted(), || {
        // Functions may name tables that are created after them.
        db::with_setting("check_function_bodies", "off", || {
            for statement in script.iter().filter(|s| !s.is_empty()) {
                db::run_explained(statement, "while copying the template")?;
            }
            Ok(())
        })
    })?;

    if let Some(dependency) = db::value::<String>(DEPENDS_ON_TEMPLATE, &args()[..2])? {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the copy of the template is not independent of it: {dependency}"),
        )
        .hint(
            "An object of the template refers to the template by a name that cannot be rebound; nothing was created.",
        ));
    }
    Ok(Copied { statements: script.len() })
}

/// Copies share the template; a migration of the template excludes them.
pub fn lock_shared() -> TcResult<()> {
    db::run("SELECT pg_catalog.pg_advisory_xact_lock_shared($1, pg_catalog.hashtext('template'))", &[LOCK_CLASS.into()])
}

pub fn lock_exclusive() -> TcResult<()> {
    db::run("SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext('template'))", &[LOCK_CLASS.into()])
}

/// The version the template is at: the newest registered migration.
pub fn version() -> TcResult<i32> {
    db::scalar("SELECT COALESCE(max(version), 0) FROM tenant.migrations", &[])
}
