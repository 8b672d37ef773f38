//! The statements generated from the template, shared by every connection.
//!
//! Generating them reads the whole template through the deparsing functions
//! (about 100 ms for an application's template of some 90 objects). They are
//! stored in tenant.template_statements, so that the first copy in a new
//! connection pays for its DDL only, and kept in backend memory as well.
//! Only the extension's owner can write that table: a role that could would
//! have its DDL run by the extension.
//!
//! The statements are good while
//! 1. no change to the template was recorded since they were generated
//!    (tenant.template_changes, written by the event triggers and by
//!    migrations), and
//! 2. every object outside the template that the template's objects depend
//!    on, and every role they name, still has the identity it had. The
//!    statements name those by name: renamed (and perhaps replaced by a new
//!    object of the old name), a copy would bind to something else. No event
//!    trigger sees a role renamed, so this is checked at every copy: one
//!    catalog lookup per such object (a template often has none).

use crate::copy::catalog::{catalog_read, parts_of, Part, Statement};
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::rc::Rc;

/// The statements of a copy of the template, and what they were made from.
pub struct Shared {
    /// The last change of the template (tenant.template_changes) they follow.
    pub change: i64,
    /// `[classid, objid, objsubid, identity]` of what they name outside the template.
    pub names: Value,
    pub script: Vec<Statement>,
    /// Tables in a copy, and the template version copied.
    pub tables: i32,
    pub version: i32,
}

struct Cached {
    database: pg_sys::Oid,
    shared: Rc<Shared>,
}

thread_local! {
    static CACHE: std::cell::RefCell<Option<Cached>> = const { std::cell::RefCell::new(None) };
}

/// The statements for the template as it is now, or (when none are good)
/// the change number to generate them for.
pub fn lookup() -> TcResult<Result<Rc<Shared>, i64>> {
    // SAFETY: a plain read of a backend global.
    let database = unsafe { pg_sys::MyDatabaseId };
    let mine = CACHE.with(|cache| cache.borrow().as_ref().filter(|c| c.database == database).map(|c| c.shared.clone()));
    if let Some(shared) = mine {
        if shared.change == last_change()? && still_named(&shared.names)? {
            return Ok(Ok(shared));
        }
    }
    // Another connection may have generated them, or generated them again.
    // One statement (a new connection's first three queries would each be
    // planned with cold caches).
    let (change, stored) = fetch_current()?;
    match stored {
        Some(shared) => {
            let shared = Rc::new(shared);
            CACHE.with(|cache| *cache.borrow_mut() = Some(Cached { database, shared: shared.clone() }));
            Ok(Ok(shared))
        }
        None => Ok(Err(change)),
    }
}

/// Keep statements a copy has just proved (the pg_depend check of
/// `template::copy_into`), for this connection and every other one. Rows of
/// older changes go; one another transaction still holds is left for later.
/// While another transaction is storing statements, this one keeps its own
/// in memory only: waiting for that transaction's commit would hold up a
/// create for nothing.
pub fn keep(shared: Rc<Shared>) -> TcResult<()> {
    // SAFETY: a plain read of a backend global.
    let database = unsafe { pg_sys::MyDatabaseId };
    CACHE.with(|cache| *cache.borrow_mut() = Some(Cached { database, shared: shared.clone() }));
    if !locks::try_template_statements()? {
        return Ok(());
    }
    let statements = Value::Array(shared.script.iter().map(to_json).collect());
    db::run(
        "INSERT INTO tenant.template_statements (change, statements, names, tables, version)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (change) DO UPDATE SET statements = EXCLUDED.statements, names = EXCLUDED.names,
                tables = EXCLUDED.tables, version = EXCLUDED.version, generated_at = EXCLUDED.generated_at",
        &[
            shared.change.into(),
            pgrx::JsonB(statements).into(),
            pgrx::JsonB(shared.names.clone()).into(),
            shared.tables.into(),
            shared.version.into(),
        ],
    )?;
    db::run(
        "DELETE FROM tenant.template_statements WHERE change IN
            (SELECT s.change FROM tenant.template_statements s WHERE s.change < $1 FOR UPDATE SKIP LOCKED)",
        &[shared.change.into()],
    )?;
    Ok(())
}

/// What the objects of `schema` name outside it, with their identities now.
pub fn names_outside(schema: &str) -> TcResult<Value> {
    let names: pgrx::JsonB =
        catalog_read(|| db::scalar(include_str!("../../sql/queries/template_names.sql"), &[schema.into()]))?;
    Ok(names.0)
}

/// The last recorded change of the template (DDL on it, a GRANT or REVOKE
/// that changed its privileges, a migration).
pub(crate) fn last_change() -> TcResult<i64> {
    db::scalar("SELECT max(id) FROM tenant.template_changes", &[])
}

/// The last change of the template, and the statements stored for it if
/// there are any and everything they name outside the template still has
/// its identity.
fn fetch_current() -> TcResult<(i64, Option<Shared>)> {
    let rows = catalog_read(|| {
        db::rows(include_str!("../../sql/queries/template_statements_current.sql"), &[], |row| {
            let change = db::col::<i64>(row, "change")?.ok_or_else(no_change)?;
            let Some(statements) = db::col::<pgrx::JsonB>(row, "statements")? else {
                return Ok((change, None));
            };
            if db::col::<bool>(row, "named")? != Some(true) {
                return Ok((change, None));
            }
            let script = match statements.0 {
                Value::Array(items) => items.into_iter().map(parts_of).collect::<TcResult<Vec<_>>>()?,
                _ => Vec::new(),
            };
            let shared = Shared {
                change,
                names: db::col::<pgrx::JsonB>(row, "names")?.map_or(json!([]), |j| j.0),
                script,
                tables: db::col::<i32>(row, "tables")?.unwrap_or_default(),
                version: db::col::<i32>(row, "version")?.unwrap_or_default(),
            };
            Ok((change, Some(shared)))
        })
    })?;
    rows.into_iter().next().ok_or_else(no_change)
}

/// The extension's install records a first change: none is an internal error.
fn no_change() -> TcError {
    TcError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "no change of the template is recorded in tenant.template_changes",
    )
}

/// Whether everything in `names` still has the identity recorded there (a
/// dropped object has none).
fn still_named(names: &Value) -> TcResult<bool> {
    if names.as_array().is_none_or(|list| list.is_empty()) {
        return Ok(true);
    }
    catalog_read(|| {
        db::scalar(
            "SELECT NOT EXISTS (
                 SELECT 1 FROM jsonb_array_elements($1) r
                  WHERE (pg_identify_object((r->>0)::oid, (r->>1)::oid, (r->>2)::int4)).identity
                        IS DISTINCT FROM r->>3)",
            &[pgrx::JsonB(names.clone()).into()],
        )
    })
}

/// A statement as stored: text, or `{"slot": ...}` where the copy's own
/// schema or role goes (what `parts_of` reads back).
fn to_json(statement: &Statement) -> Value {
    Value::Array(
        statement
            .iter()
            .map(|part| match part {
                Part::Text(text) => Value::String(text.clone()),
                Part::Schema => json!({"slot": "schema"}),
                Part::Role => json!({"slot": "role"}),
            })
            .collect(),
    )
}
