//! Orphaned rows: every foreign key of a tenant (and every key of the
//! template it lost) checked against the data with one anti-join per key.

use crate::copy::template::TEMPLATE_SCHEMA;
use crate::core::db::{self, col};
use crate::core::errors::TcResult;
use crate::core::name::TenantName;
use crate::integrity::findings::{Finding, Severity};
use crate::integrity::plans;
use crate::registry::storage::Files;
use crate::registry::Tenant;
use pgrx::spi::quote_identifier;

struct ForeignKey {
    name: String,
    child: String,
    child_cols: Vec<String>,
    parent_schema: String,
    parent: String,
    parent_cols: Vec<String>,
    match_full: bool,
    validated: bool,
    present: bool,
    /// The child table's files (the template's table when the key is not present).
    child_files: Files,
}

impl ForeignKey {
    /// Rows of the child whose key matches no row of the parent: the
    /// constraint's own rule (MATCH SIMPLE skips keys with a NULL; MATCH FULL
    /// accepts only all-NULL keys).
    fn orphans_query(&self, schema: &TenantName, position: usize) -> String {
        let child = |c: &String| format!("c.{}", quote_identifier(c));
        let not_null = self.child_cols.iter().map(|c| format!("{} IS NOT NULL", child(c))).collect::<Vec<_>>();
        let matches = self
            .child_cols
            .iter()
            .zip(&self.parent_cols)
            .map(|(c, p)| format!("p.{} OPERATOR(pg_catalog.=) {}", quote_identifier(p), child(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let parent = format!("{}.{}", quote_identifier(&self.parent_schema), quote_identifier(&self.parent));
        let missing = format!("NOT EXISTS (SELECT 1 FROM {parent} p WHERE {matches})");
        let condition = if self.match_full {
            let any_set = self.child_cols.iter().map(|c| format!("{} IS NOT NULL", child(c))).collect::<Vec<_>>();
            format!("({}) AND (NOT ({}) OR {missing})", any_set.join(" OR "), not_null.join(" AND "))
        } else {
            format!("{} AND {missing}", not_null.join(" AND "))
        };
        format!(
            "SELECT {position} AS fk, pg_catalog.count(*) AS orphans FROM {}.{} c WHERE {condition}",
            schema.quoted(),
            quote_identifier(&self.child)
        )
    }
}

/// Only keys between ordinary (or partitioned) tables are checked against
/// the data. A tenant owns its tables and may have put a view of the same
/// name in place of one the template's lost key names: reading that view
/// as the extension's owner would run the tenant's functions with the
/// owner's rights. The relations are locked first, so that none can be
/// swapped for a view between the look and the read.
fn only_between_tables(schema: &TenantName, keys: Vec<ForeignKey>) -> TcResult<Vec<ForeignKey>> {
    if keys.is_empty() {
        return Ok(keys);
    }
    let name = |nsp: &str, rel: &str| format!("{}.{}", quote_identifier(nsp), quote_identifier(rel));
    let mut relations: Vec<String> =
        keys.iter().flat_map(|k| [name(schema.as_str(), &k.child), name(&k.parent_schema, &k.parent)]).collect();
    relations.sort();
    relations.dedup();
    db::run(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", relations.join(", ")), &[])?;
    let plain: Vec<String> = plans::rows(plans::Query::PlainRelations, &[relations.into()], |row| {
        Ok(col::<String>(row, "name")?.unwrap_or_default())
    })?;
    Ok(keys
        .into_iter()
        .filter(|k| {
            plain.contains(&name(schema.as_str(), &k.child)) && plain.contains(&name(&k.parent_schema, &k.parent))
        })
        .collect())
}

/// A key whose child table has no rows has no orphans: its main fork has no
/// pages (told from its file, without opening the table). Such keys are left
/// out, so the statement neither plans nor reads them; in a young tenant most
/// tables are empty. A key the tenant lost is always checked (its child is
/// named by the template's table there).
fn with_rows(keys: Vec<ForeignKey>) -> TcResult<Vec<ForeignKey>> {
    let mut kept = Vec::with_capacity(keys.len());
    for key in keys {
        if !key.present || key.child_files.surely_empty()? != Some(true) {
            kept.push(key);
        }
    }
    Ok(kept)
}

pub fn orphaned_rows(tenant: &Tenant, with_template_keys: bool) -> TcResult<Vec<Finding>> {
    let keys = plans::rows(
        plans::Query::ForeignKeys,
        &[tenant.schema.as_str().into(), TEMPLATE_SCHEMA.into(), with_template_keys.into()],
        |row| {
            Ok(ForeignKey {
                name: col(row, "conname")?.unwrap_or_default(),
                child: col(row, "child")?.unwrap_or_default(),
                child_cols: col(row, "child_cols")?.unwrap_or_default(),
                parent_schema: col(row, "parent_schema")?.unwrap_or_default(),
                parent: col(row, "parent")?.unwrap_or_default(),
                parent_cols: col(row, "parent_cols")?.unwrap_or_default(),
                match_full: col(row, "match_full")?.unwrap_or_default(),
                validated: col(row, "convalidated")?.unwrap_or_default(),
                present: col(row, "present")?.unwrap_or_default(),
                child_files: Files::of_row(row, "child_")?,
            })
        },
    )?;
    let keys = with_rows(keys)?;
    let keys = only_between_tables(&tenant.schema, keys)?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for every key of the tenant: planned once, not per key.
    let query = keys.iter().enumerate().map(|(i, key)| key.orphans_query(&tenant.schema, i)).collect::<Vec<_>>();
    // Data, not catalogs: hash anti-joins are welcome here.
    let on = [("enable_hashjoin", "on"), ("enable_mergejoin", "on")];
    let counts = db::with_settings(&on, || {
        db::rows(&format!("{} ORDER BY 1", query.join("\nUNION ALL\n")), &[], |row| {
            Ok((col::<i32>(row, "fk")?.unwrap_or_default() as usize, col::<i64>(row, "orphans")?.unwrap_or_default()))
        })
    })?;
    Ok(counts
        .into_iter()
        .filter(|(_, orphans)| *orphans > 0)
        .map(|(i, orphans)| {
            let key = &keys[i];
            let state = match (key.present, key.validated) {
                (false, _) => "missing from the schema (the template has it)",
                (true, false) => "NOT VALID",
                (true, true) => "valid, yet bypassed",
            };
            Finding::about(tenant, "orphaned_rows", Severity::Error, format!("{}.{}", key.child, key.name)).detail(format!(
                "{orphans} row(s) of {} ({}) match no row of {}.{} ({}); the foreign key {} is {state}; rows are never deleted by the check",
                key.child,
                key.child_cols.join(", "),
                key.parent_schema,
                key.parent,
                key.parent_cols.join(", "),
                key.name
            ))
        })
        .collect())
}
