//! Catalog reads without SQL, for paths that run on every command or every
//! claim (the DDL event trigger, the warm-pool claim, the audit trail's
//! commit, the context cache, the registry's look-up and follow-up
//! triggers): no query to plan, and nothing a tenant wrote is looked up or
//! run. Catalogs are read with the catalog's own snapshot; the extension's
//! tables with a [`QuerySnapshot`], as a query run now would read them.

use pgrx::pg_sys;
use std::ffi::CStr;

/// The oid of the extension's relation `tenant.<name>`; None when the
/// extension (or that relation, at this version) is not installed here.
pub fn extension_relation(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: catalog look-ups by name inside a transaction.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"tenant".as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        let relation = pg_sys::get_relname_relid(name.as_ptr(), namespace);
        (relation != pg_sys::InvalidOid).then_some(relation)
    }
}

/// Scan `catalog` through its `index` for the rows whose oid columns equal
/// the given values (`(column number, value)`, in the index's column
/// order), calling `visit` with each row and the catalog's descriptor until
/// it returns false. With `InvalidOid` for the index (and no keys) the
/// whole catalog is read.
///
/// # Safety
/// Inside a transaction; `catalog` and `index` are a system catalog and one
/// of its indexes (or `InvalidOid`), the keys name oid columns of it. `visit` must not keep the
/// tuple: it ends with the scan.
pub unsafe fn scan_by_oids(
    catalog: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[(pg_sys::AttrNumber, pg_sys::Oid)],
    mut visit: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc) -> bool,
) {
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let relation = pg_sys::table_open(catalog, lock);
        let mut scan_keys: Vec<pg_sys::ScanKeyData> = keys.iter().map(|_| std::mem::zeroed()).collect();
        for (key, (column, value)) in scan_keys.iter_mut().zip(keys) {
            pg_sys::ScanKeyInit(
                key,
                *column,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::Oid::from(pg_sys::F_OIDEQ),
                (*value).into(),
            );
        }
        let scan = pg_sys::systable_beginscan(
            relation,
            index,
            index != pg_sys::InvalidOid,
            std::ptr::null_mut(),
            scan_keys.len() as i32,
            scan_keys.as_mut_ptr(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() || !visit(tuple, (*relation).rd_att) {
                break;
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(relation, lock);
    }
}

/// The cells of a PostgreSQL List (none for NIL).
///
/// # Safety
/// `list` is NIL or a valid List that outlives the slice.
pub unsafe fn cells<'a>(list: *mut pg_sys::List) -> &'a [pg_sys::ListCell] {
    if list.is_null() {
        return &[];
    }
    // SAFETY: a List's elements array holds `length` cells.
    unsafe { std::slice::from_raw_parts((*list).elements, (*list).length as usize) }
}

/// An oid column of a catalog row; None when null.
///
/// # Safety
/// `tuple` is a row of the catalog `descriptor` describes, `column` an oid column of it.
pub unsafe fn oid_column(
    tuple: pg_sys::HeapTuple,
    descriptor: pg_sys::TupleDesc,
    column: pg_sys::AttrNumber,
) -> Option<pg_sys::Oid> {
    let mut null = true;
    let value = unsafe { pg_sys::heap_getattr(tuple, column as i32, descriptor, &mut null) };
    (!null).then(|| pg_sys::Oid::from(value.value() as u32))
}

/// A key for [`scan_index`]: the index's first column equals `value`, compared
/// by `equal` (the btree equality function of the column's type, e.g.
/// `F_UUID_EQ`, `F_TEXTEQ`) in the index's own collation.
pub struct IndexKey {
    pub value: pg_sys::Datum,
    pub equal: u32,
}

/// The snapshot a query run now would read with, taken as SPI takes it before
/// each statement of a volatile function: a command-counter step (rows
/// written earlier in this command are seen), then in READ COMMITTED a new
/// snapshot, otherwise the transaction's. Reads of the extension's tables
/// without SQL take one and hand it to [`scan_index`] and [`holds_a_row`].
pub struct QuerySnapshot(pg_sys::Snapshot);

/// Run `read` with a [`QuerySnapshot`], released afterwards (on an error, by
/// the transaction's resource owner).
pub fn with_query_snapshot<T>(read: impl FnOnce(&QuerySnapshot) -> T) -> T {
    // SAFETY: inside a transaction; the snapshot is registered for the
    // duration of `read` and unregistered after it.
    let snapshot = unsafe {
        pg_sys::CommandCounterIncrement();
        QuerySnapshot(pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()))
    };
    let result = read(&snapshot);
    // SAFETY: registered above.
    unsafe { pg_sys::UnregisterSnapshot(snapshot.0) };
    result
}

/// Whether the extension's table `tenant.<table>` holds a row `snapshot`
/// sees: a heap scan stopped at the first one. False when the table is not
/// installed here (the extension at another version).
pub fn holds_a_row(snapshot: &QuerySnapshot, table: &CStr) -> bool {
    let Some(relation) = extension_relation(table) else { return false };
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: inside a transaction; the relation and the scan are released here.
    unsafe {
        let heap = pg_sys::table_open(relation, lock);
        let scan = pg_sys::table_beginscan(heap, snapshot.0, 0, std::ptr::null_mut());
        let found = !pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection).is_null();
        pg_sys::table_endscan(scan);
        pg_sys::table_close(heap, lock);
        found
    }
}

