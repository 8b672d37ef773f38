//! Faithful copies of the template schema.
//!
//! The DDL of a copy is generated from the catalogs. The deparsing functions
//! (`pg_get_expr`, `pg_get_viewdef`, `pg_get_constraintdef`, ...) are applied
//! through `tenant.deparse_in` with the schema being read alone on the
//! search_path: they then leave names inside that schema unqualified and
//! qualify everything else. Run with `search_path` set to the new schema,
//! those unqualified names bind to the copy's own objects, so no name is ever
//! found and replaced in text. A final pg_depend check proves that nothing in
//! the copy still depends on the template.
//!
//! The generator queries themselves run with `search_path = pg_catalog,
//! pg_temp` (`CATALOG_PATH`): the schema being read may be a tenant's, and an
//! operator or function a tenant defines (an `=` for `(oid, regclass)`, a
//! `lower(name)`) must never bind in a query the extension runs as its owner.

use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::name::{RoleName, TenantName};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

pub const TEMPLATE_SCHEMA: &str = "tenant_template";
/// Privileges granted to, and objects owned by, this role in the template go
/// to the tenant's role in every copy.
pub const TEMPLATE_ROLE: &str = "tenant_template_owner";

/// The search_path of every catalog query that reads a schema a tenant may
/// have written to: no operator, function or type of a tenant can bind in it
/// (pg_temp last, so a temporary object never shadows a type either).
pub const CATALOG_PATH: &str = "pg_catalog, pg_temp";

/// Run catalog queries with `CATALOG_PATH`, whatever the caller's search_path.
pub fn catalog_read<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    db::with_setting("search_path", CATALOG_PATH, work)
}

/// Internal (declared in sql/bootstrap.sql): one deparsing function applied
/// with `schema_name` alone on the search_path, so that it prints the names
/// of that schema's objects unqualified; the search_path is back to the
/// caller's (CATALOG_PATH) as soon as it returns. It runs no SQL: nothing a
/// tenant wrote can resolve through that search_path.
/// `what`: view, expression (`expression` is a pg_node_tree as text, `object`
/// its relation or 0), constraint, index, trigger, type (`modifier` is the
/// typmod), collation, arguments, identity arguments, result, sql body.
#[pg_extern(sql = false)]
fn deparse_in(
    schema_name: Option<&str>,
    what: Option<&str>,
    object: Option<pg_sys::Oid>,
    expression: Option<&str>,
    modifier: Option<i32>,
) -> Option<String> {
    let (schema_name, what, object) = (schema_name?, what?, object?);
    let path = std::ffi::CString::new(quote_identifier(schema_name)).ok()?;
    // SAFETY: what fmgr does for a function with a SET clause: a GUC nest
    // level that is popped on return (and by the transaction's or
    // subtransaction's abort on an error).
    let nest_level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            path.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let text = deparse(what, object, expression, modifier);
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    text
}

fn deparse(what: &str, object: pg_sys::Oid, expression: Option<&str>, modifier: Option<i32>) -> Option<String> {
    use pgrx::direct_function_call as call;
    let oid = object.into_datum();
    // SAFETY: each is a built-in SQL-callable function given the arguments of its SQL signature.
    unsafe {
        match what {
            "view" => call::<String>(pg_sys::pg_get_viewdef, &[oid]),
            "expression" => call::<String>(pg_sys::pg_get_expr, &[expression?.into_datum(), oid]),
            "constraint" => call::<String>(pg_sys::pg_get_constraintdef, &[oid]),
            "index" => call::<String>(pg_sys::pg_get_indexdef, &[oid]),
            "trigger" => call::<String>(pg_sys::pg_get_triggerdef, &[oid]),
            "type" => call::<String>(pg_sys::format_type, &[oid, modifier.into_datum()]),
            "collation" => call::<&core::ffi::CStr>(pg_sys::regcollationout, &[oid])
                .map(|name| name.to_string_lossy().into_owned()),
            "arguments" => call::<String>(pg_sys::pg_get_function_arguments, &[oid]),
            "identity arguments" => call::<String>(pg_sys::pg_get_function_identity_arguments, &[oid]),
            "result" => call::<String>(pg_sys::pg_get_function_result, &[oid]),
            "sql body" => call::<String>(pg_sys::pg_get_function_sqlbody, &[oid]),
            other => pgrx::error!("tenant.deparse_in: unknown kind \"{other}\""),
        }
    }
}

