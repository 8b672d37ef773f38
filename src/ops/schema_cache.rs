//! Which schemas are live tenant schemas, as the DDL event trigger asks it
//! (`api/event_dispatch`): every CREATE or ALTER in the database names a
//! schema, and only the template's and the tenants' DDL must be checked.
//! Asking the registry on every command cost a query per statement (issue
//! 13); this backend keeps each answer, yes or no, by schema name.
//!
//! The answers follow the registry the way set_context's do (and through the
//! same messages, see `context_cache`):
//! - **Forgotten on every change that could alter them**: a new row
//!   (`tc_schema_cache_new`, which names its own channel so that set_context's
//!   answers are kept), a change of a row's status or schema name, a row that
//!   goes, and TRUNCATE or ALTER of the registry. PostgreSQL delivers these at
//!   the committing transaction's commit (in this backend at the end of the
//!   statement, and again at a rollback); each question first reads the
//!   messages already delivered.
//! - **Remembered only from a fresh read**: in a READ COMMITTED transaction,
//!   with a snapshot taken after the messages were read, and only when no
//!   message arrived during the read. A REPEATABLE READ or SERIALIZABLE
//!   transaction asks the registry itself, with its own snapshot, as the
//!   trigger did before this cache: an answer read under an old snapshot
//!   must not outlive it.
//!
//! A wrong "yes" would only make the trigger run checks that find nothing; a
//! wrong "no" would let a tenant's DDL past its quota and reserved-name
//! checks. The rules above never keep a "no" older than the last change
//! committed before the question.

use crate::core::errors::TcResult;
use crate::ops::context_cache;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Answers kept at most: a backend that runs DDL in more schemas than this
/// starts again (each schema then costs one read of the registry again).
const KEPT_AT_MOST: usize = 10_000;

/// The answers, and the messages heard when they were read: a message heard
/// since (`context_cache::Reading::generation`) empties them.
#[derive(Default)]
struct Answers {
    heard: (u64, u64),
    tenant: HashMap<String, bool>,
}

thread_local! {
    static ANSWERS: RefCell<Answers> = RefCell::new(Answers::default());
}

/// Whether any of `schemas` is a live tenant schema (a registry row whose
/// status is not DROPPED). `read` asks the registry which of the names it is
/// given are: it runs only for names not answered already.
pub fn any_tenant_schema(schemas: &[String], read: impl FnOnce(&[String]) -> TcResult<Vec<String>>) -> TcResult<bool> {
    // Reads the messages delivered so far.
    let reading = context_cache::reading();
    let Some(heard) = reading.generation() else {
        return Ok(!registered(schemas, read)?.is_empty());
    };
    let mut unknown: Vec<String> = Vec::new();
    let known_tenant = ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        if answers.heard != heard {
            *answers = Answers { heard, tenant: HashMap::new() };
        }
        schemas.iter().any(|schema| match answers.tenant.get(schema) {
            Some(tenant) => *tenant,
            None => {
                unknown.push(schema.clone());
                false
            }
        })
    });
    if known_tenant || unknown.is_empty() {
        return Ok(known_tenant);
    }
    let tenants = registered(&unknown, read)?;
    if !reading.outdated() {
        ANSWERS.with(|answers| {
            let mut answers = answers.borrow_mut();
            if answers.tenant.len() + unknown.len() > KEPT_AT_MOST {
                answers.tenant.clear();
            }
            for schema in unknown {
                let tenant = tenants.contains(&schema);
                answers.tenant.insert(schema, tenant);
            }
        });
    }
    Ok(!tenants.is_empty())
}

/// Which of `schemas` the registry has as live tenant schemas: `read` asks it
/// about the names its live-name index holds an entry for. Most DDL is not in
/// a tenant schema, and the index answers "no" for it without the registry
/// itself (opening the registry and planning a query in a new connection
/// cost more than the rest of the trigger's work in a 52-relation script).
fn registered(schemas: &[String], read: impl FnOnce(&[String]) -> TcResult<Vec<String>>) -> TcResult<Vec<String>> {
    let Some((registry, index)) = context_cache::live_names_index() else {
        return read(schemas);
    };
    let maybe: Vec<String> =
        schemas.iter().filter(|schema| unsafe { indexed(registry, index, schema) }).cloned().collect();
    if maybe.is_empty() {
        return Ok(Vec::new());
    }
    read(&maybe)
}

/// Whether the index of live schema names holds any entry for `schema`.
///
/// An index entry is made for every row version that meets the index's
/// predicate (status not DROPPED), when it is written, committed or not, and
/// stays until no snapshot can see that version any more (a HOT update keeps
/// both the name and the status, so its chain's root entry serves it). So no
/// entry means no row version any snapshot could see as a live tenant schema
/// of that name: a sure "no". An entry (a live row, an uncommitted one, or a
/// version not yet vacuumed away) is only a "maybe", for the registry to
/// answer. The bitmap scan reads the index alone (not the registry's rows,
/// whose visibility the registry query judges); an index that is not valid
/// answers "maybe" for every name.
///
/// # Safety
/// Inside a transaction; `registry` and `index` are the registry's oid and
/// its live-name index's.
unsafe fn indexed(registry: pg_sys::Oid, index: pg_sys::Oid, schema: &str) -> bool {
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // The table's lock first, as any scan of the index takes them.
        pg_sys::LockRelationOid(registry, lock);
        let relation = pg_sys::index_open(index, lock);
        let valid = (*(*relation).rd_index).indisvalid && (*(*relation).rd_index).indrelid == registry;
        let mut found = 1;
        if valid {
            let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
            // The index's own collation: the scan positions itself by it.
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                *(*relation).rd_indcollation,
                pg_sys::Oid::from(pg_sys::F_TEXTEQ),
                schema.into_datum().expect("a name is a datum"),
            );
            let snapshot = if pg_sys::ActiveSnapshotSet() {
                pg_sys::GetActiveSnapshot()
            } else {
                pg_sys::GetTransactionSnapshot()
            };
            let scan = pg_sys::index_beginscan_bitmap(relation, snapshot, 1);
            pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
            let bitmap = pg_sys::tbm_create(64 * 1024, std::ptr::null_mut());
            found = pg_sys::index_getbitmap(scan, bitmap);
            pg_sys::tbm_free(bitmap);
            pg_sys::index_endscan(scan);
        }
        pg_sys::index_close(relation, lock);
        found > 0
    }
}
