//! The extension's advisory locks, all in one place. Every key is a pair
//! (class, hash of a name): class `LOCK_CLASS` ("tc") for the extension's
//! own keys, `SLOT_LOCK_CLASS` ("tl") for the transaction slots of
//! per-institution limits. All are transaction-level: released at COMMIT or
//! ROLLBACK, and at each commit of a procedure that commits per tenant.

use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::name::TenantName;

/// First key of the two-key advisory locks the extension takes ("tc").
pub const LOCK_CLASS: i32 = 0x7463;
/// First key of the transaction-slot locks of per-institution limits ("tl").
pub const SLOT_LOCK_CLASS: i32 = 0x746c;

fn exclusive(key: &str) -> TcResult<()> {
    db::run("SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))", &[LOCK_CLASS.into(), key.into()])
}

fn shared(key: &str) -> TcResult<()> {
    db::run(
        "SELECT pg_catalog.pg_advisory_xact_lock_shared($1, pg_catalog.hashtext($2))",
        &[LOCK_CLASS.into(), key.into()],
    )
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
