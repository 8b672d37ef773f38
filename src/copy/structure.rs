//! What a schema holds, object by object: (kind, parent, name) -> definition.
//! The template and a faithful copy read the same; the integrity check compares
//! them (drift), and a migration compares a schema before and after its script.

use crate::copy::catalog::CATALOG_PATH;
use crate::core::db::{self, col};
use crate::core::errors::TcResult;
use std::collections::BTreeMap;

/// $1 the schema, $2 the role that stands for the tenant's role in it, $3
/// the relations to read (NULL: all).
const STRUCTURE: &str = include_str!("../../sql/queries/structure.sql");

/// (kind, parent, name): a table's column has the table as parent.
pub type Key = (&'static str, String, String);

/// The catalog queries start from a handful of oids (found through
/// pg_depend) and must probe the catalogs' indexes from there: a hash or
/// merge join would scan catalogs that grow with every tenant. The nested
/// loops' estimates then look expensive enough to start JIT compilation,
/// which costs far more than these queries: no JIT.
/// Kept plans are generic from the first tenant on (they are alike).
pub const INDEX_PROBES: [(&str, &str); 4] = [
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("jit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// The order in which missing objects are recreated.
pub const KINDS: &[&str] = &[
    "collation",
    "text search dictionary",
    "text search configuration",
    "type",
    "sequence",
    "table",
    "column",
    "sequence owner",
    "function",
    "procedure",
    "aggregate",
    "view",
    "materialized view",
    "constraint",
    "index",
    "trigger",
    "rule",
    "statistics object",
    "row-level security",
    "policy",
    "foreign table",
    // Kinds the integrity repair does not recreate: only ever reported as extra or missing.
    "window function",
    "operator",
    "cast",
    "operator class",
    "operator family",
    "conversion",
    "text search parser",
    "text search template",
];

fn kind_of(kind: &str) -> &'static str {
    KINDS.iter().copied().find(|k| *k == kind).unwrap_or("object")
}

/// Read a schema's structure, one entry per object.
pub fn read(schema: &str, role: &str) -> TcResult<BTreeMap<Key, String>> {
    read_some(schema, role, None)
}

/// The structure of some relations of a schema alone (with their columns,
/// keys, indexes, triggers, policies and rules).
pub fn read_tables(schema: &str, role: &str, tables: &[pgrx::pg_sys::Oid]) -> TcResult<BTreeMap<Key, String>> {
    read_some(schema, role, Some(tables.to_vec()))
}

fn read_some(schema: &str, role: &str, tables: Option<Vec<pgrx::pg_sys::Oid>>) -> TcResult<BTreeMap<Key, String>> {
    db::with_settings(
        &[("search_path", CATALOG_PATH), INDEX_PROBES[0], INDEX_PROBES[1], INDEX_PROBES[2], INDEX_PROBES[3]],
        || {
            // A kept plan: planning this query costs more than running it
            // on a few tables (a fleet migration reads two per tenant).
            let types = [pgrx::pg_sys::TEXTOID.into(), pgrx::pg_sys::TEXTOID.into(), pgrx::pg_sys::OIDARRAYOID.into()];
            let rows = db::rows_kept(STRUCTURE, &types, &[schema.into(), role.into(), tables.into()], entry)?;
            Ok(rows.into_iter().collect())
        },
    )
}

/// One row of STRUCTURE as an entry of a schema's structure.
fn entry(row: &pgrx::spi::SpiHeapTupleData) -> TcResult<(Key, String)> {
    let kind: String = col(row, "kind")?.unwrap_or_default();
    Ok((
        (kind_of(&kind), col::<String>(row, "parent")?.unwrap_or_default(), col(row, "name")?.unwrap_or_default()),
        col::<String>(row, "definition")?.unwrap_or_default(),
    ))
}
