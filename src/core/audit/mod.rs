//! The audit trail, `tenant.audit_events`: every operation attempt, every
//! change of the registry's config, quota, status and administrator grants,
//! and every call of the extension's functions that PostgreSQL refused
//! (42501), kept whether or not the caller's transaction commits.
//!
//! Events are gathered in this backend's memory while the transaction runs
//! (nothing is written per row or per statement). When the transaction
//! commits they are written by the committing transaction itself just before
//! the commit, a row each (so a commit that cannot record its events does not
//! happen). When it rolls back, or the backend is terminated, they
//! are handed to a background worker of the extension which writes them in
//! a transaction of its own (see `worker`). No SQL function writes the
//! trail, and the table grants no one INSERT: a caller can add to it only by
//! doing what the events describe.

mod worker;

use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::restricted;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::ffi::CStr;

/// One event. Serialized only to travel to the worker (see `worker`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// When it happened: seconds since the Unix epoch.
    at: f64,
    class: String,
    action: String,
    outcome: String,
    schema_id: Option<uuid::Uuid>,
    institution_id: Option<uuid::Uuid>,
    /// The session user's oid, named when the event is written.
    who: u32,
    sqlstate: Option<String>,
    message: Option<String>,
    detail: Value,
    /// The (sub)transaction nesting level the event was noted at.
    #[serde(skip)]
    level: i32,
}

thread_local! {
    static PENDING: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

/// What an operation of the operation log did (or failed to do).
pub struct OperationEvent<'a> {
    pub kind: &'a str,
    pub schema_id: Option<uuid::Uuid>,
    pub institution_id: Option<uuid::Uuid>,
    pub description: &'a str,
    pub failure: Option<(String, String)>,
}

pub fn note_operation(op: OperationEvent<'_>) {
    let (outcome, sqlstate, message) = match op.failure {
        None => ("COMPLETED", None, None),
        Some((sqlstate, message)) => ("FAILED", Some(sqlstate), Some(message)),
    };
    push(Event {
        outcome: outcome.into(),
        schema_id: op.schema_id,
        institution_id: op.institution_id,
        sqlstate,
        message,
        detail: serde_json::json!({ "description": op.description }),
        ..event("OPERATION", op.kind.to_string())
    });
}

/// A change of a registry row: `action` names what changed (CONFIG, QUOTA,
/// STATUS, ADMIN_GRANT, ADMIN_REVOKE), `detail` the old and new values.
pub fn note_registry_change(
    action: &str,
    schema_id: Option<uuid::Uuid>,
    institution_id: Option<uuid::Uuid>,
    detail: Value,
) {
    push(Event {
        outcome: "CHANGED".into(),
        schema_id,
        institution_id,
        detail,
        ..event("REGISTRY_CHANGE", action.into())
    });
}

fn event(class: &'static str, action: String) -> Event {
    // SAFETY: plain reads of this backend's state.
    let (now, who, level) = unsafe {
        (pg_sys::GetCurrentTimestamp(), pg_sys::GetSessionUserId(), pg_sys::GetCurrentTransactionNestLevel())
    };
    Event {
        at: unix_seconds(now),
        class: class.into(),
        action,
        outcome: "COMPLETED".into(),
        schema_id: None,
        institution_id: None,
        who: who.to_u32(),
        sqlstate: None,
        message: None,
        detail: Value::Object(Default::default()),
        level,
    }
}

/// PostgreSQL counts microseconds from 2000-01-01.
fn unix_seconds(timestamp: pg_sys::TimestampTz) -> f64 {
    const EPOCH_2000: f64 = 946_684_800.0;
    EPOCH_2000 + timestamp as f64 / 1_000_000.0
}

fn push(event: Event) {
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            pending.push(event);
        }
    });
}

/// Install the transaction callbacks and the error hook; called from `_PG_init`.
pub fn register() {
    // SAFETY: done once per backend while the library loads; the previous
    // hook is kept and called first.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_transaction_end), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subtransaction_end), std::ptr::null_mut());
        PREVIOUS_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(on_error_report);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            let events = PENDING.with(|pending| pending.borrow().clone());
            if !events.is_empty() && pg_sys::XactReadOnly {
                // A read-only transaction (a refusal caught by a savepoint)
                // cannot write: the worker writes for it.
                PENDING.with(|pending| pending.borrow_mut().clear());
                worker::hand_over(&events, true);
            } else if !events.is_empty() {
                // The statement that committed has let go of its snapshot: the
                // write takes one of its own. An error here aborts the commit
                // (and the abort hands the events on).
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                write_here(&events).unwrap_or_else(|error| error.raise());
                pg_sys::PopActiveSnapshot();
                PENDING.with(|pending| pending.borrow_mut().clear());
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => {
            let mut events = PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
            if !events.is_empty() {
                events.iter_mut().for_each(roll_back);
                worker::hand_over(&events, false);
            }
        }
        _ => {}
    }
}