/// Object kinds a copy cannot reproduce faithfully, refused before anything is created.
const UNSUPPORTED: &str = r#"
SELECT format('%s %I.%I', kind, $1::text, name) FROM (
    SELECT 'operator class' AS kind, o.opcname::text AS name, o.oid FROM pg_catalog.pg_opclass o
     WHERE o.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_opclass'))
    UNION ALL
    SELECT 'operator family', o.opfname, o.oid FROM pg_catalog.pg_opfamily o
     WHERE o.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_opfamily'))
    UNION ALL
    SELECT 'conversion', c.conname, c.oid FROM pg_catalog.pg_conversion c
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_conversion'))
    UNION ALL
    SELECT 'text search dictionary', d.dictname, d.oid FROM pg_catalog.pg_ts_dict d
     WHERE d.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_ts_dict'))
    UNION ALL
    SELECT 'text search parser', p.prsname, p.oid FROM pg_catalog.pg_ts_parser p
     WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_ts_parser'))
    UNION ALL
    SELECT 'text search template', t.tmplname, t.oid FROM pg_catalog.pg_ts_template t
     WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_ts_template'))
    UNION ALL
    SELECT 'index whose definition cannot be rebuilt', c.relname, c.oid
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
       AND NOT pg_catalog.starts_with(pg_catalog.pg_get_indexdef(i.indexrelid),
               pg_catalog.format('CREATE %sINDEX %I ON %I.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                                 c.relname, $1::text, (SELECT t.relname FROM pg_catalog.pg_class t WHERE t.oid = i.indrelid)))
    UNION ALL
    SELECT 'trigger whose definition cannot be rebuilt', g.tgname, g.oid
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND NOT g.tgisinternal AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_')
       AND pg_catalog.strpos(pg_catalog.pg_get_triggerdef(g.oid), pg_catalog.format(' ON %I.%I ', $1::text, c.relname)) = 0
    UNION ALL
    SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                          ELSE 'partitioned index' END, c.relname::text, c.oid
      FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('p', 'f', 'I')
    UNION ALL
    SELECT 'table with inheritance', c.relname, c.oid FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
    UNION ALL
    SELECT 'typed table', c.relname, c.oid FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.reloftype <> 0
    UNION ALL
    SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' ELSE 'window function' END, p.proname, p.oid
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.prokind IN ('a', 'w')
    UNION ALL
    SELECT 'function naming the template schema in its body', p.proname, p.oid
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.prosqlbody IS NULL
       AND pg_catalog.strpos(pg_catalog.lower(p.prosrc), pg_catalog.lower($1::text) || '.') > 0
    UNION ALL
    SELECT CASE t.typtype WHEN 'r' THEN 'range type' WHEN 'm' THEN 'multirange type' ELSE 'base type' END,
           t.typname, t.oid
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type')) AND t.typtype IN ('r', 'm', 'b')
       AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
    UNION ALL
    SELECT 'operator', o.oprname, o.oid FROM pg_catalog.pg_operator o WHERE o.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_operator'))
    UNION ALL
    SELECT 'collation', c.collname, c.oid FROM pg_catalog.pg_collation c WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_collation'))
    UNION ALL
    SELECT 'statistics object', s.stxname, s.oid FROM pg_catalog.pg_statistic_ext s
     WHERE s.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_statistic_ext'))
    UNION ALL
    SELECT 'rule', r.rulename, r.oid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'text search configuration', t.cfgname, t.oid FROM pg_catalog.pg_ts_config t
     WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_ts_config'))
) unsupported ORDER BY oid
"#;

/// The generators, in the order their statements must run. Each query takes
/// the schema to read ($1), the role that stands for the tenant's role in
/// it ($2) and whether keys belong in CREATE TABLE ($3), and returns one statement per row: text, or a jsonb array of
/// parts where {"slot": ...} marks the copy's own schema or role.
pub const GENERATORS: &[(&str, &str)] = &[
    ("types", TYPES),
    ("sequences", SEQUENCES),
    ("functions", FUNCTIONS),
    ("tables", TABLES),
    ("sequence ownership", SEQUENCE_OWNERSHIP),
    ("functions after tables", FUNCTIONS_AFTER_TABLES),
    ("views", VIEWS),
    ("unvalidated checks", KEYS_AND_CHECKS),
    ("indexes", INDEXES),
    ("remaining foreign keys", FOREIGN_KEYS),
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
        tenant.deparse_in($1::text, 'type', t.typbasetype, NULL, t.typtypmod),
        CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM
                  (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)
             THEN ' COLLATE ' || tenant.deparse_in($1::text, 'collation', t.typcollation) ELSE '' END,
        CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || tenant.deparse_in($1::text, 'expression', 0, t.typdefaultbin::text) ELSE '' END,
        CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END,
        (SELECT pg_catalog.string_agg(pg_catalog.format(' CONSTRAINT %I %s', c.conname, tenant.deparse_in($1::text, 'constraint', c.oid)), '' ORDER BY c.oid)
           FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid))
    ELSE pg_catalog.format('CREATE TYPE %I AS (%s)', t.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, tenant.deparse_in($1::text, 'type', a.atttypid, NULL, a.atttypmod)), ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    END
  FROM pg_catalog.pg_type t
 WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type'))
   AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
 ORDER BY t.oid
"#;

const SEQUENCES: &str = r#"
SELECT pg_catalog.format('CREATE %sSEQUENCE %I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
       CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, c.relname, pg_catalog.format_type(s.seqtypid, NULL),
       s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
 WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'i')
 ORDER BY c.oid
"#;

const FUNCTIONS: &str = r#"
SELECT tenant.function_statement(p.oid, $1::text)
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.prokind IN ('f', 'p')
   AND NOT tenant.function_needs_tables(p.oid)
 ORDER BY p.oid
"#;

const TABLES: &str = r#"
SELECT pg_catalog.format('CREATE %sTABLE %I (%s)%s',
       CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, c.relname,
       (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, tenant.deparse_in($1::text, 'type', a.atttypid, NULL, a.atttypmod))
                   || CASE WHEN a.attcollation <> 0 AND a.attcollation IS DISTINCT FROM
                                (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)
                           THEN ' COLLATE ' || tenant.deparse_in($1::text, 'collation', a.attcollation) ELSE '' END
                   || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || tenant.deparse_in($1::text, 'expression', c.oid, ad.adbin::text) || ') STORED'
                           WHEN a.attidentity IN ('a', 'd') THEN
                                CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' ELSE ' GENERATED BY DEFAULT AS IDENTITY' END
                                || (SELECT pg_catalog.format(' (INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s)',
                                           s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,
                                           CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
                                      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid
                                     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid
                                       AND d.refobjsubid = a.attnum AND d.deptype = 'i' AND d.classid = 'pg_catalog.pg_class'::regclass)
                           WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || tenant.deparse_in($1::text, 'expression', c.oid, ad.adbin::text)
                           ELSE '' END
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
       || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format(', CONSTRAINT %I %s', k.conname, tenant.deparse_in($1::text, 'constraint', k.oid)),
                                                 '' ORDER BY k.contype <> 'p', k.oid)
                      FROM pg_catalog.pg_constraint k
                     WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'x') AND k.convalidated
                       AND (k.contype = 'c' OR $3::boolean)), '')
       -- Foreign keys to tables that already exist when this one is created.
       || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format(', CONSTRAINT %I %s', k.conname, tenant.deparse_in($1::text, 'constraint', k.oid)),
                                                 '' ORDER BY k.oid)
                      FROM pg_catalog.pg_constraint k
                     WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.convalidated AND k.confrelid <= c.oid
                       AND $3::boolean), ''),
       CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END)
  FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind = 'r'
 ORDER BY c.oid
