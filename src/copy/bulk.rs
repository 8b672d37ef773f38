//! Rows moved the way COPY moves them: read from the source table through
//! its table access method in one registered snapshot, and written into the
//! target table in batches by the access method's `multi_insert` with a
//! bulk-insert buffer ring. One WAL record per page filled rather than one
//! per row, no executor, no per-row expression: nothing a tenant wrote is
//! evaluated, and no row is copied twice.
//!
//! It is only used for a target table created by this transaction with no
//! index, key, trigger or rule yet (they are built after the load), whose
//! columns have the very same types as the source's (`Table::direct`): a
//! value's bytes then mean the same thing on both sides. Columns are matched
//! by name, so a source with dropped columns maps onto a target without
//! them; values stored out of line (TOAST) are fetched and stored again in
//! the target's own TOAST table by the access method, as INSERT does; stored
//! generated columns and identity columns keep the values the source holds
//! (a generated column's expression is immutable: recomputing it could only
//! give the same value).

use crate::core::errors::{TcError, TcResult};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// COPY's limits for one batch (copyfrom.c): a thousand rows or 64 kB.
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 65535;

/// A snapshot held for the whole copy: every table is read in it, so the copy
/// is consistent (no child row without its parent) without locking writers.
pub struct CopySnapshot(pg_sys::Snapshot);

impl CopySnapshot {
    /// A snapshot taken now (in READ COMMITTED a fresh one, in REPEATABLE
    /// READ the transaction's), registered until `release`. On an error the
    /// transaction's abort releases it.
    pub fn take() -> Self {
        // SAFETY: RegisterSnapshot copies the static snapshot it is given.
        CopySnapshot(unsafe { pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()) })
    }

    pub fn get(&self) -> pg_sys::Snapshot {
        self.0
    }

    pub fn release(self) {
        // SAFETY: registered by `take` on the current resource owner.
        unsafe { pg_sys::UnregisterSnapshot(self.0) }
    }
}

