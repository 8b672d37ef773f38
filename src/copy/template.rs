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

pub use crate::copy::catalog::{catalog_read, parts_json, parts_of, render, Part, Statement};
use crate::copy::order;
use crate::copy::statements::{self, Shared};
use crate::copy::structure::INDEX_PROBES;
use crate::core::db;
use crate::core::ddl_script;
use crate::core::errors::{TcError, TcResult};
use crate::core::name::{RoleName, TenantName};
use pgrx::prelude::*;
use std::rc::Rc;

pub const TEMPLATE_SCHEMA: &str = "tenant_template";
/// Privileges granted to, and objects owned by, this role in the template go
/// to the tenant's role in every copy.
pub const TEMPLATE_ROLE: &str = "tenant_template_owner";

/// Internal (declared in sql/bootstrap.sql): one deparsing function applied
/// with `schema_name` alone on the search_path, so that it prints the names
/// of that schema's objects unqualified; the search_path is back to the
/// caller's (CATALOG_PATH) as soon as it returns. It runs no SQL: nothing a
/// tenant wrote can resolve through that search_path.
/// `what`: view, expression (`expression` is a pg_node_tree as text, `object`
/// its relation or 0), constraint, index, trigger, type (`modifier` is the
/// typmod), collation, arguments, identity arguments, result, sql body,
/// partition key, rule, statistics.
#[pg_extern(sql = false)]
fn deparse_in(
    schema_name: Option<&str>,
    what: Option<&str>,
    object: Option<pg_sys::Oid>,
    expression: Option<&str>,
    modifier: Option<i32>,
) -> Option<String> {
    let (schema_name, what, object) = (schema_name?, what?, object?);
    let schema = std::ffi::CString::new(schema_name).ok()?;
    // SAFETY: an override search path, pushed here and popped on return (a
    // transaction's or subtransaction's abort pops it on an error). It is the
    // path `SET search_path = <schema>` gives: the session's temporary schema
    // and pg_catalog implicitly first, then the schema if it exists and the
    // current role may use it. An override rather than a SET: it parses no
    // setting and goes through no GUC machinery, and a schema's structure
    // read makes a hundred of these calls.
    let (found, usable) = unsafe {
        let found = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        let usable = found != pg_sys::InvalidOid
            && pg_sys::pg_namespace_aclcheck(found, pg_sys::GetUserId(), pg_sys::ACL_USAGE as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK;
        let mut path = pg_sys::OverrideSearchPath {
            schemas: if usable { pg_sys::lappend_oid(std::ptr::null_mut(), found) } else { std::ptr::null_mut() },
            addCatalog: true,
            addTemp: true,
            generation: 0,
        };
        pg_sys::PushOverrideSearchPath(&mut path);
        (found, usable)
    };
    let text = if what == "trigger" {
        crate::copy::trigger_text::definition(object, usable.then_some(found), || {
            deparse(what, object, expression, modifier)
        })
    } else {
        deparse(what, object, expression, modifier)
    };
    unsafe { pg_sys::PopOverrideSearchPath() };
    text
}

/// The name of an object as its reg* output function prints it: qualified
/// only when not visible on the search_path.
///
/// # Safety
/// `output` must be the output function of a reg* type, given an oid.
unsafe fn name(
    output: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
    oid: Option<pg_sys::Datum>,
) -> Option<String> {
    pgrx::direct_function_call::<&core::ffi::CStr>(output, &[oid]).map(|name| name.to_string_lossy().into_owned())
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
            "collation" => name(pg_sys::regcollationout, oid),
            "rule" => call::<String>(pg_sys::pg_get_ruledef, &[oid]),
            "statistics" => call::<String>(pg_sys::pg_get_statisticsobjdef, &[oid]),
            "arguments" => call::<String>(pg_sys::pg_get_function_arguments, &[oid]),
            "identity arguments" => call::<String>(pg_sys::pg_get_function_identity_arguments, &[oid]),
            "result" => call::<String>(pg_sys::pg_get_function_result, &[oid]),
            "sql body" => call::<String>(pg_sys::pg_get_function_sqlbody, &[oid]),
            "partition key" => call::<String>(pg_sys::pg_get_partkeydef, &[oid]),
            other => pgrx::error!("tenant.deparse_in: unknown kind \"{other}\""),
        }
    }
}