"#;

const SEQUENCE_OWNERSHIP: &str = r#"
SELECT pg_catalog.format('ALTER SEQUENCE %I OWNED BY %I.%I', s.relname, t.relname, a.attname)
  FROM pg_catalog.pg_class s
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a'
                              AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE s.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND s.relkind = 'S'
 ORDER BY s.oid
"#;

/// SQL-standard bodies are parsed on creation, and row types of tables exist
/// only once the tables do: those functions come after the tables.
const FUNCTIONS_AFTER_TABLES: &str = r#"
SELECT tenant.function_statement(p.oid, $1::text)
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.prokind IN ('f', 'p')
   AND tenant.function_needs_tables(p.oid)
 ORDER BY p.oid
"#;

const VIEWS: &str = r#"
SELECT CASE c.relkind
       WHEN 'v' THEN pg_catalog.format('CREATE VIEW %I%s AS %s', c.relname,
            CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
            pg_catalog.rtrim(tenant.deparse_in($1::text, 'view', c.oid), ';'))
       ELSE pg_catalog.format('CREATE MATERIALIZED VIEW %I AS %s WITH %sDATA', c.relname,
            pg_catalog.rtrim(tenant.deparse_in($1::text, 'view', c.oid), ';'), CASE WHEN c.relispopulated THEN '' ELSE 'NO ' END) END
  FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('v', 'm')
 ORDER BY c.oid
