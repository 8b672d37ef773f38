//! A check of the whole fleet shared with background workers. One backend
//! checks about 100 tenants a second (each costs a few milliseconds of
//! catalog reads and deparsing, on one core); the workers (dynamic
//! background workers, `tenant_control.integrity_workers` of them) check
//! tenants beside the caller, each in a fresh backend of its own, so the
//! check uses the server's other cores and no backend keeps the catalog
//! cache of the whole fleet.
//!
//! The caller and the workers take tenants one at a time from a counter in a
//! dynamic shared memory segment (so a slow worker holds no one up); each
//! worker sends each tenant's findings back on a message queue of its own
//! (`shm_mq`), and the caller puts them in the tenants' order: the findings
//! are those a check in the caller alone gives, in the same order. Workers
//! only read (never `fix`): a tenant a worker found repairable is repaired by
//! the caller, in the caller's transaction, as a check in the caller alone
//! does. A tenant no worker reported on (a worker that could not start,
//! failed or was terminated) is checked by the caller at the end.
//!
//! Workers see what is committed, so they are used only when that is what
//! the caller sees too: a READ COMMITTED transaction that has written
//! nothing yet (see `caller_sees_committed_only`).

use crate::core::settings;
use crate::integrity::findings::{Finding, Severity};
use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::pg_sys;
use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A worker costs a fork, a connection and a read of the template's
/// structure (about what checking a tenant costs): fewer tenants than this
/// for each worker are checked in the caller alone.
const TENANTS_PER_WORKER: usize = 16;
/// Each worker's message queue; the caller empties it between two of its own
/// tenants, a tenant's message is a few hundred bytes.
const QUEUE_BYTES: usize = 64 * 1024;
/// `pg_stat_activity.backend_type` of the workers.
pub const WORKER_TYPE: &str = "tenant_control integrity check";

/// The start of the shared segment: what the workers need to connect and
/// the counter of tenants handed out. Then the tenants' ids (in the
/// caller's order), then one message queue per worker.
#[repr(C)]
pub struct Header {
    next: AtomicU32,
    count: u32,
    pub database: pg_sys::Oid,
    pub role: pg_sys::Oid,
    pub version: i32,
    pub lock_timeout_ms: i32,
}

const IDS_AT: usize = 64;
const _: () = assert!(std::mem::size_of::<Header>() <= IDS_AT);

fn queues_at(count: usize) -> usize {
    (IDS_AT + 16 * count).next_multiple_of(64)
}

/// The shared segment as both sides see it.
pub struct Segment {
    base: *mut u8,
}

impl Segment {
    /// # Safety
    /// `seg` is attached and laid out by `start`.
    pub unsafe fn of(seg: *mut pg_sys::dsm_segment) -> Segment {
        Segment { base: unsafe { pg_sys::dsm_segment_address(seg) }.cast() }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the segment starts with a Header written by `start` before any worker exists.
        unsafe { &*self.base.cast::<Header>() }
    }

    fn count(&self) -> usize {
        self.header().count as usize
    }

    /// The next tenant nobody has taken: its position and id.
    pub fn claim(&self) -> Option<(usize, uuid::Uuid)> {
        let index = self.header().next.fetch_add(1, Ordering::SeqCst) as usize;
        (index < self.count()).then(|| {
            let mut id = [0u8; 16];
            // SAFETY: `count` ids of 16 bytes each were written at IDS_AT by `start`.
            unsafe { std::ptr::copy_nonoverlapping(self.base.add(IDS_AT + 16 * index), id.as_mut_ptr(), 16) };
            (index, uuid::Uuid::from_bytes(id))
        })
    }

    pub fn queue(&self, worker: usize) -> *mut pg_sys::shm_mq {
        // SAFETY: within the segment `start` sized for its workers' queues.
        unsafe { self.base.add(queues_at(self.count()) + worker * QUEUE_BYTES) }.cast()
    }
}

