//! Migrations that run no code at all: scripts made only of
//! `ALTER TABLE t ADD COLUMN c <type> [NULL | NOT NULL] [DEFAULT <constant>]`
//! run in a tenant as the extension's owner, without lending it anything.
//!
//! A script runs as the tenant's role because code the tenant wrote may run
//! while it does (see migrate.rs). Lending that role the altered table, and
//! checking afterwards what its code could have done with it, costs tens of
//! times the `ALTER` itself. Adding such a column evaluates nothing the
//! tenant could have written, checked here on PostgreSQL's own parse of the
//! scripts and with the very name look-ups the statements then make (the
//! same search_path, in the same transaction):
//! - the table is resolved by name to an ordinary table of the tenant's
//!   schema (not one of pg_catalog or of the session's temporary schema),
//!   with no inheritance children or partitions (ADD COLUMN would recurse
//!   into tables the tenant's role may not own);
//! - the column's type resolves to a base type of pg_catalog (its input,
//!   output and typmod functions and the casts between such types are
//!   built in or installed by a superuser: a tenant can create none of
//!   them), without a COLLATE clause (a tenant may create collations),
//!   `%TYPE`, identity, generated expression or constraint other than
//!   NULL / NOT NULL;
//! - a default is a literal constant: coercing it to a pg_catalog type calls
//!   a built-in input function or cast, and a constant default is stored as
//!   the column's missing value without rewriting the table;
//! - ADD COLUMN fires no trigger or rule, builds no index and evaluates no
//!   constraint or policy; event triggers are a superuser's (the
//!   extension's own let its work through, as for its other DDL).
//!
//! Registering such a script runs it in the template the same way (the
//! template's tables are the platform's, and no tenant code lives there):
//! lending a table to tenant_template_owner and giving it back folds that
//! role's grants into the owner's entry of the table's ACL, and the
//! template's privileges would then differ from the tenants' that were
//! migrated without lending.
//!
//! Such a script creates no object in the schema: the template's grants and
//! the rebinding are skipped too. It changes no relation's size unless a
//! table without a TOAST table gets a column that needs one (PostgreSQL
//! then creates it): only then are the sizes compared for a recount. A tenant near or over its quota goes the general way, so
//! that the quota guard sees the statements as before.

use crate::copy::template::TEMPLATE_SCHEMA;
use crate::core::db;
use crate::core::errors::TcResult;
use crate::ops::migrate_script::{self, Migration};
use pgrx::pg_sys;
use pgrx::spi::quote_identifier;
use pgrx::PgList;
use std::ffi::CString;

/// How a tenant's pending scripts run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Path {
    /// As the tenant's role, lent what it needs (migrate::run_scripts).
    General,
    /// As the extension's owner, lending nothing; `sizes_kept` when every
    /// altered table already has a TOAST table (no relation can be created).
    Plain { sizes_kept: bool },
}

/// Whether `migrations` may run in `schema` without lending (see the module
/// comment). Decided with `search_path` set as the scripts then run.
pub fn path(schema: &str, migrations: &[Migration]) -> TcResult<Path> {
    if migrations.is_empty() {
        return Ok(Path::General);
    }
    let tables = db::with_setting("search_path", &quote_identifier(schema), || {
        let mut tables = Vec::new();
        for migration in migrations {
            match tables_of(&migration.script) {
                Some(found) => tables.extend(found),
                None => return Ok(None),
            }
        }
        Ok(Some(tables))
    })?;
    let Some(tables) = tables else {
        return Ok(Path::General);
    };
    plain_tables(schema, &tables)
}

/// Run the scripts as the extension's owner, with `search_path` set to the
/// schema alone (pg_catalog first, implicitly), as `path` decided.
pub fn run(schema: &str, migrations: &[Migration]) -> TcResult<()> {
    db::with_setting("search_path", &quote_identifier(schema), || {
        migrations.iter().try_for_each(|migration| migrate_script::execute(schema, migration))
    })
}

/// The tables (by oid) found for the name each statement alters, or None
/// when a statement is not a plain ADD COLUMN.
fn tables_of(script: &str) -> Option<Vec<pg_sys::Oid>> {
    let script = CString::new(script).ok()?;
    // SAFETY: raw_parser reads the string and returns a List of RawStmt in
    // the current memory context; the nodes are only read. A script that
    // does not parse raises the syntax error its run would raise.
    let statements = unsafe {
        PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(script.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT))
    };
    // SAFETY: every element of raw_parser's list is a RawStmt.
    statements.iter_ptr().map(|raw| unsafe { added_columns_table((*raw).stmt) }).collect()
}

