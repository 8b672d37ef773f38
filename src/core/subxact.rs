//! Run a piece of work in an internal subtransaction, the way PL/pgSQL runs
//! a block with an EXCEPTION clause: on any error everything the work did is
//! rolled back, and the caller gets the error as a value instead of an abort,
//! so it can still write the FAILED row of the operation log.

use crate::core::errors;
use crate::core::errors::TcResult;
use pgrx::pg_sys;
use pgrx::prelude::*;

pub fn atomically<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    in_subtransaction(work, |outcome| outcome.is_ok())
}

/// Run read-only work in an internal subtransaction that is always rolled
/// back: what the work returns survives, the locks it took do not. A check
/// of thousands of tenants would otherwise hold a lock on every relation it
/// read until the end of the transaction, and exhaust the lock table.
pub fn rolled_back<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    in_subtransaction(work, |_| false)
}

/// `atomically`, then `cleanup` whatever the outcome, before a cancel is
/// raised again: what must be let go of even when the caller is cancelled
/// (connections to another server, whose open transaction would otherwise
/// stay idle there for as long as this session lives).
pub fn atomically_then<T>(work: impl FnOnce() -> TcResult<T>, cleanup: impl FnOnce() -> TcResult<()>) -> TcResult<T> {
    let outcome = subtransaction(work, |outcome| outcome.is_ok());
    let cleaned = cleanup();
    let done = stop_when_cancelled(outcome)?;
    cleaned.map(|_| done)
}

fn in_subtransaction<T>(work: impl FnOnce() -> TcResult<T>, keep: impl FnOnce(&TcResult<T>) -> bool) -> TcResult<T> {
    stop_when_cancelled(subtransaction(work, keep))
}

/// `keep` decides, from the outcome, whether the subtransaction is released
/// (its effects kept) or rolled back.
fn subtransaction<T>(work: impl FnOnce() -> TcResult<T>, keep: impl FnOnce(&TcResult<T>) -> bool) -> TcResult<T> {
    // SAFETY: the same sequence as PL/pgSQL's exec_stmt_block: remember the
    // memory context and resource owner, open the subtransaction, and put both
    // back once it is released or rolled back.
    let (caller_context, caller_owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(caller_context);
    }

    let outcome = errors::caught(work);

    unsafe {
        if keep(&outcome) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(caller_context);
        pg_sys::CurrentResourceOwner = caller_owner;
    }
    outcome
}

fn stop_when_cancelled<T>(outcome: TcResult<T>) -> TcResult<T> {
    match outcome {
        // A cancel or statement timeout means "stop", not "record and go on".
        Err(error) if error.code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED => error.raise(),
        other => other,
    }
}
