//! The one error type of the extension. Every failure becomes a `TcError`
//! carrying a real SQLSTATE, and is turned into an `ErrorReport` (or a status
//! row) only at the SQL boundary.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::SpiError;
use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Debug, Clone, PartialEq)]
pub struct TcError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The SQLSTATE as PostgreSQL raised it, when `code` cannot hold it: a
    /// code of the user's own (`RAISE ... USING ERRCODE = 'P0123'`) has no
    /// `PgSqlErrorCode` and would otherwise read as XX000.
    raw: Option<i32>,
}

pub type TcResult<T> = Result<T, TcError>;

impl TcError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        TcError { code, message: message.into(), detail: None, hint: None, raw: None }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn null_argument(argument: &str) -> Self {
        TcError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("argument \"{argument}\" must not be NULL"),
        )
    }

    pub fn unknown_tenant(schema_id: impl fmt::Display) -> Self {
        TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("no institution schema with id {schema_id} in tenant.tenant_schemas"),
        )
        .hint("Look the tenant up with tenant.find_institution(...) or tenant.list_institutions().")
    }

    /// The five-character SQLSTATE, e.g. `42P06`.
    pub fn sqlstate(&self) -> String {
        match self.raw {
            Some(raw) => unpack_sqlstate(raw),
            None => sqlstate_of(self.code),
        }
    }

    /// One line for a status row or the operation log: message, detail and SQLSTATE.
    pub fn summary(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{} ({}) [SQLSTATE {}]", self.message, detail, self.sqlstate()),
            None => format!("{} [SQLSTATE {}]", self.message, self.sqlstate()),
        }
    }

    pub fn into_report(self) -> ErrorReport {
        // pgrx raises only the SQLSTATEs it knows: one of the user's own goes
        // out as XX000, and is named in the detail.
        let sqlstate = self.raw.map(unpack_sqlstate);
        let detail = match (self.detail, sqlstate) {
            (Some(detail), Some(sqlstate)) => Some(format!("{detail} (SQLSTATE {sqlstate})")),
            (None, Some(sqlstate)) => Some(format!("SQLSTATE {sqlstate}")),
            (detail, None) => detail,
        };
        let mut report = ErrorReport::new(self.code, self.message, "tenant_control");
        if let Some(detail) = detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report
    }

    /// Raise this error as a PostgreSQL ERROR; the current (sub)transaction aborts.
    pub fn raise(self) -> ! {
        self.into_report().report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }

    /// A PostgreSQL error (or a panic) caught while running an operation;
    /// `raised` is the SQLSTATE PostgreSQL last raised meanwhile (see `caught`).
    fn from_caught(caught: CaughtError, raised: i32) -> Self {
        match caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                let code = report.sql_error_code();
                // Only when it is this error's: its code reads the same once packed
                // into a PgSqlErrorCode, and that code could not hold it.
                let raw = (PgSqlErrorCode::from(raised) == code && raised != code as isize as i32).then_some(raised);
                TcError {
                    code,
                    message: report.message().to_string(),
                    detail: report.detail().map(str::to_string),
                    hint: report.hint().map(str::to_string),
                    raw,
                }
            }
            CaughtError::RustPanic { ereport, .. } => TcError::new(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("internal error in tenant_control: {}", ereport.message()),
            ),
        }
    }
}

impl fmt::Display for TcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl From<SpiError> for TcError {
    fn from(error: SpiError) -> Self {
        TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("SPI failure: {error}"))
    }
}

/// PostgreSQL packs a SQLSTATE as five 6-bit characters, lowest first.
pub fn sqlstate_of(code: PgSqlErrorCode) -> String {
    unpack_sqlstate(code as isize as i32)
}

fn unpack_sqlstate(packed: i32) -> String {
    (0..5).map(|i| (((packed >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

/// Unwrap for the bodies of SQL functions that raise instead of returning status rows.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for TcResult<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|error| error.raise())
    }
}

/// Run the body of an SQL function and raise whatever it fails with as a
/// `TcError`: a PostgreSQL error from inside (an SPI call, a nested function
/// of the extension) leaves the function as its SQLSTATE, message, detail and
/// hint only. Left to pgrx, such an error gets a Rust backtrace appended to
/// its DETAIL whenever the server runs with RUST_BACKTRACE set.
pub fn at_boundary<T>(work: impl FnOnce() -> TcResult<T>) -> T {
    crate::core::errors::caught(work).or_raise()
}

/// The error code of a five-character SQLSTATE (the reverse of `sqlstate_of`).
pub fn code_of(sqlstate: &str) -> PgSqlErrorCode {
    let packed = sqlstate
        .bytes()
        .take(5)
        .enumerate()
        .fold(0i32, |acc, (i, b)| acc | ((b.wrapping_sub(b'0') as i32 & 0x3F) << (6 * i)));
    PgSqlErrorCode::from(packed)
}

/// Run `work`, turning a PostgreSQL error it raises into a `TcError`. The
/// caller must let the error roll back the enclosing subtransaction before
/// it touches the database again.
///
/// pgrx hands the error over with its SQLSTATE as a `PgSqlErrorCode`, which
/// has no room for a code of the user's own: an error context callback,
/// which PostgreSQL calls for every report while `work` runs, notes the
/// SQLSTATE as raised, so that the error keeps it.
pub fn caught<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    let raised = AtomicI32::new(0);
    // SAFETY: `noting` lives on this frame until it is unlinked below, on
    // every path: an error inside `work` comes back here as a Rust panic
    // (pgrx's guard puts error_context_stack back as it was, `noting` on top).
    let mut noting = pg_sys::ErrorContextCallback {
        previous: unsafe { pg_sys::error_context_stack },
        callback: Some(note_sqlstate),
        arg: &raised as *const AtomicI32 as *mut std::ffi::c_void,
    };
    unsafe { pg_sys::error_context_stack = &mut noting };
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(work))
        .catch_others(|caught| Err(TcError::from_caught(caught, raised.load(Ordering::Relaxed))))
        .execute();
    unsafe { pg_sys::error_context_stack = noting.previous };
    outcome
}

/// The error context callback of `caught`: called inside errfinish, while
/// the report being made is on top of PostgreSQL's error stack.
unsafe extern "C-unwind" fn note_sqlstate(arg: *mut std::ffi::c_void) {
    // SAFETY: `arg` is the AtomicI32 of the `caught` frame that linked this callback.
    let raised = unsafe { &*(arg as *const AtomicI32) };
    raised.store(unsafe { pg_sys::geterrcode() }, Ordering::Relaxed);
}

/// Pure logic, tested without a server.
#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn sqlstates_unpack_like_postgres_packs_them() {
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA), "42P06");
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_DISK_FULL), "53100");
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION), "2D000");
        let error = TcError::new(PgSqlErrorCode::ERRCODE_RESERVED_NAME, "reserved").detail("why");
        assert_eq!(error.summary(), "reserved (why) [SQLSTATE 42939]");
    }
}