/// Object kinds a copy cannot reproduce faithfully, refused before anything is created.
const UNSUPPORTED: &str = include_str!("../../sql/queries/generate_unsupported.sql");

/// The generators. Each query takes the schema to read ($1), the role that
/// stands for the tenant's role in it ($2) and whether keys belong in CREATE
/// TABLE ($3), and returns one statement per row: text, or a jsonb array of
/// parts where {"slot": ...} marks the copy's own schema or role. A second
/// column, when there is one, names the object the statement creates (its
/// unit): those statements run in dependency order (`order::sort`), the others
/// (statements on objects that exist) after them, in this order.
pub const GENERATORS: &[(&str, &str)] = &[
    ("collations", COLLATIONS),
    ("text search", TEXT_SEARCH),
    ("types", TYPES),
    ("range types", RANGE_TYPES),
    ("domain constraints", DOMAIN_CONSTRAINTS),
    ("sequences", SEQUENCES),
    ("functions", FUNCTIONS),
    ("aggregates", AGGREGATES),
    ("tables", TABLES),
    ("defaults", DEFAULTS),
    ("checks", CHECKS),
    ("sequence ownership", SEQUENCE_OWNERSHIP),
    ("partitions", PARTITIONS),
    ("views", VIEWS),
    ("unvalidated checks", KEYS_AND_CHECKS),
    ("indexes", INDEXES),
    ("index partitions", INDEX_PARTITIONS),
    ("properties", PROPERTIES),
    ("remaining foreign keys", FOREIGN_KEYS),
    ("statistics", STATISTICS),
    ("rules", RULES),
    ("triggers", TRIGGERS),
    ("row-level security", ROW_LEVEL_SECURITY),
    ("policies", POLICIES),
    ("comments", COMMENTS),
    ("comments on types' parts", TYPE_PART_COMMENTS),
    ("ownership", OWNERSHIP),
    ("grants", GRANTS),
    ("owner privileges", OWNER_PRIVILEGES),
];

const PROPERTIES: &str = include_str!("../../sql/queries/template_properties.sql");
const TYPE_PART_COMMENTS: &str = include_str!("../../sql/queries/template_type_comments.sql");
const OWNER_PRIVILEGES: &str = include_str!("../../sql/queries/template_owner_privileges.sql");

const TYPES: &str = include_str!("../../sql/queries/generate_types.sql");

const DOMAIN_CONSTRAINTS: &str = include_str!("../../sql/queries/generate_domain_constraints.sql");

const COLLATIONS: &str = include_str!("../../sql/queries/generate_collations.sql");

const TEXT_SEARCH: &str = include_str!("../../sql/queries/generate_text_search.sql");

const RANGE_TYPES: &str = include_str!("../../sql/queries/generate_range_types.sql");

const AGGREGATES: &str = include_str!("../../sql/queries/generate_aggregates.sql");

const STATISTICS: &str = include_str!("../../sql/queries/generate_statistics.sql");

const RULES: &str = include_str!("../../sql/queries/generate_rules.sql");

const PARTITIONS: &str = include_str!("../../sql/queries/generate_partitions.sql");

const INDEX_PARTITIONS: &str = include_str!("../../sql/queries/generate_index_partitions.sql");

const DEFAULTS: &str = include_str!("../../sql/queries/generate_defaults.sql");

const CHECKS: &str = include_str!("../../sql/queries/generate_checks.sql");

const SEQUENCES: &str = include_str!("../../sql/queries/generate_sequences.sql");

const FUNCTIONS: &str = include_str!("../../sql/queries/generate_functions.sql");

const TABLES: &str = include_str!("../../sql/queries/generate_tables.sql");

