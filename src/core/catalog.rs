//! Catalog reads without SQL, for paths that run on every command or every
//! claim (the DDL event trigger, the warm-pool claim, the audit trail's
//! commit, the context cache): no query to plan, no snapshot beyond the
//! catalog's own, and nothing a tenant wrote is looked up or run.

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
/// it returns false.
///
/// # Safety
/// Inside a transaction; `catalog` and `index` are a system catalog and one
/// of its indexes, the keys name oid columns of it. `visit` must not keep the
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
            true,
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
