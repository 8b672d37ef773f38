//! Which tables a tenant's migration needs to own, read from PostgreSQL's
//! own parse of its scripts (`raw_parser`, the parser the scripts then run
//! through).
//!
//! A migration runs as the tenant's role, which must own what the scripts
//! alter. Lending it every object of the schema that it does not own (one
//! `ALTER ... OWNER` each, there and back, and a comparison of the whole
//! schema's structure before and after) costs tens of times the one-column
//! `ALTER TABLE` most migrations are. When every statement of the scripts is
//! one whose target a parse names (`ALTER TABLE t ...` with the subcommands
//! below, `CREATE INDEX ... ON t`), only those tables are lent. Lending less
//! never gives the tenant's role more rights than lending everything; a
//! statement that needed more fails with 42501, and the caller then runs
//! the scripts again with everything lent (see migrate::run_scripts).

use pgrx::pg_sys;
use pgrx::PgList;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};

/// `ALTER TABLE` subcommands that act on the table itself and name no other
/// role or relation to own: the change of owner, inheritance, partitions,
/// triggers, rules and row-level security are left to the general path.
const COLUMN_AND_CONSTRAINT_COMMANDS: &[pg_sys::AlterTableType::Type] = &[
    pg_sys::AlterTableType::AT_AddColumn,
    pg_sys::AlterTableType::AT_ColumnDefault,
    pg_sys::AlterTableType::AT_DropNotNull,
    pg_sys::AlterTableType::AT_SetNotNull,
    pg_sys::AlterTableType::AT_DropExpression,
    pg_sys::AlterTableType::AT_SetStatistics,
    pg_sys::AlterTableType::AT_SetStorage,
    pg_sys::AlterTableType::AT_SetCompression,
    pg_sys::AlterTableType::AT_DropColumn,
    pg_sys::AlterTableType::AT_AddConstraint,
    pg_sys::AlterTableType::AT_AlterConstraint,
    pg_sys::AlterTableType::AT_ValidateConstraint,
    pg_sys::AlterTableType::AT_DropConstraint,
    pg_sys::AlterTableType::AT_AlterColumnType,
    pg_sys::AlterTableType::AT_AddIdentity,
    pg_sys::AlterTableType::AT_SetIdentity,
    pg_sys::AlterTableType::AT_DropIdentity,
];

/// The unqualified names of the tables the scripts act on as their owner,
/// or None when a statement is of another kind (then everything is lent).
pub fn tables_altered<'a>(scripts: impl IntoIterator<Item = &'a str>) -> Option<BTreeSet<String>> {
    let mut tables = BTreeSet::new();
    for script in scripts {
        let script = CString::new(script).ok()?;
        // SAFETY: raw_parser reads the string and returns a List of RawStmt
        // allocated in the current memory context; the nodes are only read.
        // A script that does not parse raises here the syntax error its run
        // would raise.
        let statements = unsafe {
            PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
                script.as_ptr(),
                pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
            ))
        };
        for raw in statements.iter_ptr() {
            // SAFETY: every element of raw_parser's list is a RawStmt.
            tables.insert(unsafe { table_of((*raw).stmt) }?);
        }
    }
    Some(tables)
}

/// The table one statement acts on as its owner, if it is of a kind listed above.
unsafe fn table_of(statement: *mut pg_sys::Node) -> Option<String> {
    if statement.is_null() {
        return None;
    }
    match (*statement).type_ {
        pg_sys::NodeTag::T_AlterTableStmt => {
            let alter = statement as *mut pg_sys::AlterTableStmt;
            if (*alter).objtype != pg_sys::ObjectType::OBJECT_TABLE {
                return None;
            }
            let commands = PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds);
            if !commands.iter_ptr().all(|command| COLUMN_AND_CONSTRAINT_COMMANDS.contains(&(*command).subtype)) {
                return None;
            }
            unqualified((*alter).relation)
        }
        pg_sys::NodeTag::T_IndexStmt => {
            let index = statement as *mut pg_sys::IndexStmt;
            unqualified((*index).relation)
        }
        _ => None,
    }
}

/// A relation named without a schema (a script names its schema's objects
/// that way; a qualified name goes to the general path).
unsafe fn unqualified(relation: *mut pg_sys::RangeVar) -> Option<String> {
    if relation.is_null() || !(*relation).schemaname.is_null() || (*relation).relname.is_null() {
        return None;
    }
    Some(CStr::from_ptr((*relation).relname).to_string_lossy().into_owned())
}