/// What a worker sends for one tenant: its position in the caller's list and
/// its findings (none when the worker did not find the tenant in the registry;
/// the caller then checks it itself).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub index: usize,
    pub findings: Option<Vec<WireFinding>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct WireFinding {
    schema_id: Option<String>,
    schema_name: Option<String>,
    check: String,
    severity: String,
    object: String,
    detail: String,
    fixed: bool,
}

impl From<&Finding> for WireFinding {
    fn from(f: &Finding) -> Self {
        WireFinding {
            schema_id: f.schema_id.map(|id| id.to_string()),
            schema_name: f.schema_name.clone(),
            check: f.check.to_string(),
            severity: f.severity.as_str().to_string(),
            object: f.object.clone(),
            detail: f.detail.clone(),
            fixed: f.fixed,
        }
    }
}

impl From<WireFinding> for Finding {
    fn from(w: WireFinding) -> Self {
        let severity = match w.severity.as_str() {
            "ERROR" => Severity::Error,
            "WARNING" => Severity::Warning,
            _ => Severity::Info,
        };
        Finding {
            schema_id: w.schema_id.and_then(|id| id.parse().ok()),
            schema_name: w.schema_name,
            check: check_name(w.check),
            severity,
            object: w.object,
            detail: w.detail,
            fixed: w.fixed,
        }
    }
}

/// A check's name as the `&'static str` a Finding holds: the names are a
/// few dozen literals of the code, each kept once for the backend's life.
fn check_name(name: String) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    match names.get(name.as_str()) {
        Some(known) => known,
        None => {
            let kept: &'static str = Box::leak(name.into_boxed_str());
            names.insert(kept);
            kept
        }
    }
}

/// Whether workers would see what the caller sees: committed data only
/// (READ COMMITTED, nothing written yet in the caller's transaction), and
/// the caller is not inside a security-restricted operation or parallel
/// mode. Asked on entry to tenant.check_integrity, before any statement of
/// its own: pgrx gives a transaction id to every SPI statement it runs.
pub fn caller_sees_committed_only() -> bool {
    // SAFETY: reads of the backend's transaction state.
    unsafe {
        pg_sys::XactIsoLevel == pg_sys::XACT_READ_COMMITTED as i32
            && pg_sys::GetTopTransactionIdIfAny() == pg_sys::InvalidTransactionId
            && !pg_sys::InSecurityRestrictedOperation()
            && !pg_sys::IsInParallelMode()
    }
}

/// The caller's side of a shared check.
pub struct Gather {
    seg: *mut pg_sys::dsm_segment,
    segment: Segment,
    /// The queues of the workers still running.
    queues: Vec<*mut pg_sys::shm_mq_handle>,
    /// Tenants whose findings came from a worker.
    pub by_worker: Vec<bool>,
    /// The workers registered (some may still fail to connect).
    pub started: usize,
}