/// The table an `ALTER TABLE t ADD COLUMN ...` statement (every subcommand
/// an ADD COLUMN of a plain column) names, as the current search_path
/// resolves it.
unsafe fn added_columns_table(statement: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    if statement.is_null() || (*statement).type_ != pg_sys::NodeTag::T_AlterTableStmt {
        return None;
    }
    let alter = statement as *mut pg_sys::AlterTableStmt;
    let relation = (*alter).relation;
    if (*alter).objtype != pg_sys::ObjectType::OBJECT_TABLE || relation.is_null() || !(*relation).schemaname.is_null() {
        return None;
    }
    let commands = PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds);
    let plain = commands
        .iter_ptr()
        .all(|command| (*command).subtype == pg_sys::AlterTableType::AT_AddColumn && plain_column((*command).def));
    if !plain || commands.is_empty() {
        return None;
    }
    let oid = pg_sys::RangeVarGetRelidExtended(
        relation,
        pg_sys::NoLock as i32,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// A column definition of a pg_catalog base type, with at most NULL, NOT
/// NULL and a literal default.
unsafe fn plain_column(def: *mut pg_sys::Node) -> bool {
    if def.is_null() || (*def).type_ != pg_sys::NodeTag::T_ColumnDef {
        return false;
    }
    let column = def as *mut pg_sys::ColumnDef;
    let c = &*column;
    if !c.raw_default.is_null()
        || !c.cooked_default.is_null()
        || c.identity != 0
        || c.generated != 0
        || !c.collClause.is_null()
        || !c.fdwoptions.is_null()
    {
        return false;
    }
    let constraints = PgList::<pg_sys::Constraint>::from_pg(c.constraints);
    let constraints_plain = constraints.iter_ptr().all(|constraint| match (*constraint).contype {
        pg_sys::ConstrType::CONSTR_NULL | pg_sys::ConstrType::CONSTR_NOTNULL => true,
        pg_sys::ConstrType::CONSTR_DEFAULT => {
            let expression = (*constraint).raw_expr;
            !expression.is_null() && (*expression).type_ == pg_sys::NodeTag::T_A_Const
        }
        _ => false,
    });
    constraints_plain && built_in_type(c.typeName)
}

/// A type name that resolves (on the current search_path) to a base type of
/// pg_catalog, with literal type modifiers only.
unsafe fn built_in_type(name: *mut pg_sys::TypeName) -> bool {
    if name.is_null() || (*name).setof || (*name).pct_type {
        return false;
    }
    let modifiers = PgList::<pg_sys::Node>::from_pg((*name).typmods);
    if !modifiers.iter_ptr().all(|m| !m.is_null() && (*m).type_ == pg_sys::NodeTag::T_A_Const) {
        return false;
    }
    let tuple = pg_sys::LookupTypeName(std::ptr::null_mut(), name, std::ptr::null_mut(), true);
    if tuple.is_null() {
        return false;
    }
    let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_type>(tuple);
    let built_in = (*form).typnamespace == pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
        && (*form).typtype as u8 == pg_sys::TYPTYPE_BASE;
    pg_sys::ReleaseSysCache(tuple);
    built_in
}

/// How many of the tables are ordinary tables of the schema without
/// children (none when the tenant is not clear of its quota's warning
/// level; the template has no quota: $3), and whether they all have a TOAST
/// table.
const PLAIN_TABLES: &str = "
SELECT pg_catalog.count(*)::integer AS plain,
       COALESCE(pg_catalog.bool_and(c.reltoastrelid OPERATOR(pg_catalog.<>) 0), true) AS toasted
  FROM pg_catalog.pg_class c
 WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
   AND c.relnamespace OPERATOR(pg_catalog.=) (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $2)
   AND c.relkind OPERATOR(pg_catalog.=) 'r' AND NOT c.relhassubclass AND NOT c.relispartition
   AND ($3 OR EXISTS (SELECT 1 FROM tenant.tenant_schemas t
                       WHERE t.schema_name OPERATOR(pg_catalog.=) $2 AND t.quota_state OPERATOR(pg_catalog.=) 'OK'))";

fn plain_tables(schema: &str, tables: &[pg_sys::Oid]) -> TcResult<Path> {
    let mut distinct = tables.to_vec();
    distinct.sort_by_key(|oid| oid.to_u32());
    distinct.dedup();
    let found = db::rows_kept(
        PLAIN_TABLES,
        &[pg_sys::OIDARRAYOID.into(), pg_sys::TEXTOID.into(), pg_sys::BOOLOID.into()],
        &[distinct.clone().into(), schema.into(), (schema == TEMPLATE_SCHEMA).into()],
        |row| {
            Ok((
                db::col::<i32>(row, "plain")?.unwrap_or_default(),
                db::col::<bool>(row, "toasted")?.unwrap_or_default(),
            ))
        },
    )?;
    Ok(match found.first() {
        Some(&(plain, toasted)) if plain as usize == distinct.len() => Path::Plain { sizes_kept: toasted },
        _ => Path::General,
    })
}
