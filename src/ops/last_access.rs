//! When each institution was last used: `tenant.set_context` (through
//! `enter_context`) records it in `tenant.tenant_schemas.last_accessed_at`.
//!
//! Recording must cost nearly nothing: a connection writes at most once a
//! minute per institution (remembered in this backend's memory), never when
//! the registry row set_context read shows an access in the last minute
//! (another connection's), never when another session is writing the same
//! row (SKIP LOCKED: application
//! transactions never queue behind each other or behind an operation on the
//! tenant), never in a read-only transaction or on a standby, and a failure
//! to record never fails the application's transaction.

use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::subxact;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often one connection may record the same institution.
pub const EVERY: Duration = Duration::from_secs(60);

thread_local! {
    static RECORDED: RefCell<HashMap<uuid::Uuid, Instant>> = RefCell::new(HashMap::new());
}

/// Record that `institution` is being used, unless this connection did so
/// in the last minute.
pub fn touch(institution: uuid::Uuid) {
    let now = Instant::now();
    let due = RECORDED.with(|recorded| match recorded.borrow().get(&institution) {
        Some(at) => now.duration_since(*at) >= EVERY,
        None => true,
    });
    // A read-only transaction cannot write: the next read-write one will.
    if !due || read_only() {
        return;
    }
    RECORDED.with(|recorded| recorded.borrow_mut().insert(institution, now));
    // A failure (a serialization conflict, say) leaves the old value: last
    // access is a hint, not a fact anything depends on.
    let _ = subxact::atomically(|| write(institution));
}

fn read_only() -> bool {
    // SAFETY: a backend global (what transaction_read_only shows); a standby's
    // transactions are read-only too.
    unsafe { pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() }
}

fn write(institution: uuid::Uuid) -> TcResult<()> {
    db::run_kept(
        "UPDATE tenant.tenant_schemas t SET last_accessed_at = pg_catalog.now()
          WHERE t.id = (SELECT s.id FROM tenant.tenant_schemas s
                         WHERE s.institution_id = $1 AND s.status <> 'DROPPED'
                           AND (s.last_accessed_at IS NULL OR s.last_accessed_at < pg_catalog.now() - interval '1 minute')
                           FOR NO KEY UPDATE SKIP LOCKED)",
        &[pg_sys::UUIDOID.into()],
        &[db::to_pg_uuid(institution).into()],
    )
}