"#;

/// Keys and checks are part of CREATE TABLE; only checks added NOT VALID come
/// after, and keys too when the tables are to be loaded first ($3 false).
const KEYS_AND_CHECKS: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid))
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
   AND c.contype IN ('p', 'u', 'c', 'x') AND (NOT c.convalidated OR (c.contype <> 'c' AND NOT $3::boolean))
 ORDER BY c.contype <> 'p', c.oid
"#;

/// pg_get_indexdef always qualifies the table: its fixed prefix is rebuilt.
const INDEXES: &str = r#"
SELECT pg_catalog.format('CREATE %sINDEX %I ON %I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, c.relname, t.relname)
       || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid,
  LATERAL (SELECT tenant.deparse_in($1::text, 'index', i.indexrelid) AS def,
                  pg_catalog.format('CREATE %sINDEX %I ON %I.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                                    c.relname, $1::text, t.relname) AS prefix) d
 WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
   AND pg_catalog.starts_with(d.def, d.prefix)
 ORDER BY i.indexrelid
"#;

const FOREIGN_KEYS: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, tenant.deparse_in($1::text, 'constraint', c.oid))
  FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
 WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.contype = 'f'
   AND NOT (c.convalidated AND c.confrelid <= t.oid AND $3::boolean)
 ORDER BY c.oid
"#;

const TRIGGERS: &str = r#"
SELECT statement FROM (
    -- pg_get_triggerdef always qualifies the table after ON: that one token is rebuilt.
    SELECT g.oid, 0 AS step,
           overlay(d.def PLACING pg_catalog.format(' ON %I ', c.relname)
                              FROM pg_catalog.strpos(d.def, d.token) FOR pg_catalog.length(d.token)) AS statement
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid,
      LATERAL (SELECT tenant.deparse_in($1::text, 'trigger', g.oid) AS def,
                      pg_catalog.format(' ON %I.%I ', $1::text, c.relname) AS token) d
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND NOT g.tgisinternal AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_') AND pg_catalog.strpos(d.def, d.token) > 0
    UNION ALL
    SELECT g.oid, 1, pg_catalog.format('ALTER TABLE %I %s TRIGGER %I', c.relname,
           CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, g.tgname)
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND NOT g.tgisinternal AND NOT pg_catalog.starts_with(g.tgname::text, 'tc_') AND g.tgenabled <> 'O'
) t ORDER BY t.oid, t.step
"#;

const ROW_LEVEL_SECURITY: &str = r#"
SELECT pg_catalog.format('ALTER TABLE %I %s ROW LEVEL SECURITY', c.relname, mode)
  FROM pg_catalog.pg_class c,
       LATERAL (VALUES (1, 'ENABLE', c.relrowsecurity), (2, 'FORCE', c.relforcerowsecurity)) AS m(step, mode, wanted)
 WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind = 'r' AND m.wanted
 ORDER BY c.oid, m.step
"#;

const POLICIES: &str = r#"
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('CREATE POLICY %I ON %I AS %s FOR %s TO %s', p.polname, c.relname,
           CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
           roles.named || CASE WHEN roles.named <> '' AND roles.tenant THEN ', ' ELSE '' END))
       || CASE WHEN roles.tenant THEN '[{"slot": "role"}]'::jsonb ELSE '[]'::jsonb END
       || pg_catalog.jsonb_build_array(
              CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || tenant.deparse_in($1::text, 'expression', p.polrelid, p.polqual::text) || ')' ELSE '' END
              || CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || tenant.deparse_in($1::text, 'expression', p.polrelid, p.polwithcheck::text) || ')' ELSE '' END)
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid,
  LATERAL (SELECT COALESCE(pg_catalog.string_agg(CASE WHEN pr.oid = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
                               FILTER (WHERE pr.oid <> $2::regrole), '') AS named,
                  pg_catalog.bool_or(pr.oid = $2::regrole) AS tenant
             FROM pg_catalog.unnest(p.polroles) AS pr(oid) LEFT JOIN pg_catalog.pg_roles r ON r.oid = pr.oid) roles
 WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
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
     WHERE d.classoid = 'pg_catalog.pg_class'::regclass
       AND (c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
            OR c.oid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i
                          WHERE i.indrelid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))))
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
           p.proname, tenant.deparse_in($1::text, 'identity arguments', p.oid))
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_proc p ON p.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_proc'::regclass AND p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc'))
    UNION ALL
    SELECT d.description, t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON t.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_type'::regclass AND t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type'))
    UNION ALL
    SELECT d.description, k.oid, pg_catalog.format('CONSTRAINT %I ON %I', k.conname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
     WHERE d.classoid = 'pg_catalog.pg_constraint'::regclass AND c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
    UNION ALL
    SELECT d.description, g.oid, pg_catalog.format('TRIGGER %I ON %I', g.tgname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_trigger g ON g.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE d.classoid = 'pg_catalog.pg_trigger'::regclass AND c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
    UNION ALL
    SELECT d.description, p.oid, pg_catalog.format('POLICY %I ON %I', p.polname, c.relname)
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_policy p ON p.oid = d.objoid
      JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
     WHERE d.classoid = 'pg_catalog.pg_policy'::regclass AND c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
) d ORDER BY d.oid
"#;

const OWNERSHIP: &str = r#"
SELECT pg_catalog.jsonb_build_array(pg_catalog.format('ALTER %s OWNER TO ', target), '{"slot": "role"}'::jsonb) FROM (
    SELECT c.oid, pg_catalog.format('%s %I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                             WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname) AS target, c.relowner AS owner
      FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('r', 'v', 'm', 'S')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT p.oid, pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
           tenant.deparse_in($1::text, 'identity arguments', p.oid)), p.proowner
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc'))
    UNION ALL
    SELECT t.oid, pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname), t.typowner
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type')) AND t.typtype IN ('e', 'd', 'c')
       AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
) o WHERE o.owner = $2::regrole ORDER BY o.oid
"#;