const SEQUENCE_OWNERSHIP: &str = include_str!("../../sql/queries/generate_sequence_ownership.sql");

const VIEWS: &str = include_str!("../../sql/queries/generate_views.sql");

/// Keys and checks are part of CREATE TABLE; only checks added NOT VALID come
/// after, and keys too when the tables are to be loaded first ($3 false).
const KEYS_AND_CHECKS: &str = include_str!("../../sql/queries/generate_keys_and_checks.sql");

/// pg_get_indexdef always qualifies the table: its fixed prefix is rebuilt.
const INDEXES: &str = include_str!("../../sql/queries/generate_indexes.sql");

const FOREIGN_KEYS: &str = include_str!("../../sql/queries/generate_foreign_keys.sql");

const TRIGGERS: &str = include_str!("../../sql/queries/generate_triggers.sql");

const ROW_LEVEL_SECURITY: &str = include_str!("../../sql/queries/generate_row_level_security.sql");

const POLICIES: &str = include_str!("../../sql/queries/generate_policies.sql");

const COMMENTS: &str = include_str!("../../sql/queries/generate_comments.sql");

const OWNERSHIP: &str = include_str!("../../sql/queries/generate_ownership.sql");

const GRANTS: &str = include_str!("../../sql/queries/generate_grants.sql");

/// Objects of the copy that still depend on an object of the template.
const DEPENDS_ON_TEMPLATE: &str = include_str!("../../sql/queries/generate_depends_on_template.sql");

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
    // Hash and merge joins off: every lookup starts from the schema's own
    // objects and probes a catalog index (see structure::INDEX_PROBES).
    catalog_read(|| {
        db::with_settings(&INDEX_PROBES[..3], || {
            let mut script = Vec::new();
            for (kind, generator) in generators {
                let rows = db::rows(generator, &[schema.into(), schema_role.into(), inline_keys.into()], |row| {
                    let value = if row.get_datum_by_ordinal(1)?.oid() == pg_sys::JSONBOID {
                        row.get::<pgrx::JsonB>(1)?.map(|j| j.0)
                    } else {
                        row.get::<String>(1)?.map(serde_json::Value::String)
                    };
                    let unit = if row.columns() > 1 { row.get::<String>(2)? } else { None };
                    Ok(((*kind, parts_of(value.unwrap_or(serde_json::Value::Null))?), unit))
                })?;
                script.extend(rows);
            }
            if script.iter().all(|(_, unit)| unit.is_none()) {
                return Ok(script.into_iter().map(|(statement, _)| statement).collect());
            }
            Ok(order::sort(script, &order::Dependencies::of(schema, inline_keys)?, or_replace))
        })
    })
}

