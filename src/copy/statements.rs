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
use crate::core::catalog::{self, IndexKey, QuerySnapshot, Row};
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
    catalog::with_query_snapshot(last_recorded)
}

/// `max(id)` of tenant.template_changes, read through its primary key: every
/// create asks, and a query planned in a new connection cost more than the
/// rest of the look-up.
fn last_recorded(snapshot: &QuerySnapshot) -> TcResult<i64> {
    catalog::last_in_index(snapshot, c"template_changes", c"template_changes_pkey", |row| row.get::<i64>(c"id"))
        .ok_or_else(missing_table)?
        .flatten()
        .ok_or_else(no_change)
}

/// The last change of the template, and the statements stored for it if
/// there are any and everything they name outside the template still has
/// its identity. Read through the tables' primary keys, without SQL (see
/// `last_recorded`).
fn fetch_current() -> TcResult<(i64, Option<Shared>)> {
    let (change, stored) = catalog::with_query_snapshot(|snapshot| -> TcResult<_> {
        let change = last_recorded(snapshot)?;
        let key = IndexKey { value: change.into_datum().expect("a bigint is a datum"), equal: pg_sys::F_INT8EQ };
        let mut stored = None;
        catalog::scan_index(snapshot, c"template_statements", c"template_statements_pkey", Some(key), |row| {
            stored = Some(stored_row(change, row));
            false
        })
        .ok_or_else(missing_table)?;
        Ok((change, stored.transpose()?))
    })?;
    match stored {
        Some(shared) if still_named(&shared.names)? => Ok((change, Some(shared))),
        _ => Ok((change, None)),
    }
}

/// A row of tenant.template_statements.
fn stored_row(change: i64, row: &Row) -> TcResult<Shared> {
    let script = match row.get::<pgrx::JsonB>(c"statements").map(|json| json.0) {
        Some(Value::Array(items)) => items.into_iter().map(parts_of).collect::<TcResult<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok(Shared {
        change,
        names: row.get::<pgrx::JsonB>(c"names").map_or(json!([]), |json| json.0),
        script,
        tables: row.get::<i32>(c"tables").unwrap_or_default(),
        version: row.get::<i32>(c"version").unwrap_or_default(),
    })
}

fn missing_table() -> TcError {
    TcError::new(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        "tenant.template_changes, tenant.template_statements or their primary keys are missing",
    )
}

/// The extension's install records a first change: none is an internal error.
fn no_change() -> TcError {
    TcError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "no change of the template is recorded in tenant.template_changes",
    )
}

/// Whether everything in `names` still has the identity recorded there (a
/// dropped object has none): one catalog look-up each, without SQL (most
/// templates name at least their owner and plpgsql).
fn still_named(names: &Value) -> TcResult<bool> {
    let Some(list) = names.as_array().filter(|list| !list.is_empty()) else { return Ok(true) };
    catalog_read(|| Ok(list.iter().all(has_recorded_identity)))
}

/// Whether the object of `[classid, objid, objsubid, identity]` has that
/// identity now, as `pg_identify_object()` gives it. A malformed entry has
/// not: the statements are then generated again.
fn has_recorded_identity(entry: &Value) -> bool {
    let number = |i: usize| {
        let value = entry.get(i)?;
        value.as_str().map_or_else(|| value.as_i64(), |text| text.parse().ok())
    };
    let oid = |i: usize| number(i).and_then(|n| u32::try_from(n).ok()).map(pg_sys::Oid::from);
    let (Some(class), Some(object), Some(sub), Some(recorded)) =
        (oid(0), oid(1), number(2).and_then(|n| i32::try_from(n).ok()), entry.get(3).and_then(Value::as_str))
    else {
        return false;
    };
    let address = pg_sys::ObjectAddress { classId: class, objectId: object, objectSubId: sub };
    // SAFETY: a catalog look-up inside a transaction; the identity (None for
    // an object that no longer exists) is a palloc'd string read at once.
    unsafe {
        let identity = pg_sys::getObjectIdentity(&address, true);
        !identity.is_null() && std::ffi::CStr::from_ptr(identity).to_bytes() == recorded.as_bytes()
    }
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
