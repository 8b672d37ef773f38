//! What a move between shared tables and an institution's schema copies:
//! which shared table goes to which table of the institution, column by
//! column, in which order, by which key. Everything that could make a move
//! fail halfway is checked here, before the first row moves.
//!
//! Columns pair up by name; `tenant.set_column_mapping` names the pairs
//! that differ (and the template table of a shared table whose name
//! differs). Both sides must have the same columns (apart from the shared
//! table's institution column and generated columns, which are computed
//! again) of the same types: a column left over on either side would lose
//! data in one direction or the other.

use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_qualified_identifier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SHARED_TABLES: &str = include_str!("../../../sql/queries/shared_move_tables.sql");
const COLUMNS: &str = include_str!("../../../sql/queries/shared_move_columns.sql");

/// One table of a move, stored with the move (`tenant.shared_moves.plan`):
/// a resumed move copies by the plan it checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TablePlan {
    /// The table's name in the template and in the institution's schema.
    pub table: String,
    pub shared_schema: String,
    pub shared_name: String,
    /// The shared table's institution column.
    pub tenant_column: String,
    /// Copied columns as (institution side, shared side), in table order.
    pub columns: Vec<(String, String)>,
    /// The primary key, as indexes into `columns`, in key order.
    pub key: Vec<usize>,
    /// The key columns' types, as format_type writes them.
    pub key_types: Vec<String>,
    /// A foreign key of the table (on either side) references the table
    /// itself: a row may reference one with a greater key, which a later
    /// batch would bring, so the table is copied in one batch.
    #[serde(default)]
    pub whole: bool,
}

impl TablePlan {
    pub fn shared(&self) -> String {
        quote_qualified_identifier(&self.shared_schema, &self.shared_name)
    }

    pub fn shared_label(&self) -> String {
        format!("{}.{}", self.shared_schema, self.shared_name)
    }
}

struct Column {
    name: String,
    type_name: String,
    generated: bool,
    key_position: Option<i32>,
    tenant_type: bool,
}

fn columns_of(relation: &str) -> TcResult<Vec<Column>> {
    db::rows(COLUMNS, &[relation.into()], |row| {
        Ok(Column {
            name: col::<String>(row, "name")?.unwrap_or_default(),
            type_name: col::<String>(row, "type")?.unwrap_or_default(),
            generated: col::<bool>(row, "generated")?.unwrap_or(false),
            key_position: col::<i32>(row, "key_position")?,
            tenant_type: col::<bool>(row, "tenant_type")?.unwrap_or(false),
        })
    })
}

/// The plan for the institution's side `side_schema` (the template before
/// the institution has a schema, else its schema), tables parents first.
pub fn make(side_schema: &str) -> TcResult<Vec<TablePlan>> {
    let shared = db::rows(SHARED_TABLES, &[], |row| {
        Ok((
            col::<String>(row, "shared_schema")?.unwrap_or_default(),
            col::<String>(row, "shared_name")?.unwrap_or_default(),
            col::<String>(row, "tenant_column")?,
            col::<String>(row, "table_name")?.unwrap_or_default(),
            col::<pgrx::JsonB>(row, "columns")?.map(|j| j.0).unwrap_or_default(),
        ))
    })?;
    if shared.is_empty() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "there are no shared tables to move rows between",
        )
        .hint("Shared tables are those put under tenant.enable_shared_table_isolation."));
    }
    let mut plans: Vec<TablePlan> = Vec::new();
    for (shared_schema, shared_name, tenant_column, table, mapping) in shared {
        let label = format!("{shared_schema}.{shared_name}");
        let tenant_column = tenant_column.ok_or_else(|| {
            TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("shared table \"{label}\" has no institution column in its isolation policy"),
            )
        })?;
        if let Some(other) = plans.iter().find(|p| p.table == table) {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!(
                    "shared tables \"{}\" and \"{label}\" both map to table \"{table}\" of {side_schema}",
                    other.shared_label()
                ),
            )
            .hint("Map one of them to another table with tenant.set_column_mapping."));
        }
        let mapping = column_mapping(&label, mapping)?;
        plans.push(pair(side_schema, &table, &shared_schema, &shared_name, &tenant_column, &mapping)?);
    }
    order(side_schema, plans)
}

fn column_mapping(label: &str, mapping: serde_json::Value) -> TcResult<BTreeMap<String, String>> {
    serde_json::from_value(mapping).map_err(|_| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the column mapping of shared table \"{label}\" is not an object of column names"),
        )
    })
}