const GRANTS: &str = r#"
WITH acl AS (
    SELECT c.oid, 0 AS step, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, pg_catalog.quote_ident(c.relname) AS name,
           x.privilege_type AS privilege, x.grantee, x.is_grantable AS grantable, x.grantee = c.relowner AS own
      FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) x
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('r', 'v', 'm', 'S')
    UNION ALL
    SELECT c.oid, 1, 'TABLE', pg_catalog.quote_ident(c.relname), pg_catalog.format('%s (%I)', x.privilege_type, a.attname),
           x.grantee, x.is_grantable, false
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL,
           LATERAL pg_catalog.aclexplode(a.attacl) x
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class'))
    UNION ALL
    SELECT p.oid, s.step, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
           pg_catalog.format('%I(%s)', p.proname, tenant.deparse_in($1::text, 'identity arguments', p.oid)),
           s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = p.proowner
                      FROM pg_catalog.aclexplode(p.proacl) x) s
     WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')) AND p.proacl IS NOT NULL
    UNION ALL
    SELECT t.oid, s.step, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.quote_ident(t.typname),
           s.privilege, s.grantee, s.grantable, s.own
      FROM pg_catalog.pg_type t,
           LATERAL (SELECT 0 AS step, NULL::text AS privilege, NULL::oid AS grantee, false AS grantable, false AS own
                    UNION ALL
                    SELECT 1, x.privilege_type, x.grantee, x.is_grantable, x.grantee = t.typowner
                      FROM pg_catalog.aclexplode(t.typacl) x) s
     WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type')) AND t.typacl IS NOT NULL AND t.typtype IN ('e', 'd', 'c')
), per_object AS (
    SELECT pg_catalog.min(acl.oid) AS oid, acl.step, acl.kind, acl.name, acl.grantee, acl.grantable,
           pg_catalog.string_agg(acl.privilege, ', ' ORDER BY acl.privilege) AS privileges
      FROM acl WHERE NOT acl.own
     GROUP BY acl.step, acl.kind, acl.name, acl.grantee, acl.grantable
)
-- One statement for all objects of a kind that grant the same privileges to the same role.
SELECT CASE WHEN o.grantee IS NULL
            THEN pg_catalog.jsonb_build_array(pg_catalog.format('REVOKE ALL ON %s %s FROM PUBLIC', o.kind,
                                                                pg_catalog.string_agg(o.name, ', ' ORDER BY o.name)))
            ELSE pg_catalog.jsonb_build_array(pg_catalog.format('GRANT %s ON %s %s TO ', o.privileges, o.kind,
                                                                pg_catalog.string_agg(o.name, ', ' ORDER BY o.name)),
                     CASE WHEN o.grantee = 0 THEN pg_catalog.to_jsonb('PUBLIC'::text)
                          WHEN o.grantee = $2::regrole THEN '{"slot": "role"}'::jsonb
                          ELSE pg_catalog.to_jsonb(pg_catalog.quote_ident(o.grantee::regrole::text)) END,
                     CASE WHEN o.grantable THEN ' WITH GRANT OPTION' ELSE '' END) END
  FROM per_object o
 GROUP BY o.step, o.kind, o.privileges, o.grantee, o.grantable
 ORDER BY o.step, pg_catalog.min(o.oid)