/// A function's statement as CREATE OR REPLACE: it then replaces its
/// placeholder (generate_functions.sql, kept by order.rs to break a cycle).
fn or_replace((kind, mut statement): (&'static str, Statement)) -> (&'static str, Statement) {
    if let Some(Part::Text(head)) = statement.first_mut() {
        if let Some(rest) = head.strip_prefix("CREATE FUNCTION ") {
            *head = format!("CREATE OR REPLACE FUNCTION {rest}");
        }
    }
    (kind, statement)
}

/// Statements that create functions one at a time (an integrity repair of a
/// missing function): a function a copy creates with a placeholder first
/// (on a dependency cycle) is given by its real statement alone, as CREATE.
pub fn without_placeholders(statements: Vec<Statement>) -> Vec<Statement> {
    const REAL: &str = "CREATE OR REPLACE FUNCTION ";
    // "name(arguments)": the same in a placeholder and in its real statement.
    let signature = |head: &str| head.split(" RETURNS ").next().unwrap_or_default().to_string();
    let first = |statement: &Statement| match statement.first() {
        Some(Part::Text(head)) => head.clone(),
        _ => String::new(),
    };
    let replaced: Vec<String> = statements.iter().filter_map(|s| first(s).strip_prefix(REAL).map(signature)).collect();
    statements
        .into_iter()
        .filter(|s| first(s).strip_prefix("CREATE FUNCTION ").is_none_or(|head| !replaced.contains(&signature(head))))
        .map(|mut statement| {
            if let Some(Part::Text(head)) = statement.first_mut() {
                if let Some(rest) = head.strip_prefix(REAL) {
                    *head = format!("CREATE FUNCTION {rest}");
                }
            }
            statement
        })
        .collect()
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
    // Statements another connection generated are reused (statements.rs).
    let (shared, generated) = match statements::lookup()? {
        Ok(shared) => (shared, false),
        Err(change) => {
            refuse_unsupported()?;
            let generated = generate(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?;
            let tables = generated.iter().filter(|(kind, _)| *kind == "tables").count() as i32;
            let script = generated.into_iter().map(|(_, statement)| statement).collect();
            let names = statements::names_outside(TEMPLATE_SCHEMA)?;
            (Rc::new(Shared { change, names, script, tables, version: version()? }), true)
        }
    };
    let prepared = clock.lap();

    // One batch: the statements are planned one by one all the same, without
    // a round through SPI for each. Functions may name tables created after them.
    let batch = prelude
        .iter()
        .cloned()
        .chain(shared.script.iter().map(|s| render(s, target.as_str(), role.as_str())))
        .collect::<Vec<_>>()
        .join(";\n");
    db::with_settings(&[("search_path", &target.quoted()), ("check_function_bodies", "off")], || {
        ddl_script::run(&batch, "while creating the schema from the template")
    })?;
    let executed = clock.lap();

    // A freshly generated script is proved on its first copy; later copies,
    // in any connection, run the very same statements.
    let Shared { tables, version, .. } = *shared;
    let statements = shared.script.len();
    if generated {
        verify_independent(target)?;
        statements::keep(shared)?;
    }
    Ok(Copied { statements, tables, version, generated, timings: [prepared, executed, clock.lap()] })
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
    let change = statements::last_change()?;
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

/// The generators of the template's ownership and privileges, the
/// privileges its owner role revoked from itself included (what a copy gets).
const TEMPLATE_PRIVILEGES: [(&str, &str); 3] =
    [("ownership", OWNERSHIP), ("grants", GRANTS), ("owner privileges", OWNER_PRIVILEGES)];

/// The template's ownership and privileges as statements.
fn template_grants() -> TcResult<Vec<Statement>> {
    thread_local! {
        static KEPT: TemplateCell<Vec<Statement>> = const { std::cell::RefCell::new(None) };
    }
    per_template(&KEPT, || {
        let generated = generate_with(&TEMPLATE_PRIVILEGES, TEMPLATE_SCHEMA, TEMPLATE_ROLE, true)?;
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
        ddl_script::run(&batch.join(";\n"), "while granting the template's privileges")
    })
}

fn refuse_unsupported() -> TcResult<()> {
    refuse_unsupported_in(TEMPLATE_SCHEMA, "the template's", "nothing was created")
}

/// Refuse with 0A000 if `schema` holds an object a copy cannot reproduce:
/// the message names it (`whose` says whose it is), the hint says what to do.
pub fn refuse_unsupported_in(schema: &str, whose: &str, outcome: &str) -> TcResult<()> {
    match unsupported_in(schema)? {
        None => Ok(()),
        Some((object, hint)) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("tenant_control cannot copy {whose} {object} faithfully"),
        )
        .hint(format!("{} ({outcome}).", hint.as_deref().unwrap_or("Remove or replace it").trim_end_matches('.')))),
    }
}

/// The first object of `schema` that a generated copy cannot reproduce, if
/// any, with a hint saying what to do instead.
pub fn unsupported_in(schema: &str) -> TcResult<Option<(String, Option<String>)>> {
    let found = catalog_read(|| {
        db::with_settings(&INDEX_PROBES[..3], || {
            db::rows(UNSUPPORTED, &[schema.into()], |row| {
                Ok((db::col::<String>(row, "object")?.unwrap_or_default(), db::col::<String>(row, "hint")?))
            })
        })
    })?;
    Ok(found.into_iter().next())
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