/// Start the workers for a check of `ids` (in the caller's order) at
/// template version `version`; None when the caller checks alone (no
/// workers configured, too few tenants, not `shareable` (see
/// caller_sees_committed_only), or no worker slot).
pub fn start(ids: &[uuid::Uuid], version: i32, shareable: bool) -> Option<Gather> {
    let workers = (settings::integrity_workers().max(0) as usize).min(ids.len() / TENANTS_PER_WORKER);
    if workers == 0 || !shareable {
        return None;
    }
    let size = queues_at(ids.len()) + workers * QUEUE_BYTES;
    // SAFETY: a new segment of `size` bytes laid out as Segment describes;
    // the header and ids are written before any worker is registered. The
    // segment belongs to the current resource owner, so an error in the
    // caller detaches it (and the workers' next send sees the caller gone).
    unsafe {
        let seg = pg_sys::dsm_create(size, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
        if seg.is_null() {
            return None;
        }
        let segment = Segment::of(seg);
        segment.base.cast::<Header>().write(Header {
            next: AtomicU32::new(0),
            count: ids.len() as u32,
            database: pg_sys::MyDatabaseId,
            // Inside tenant.check_integrity (SECURITY DEFINER): the extension's owner.
            role: pg_sys::GetUserId(),
            version,
            lock_timeout_ms: settings::lock_timeout_ms(),
        });
        for (i, id) in ids.iter().enumerate() {
            std::ptr::copy_nonoverlapping(id.as_bytes().as_ptr(), segment.base.add(IDS_AT + 16 * i), 16);
        }
        let handle = pg_sys::dsm_segment_handle(seg);
        let mut queues = Vec::with_capacity(workers);
        for number in 0..workers {
            let mq = pg_sys::shm_mq_create(segment.queue(number).cast::<c_void>(), QUEUE_BYTES);
            pg_sys::shm_mq_set_receiver(mq, pg_sys::MyProc);
            let builder = BackgroundWorkerBuilder::new(&format!("{WORKER_TYPE} {}", number + 1))
                .set_type(WORKER_TYPE)
                .set_library("tenant_control")
                .set_function("tc_integrity_worker")
                .enable_spi_access()
                .set_argument(Some(pg_sys::Datum::from(((handle as usize) << 32) | number)))
                .set_notify_pid(pg_sys::MyProcPid);
            let mut worker: pg_sys::BackgroundWorker = (&builder).into();
            let mut registered: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
            // No free slot (max_worker_processes): go on with the workers started so far.
            if !pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut registered) {
                break;
            }
            // With the worker's handle, the queue reports a worker that ended before attaching.
            queues.push(pg_sys::shm_mq_attach(mq, seg, registered));
        }
        // The check goes on all the same, slower: say why.
        if queues.len() < workers {
            pgrx::notice!(
                "{} of {workers} integrity workers could start (no free background worker slot: see max_worker_processes); the calling backend checks the rest",
                queues.len()
            );
        }
        if queues.is_empty() {
            pg_sys::dsm_detach(seg);
            return None;
        }
        let started = queues.len();
        Some(Gather { seg, segment, queues, by_worker: vec![false; ids.len()], started })
    }
}

impl Gather {
    /// A tenant for the caller to check.
    pub fn claim(&self) -> Option<usize> {
        self.segment.claim().map(|(index, _)| index)
    }

    /// Take the findings the workers have sent so far into `found`; false
    /// once every worker has ended and everything it sent was taken.
    pub fn receive(&mut self, found: &mut [Option<Vec<Finding>>]) -> bool {
        let mut running = Vec::with_capacity(self.queues.len());
        for &queue in &self.queues {
            loop {
                let (mut size, mut data): (usize, *mut c_void) = (0, std::ptr::null_mut());
                // SAFETY: an attached queue; the data stays valid until the next receive on it.
                let result = unsafe { pg_sys::shm_mq_receive(queue, &mut size, &mut data, true) };
                if result != pg_sys::shm_mq_result::SHM_MQ_SUCCESS {
                    if result == pg_sys::shm_mq_result::SHM_MQ_WOULD_BLOCK {
                        running.push(queue);
                    }
                    break;
                }
                // SAFETY: `size` bytes at `data`, as received.
                let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) };
                // A message that does not read leaves its tenant to the caller.
                if let Ok(Message { index, findings: Some(findings) }) = serde_json::from_slice::<Message>(bytes) {
                    if index < found.len() {
                        found[index] = Some(findings.into_iter().map(Finding::from).collect());
                        self.by_worker[index] = true;
                    }
                }
            }
        }
        self.queues = running;
        !self.queues.is_empty()
    }

    /// Sleep until a worker sends something or ends (the postmaster signals
    /// the caller then), a cancel, or a second at most.
    pub fn wait(&self) {
        // SAFETY: the backend's own latch, reset after the wait as PostgreSQL's loops do.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                1000,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }

    /// Detach from the segment: a worker still running stops at its next send.
    pub fn finish(self) {
        // SAFETY: the segment `start` created; the queue handles are not used again.
        unsafe { pg_sys::dsm_detach(self.seg) }
    }
}
