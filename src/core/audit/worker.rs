//! The autonomous writer of the audit trail: events of a transaction that
//! rolled back are written by a background worker of the extension, in a
//! transaction of its own.
//!
//! Why a background worker and not a loopback connection (dblink): a worker
//! needs no password, no pg_hba.conf entry and no extra extension, connects
//! as the bootstrap superuser without any credential, and can be started
//! only from C code in a backend of the cluster, so no SQL caller can start
//! one or choose what it writes. The events travel in a dynamic shared
//! memory segment, pinned until the worker has read it.

use super::Event;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Start a worker that writes `events` (of a transaction that `committed` or
/// not); called while the transaction aborts, so nothing here may raise an
/// ERROR: a failure is a WARNING naming the events lost.
pub(super) fn hand_over(events: &[Event], committed: bool) {
    // SAFETY: plain reads of this backend's state.
    let (in_recovery, database) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::MyDatabaseId) };
    if in_recovery || database == pg_sys::InvalidOid {
        return;
    }
    let payload = serde_json::to_vec(events).unwrap_or_default();
    // SAFETY: the segment is created, filled and pinned here; the worker
    // unpins it once read. When no worker can start it is unpinned again.
    let started = unsafe {
        let size = 8 + payload.len();
        let segment = pg_sys::dsm_create(size, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
        if segment.is_null() {
            false
        } else {
            let base = pg_sys::dsm_segment_address(segment) as *mut u8;
            std::ptr::copy_nonoverlapping((payload.len() as u64).to_le_bytes().as_ptr(), base, 8);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(8), payload.len());
            pg_sys::dsm_pin_mapping(segment);
            pg_sys::dsm_pin_segment(segment);
            let handle = pg_sys::dsm_segment_handle(segment);
            let extra = format!("{} {committed}", database.to_u32());
            let started = start_worker(handle, &extra);
            if !started {
                pg_sys::dsm_unpin_segment(handle);
            }
            pg_sys::dsm_detach(segment);
            started
        }
    };
    if !started {
        pgrx::warning!(
            "tenant_control: {} audit event(s) could not be recorded: no background worker slot came free within 5 s (max_worker_processes)",
            events.len()
        );
    }
}

/// How long a backend waits for a free worker slot before giving up.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Register the worker. When every slot (`max_worker_processes`) is taken,
/// for instance by a burst of rollbacks each starting a worker, wait for one
/// to free up (the workers finish in milliseconds): the rolling-back backend
/// slows down rather than losing its events.
fn start_worker(handle: pg_sys::dsm_handle, extra: &str) -> bool {
    let deadline = std::time::Instant::now() + SLOT_WAIT;
    loop {
        let started = BackgroundWorkerBuilder::new("tenant_control audit writer")
            .set_library("tenant_control")
            .set_function("tenant_control_audit_worker")
            .enable_spi_access()
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_extra(extra)
            .load_dynamic()
            .is_ok();
        if started || std::time::Instant::now() >= deadline {
            return started;
        }
        // SAFETY: a plain sleep; interrupts are held while a transaction aborts.
        unsafe { pg_sys::pg_usleep(5_000) };
    }
}

/// The worker: read the events, unpin the segment, write them, exit.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tenant_control_audit_worker(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let handle = argument.value() as pg_sys::dsm_handle;
    // SAFETY: the backend that started us pinned the segment for us; we
    // attach, copy the payload out, and unpin it so it goes away with us.
    let payload = unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return;
        }
        let base = pg_sys::dsm_segment_address(segment) as *const u8;
        let mut length = [0u8; 8];
        std::ptr::copy_nonoverlapping(base, length.as_mut_ptr(), 8);
        let payload = std::slice::from_raw_parts(base.add(8), u64::from_le_bytes(length) as usize).to_vec();
        pg_sys::dsm_unpin_segment(handle);
        pg_sys::dsm_detach(segment);
        payload
    };
    let mut extra = BackgroundWorker::get_extra().split(' ');
    let Some(Ok(database)) = extra.next().map(str::parse::<u32>) else { return };
    let committed = extra.next() == Some("true");
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), None);
    let events: Vec<Event> = serde_json::from_slice(&payload).unwrap_or_default();
    BackgroundWorker::transaction(move || {
        let installed = Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('tenant.audit_events') IS NOT NULL");
        if matches!(installed, Ok(Some(true))) {
            super::write_events(&events, committed)
                .unwrap_or_else(|error| pgrx::error!("tenant_control audit writer: {}", error.message));
        }
    });
}