/// Pair the columns of one shared table with those of its table on the
/// institution's side; refuse whatever would not survive the trip.
fn pair(
    side_schema: &str,
    table: &str,
    shared_schema: &str,
    shared_name: &str,
    tenant_column: &str,
    mapping: &BTreeMap<String, String>,
) -> TcResult<TablePlan> {
    let label = format!("{shared_schema}.{shared_name}");
    let side_label = format!("{side_schema}.{table}");
    let side = columns_of(&quote_qualified_identifier(side_schema, table))?;
    if side.is_empty() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("shared table \"{label}\" has no table \"{table}\" in {side_schema}"),
        )
        .hint("Name its table with tenant.set_column_mapping(shared_table, table_name, columns)."));
    }
    let shared = columns_of(&quote_qualified_identifier(shared_schema, shared_name))?;
    for (ours, theirs) in mapping {
        if !side.iter().any(|c| &c.name == ours) {
            return Err(missing(&format!("column \"{ours}\" named in the mapping of \"{label}\""), &side_label));
        }
        if !shared.iter().any(|c| &c.name == theirs) {
            return Err(missing(&format!("column \"{theirs}\" named in the mapping of \"{label}\""), &label));
        }
    }
    let mut columns = Vec::new();
    let mut key: Vec<(i32, usize, String)> = Vec::new();
    for column in side.iter().filter(|c| !c.generated) {
        let wanted = mapping.get(&column.name).unwrap_or(&column.name);
        let Some(other) = shared.iter().find(|c| &c.name == wanted && c.name != tenant_column && !c.generated) else {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" of \"{side_label}\" has no column \"{wanted}\" in shared table \"{label}\"",
                    column.name
                ),
            )
            .hint("Map it to a column of the shared table with tenant.set_column_mapping."));
        };
        if other.type_name != column.type_name {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" of \"{side_label}\" is {}, but column \"{}\" of shared table \"{label}\" is {}",
                    column.name, column.type_name, other.name, other.type_name
                ),
            ));
        }
        if column.tenant_type || other.tenant_type {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" of \"{side_label}\" is of type {}, which belongs to an institution",
                    column.name, column.type_name
                ),
            )
            .detail("Only types shared by every institution can move between shared tables and schemas."));
        }
        if let Some(position) = column.key_position {
            key.push((position, columns.len(), column.type_name.clone()));
        }
        columns.push((column.name.clone(), other.name.clone()));
    }
    if let Some(left) =
        shared.iter().find(|c| !c.generated && c.name != tenant_column && !columns.iter().any(|(_, s)| s == &c.name))
    {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{}\" of shared table \"{label}\" has no column in \"{side_label}\"", left.name),
        )
        .hint("Map a column of the institution's table to it with tenant.set_column_mapping."));
    }
    if key.is_empty() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("table \"{side_label}\" has no primary key"),
        )
        .detail("A move copies each table in batches in the order of its primary key."));
    }
    key.sort();
    let whole = references_itself(&quote_qualified_identifier(side_schema, table))?
        || references_itself(&quote_qualified_identifier(shared_schema, shared_name))?;
    Ok(TablePlan {
        table: table.to_string(),
        shared_schema: shared_schema.to_string(),
        shared_name: shared_name.to_string(),
        tenant_column: tenant_column.to_string(),
        columns,
        key: key.iter().map(|(_, index, _)| *index).collect(),
        key_types: key.into_iter().map(|(_, _, type_name)| type_name).collect(),
        whole,
    })
}

fn references_itself(relation: &str) -> TcResult<bool> {
    db::scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                         WHERE k.contype OPERATOR(pg_catalog.=) 'f'
                           AND k.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
                           AND k.confrelid OPERATOR(pg_catalog.=) k.conrelid)",
        &[relation.into()],
    )
}

fn missing(what: &str, relation: &str) -> TcError {
    TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, format!("{what} does not exist in \"{relation}\""))
}

