//! The background worker of a shared fleet check (see parallel.rs): a fresh
//! backend that connects to the caller's database as the extension's owner
//! (the role tenant.check_integrity runs as), takes tenants from the shared
//! counter, checks each as the caller would (read only, never `fix`) and
//! sends its findings to the caller. It ends when no tenant is left or the
//! caller is gone; its catalog caches end with it.

use crate::copy::catalog::CATALOG_PATH;
use crate::copy::structure::{self, INDEX_PROBES};
use crate::copy::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db;
use crate::core::errors::TcResult;
use crate::integrity::drift::Reference;
use crate::integrity::parallel::{Message, Segment, WireFinding};
use crate::integrity::{check_one, plans, registered};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::ffi::c_void;

extern "C-unwind" {
    /// PostgreSQL's own SIGTERM handler of a backend (tcop/postgres.c): it
    /// only sets the flags the next interrupt check acts on. Declared here
    /// because pg_sys's wrapper is not a signal handler.
    fn die(postgres_signal_arg: std::ffi::c_int);
}

/// The worker's entry point, named in its registration (parallel::start).
/// Its argument: the shared segment's handle (high 32 bits) and the
/// worker's number (its queue).
#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn tc_integrity_worker(argument: pg_sys::Datum) {
    let raw = argument.value() as u64;
    let (handle, number) = ((raw >> 32) as u32, (raw & 0xffff_ffff) as usize);
    // SAFETY: as a parallel worker does: SIGTERM (pg_terminate_backend,
    // a shutdown) ends the worker at its next interrupt check.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    // SAFETY: attached for the worker's life (no resource owner yet); null
    // when the caller has already finished and the segment is gone.
    let seg = unsafe { pg_sys::dsm_attach(handle) };
    if seg.is_null() {
        return;
    }
    // SAFETY: the caller laid the segment out before registering this worker.
    let segment = unsafe { Segment::of(seg) };
    // SAFETY: this worker's own queue, created by the caller, who receives on it.
    let queue = unsafe {
        let mq = segment.queue(number);
        pg_sys::shm_mq_set_sender(mq, pg_sys::MyProc);
        pg_sys::shm_mq_attach(mq, seg, std::ptr::null_mut())
    };
    let header = segment.header();
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(header.database), Some(header.role));
    let (version, lock_timeout_ms) = (header.version, header.lock_timeout_ms);
    BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        let sent = |index: usize, findings: Option<&[crate::integrity::Finding]>| {
            let message = Message { index, findings: findings.map(|f| f.iter().map(WireFinding::from).collect()) };
            let bytes = serde_json::to_vec(&message).unwrap_or_default();
            // SAFETY: the attached queue; blocks while it is full (the caller empties it).
            let result =
                unsafe { pg_sys::shm_mq_send(queue, bytes.len(), bytes.as_ptr().cast::<c_void>(), false, true) };
            result == pg_sys::shm_mq_result::SHM_MQ_SUCCESS
        };
        if let Err(error) = check_share(&segment, version, lock_timeout_ms, sent) {
            error.raise()
        }
    }));
    // SAFETY: done with the queue and the segment.
    unsafe {
        pg_sys::shm_mq_detach(queue);
        pg_sys::dsm_detach(seg);
    }
}

/// Check tenants taken from the shared counter until none is left or the
/// caller stops listening (`send` false), with the settings
/// tenant.check_integrity runs with (its pinned search_path, the caller's
/// tenant_control.lock_timeout, INDEX_PROBES).
fn check_share(
    segment: &Segment,
    version: i32,
    lock_timeout_ms: i32,
    mut send: impl FnMut(usize, Option<&[crate::integrity::Finding]>) -> bool,
) -> TcResult<()> {
    let lock_timeout = format!("{lock_timeout_ms}ms");
    db::with_settings(&[("search_path", CATALOG_PATH), ("lock_timeout", &lock_timeout)], || {
        let mut reference = Reference {
            version: template::version()?,
            structure: structure::read(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?,
            statements: None,
        };
        // The template changed since the caller read it: the caller checks every tenant.
        if reference.version != version {
            return Ok(());
        }
        let tenants: HashMap<uuid::Uuid, _> = registered(None)?.into_iter().map(|r| (r.tenant.id, r)).collect();
        let _plans = plans::Plans::prepare()?;
        db::with_settings(&INDEX_PROBES, || {
            let mut checked = 0u32;
            while let Some((index, id)) = segment.claim() {
                let findings = tenants.get(&id).map(|registered| {
                    checked += 1;
                    if checked.is_multiple_of(db::TENANTS_PER_CACHE_RELEASE) {
                        db::release_catalog_caches();
                    }
                    check_one(&mut reference, registered, false)
                });
                if !send(index, findings.as_deref()) {
                    break;
                }
            }
            Ok(())
        })
    })
}
