//! The extension's advisory locks, all in one place. Every key is a pair
//! (class, hash of a name): class `LOCK_CLASS` ("tc") for the extension's
//! own keys, `SLOT_LOCK_CLASS` ("tl") for the transaction slots of
//! per-institution limits. All are transaction-level: released at COMMIT or
//! ROLLBACK, and at each commit of a procedure that commits per tenant.

use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::name::TenantName;
use pgrx::prelude::*;

/// First key of the two-key advisory locks the extension takes ("tc").
pub const LOCK_CLASS: i32 = 0x7463;
/// First key of the transaction-slot locks of per-institution limits ("tl").
pub const SLOT_LOCK_CLASS: i32 = 0x746c;

fn exclusive(key: &str) -> TcResult<()> {
    take(key, pg_sys::pg_advisory_xact_lock_int4)
}

fn shared(key: &str) -> TcResult<()> {
    take(key, pg_sys::pg_advisory_xact_lock_shared_int4)
}

/// `SELECT lock(LOCK_CLASS, pg_catalog.hashtext(key))` without a query: the
/// same built-in functions called directly. A create takes three of these,
/// and after a warm-pool claim's schema rename (which resets every kept plan
/// in the backend) each such query would be parsed and planned again.
fn take(key: &str, lock: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum) -> TcResult<()> {
    // SAFETY: built-in functions of (text) and (int4, int4) called with such
    // arguments; a wait is interruptible, and an error (a deadlock) is raised
    // as from the query.
    unsafe {
        let hash = hashtext(key);
        pgrx::direct_function_call_as_datum(lock, &[LOCK_CLASS.into_datum(), Some(hash)]);
    }
    Ok(())
}

/// `pg_catalog.hashtext(key)` under the database's default collation, as the
/// SQL call computes it (other lock takers, in SQL, must get the same key).
unsafe fn hashtext(key: &str) -> pg_sys::Datum {
    unsafe {
        let size =
            std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>() + std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        (*fcinfo).nargs = 1;
        let text = key.into_datum().expect("a text datum");
        *(*fcinfo).args.as_mut_ptr() = pg_sys::NullableDatum { value: text, isnull: false };
        let hash = pg_sys::hashtext(fcinfo);
        pg_sys::pfree(fcinfo.cast());
        hash
    }
}

/// Creating a tenant: the institution first, its schema name second, in
/// every session, so two creates never wait for each other in a cycle.
pub fn institution(institution: &uuid::Uuid) -> TcResult<()> {
    exclusive(&format!("institution:{institution}"))
}

pub fn schema_name(schema: &TenantName) -> TcResult<()> {
    exclusive(&format!("schema:{schema}"))
}

/// Copies share the template; a migration of the template excludes them.
pub fn template_shared() -> TcResult<()> {
    shared("template")
}

pub fn template_exclusive() -> TcResult<()> {
    exclusive("template")
}

/// Storing the template's statements (copy/statements.rs): taken without
/// waiting; false when another transaction is storing them, which a
/// create then leaves to it rather than wait for its commit.
pub fn try_template_statements() -> TcResult<bool> {
    db::scalar(
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2))",
        &[LOCK_CLASS.into(), "template-statements".into()],
    )
}

/// Backups read a tenant under this lock shared, so two of them run at once;
/// drop and restore, which replace the tenant's schema, take it exclusively.
pub fn tenant_data(schema_id: uuid::Uuid, shared_only: bool) -> TcResult<()> {
    let key = format!("tenant-data:{schema_id}");
    if shared_only {
        shared(&key)
    } else {
        exclusive(&key)
    }
}

/// Moves between shared tables and a schema (ops/shared_move): while one
/// runs, readers in the institution's context hold this shared from choosing
/// a side (shared tables or schema) to the end of their transaction; the
/// move's last step takes it exclusively to change sides, so no reader ever
/// chooses one side and then reads the other.
pub fn shared_move(institution: &uuid::Uuid, shared_only: bool) -> TcResult<()> {
    let key = format!("shared-move:{institution}");
    if shared_only {
        shared(&key)
    } else {
        exclusive(&key)
    }
}