/// Parents before children (foreign keys between the tables of
/// `side_schema`), so that a child's rows always find their parents; ties
/// and cycles keep the shared tables' order.
fn order(side_schema: &str, plans: Vec<TablePlan>) -> TcResult<Vec<TablePlan>> {
    let edges: Vec<(String, String)> = db::rows(
        "SELECT child.relname::text AS child, parent.relname::text AS parent
           FROM pg_catalog.pg_constraint k
           JOIN pg_catalog.pg_class child ON child.oid OPERATOR(pg_catalog.=) k.conrelid
           JOIN pg_catalog.pg_class parent ON parent.oid OPERATOR(pg_catalog.=) k.confrelid
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) child.relnamespace
          WHERE k.contype OPERATOR(pg_catalog.=) 'f' AND n.nspname OPERATOR(pg_catalog.=) $1
            AND parent.relnamespace OPERATOR(pg_catalog.=) child.relnamespace
            AND k.conrelid OPERATOR(pg_catalog.<>) k.confrelid",
        &[side_schema.into()],
        |row| Ok((col::<String>(row, "child")?.unwrap_or_default(), col::<String>(row, "parent")?.unwrap_or_default())),
    )?;
    let mut pending = plans;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|p| !edges.iter().any(|(c, parent)| c == &p.table && pending.iter().any(|o| &o.table == parent)))
            .unwrap_or(0);
        ordered.push(pending.remove(ready));
    }
    Ok(ordered)
}

/// The moved columns of one side (the shared table's, or the institution's),
/// each quoted and after `prefix` (an alias and a dot, or nothing).
pub fn column_list(plan: &TablePlan, shared_side: bool, prefix: &str) -> String {
    plan.columns
        .iter()
        .map(|(ours, theirs)| format!("{prefix}{}", quote_identifier(if shared_side { theirs } else { ours })))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tenant.set_column_mapping`: the table of the template a shared table
/// moves to (NULL: the one of the same name) and the columns whose names
/// differ (`{"template column": "shared column"}`). NULL and `{}` for both
/// remove the mapping: names decide again.
pub fn set_mapping(
    shared_table: Option<&str>,
    table_name: Option<&str>,
    columns: Option<pgrx::JsonB>,
) -> TcResult<String> {
    let shared_table = shared_table.ok_or_else(|| TcError::null_argument("shared_table"))?;
    let found = db::rows(
        "SELECT n.nspname::text AS schema, c.relname::text AS name,
                EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                           AND p.polname OPERATOR(pg_catalog.=) 'tc_institution_isolation') AS isolated
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
        &[shared_table.into()],
        |row| {
            Ok((
                col::<String>(row, "schema")?.unwrap_or_default(),
                col::<String>(row, "name")?.unwrap_or_default(),
                col::<bool>(row, "isolated")?.unwrap_or(false),
            ))
        },
    )?;
    let Some((schema, name, isolated)) = found.into_iter().next() else {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{shared_table}\" does not exist"),
        ));
    };
    let label = format!("{schema}.{name}");
    if !isolated {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("table \"{label}\" is not a shared table"),
        )
        .hint("Isolate it first with tenant.enable_shared_table_isolation."));
    }
    let columns = column_mapping(&label, columns.map(|j| j.0).unwrap_or_else(|| serde_json::json!({})))?;
    if table_name.is_none() && columns.is_empty() {
        db::run(
            "DELETE FROM tenant.shared_table_mappings WHERE shared_schema = $1 AND shared_name = $2",
            &[schema.as_str().into(), name.as_str().into()],
        )?;
        return Ok(format!("shared table \"{label}\" maps to the template by names"));
    }
    let table = table_name.unwrap_or(&name);
    let template = columns_of(&quote_qualified_identifier("tenant_template", table))?;
    if template.is_empty() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{table}\" does not exist in tenant_template"),
        ));
    }
    let shared = columns_of(&quote_qualified_identifier(&schema, &name))?;
    for (ours, theirs) in &columns {
        if !template.iter().any(|c| &c.name == ours) {
            return Err(missing(&format!("column \"{ours}\""), &format!("tenant_template.{table}")));
        }
        if !shared.iter().any(|c| &c.name == theirs) {
            return Err(missing(&format!("column \"{theirs}\""), &label));
        }
    }
    db::run(
        "INSERT INTO tenant.shared_table_mappings (shared_schema, shared_name, table_name, columns)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (shared_schema, shared_name)
         DO UPDATE SET table_name = EXCLUDED.table_name, columns = EXCLUDED.columns, updated_at = pg_catalog.now()",
        &[
            schema.as_str().into(),
            name.as_str().into(),
            table.into(),
            pgrx::JsonB(serde_json::to_value(&columns).unwrap_or_default()).into(),
        ],
    )?;
    let pairs: Vec<String> = columns.iter().map(|(ours, theirs)| format!("{ours} <- {theirs}")).collect();
    Ok(format!(
        "shared table \"{label}\" maps to tenant_template.{table}{}",
        if pairs.is_empty() { String::new() } else { format!(" ({})", pairs.join(", ")) }
    ))
}
