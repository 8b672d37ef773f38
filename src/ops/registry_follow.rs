//! The registry's follow-up triggers for the fleet views and the reference
//! data: `tenant.fleet_views_follow()` and `tenant.reference_follow_new()`.
//!
//! They fire on every create (an ACTIVE registry row inserted) and every
//! warm-pool claim (a SPARE row made ACTIVE), and almost always have nothing
//! to do: no fleet view, no reference source. As PL/pgSQL each call cost a
//! function call with `SET search_path` (a GUC save and restore), the
//! planning of its `EXISTS` query (again on every claim: the claim's schema
//! rename resets every cached plan of the backend) and, in a new connection,
//! compiling the function. Here the question "does the table hold a row?" is
//! answered without SQL: one heap scan, stopped at the first row visible to a
//! query run now. Only then is the work run through SPI, as before
//! (`tenant.fleet_views_follow_now()`, `tenant.reference_sync_new(id)`).

use crate::core::catalog::{holds_a_row, with_query_snapshot};
use crate::core::db;
use crate::core::errors::{OrRaise, TcError, TcResult};
use crate::core::trigger::trigger_data;
use pgrx::prelude::*;

#[no_mangle]
pub extern "C" fn pg_finfo_tc_fleet_views_follow() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// `tenant.fleet_views_follow()`: the AFTER row trigger on the registry and
/// the migrations that rebuilds the fleet views, when there are any
/// (`tenant.fleet_views_follow_now()` does it, and turns a refresh that
/// cannot get its lock into a WARNING).
///
/// # Safety
/// Called by PostgreSQL as a trigger function, with `fcinfo` valid.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_fleet_views_follow(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid.
    unsafe { trigger_data(fcinfo, "tenant.fleet_views_follow()") };
    if with_query_snapshot(|snapshot| holds_a_row(snapshot, c"fleet_views")) {
        db::run("SELECT tenant.fleet_views_follow_now()", &[]).or_raise();
    }
    pg_sys::Datum::from(0)
}

#[no_mangle]
pub extern "C" fn pg_finfo_tc_reference_follow_new() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// `tenant.reference_follow_new()`: the AFTER row trigger on the registry
/// (a new ACTIVE institution, a claimed spare) that syncs every reference
/// source into the institution, when there are any.
///
/// # Safety
/// Called by PostgreSQL as a trigger function, with `fcinfo` valid.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_reference_follow_new(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid.
    let trigger = unsafe { trigger_data(fcinfo, "tenant.reference_follow_new()") };
    if with_query_snapshot(|snapshot| holds_a_row(snapshot, c"reference_sources")) {
        // SAFETY: TriggerData, its tuples and its relation are valid for the whole call.
        let institution = unsafe { new_row_id(&*trigger) };
        institution.and_then(|id| db::run("SELECT tenant.reference_sync_new($1)", &[id.into()])).or_raise();
    }
    pg_sys::Datum::from(0)
}

/// The `id` of the row a registry row trigger fired for (NEW).
///
/// # Safety
/// `trigger` is the TriggerData of the current call.
unsafe fn new_row_id(trigger: &pg_sys::TriggerData) -> TcResult<pgrx::Uuid> {
    // SAFETY: the caller's TriggerData; a row trigger's tuples and relation.
    let row = unsafe { PgHeapTuple::from_trigger_data(trigger, pgrx::TriggerTuple::New) };
    row.and_then(|row| row.get_by_name::<pgrx::Uuid>("id").ok().flatten()).ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "tenant.reference_follow_new() must be fired for each row inserted or updated in tenant.tenant_schemas",
        )
    })
}