"#;

/// Objects of the copy that still depend on an object of the template.
const DEPENDS_ON_TEMPLATE: &str = r#"
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) || ' depends on '
       || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
  FROM pg_catalog.pg_depend d
  JOIN (SELECT 'pg_catalog.pg_class'::regclass AS classid, c.oid FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))
        UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_proc'))
        UNION ALL SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_type'))
        UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid FROM pg_catalog.pg_rewrite r
                   JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))
        UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k
                   JOIN pg_catalog.pg_class c ON c.oid = k.conrelid WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))
        UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, a.oid FROM pg_catalog.pg_attrdef a
                   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))
        UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, g.oid FROM pg_catalog.pg_trigger g
                   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))
        UNION ALL SELECT 'pg_catalog.pg_policy'::regclass, p.oid FROM pg_catalog.pg_policy p
                   JOIN pg_catalog.pg_class c ON c.oid = p.polrelid WHERE c.oid IN (SELECT tenant.schema_objects($2::text, 'pg_catalog.pg_class'))) mine
    ON mine.classid = d.classid AND mine.oid = d.objid
 WHERE (d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = $1::regnamespace)
    OR (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')))
    OR (d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc')))
    OR (d.refclassid = 'pg_catalog.pg_type'::regclass AND d.refobjid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type')))
 LIMIT 1
"#;

/// What a copy of the template cost, as the operation log records it.
#[derive(serde::Serialize)]
pub struct CopyStats {
    pub statements: usize,
    pub generated: bool,
    pub prepare_ms: f64,
    pub execute_ms: f64,
    pub verify_ms: f64,
}

pub struct Copied {
    pub statements: usize,
    /// Tables in the copy, and the template version copied.
    pub tables: i32,
    pub version: i32,
    /// Whether the DDL was generated for this copy (rather than reused).
    pub generated: bool,
    /// Milliseconds spent generating (or fetching) the DDL, running it, and verifying the copy.
    pub timings: [f64; 3],
}

impl Copied {
    pub fn stats(&self) -> CopyStats {
        let [prepare_ms, execute_ms, verify_ms] = self.timings;
        CopyStats { statements: self.statements, generated: self.generated, prepare_ms, execute_ms, verify_ms }
    }
}

/// A piece of a generated statement: text, or the place of the copy's own
/// schema or role, filled in when the statement is run for a copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Schema,
    Role,
}

pub type Statement = Vec<Part>;

pub fn parts_of(value: serde_json::Value) -> TcResult<Statement> {
    let malformed = |v: &serde_json::Value| {
        TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("malformed statement part from a generator: {v}"))
    };
    let part = |v: serde_json::Value| match &v {
        serde_json::Value::String(text) => Ok(Part::Text(text.clone())),
        serde_json::Value::Object(slot) => match slot.get("slot").and_then(|s| s.as_str()) {
            Some("schema") => Ok(Part::Schema),
            Some("role") => Ok(Part::Role),
            _ => Err(malformed(&v)),
        },
        _ => Err(malformed(&v)),
    };
    match value {
        serde_json::Value::Array(items) => items.into_iter().map(part).collect(),
        other => Ok(vec![part(other)?]),
    }
}

/// A statement for one copy: slots get the copy's schema and role, quoted.
pub fn render(statement: &Statement, schema: &str, role: &str) -> String {
    statement
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Schema => quote_identifier(schema),
            Part::Role => quote_identifier(role),
        })
        .collect()
}