/// A registry change undone by a rollback is kept as ROLLED_BACK: it was
/// attempted, and the registry does not show it.
fn roll_back(event: &mut Event) {
    if event.class == "REGISTRY_CHANGE" {
        event.outcome = "ROLLED_BACK".into();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    let level = pg_sys::GetCurrentTransactionNestLevel();
    PENDING.with(|pending| {
        let Ok(mut pending) = pending.try_borrow_mut() else { return };
        for noted in pending.iter_mut().filter(|noted| noted.level >= level) {
            match event {
                pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => roll_back(noted),
                pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => noted.level = level - 1,
                _ => {}
            }
        }
    });
}

static mut PREVIOUS_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// PostgreSQL's own refusal to run a function or procedure (the EXECUTE
/// privilege, checked before the library is even called). Matched on the
/// untranslated message and the reporting C function, which no SQL code can
/// fake (RAISE reports from PL/pgSQL with message "%s"). Whether the routine
/// is one of the extension's is decided when the event is written.
const REFUSALS: [&CStr; 2] = [c"permission denied for function %s", c"permission denied for procedure %s"];

/// Runs while an error is reported, before the transaction aborts: it only
/// copies what it needs into backend memory (no catalog access, no palloc).
#[pg_guard]
unsafe extern "C-unwind" fn on_error_report(edata: *mut pg_sys::ErrorData) {
    if let Some(previous) = PREVIOUS_EMIT_LOG_HOOK {
        previous(edata);
    }
    let Some(report) = edata.as_ref() else { return };
    if report.elevel < PgLogLevel::ERROR as i32
        || report.sqlerrcode != PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32
        || report.message_id.is_null()
        || report.message.is_null()
    {
        return;
    }
    let message_id = CStr::from_ptr(report.message_id);
    if !REFUSALS.contains(&message_id) {
        return;
    }
    let message = CStr::from_ptr(report.message).to_string_lossy().into_owned();
    let statement = (!pg_sys::debug_query_string.is_null())
        .then(|| truncated(&CStr::from_ptr(pg_sys::debug_query_string).to_string_lossy(), 1000));
    push(Event {
        outcome: "REFUSED".into(),
        sqlstate: Some("42501".into()),
        message: Some(message),
        detail: serde_json::json!({ "statement": statement }),
        ..event("SECURITY", String::new())
    });
}

fn truncated(text: &str, bytes: usize) -> String {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The statements that write one event, with the same parameters: $1 when
/// (seconds since the Unix epoch), $2 class, $3 action, $4 outcome, $5 schema
/// id, $6 institution id, $7 the session user's oid, $8 whether the caller's
/// transaction committed, $9 SQLSTATE, $10 message, $11 detail. Refused calls
/// (class SECURITY) by a statement of their own, which looks the routine up.
const WRITE: &str = include_str!("../../../sql/queries/audit_write.sql");
const WRITE_REFUSED: &str = include_str!("../../../sql/queries/audit_write_refused.sql");

/// Write the events in the committing transaction, as the owner of the
/// trail (no caller has INSERT on it) in a security-restricted operation with
/// search_path pinned: the caller's settings take no part.
fn write_here(events: &[Event]) -> TcResult<()> {
    let Some(owner) = trail_owner() else {
        // The extension is not (or no longer, or not yet at this version) installed here.
        return Ok(());
    };
    restricted::as_role(&owner, "pg_catalog, pg_temp", || write_events(events, true))
}

/// The owner of `tenant.audit_events`, from the catalog caches (no query:
/// every operation writes the trail at its commit).
fn trail_owner() -> Option<String> {
    // SAFETY: catalog look-ups by name and oid inside a transaction; the
    // syscache tuple is released before returning.
    unsafe {
        let relation = crate::core::catalog::extension_relation(c"audit_events")?;
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, relation.into());
        if tuple.is_null() {
            return None;
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        let name = pg_sys::GetUserNameFromId(owner, true);
        (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Write `events`, one statement each (a kept plan: every operation's commit
/// writes one). The events name their institution already (see
/// `note_operation`), so the statements read nothing but their parameters.
pub(super) fn write_events(events: &[Event], committed: bool) -> TcResult<()> {
    use pgrx::pg_sys::{BOOLOID, FLOAT8OID, JSONBOID, OIDOID, TEXTOID, UUIDOID};
    let types = [FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, UUIDOID, UUIDOID, OIDOID, BOOLOID, TEXTOID, TEXTOID, JSONBOID]
        .map(Into::into);
    for event in events {
        let statement = if event.class == "SECURITY" { WRITE_REFUSED } else { WRITE };
        db::run_kept(
            statement,
            &types,
            &[
                event.at.into(),
                event.class.as_str().into(),
                event.action.as_str().into(),
                event.outcome.as_str().into(),
                event.schema_id.map(db::to_pg_uuid).into(),
                event.institution_id.map(db::to_pg_uuid).into(),
                pg_sys::Oid::from(event.who).into(),
                committed.into(),
                event.sqlstate.as_deref().into(),
                event.message.as_deref().into(),
                pgrx::JsonB(event.detail.clone()).into(),
            ],
        )?;
    }
    Ok(())
}
