//! What a schema holds, object by object: (kind, parent, name) -> definition.
//! The template and a faithful copy read the same; the integrity check compares
//! them (drift), and a migration compares a schema before and after its script.

use crate::copy::catalog::CATALOG_PATH;
use crate::core::db::{self, col};
use crate::core::errors::TcResult;
use std::collections::BTreeMap;

/// $1 the schema, $2 the role that stands for the tenant's role in it.
pub const STRUCTURE: &str = include_str!("../../sql/queries/structure.sql");

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
    "type",
    "sequence",
    "table",
    "column",
    "sequence owner",
    "function",
    "procedure",
    "view",
    "materialized view",
    "constraint",
    "index",
    "trigger",
    "row-level security",
    "policy",
    "foreign table",
    // Kinds the integrity repair does not recreate: only ever reported as extra or missing.
    "aggregate",
    "window function",
    "rule",
    "statistics object",
    "operator",
    "cast",
    "operator class",
    "operator family",
    "collation",
    "conversion",
    "text search configuration",
    "text search dictionary",
    "text search parser",
    "text search template",
];

fn kind_of(kind: &str) -> &'static str {
    KINDS.iter().copied().find(|k| *k == kind).unwrap_or("object")
}

/// Read a schema's structure, one entry per object.
pub fn read(schema: &str, role: &str) -> TcResult<BTreeMap<Key, String>> {
    db::with_settings(
        &[("search_path", CATALOG_PATH), INDEX_PROBES[0], INDEX_PROBES[1], INDEX_PROBES[2], INDEX_PROBES[3]],
        || {
            let rows = db::rows(STRUCTURE, &[schema.into(), role.into()], entry)?;
            Ok(rows.into_iter().collect())
        },
    )
}

/// One row of STRUCTURE as an entry of a schema's structure.
pub fn entry(row: &pgrx::spi::SpiHeapTupleData) -> TcResult<(Key, String)> {
    let kind: String = col(row, "kind")?.unwrap_or_default();
    Ok((
        (kind_of(&kind), col::<String>(row, "parent")?.unwrap_or_default(), col(row, "name")?.unwrap_or_default()),
        col::<String>(row, "definition")?.unwrap_or_default(),
    ))
}
