//! Orphaned rows: every foreign key of a tenant (and every key of the
//! template it lost) checked against the data with one anti-join per key.

use crate::db::{self, col};
use crate::errors::TcResult;
use crate::integrity::{planned_rows, Finding, Severity};
use crate::name::TenantName;
use crate::registry::Tenant;
use crate::template::TEMPLATE_SCHEMA;
use pgrx::spi::quote_identifier;

/// Foreign keys to check in schema $1: its own, and (when it is at the
/// template's version, $3) the template's ($2) that it lacks, where the
/// tables and columns exist.
pub const FOREIGN_KEYS: &str = r#"
SELECT f.conname, f.child, f.child_cols, f.parent_schema, f.parent, f.parent_cols, f.match_full, f.convalidated, f.present
  FROM (
    SELECT k.conname::text AS conname, c.relname::text AS child,
           ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY u(n, i)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i) AS child_cols,
           CASE WHEN pn.nspname = $2::text AND NOT f.present THEN $1::text ELSE pn.nspname::text END AS parent_schema,
           p.relname::text AS parent,
           ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY u(n, i)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i) AS parent_cols,
           k.confmatchtype = 'f' AS match_full, k.convalidated, f.present
      FROM (SELECT k.oid, true AS present FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid),
                   LATERAL (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid = o.oid AND k.contype = 'f') k
            UNION ALL
            SELECT k.oid, false FROM tenant.schema_objects($2::text, 'pg_catalog.pg_class') AS o(oid),
                   LATERAL (SELECT k.oid, k.conname FROM pg_catalog.pg_constraint k WHERE $3 AND k.conrelid = o.oid AND k.contype = 'f') k,
                   pg_catalog.pg_class c
             WHERE c.oid = o.oid AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint t
                                WHERE t.conrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, c.relname))
                                  AND t.conname = k.conname)) f
      JOIN pg_catalog.pg_constraint k ON k.oid = f.oid
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
      JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace) f
 WHERE f.present OR NOT EXISTS (SELECT 1 FROM (SELECT $1::text, f.child, f.child_cols UNION ALL SELECT f.parent_schema, f.parent, f.parent_cols)
                                 AS side(nsp, rel, cols), pg_catalog.unnest(side.cols) AS col(name)
                    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', side.nsp, side.rel))
                                         AND a.attname = col.name AND NOT a.attisdropped))
 ORDER BY f.child, f.conname
"#;

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
    let plain: Vec<String> = db::rows(
        "SELECT x.name FROM pg_catalog.unnest($1::text[]) AS x(name)
          WHERE (SELECT c.relkind FROM pg_catalog.pg_class c
                  WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x.name)) OPERATOR(pg_catalog.=) ANY ('{r,p}'::\"char\"[])",
        &[relations.into()],
        |row| Ok(col::<String>(row, "name")?.unwrap_or_default()),
    )?;
    Ok(keys
        .into_iter()
        .filter(|k| {
            plain.contains(&name(schema.as_str(), &k.child)) && plain.contains(&name(&k.parent_schema, &k.parent))
        })
        .collect())
}

pub fn orphaned_rows(tenant: &Tenant, with_template_keys: bool) -> TcResult<Vec<Finding>> {
    let keys = planned_rows(
        FOREIGN_KEYS,
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
            })
        },
    )?;
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
