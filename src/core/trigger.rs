//! The extension's trigger functions written in C (Rust): what every one of
//! them checks first.

use crate::core::errors::TcError;
use pgrx::prelude::*;

/// The call's TriggerData; a call that is not a trigger's is refused (39P01)
/// naming `function`.
///
/// # Safety
/// `fcinfo` is the current call's, valid.
pub unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo, function: &str) -> *mut pg_sys::TriggerData {
    // SAFETY: a trigger call's context is TriggerData; anything else is refused.
    let context = unsafe { (*fcinfo).context };
    if !unsafe { pgrx::is_a(context, pg_sys::NodeTag::T_TriggerData) } {
        TcError::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("{function} must be called as a trigger"),
        )
        .raise();
    }
    context as *mut pg_sys::TriggerData
}