/// Visit the rows of the extension's table `tenant.<table>` that its btree
/// index `tenant.<index>` finds for `key` (every row it holds with None), as
/// `snapshot` sees them, until `visit` returns false. A partial index's predicate is not
/// rechecked: `visit` sees every row the index points at and must check what
/// it relies on. For look-ups that run on every create or claim: no query to
/// parse and plan (a claim's schema rename resets the backend's plans).
/// None when the table or the index is not installed here.
pub fn scan_index(
    snapshot: &QuerySnapshot,
    table: &CStr,
    index: &CStr,
    key: Option<IndexKey>,
    visit: impl FnMut(&Row) -> bool,
) -> Option<()> {
    walk_index(snapshot, table, index, key, pg_sys::ScanDirection::ForwardScanDirection, visit)
}

/// The row of the extension's table `tenant.<table>` with the greatest key of
/// its btree index `tenant.<index>` that `snapshot` sees, read by `read` (what
/// `SELECT max(key)` finds, without a query to plan). The outer None when the
/// table or the index is not installed here, the inner one when no row is seen.
pub fn last_in_index<T>(
    snapshot: &QuerySnapshot,
    table: &CStr,
    index: &CStr,
    read: impl FnOnce(&Row) -> T,
) -> Option<Option<T>> {
    let (mut read, mut found) = (Some(read), None);
    walk_index(snapshot, table, index, None, pg_sys::ScanDirection::BackwardScanDirection, |row| {
        found = read.take().map(|read| read(row));
        false
    })?;
    Some(found)
}

/// [`scan_index`] in either direction.
fn walk_index(
    snapshot: &QuerySnapshot,
    table: &CStr,
    index: &CStr,
    key: Option<IndexKey>,
    direction: pg_sys::ScanDirection::Type,
    mut visit: impl FnMut(&Row) -> bool,
) -> Option<()> {
    let (table, index) = (extension_relation(table)?, extension_relation(index)?);
    // SAFETY: inside a transaction; the table and index are the extension's,
    // opened and closed here with the locks a query would take; the slot is
    // released before returning, and `visit` only reads the slot it is given.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let heap = pg_sys::table_open(table, lock);
        let index = pg_sys::index_open(index, lock);
        let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
        if let Some(key) = &key {
            pg_sys::ScanKeyEntryInitialize(
                &mut scan_key,
                0,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                *(*index).rd_indcollation,
                pg_sys::Oid::from(key.equal),
                key.value,
            );
        }
        let keys = i32::from(key.is_some());
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let scan = pg_sys::index_beginscan(heap, index, snapshot.0, keys, 0);
        pg_sys::index_rescan(scan, &mut scan_key, keys, std::ptr::null_mut(), 0);
        while pg_sys::index_getnext_slot(scan, direction, slot) {
            if !visit(&Row { slot, relation: table }) {
                break;
            }
        }
        pg_sys::index_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_close(index, lock);
        pg_sys::table_close(heap, lock);
    }
    Some(())
}

/// A row found by [`scan_index`], read by column name.
pub struct Row {
    slot: *mut pg_sys::TupleTableSlot,
    relation: pg_sys::Oid,
}

impl Row {
    /// The column `name` as `T`; None when null (or no such column).
    pub fn get<T: pgrx::FromDatum>(&self, name: &CStr) -> Option<T> {
        // SAFETY: the slot holds a row of `relation` for as long as `self`
        // lives (scan_index's visit); a column's number comes from the catalog.
        unsafe {
            let column = pg_sys::get_attnum(self.relation, name.as_ptr());
            if column == pg_sys::InvalidAttrNumber as pg_sys::AttrNumber {
                return None;
            }
            let mut null = true;
            let value = pg_sys::slot_getattr(self.slot, column.into(), &mut null);
            T::from_datum(value, null)
        }
    }
}