/// Run the generators against a schema (the template, or a copy when tests
/// compare the two). Each returns one statement per row, as text or as a
/// jsonb array of parts.
pub fn generate(schema: &str, schema_role: &str) -> TcResult<Vec<(&'static str, Statement)>> {
    generate_with(GENERATORS, schema, schema_role, true)
}

/// The DDL of a schema for a copy that loads data between its statements:
/// every statement with the kind of its generator, keys not inlined into
/// CREATE TABLE (copy.rs decides what runs before and after the load).
pub fn generate_for_load(schema: &str, schema_role: &str) -> TcResult<Vec<(&'static str, Statement)>> {
    generate_with(GENERATORS, schema, schema_role, false)
}

fn generate_with(
    generators: &[(&'static str, &str)],
    schema: &str,
    schema_role: &str,
    inline_keys: bool,
) -> TcResult<Vec<(&'static str, Statement)>> {
    catalog_read(|| {
        let mut script = Vec::new();
        for (kind, generator) in generators {
            let rows = db::rows(generator, &[schema.into(), schema_role.into(), inline_keys.into()], |row| {
                let value = if row.get_datum_by_ordinal(1)?.oid() == pg_sys::JSONBOID {
                    row.get::<pgrx::JsonB>(1)?.map(|j| j.0)
                } else {
                    row.get::<String>(1)?.map(serde_json::Value::String)
                };
                parts_of(value.unwrap_or(serde_json::Value::Null))
            })?;
            script.extend(rows.into_iter().map(|statement| (*kind, statement)));
        }
        Ok(script)
    })
}

/// The DDL generated from the template, kept for as long as the template
/// does not change (tenant.template_changes says when it does).
#[derive(Clone)]
struct Cached {
    database: pg_sys::Oid,
    change: i64,
    script: Vec<Statement>,
    tables: i32,
    version: i32,
}

thread_local! {
    static CACHE: std::cell::RefCell<Option<Cached>> = const { std::cell::RefCell::new(None) };
}

/// The last recorded change of the template (DDL on it, or a GRANT or
/// REVOKE that changed its privileges): the cached DDL is good until then.
fn last_change() -> TcResult<i64> {
    db::scalar("SELECT max(id) FROM tenant.template_changes", &[])
}

/// Record a change of the template made by the extension itself (a migration).
pub fn note_change(command: &str) -> TcResult<()> {
    db::run(
        "INSERT INTO tenant.template_changes (command_tag, privileges) VALUES ($1, tenant.template_privileges())",
        &[command.into()],
    )
}

/// Fill the new schema `target` with a copy of the template. `prelude` is DDL
/// that creates the schema and its role: it runs in the same batch.
pub fn copy_into(target: &TenantName, role: &RoleName, prelude: &[String]) -> TcResult<Copied> {
    let mut clock = Stopwatch::start();
    let change = last_change()?;
    let database = unsafe { pg_sys::MyDatabaseId };
    let cached =
        CACHE.with(|cache| cache.borrow().as_ref().filter(|c| c.database == database && c.change == change).cloned());
    let generated = cached.is_none();
    let Cached { script, tables, version, .. } = match cached {
        Some(cached) => cached,
        None => {
            refuse_unsupported()?;
            let generated = generate(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?;
            let tables = generated.iter().filter(|(kind, _)| *kind == "tables").count() as i32;
            let script = generated.into_iter().map(|(_, statement)| statement).collect();
            Cached { database, change, script, tables, version: version()? }
        }
    };
    let prepared = clock.lap();

    // One batch: the statements are planned one by one all the same, without
    // a round through SPI for each. Functions may name tables created after them.
    let batch = prelude
        .iter()
        .cloned()
        .chain(script.iter().map(|s| render(s, target.as_str(), role.as_str())))
        .collect::<Vec<_>>()
        .join(";\n");
    db::with_settings(&[("search_path", &target.quoted()), ("check_function_bodies", "off")], || {
        db::run_explained(&batch, "while creating the schema from the template")
    })?;
    let executed = clock.lap();

    // A freshly generated script is proved on its first copy; later copies
    // run the very same statements.
    if generated {
        verify_independent(target)?;
        let cached = Cached { database, change, script: script.clone(), tables, version };
        CACHE.with(|cache| *cache.borrow_mut() = Some(cached));
    }
    Ok(Copied { statements: script.len(), tables, version, generated, timings: [prepared, executed, clock.lap()] })
}

/// Where `per_template` keeps a value: the database and the template change
/// it was computed for, and the value.
pub type TemplateCell<T> = std::cell::RefCell<Option<(pg_sys::Oid, i64, T)>>;

/// Something derived from the template alone, kept in this backend (in
/// `cell`) for as long as the template does not change
/// (tenant.template_changes says when it does), like the copy's DDL: work
/// repeated for every tenant of a fleet (a migration) computes it once.
pub fn per_template<T: Clone>(
    cell: &'static std::thread::LocalKey<TemplateCell<T>>,
    compute: impl FnOnce() -> TcResult<T>,
) -> TcResult<T> {
    let change = last_change()?;
    let database = unsafe { pg_sys::MyDatabaseId };
    let kept = cell.with(|cell| {
        cell.borrow().as_ref().filter(|(db, at, _)| *db == database && *at == change).map(|(_, _, v)| v.clone())
    });
    if let Some(value) = kept {
        return Ok(value);
    }
    let value = compute()?;
    cell.with(|cell| *cell.borrow_mut() = Some((database, change, value.clone())));
    Ok(value)
}

/// The template's ownership and privileges as statements.
fn template_grants() -> TcResult<Vec<Statement>> {
    thread_local! {
        static KEPT: TemplateCell<Vec<Statement>> = const { std::cell::RefCell::new(None) };
    }
    per_template(&KEPT, || {
        let generated =
            generate_with(&[("ownership", OWNERSHIP), ("grants", GRANTS)], TEMPLATE_SCHEMA, TEMPLATE_ROLE, true)?;
        Ok(generated.into_iter().map(|(_, statement)| statement).collect())
    })
}

/// Give a schema the template's ownership and privileges again (after a
/// migration added objects to it). Granting what is already held is a no-op.
pub fn grant_like_template(schema: &TenantName, role: &RoleName) -> TcResult<()> {
    let statements = template_grants()?;
    if statements.is_empty() {
        return Ok(());
    }
    let batch = statements.iter().map(|s| render(s, schema.as_str(), role.as_str())).collect::<Vec<_>>();
    db::with_setting("search_path", &schema.quoted(), || {
        db::run_explained(&batch.join(";\n"), "while granting the template's privileges")
    })
}

fn refuse_unsupported() -> TcResult<()> {
    match unsupported_in(TEMPLATE_SCHEMA)? {
        None => Ok(()),
        Some(object) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("tenant_control cannot copy the template's {object} faithfully"),
        )
        .hint("Remove or replace it in the template; nothing was created.")),
    }
}

/// The first object of `schema` that a generated copy cannot reproduce, if any.
pub fn unsupported_in(schema: &str) -> TcResult<Option<String>> {
    catalog_read(|| db::value::<String>(UNSUPPORTED, &[schema.into()]))
}

fn verify_independent(target: &TenantName) -> TcResult<()> {
    match catalog_read(|| db::value::<String>(DEPENDS_ON_TEMPLATE, &[TEMPLATE_SCHEMA.into(), target.as_str().into()]))?
    {
        None => Ok(()),
        Some(dependency) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the copy of the template is not independent of it: {dependency}"),
        )
        .hint(
            "An object of the template refers to the template by a name that cannot be rebound; nothing was created.",
        )),
    }
}

struct Stopwatch(std::time::Instant);

impl Stopwatch {
    fn start() -> Self {
        Stopwatch(std::time::Instant::now())
    }

    /// Milliseconds since the last lap.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.0).as_secs_f64() * 1000.0;
        self.0 = now;
        (elapsed * 1000.0).round() / 1000.0
    }
}

/// The version the template is at: the newest registered migration.
pub fn version() -> TcResult<i32> {
    db::scalar("SELECT COALESCE(max(version), 0) FROM tenant.migrations", &[])
}
