//! The privilege boundary: code a tenant could have written runs only as the
//! tenant's own role.
//!
//! A tenant's role can put code in its schema: functions, operators, casts,
//! domains with CHECKs, generated columns, index expressions, triggers,
//! rules, policies. The extension's functions run as its owner, a superuser.
//! Work that evaluates a tenant's objects (loading rows into its tables,
//! firing its triggers, running a migration against its schema) goes through
//! `as_role`, which does what PostgreSQL does for ANALYZE, CREATE INDEX and
//! REFRESH MATERIALIZED VIEW since CVE-2022-1552: it switches the current user
//! to the tenant's role inside a security-restricted operation (no SET ROLE,
//! no temporary objects, no way out), with `search_path` pinned, and puts the
//! user and every setting the work changed back afterwards, however it ends.
//!
//! The other half of the boundary is `InternalWork`: the extension marks its
//! own changes to tenant schemas with a flag that lives in this backend's
//! memory, which no SQL statement can set (a setting could be set by anyone
//! before the library loads).

use crate::core::db;
use crate::core::errors;
use crate::core::errors::{TcError, TcResult};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

/// Run `work` as `role` in a security-restricted operation with
/// `search_path` set to `search_path` (a list of quoted schema names).
/// Whatever the work does to settings (a `SET` inside a migration) is undone
/// when it returns.
pub fn as_role<T>(role: &str, search_path: &str, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    switched(role_oid(role)?, pg_sys::SECURITY_RESTRICTED_OPERATION as i32, search_path, work)
}

/// Run the extension's own `work` as `owner` (the extension's owner) with
/// `search_path` pinned to `pg_catalog, pg_temp`: what calling a SECURITY
/// DEFINER function of the extension does (fmgr_security_definer keeps the
/// security context it finds, a security-restricted operation included), for
/// a function that runs as its caller and needs its owner's rights only now
/// and then (the DDL event trigger). Never for code a tenant could have
/// written: that runs through `as_role`.
pub fn as_owner<T>(owner: pg_sys::Oid, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    switched(owner, 0, "pg_catalog, pg_temp", work)
}

/// `work` as `user`, with `restrictions` added to the security context and
/// `search_path` set, both put back afterwards however it ends.
fn switched<T>(
    user: pg_sys::Oid,
    restrictions: i32,
    search_path: &str,
    work: impl FnOnce() -> TcResult<T>,
) -> TcResult<T> {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context: i32 = 0;
    // SAFETY: the same sequence as PostgreSQL's index_build and
    // ExecRefreshMatView: remember the user and security context, switch,
    // open a GUC nest level, and undo both in reverse order. Nothing between
    // the switch and the restore can skip the restore: errors are caught.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            user,
            saved_context | restrictions | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        pg_sys::NewGUCNestLevel()
    };
    let outcome = errors::caught(|| {
        db::set_local("search_path", search_path, false)?;
        work()
    });
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    outcome
}

/// The role's oid, from the catalog cache (no query: this runs for every
/// tenant an operation visits, and for every audit write).
fn role_oid(role: &str) -> TcResult<pg_sys::Oid> {
    let missing = || TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("role \"{role}\" does not exist"));
    let name = std::ffi::CString::new(role).map_err(|_| missing())?;
    // SAFETY: a catalog look-up by name inside a transaction.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if oid == pg_sys::InvalidOid {
        return Err(missing());
    }
    Ok(oid)
}

thread_local! {
    /// How deep the extension's own work is nested, and in which local
    /// transaction it began: a mark left by an earlier transaction never counts.
    static INTERNAL_DEPTH: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

fn local_transaction() -> u32 {
    // SAFETY: MyProc is this backend's own PGPROC, set for its whole life.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Marks the extension's own DDL and data changes on tenant schemas while it
/// is alive: the template's event trigger does not count them as changes of
/// the template, and the quota guard lets them through. Dropping it (also
/// while unwinding from an error) ends the mark.
pub struct InternalWork(());

impl InternalWork {
    pub fn begin() -> Self {
        let transaction = local_transaction();
        INTERNAL_DEPTH.with(|mark| {
            let (depth, began) = mark.get();
            let depth = if began == transaction { depth } else { 0 };
            mark.set((depth + 1, transaction));
        });
        InternalWork(())
    }
}

impl Drop for InternalWork {
    fn drop(&mut self) {
        INTERNAL_DEPTH.with(|mark| {
            let (depth, began) = mark.get();
            mark.set((depth.saturating_sub(1), began));
        });
    }
}

/// Run `work` marked as the extension's own work.
pub fn internal<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    let _mark = InternalWork::begin();
    work()
}

/// Whether the extension's own work is under way in this backend.
pub fn internal_work_active() -> bool {
    INTERNAL_DEPTH.with(|mark| {
        let (depth, began) = mark.get();
        depth > 0 && began == local_transaction()
    })
}

/// Whether this backend is inside a security-restricted operation: code a
/// tenant wrote runs there (as the tenant's role) even while the extension's
/// own work is under way, so the mark must not cover it.
pub fn in_restricted_operation() -> bool {
    // SAFETY: reads this backend's security context.
    unsafe { pg_sys::InSecurityRestrictedOperation() }
}

/// The mark as SQL sees it, for the PL/pgSQL event triggers and the quota
/// guard: the extension's own work, outside any security-restricted
/// operation. A C function, so calling it loads the library; there is no
/// setting for a session to fake. Volatile: it changes within a statement.
#[pg_extern(name = "internal_work_active", volatile, parallel_restricted)]
pub(crate) fn internal_work_active_sql() -> bool {
    internal_work_active() && !in_restricted_operation()
}

/// DDL and data changes the extension runs on tenant schemas: the event
/// trigger watching the template does not take them for a change of the
/// template, the quota guards let them through, and `tc_` names may be used.
/// The mark lives in backend memory (see `restricted::internal`): no session
/// can set it.
pub fn internal_ddl<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    internal(work)
}
