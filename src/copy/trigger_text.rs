//! Trigger definitions for structure reads, without PostgreSQL's function-name
//! look-up for every tenant.
//!
//! `pg_get_triggerdef` decides whether to qualify the trigger's function by
//! resolving its name as the parser would (ruleutils.c,
//! `generate_function_name`), and that walks every function of the name in
//! the database (`FuncnameGetCandidates`). A trigger function of the template
//! exists once in every tenant: at 10,000 institutions each trigger's
//! definition walked 10,000 functions, 14% of an integrity check's CPU (1.4%
//! at 1,000). The text depends on nothing but the trigger's own fields, the
//! names of the columns and the function it names, and the table it is on; so
//! within a transaction it is worked out once for each kind of trigger, and
//! each tenant's table is put into it.
//!
//! Triggers with a WHEN condition or of a constraint are deparsed each time:
//! their text names more than this keys on.

use crate::core::catalog;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

/// A definition worked out once: its text, and the ` ON schema.table ` in it.
struct Known {
    text: String,
    on: String,
}

thread_local! {
    /// Definitions by shape, for the transaction (local id) they were made in.
    static KNOWN: RefCell<(u32, HashMap<String, Known>)> = RefCell::new((0, HashMap::new()));
}

/// What `pg_get_triggerdef(trigger)` returns with `path_schema` (when the
/// current role may use it) alone on the search path after pg_catalog;
/// `deparse` is that call, made when the definition is not known yet.
pub fn definition(
    trigger: pg_sys::Oid,
    path_schema: Option<pg_sys::Oid>,
    deparse: impl FnOnce() -> Option<String>,
) -> Option<String> {
    // SAFETY: catalog reads inside a transaction.
    let Some((shape, on)) = (unsafe { shape(trigger, path_schema) }) else { return deparse() };
    // SAFETY: MyProc is this backend's own PGPROC.
    let transaction = unsafe { (*pg_sys::MyProc).lxid };
    let known = KNOWN.with(|known| {
        let mut known = known.borrow_mut();
        if known.0 != transaction {
            *known = (transaction, HashMap::new());
        }
        known.1.get(&shape).map(|k| k.text.replacen(&k.on, &on, 1))
    });
    if known.is_some() {
        return known;
    }
    let text = deparse()?;
    // Only a text the table's name appears in once can have another put in.
    if text.matches(&on).count() == 1 {
        KNOWN.with(|known| known.borrow_mut().1.insert(shape, Known { text: text.clone(), on }));
    }
    Some(text)
}

/// The trigger's shape (everything its text depends on but its table) and the
/// ` ON schema.table ` its text holds; None for a trigger with a WHEN
/// condition, a constraint trigger, or one that is not found.
///
/// # Safety
/// Inside a transaction.
unsafe fn shape(trigger: pg_sys::Oid, path_schema: Option<pg_sys::Oid>) -> Option<(String, String)> {
    let mut found = None;
    let key = [(pg_sys::Anum_pg_trigger_oid as pg_sys::AttrNumber, trigger)];
    unsafe {
        catalog::scan_by_oids(pg_sys::TriggerRelationId, pg_sys::TriggerOidIndexId.into(), &key, |row, descriptor| {
            found = shape_of(row, descriptor, path_schema);
            false
        });
    }
    found
}

/// # Safety
/// `row` is a row of pg_trigger that `descriptor` describes.
unsafe fn shape_of(
    row: pg_sys::HeapTuple,
    descriptor: pg_sys::TupleDesc,
    path_schema: Option<pg_sys::Oid>,
) -> Option<(String, String)> {
    unsafe {
        let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_trigger>(row);
        let column = |number: u32| {
            let mut null = true;
            let value = pg_sys::heap_getattr(row, number as i32, descriptor, &mut null);
            (!null).then_some(value)
        };
        if form.tgconstraint != pg_sys::InvalidOid || column(pg_sys::Anum_pg_trigger_tgqual).is_some() {
            return None;
        }
        let name = |value: pg_sys::Datum| text(value.cast_mut_ptr::<std::ffi::c_char>());
        let (old_table, new_table) = (
            column(pg_sys::Anum_pg_trigger_tgoldtable).map(name),
            column(pg_sys::Anum_pg_trigger_tgnewtable).map(name),
        );
        let arguments = match column(pg_sys::Anum_pg_trigger_tgargs) {
            Some(value) => {
                let bytes = pg_sys::pg_detoast_datum_packed(value.cast_mut_ptr());
                let length = pgrx::varlena::varsize_any_exhdr(bytes);
                std::slice::from_raw_parts(pgrx::varlena::vardata_any(bytes) as *const u8, length).to_vec()
            }
            None => Vec::new(),
        };
        let columns: Vec<String> = form
            .tgattr
            .values
            .as_slice(form.tgattr.dim1.max(0) as usize)
            .iter()
            .map(|&number| text(pg_sys::get_attname(form.tgrelid, number, false)))
            .collect();
        let function = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, form.tgfoid.into());
        if function.is_null() {
            return None;
        }
        let procedure = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_proc>(function);
        // A function of the schema on the path is printed by name, the same
        // for every tenant; any other is printed as itself, qualified unless
        // in pg_catalog.
        let named = if Some(procedure.pronamespace) == path_schema {
            format!("own {}", text(procedure.proname.data.as_ptr()))
        } else {
            format!("oid {}", u32::from(form.tgfoid))
        };
        pg_sys::ReleaseSysCache(function);
        let (table, schema) =
            (pg_sys::get_rel_name(form.tgrelid), pg_sys::get_namespace_name(pg_sys::get_rel_namespace(form.tgrelid)));
        if table.is_null() || schema.is_null() {
            return None;
        }
        // As pg_get_triggerdef prints the table (generate_qualified_relation_name).
        let on = format!(" ON {} ", pgrx::spi::quote_qualified_identifier(text(schema), text(table)));
        let shape = format!(
            "{}\0{}\0{}\0{:?}\0{:?}\0{}\0{:?}\0{named}",
            text(form.tgname.data.as_ptr()),
            form.tgtype,
            columns.join("\0"),
            old_table,
            new_table,
            form.tgnargs,
            arguments,
        );
        Some((shape, on))
    }
}

/// # Safety
/// `c` is a NUL-terminated string.
unsafe fn text(c: *const std::ffi::c_char) -> String {
    unsafe { CStr::from_ptr(c) }.to_string_lossy().into_owned()
}
