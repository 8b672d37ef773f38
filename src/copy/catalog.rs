//! What every catalog reader and generator of `copy` shares: the
//! search_path catalog queries run with, and the generated statements
//! themselves (text with slots for a copy's schema and role). Kept apart from
//! the generators (`template`) so that the statement cache (`statements`) and
//! the structure reader (`structure`) need nothing of them.

use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The search_path of every catalog query that reads a schema a tenant may
/// have written to: no operator, function or type of a tenant can bind in it
/// (pg_temp last, so a temporary object never shadows a type either).
pub const CATALOG_PATH: &str = "pg_catalog, pg_temp";

/// Run catalog queries with `CATALOG_PATH`, whatever the caller's search_path.
pub fn catalog_read<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    db::with_setting("search_path", CATALOG_PATH, work)
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

/// A statement as a jsonb array of parts (the reverse of `parts_of`): text,
/// or `{"slot": "schema"}` / `{"slot": "role"}` where the copy's names go.
pub fn parts_json(statement: &Statement) -> serde_json::Value {
    let part = |part: &Part| match part {
        Part::Text(text) => serde_json::Value::String(text.clone()),
        Part::Schema => serde_json::json!({"slot": "schema"}),
        Part::Role => serde_json::json!({"slot": "role"}),
    };
    serde_json::Value::Array(statement.iter().map(part).collect())
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
