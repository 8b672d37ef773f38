//! How `tenant.set_context` switches the transaction to a tenant's role.
//!
//! Until 0.2.0 `tenant_control_app` was a member of every tenant role, and
//! set_context ran `SET LOCAL ROLE`. PostgreSQL 15 expands a role's
//! memberships into a list per backend in quadratic time and throws that
//! list away on any change to pg_auth_members in the whole cluster: with
//! 10,000 tenants an application connection paid 155-177 ms on its first
//! privilege check, and again after every sign-up anywhere. It also let an
//! application `SET ROLE` to any tenant's role directly, without a context.
//!
//! Now no application role is a member of any tenant role. set_context
//! (which the application calls, and which decides from the registry, read
//! by the SECURITY DEFINER `enter_context`, which role the institution has)
//! sets the `role` setting itself, transaction-locally, exactly as
//! `SET LOCAL ROLE` would, except for the one check a plain SET ROLE makes:
//! that the session user is a member of the role. Everything else is
//! PostgreSQL's own machinery, so:
//! - COMMIT, ROLLBACK and ROLLBACK TO SAVEPOINT restore the previous role
//!   exactly as they restore a SET LOCAL ROLE (the GUC stack);
//! - `RESET ROLE`, `SET ROLE x` and `SET LOCAL ROLE x` by the application
//!   still check membership of the session user, which belongs to no tenant
//!   role: they can only go back to the login role, never reach a tenant;
//! - parallel workers copy the leader's role as they always do.

use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use std::ffi::CString;

/// Whether the current user may have set_context switch it to a tenant's
/// role: it is a member of `tenant_control_app` (superusers are members of
/// every role). `tenant_control_app` has a handful of members at most, so
/// this membership list is short and cheap to rebuild.
pub fn may_assume_tenant_roles() -> bool {
    // SAFETY: catalog look-ups by name and oid inside a transaction.
    unsafe {
        let app = pg_sys::get_role_oid(c"tenant_control_app".as_ptr(), true);
        app != pg_sys::InvalidOid && pg_sys::is_member_of_role(pg_sys::GetUserId(), app)
    }
}

/// `SET LOCAL ROLE role` without the session user's membership check. The
/// role must exist and must not be a superuser (a registry pointing at one
/// would otherwise hand out superuser rights).
pub fn assume_for_transaction(role: &str) -> TcResult<()> {
    let name = CString::new(role).map_err(|_| refused(role, "its name contains a NUL byte"))?;
    // SAFETY: catalog look-ups inside a transaction.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if oid == pg_sys::InvalidOid {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{role}\" of the institution does not exist"),
        )
        .hint("tenant.check_integrity() reports it as role_missing, and repairs it."));
    }
    // SAFETY: a syscache look-up of an existing role.
    if unsafe { pg_sys::superuser_arg(oid) } {
        return Err(refused(role, "it is a superuser"));
    }
    set_role_setting(&name, oid);
    Ok(())
}

fn refused(role: &str, why: &str) -> TcError {
    TcError::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("role \"{role}\" cannot be assumed: {why}"))
}

/// Switch to the role `oid` named `name` for the rest of the transaction.
///
/// PostgreSQL's check hook for `role` (check_role) makes no membership test
/// while a parallel worker restores its leader's settings
/// (`InitializingParallelWorker`): it then takes the role already in force
/// (since 15.9 it trusts SetCurrentRoleId, which the worker has called).
/// So, with the flag raised for these three calls only:
/// 1. the `role` setting is set LOCAL: PostgreSQL stacks the previous role,
///    which COMMIT, ROLLBACK or ROLLBACK TO SAVEPOINT put back (and an error
///    in the next steps aborts the transaction, which puts it back too);
/// 2. SetCurrentRoleId switches to the tenant's role, as assign_role does;
/// 3. the setting is set again, so that its saved state names the role now
///    in force (a later savepoint restores the tenant's role, not the old one).
///
/// The flag goes back to its previous value whatever happens, an error
/// included; no SQL runs in between.
fn set_role_setting(name: &CString, oid: pg_sys::Oid) {
    let set = || unsafe {
        pg_sys::set_config_option(
            c"role".as_ptr(),
            name.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            PgLogLevel::ERROR as i32,
            false,
        )
    };
    // SAFETY: a backend global read and written by this backend only; set
    // back to its previous value in `finally`, which runs on error too.
    let before = unsafe { pg_sys::InitializingParallelWorker };
    PgTryBuilder::new(|| unsafe {
        pg_sys::InitializingParallelWorker = true;
        set();
        pg_sys::SetCurrentRoleId(oid, false);
        set();
    })
    .finally(|| unsafe { pg_sys::InitializingParallelWorker = before })
    .execute();
}