/// Copy every row `from` holds in `snapshot` into `into`, a table of this
/// transaction with no index; the number of rows copied.
pub fn copy_table(from: pg_sys::Oid, into: pg_sys::Oid, snapshot: &CopySnapshot) -> i64 {
    // SAFETY: what CopyFrom does with a table of its own transaction: the
    // relations stay locked until the transaction ends, every slot and the
    // scan are released here (or by the abort's resource-owner cleanup), and
    // `table_multi_insert` runs in a memory context reset after each batch.
    unsafe {
        let source = pg_sys::table_open(from, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let target = pg_sys::table_open(into, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let map = pg_sys::convert_tuples_by_name((*source).rd_att, (*target).rd_att);
        let scan = pg_sys::table_beginscan(source, snapshot.get(), 0, std::ptr::null_mut());
        let read = pg_sys::table_slot_create(source, std::ptr::null_mut());
        let mut batch = Batch::new(target);
        let mut rows = 0i64;
        while pg_sys::table_scan_getnextslot(scan, pg_sys::ScanDirection::ForwardScanDirection, read) {
            let slot = batch.next_slot();
            if map.is_null() {
                pg_sys::ExecCopySlot(slot, read);
            } else {
                pg_sys::execute_attr_map_slot((*map).attrMap, read, slot);
            }
            // The values may point into the source's buffer: copy them into
            // the slot's own memory before the scan moves on.
            pg_sys::ExecMaterializeSlot(slot);
            batch.added(slot);
            rows += 1;
        }
        batch.finish();
        pg_sys::table_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(read);
        pg_sys::table_close(source, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(target, pg_sys::NoLock as pg_sys::LOCKMODE);
        rows
    }
}

/// The rows waiting to be written into one table.
struct Batch {
    target: pg_sys::Relation,
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    used: usize,
    bytes: usize,
    state: pg_sys::BulkInsertState,
    command: pg_sys::CommandId,
    memory: pg_sys::MemoryContext,
}

impl Batch {
    unsafe fn new(target: pg_sys::Relation) -> Self {
        Batch {
            target,
            slots: Vec::with_capacity(BATCH_ROWS),
            used: 0,
            bytes: 0,
            state: pg_sys::GetBulkInsertState(),
            command: pg_sys::GetCurrentCommandId(true),
            memory: pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"tenant_control bulk copy".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            ),
        }
    }

    /// An empty slot of the target's kind for the next row.
    unsafe fn next_slot(&mut self) -> *mut pg_sys::TupleTableSlot {
        if self.used == self.slots.len() {
            self.slots.push(pg_sys::table_slot_create(self.target, std::ptr::null_mut()));
        }
        let slot = self.slots[self.used];
        pg_sys::ExecClearTuple(slot);
        slot
    }

    /// Count the row just stored in `slot`; write the batch when it is full.
    unsafe fn added(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        self.used += 1;
        self.bytes += row_bytes(slot);
        if self.used == BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    unsafe fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        let previous = pg_sys::MemoryContextSwitchTo(self.memory);
        pg_sys::table_multi_insert(self.target, self.slots.as_mut_ptr(), self.used as i32, self.command, 0, self.state);
        pg_sys::MemoryContextSwitchTo(previous);
        pg_sys::MemoryContextReset(self.memory);
        self.used = 0;
        self.bytes = 0;
    }

    unsafe fn finish(mut self) {
        self.flush();
        pg_sys::FreeBulkInsertState(self.state);
        pg_sys::table_finish_bulk_insert(self.target, 0);
        for slot in self.slots.drain(..) {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        pg_sys::MemoryContextDelete(self.memory);
    }
}

/// The memory a row takes once written: the tuple, plus the compressed size
/// of each value stored out of line, which the access method fetches into
/// memory to store it again (a batch of rows with large values is written
/// sooner, as COPY writes a batch of long lines sooner).
unsafe fn row_bytes(slot: *mut pg_sys::TupleTableSlot) -> usize {
    let tuple = pg_sys::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut());
    let mut bytes = (*tuple).t_len as usize;
    if (*(*tuple).t_data).t_infomask & pg_sys::HEAP_HASEXTERNAL as u16 == 0 {
        return bytes;
    }
    pg_sys::slot_getallattrs(slot);
    let descriptor = (*slot).tts_tupleDescriptor;
    for n in 0..(*descriptor).natts as usize {
        let attribute = (*descriptor).attrs.as_ptr().add(n);
        if !*(*slot).tts_isnull.add(n) && (*attribute).attlen == -1 {
            bytes += external_bytes((*(*slot).tts_values.add(n)).cast_mut_ptr::<u8>());
        }
    }
    bytes
}

/// The stored size of the value a varlena points to on disk, or 0 when it
/// is not such a pointer. (The header layout of postgres.h, little-endian:
/// 0x01 alone marks an out-of-line pointer, whose tag follows.)
unsafe fn external_bytes(value: *const u8) -> usize {
    if *value != 0x01 || *value.add(1) != pg_sys::vartag_external::VARTAG_ONDISK as u8 {
        return 0;
    }
    let pointer = std::ptr::read_unaligned(value.add(2).cast::<pg_sys::varatt_external>());
    (pointer.va_extinfo & ((1u32 << 30) - 1)) as usize
}

/// Run a read-only query returning one jsonb value in `snapshot` (the copy's
/// own), so that what it reports (row counts, hashes) is of the rows copied.
pub fn json_in_snapshot(sql: &str, snapshot: &CopySnapshot) -> TcResult<serde_json::Value> {
    let text = std::ffi::CString::new(sql)
        .map_err(|_| TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "a statement holds a NUL byte"))?;
    Spi::connect_mut(|_| {
        // SAFETY: SPI is connected for the closure; the plan is freed here and
        // the jsonb value is turned into an owned value before SPI finishes.
        unsafe {
            let plan = pg_sys::SPI_prepare(text.as_ptr(), 0, std::ptr::null_mut());
            let status = pg_sys::SPI_execute_snapshot(
                plan,
                std::ptr::null_mut(),
                std::ptr::null(),
                snapshot.get(),
                std::ptr::null_mut(),
                true,
                false,
                1,
            );
            let processed = pg_sys::SPI_processed;
            if status != pg_sys::SPI_OK_SELECT as i32 || processed != 1 {
                return Err(TcError::new(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    format!("a copy's summary query answered {status} with {processed} rows"),
                ));
            }
            let table = pg_sys::SPI_tuptable;
            let mut null = false;
            let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut null);
            let value = pgrx::JsonB::from_datum(datum, null).map(|json| json.0);
            pg_sys::SPI_freeplan(plan);
            Ok(value.unwrap_or_default())
        }
    })
}
