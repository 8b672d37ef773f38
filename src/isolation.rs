//! Tenant context for applications: `tenant.set_context` points the current
//! transaction, and only it, at one institution. Everything it sets is
//! transaction-local (like SET LOCAL), so nothing survives COMMIT or ROLLBACK
//! to leak into the next client of a transaction-pooling connection.

use crate::db;
use crate::errors::{OrRaise, TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The registry facts set_context needs, read with the extension owner's
/// rights (applications cannot read the registry).
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn context_for(
    institution_id: Option<pgrx::Uuid>,
) -> TableIterator<'static, (name!(schema_name, String), name!(owner_role, String), name!(status, String))> {
    let institution = institution_id.ok_or_else(|| TcError::null_argument("institution_id")).or_raise();
    let rows = db::rows(
        "SELECT schema_name, owner_role, status FROM tenant.tenant_schemas
          WHERE institution_id = $1 ORDER BY status = 'DROPPED', created_at DESC LIMIT 1",
        &[institution.into()],
        |row| {
            Ok((
                db::col::<String>(row, "schema_name")?.unwrap_or_default(),
                db::col::<String>(row, "owner_role")?.unwrap_or_default(),
                db::col::<String>(row, "status")?.unwrap_or_default(),
            ))
        },
    )
    .or_raise();
    TableIterator::new(rows)
}

/// Set the tenant for the rest of the transaction: search_path, the tenant's
/// role where the caller may assume it, and tenant_control.institution_id
/// (which shared-table policies read).
///
/// No SET clause on purpose: a function's SET clause would undo, at its exit,
/// the search_path this function sets. Every name in it is qualified.
#[pg_extern(volatile, parallel_unsafe)]
fn set_context(institution_id: Option<pgrx::Uuid>) -> String {
    set(institution_id).or_raise()
}

fn set(institution_id: Option<pgrx::Uuid>) -> TcResult<String> {
    let institution = institution_id.ok_or_else(|| TcError::null_argument("institution_id"))?;
    // SAFETY: a plain query of the transaction state.
    if !unsafe { pg_sys::IsTransactionBlock() } {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            "tenant.set_context must be called inside a transaction block",
        )
        .detail("The context lasts until the end of the transaction; outside a block it would end with this statement.")
        .hint("BEGIN; SELECT tenant.set_context(...); ...; COMMIT;"));
    }
    let found =
        db::rows("SELECT schema_name, owner_role, status FROM tenant.context_for($1)", &[institution.into()], |row| {
            Ok((
                db::col::<String>(row, "schema_name")?.unwrap_or_default(),
                db::col::<String>(row, "owner_role")?.unwrap_or_default(),
                db::col::<String>(row, "status")?.unwrap_or_default(),
            ))
        })?;
    let Some((schema, role, status)) = found.into_iter().next() else {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("no institution schema for institution {}", db::to_uuid(institution)),
        ));
    };
    if status != "ACTIVE" {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("institution {} is {status}: its schema \"{schema}\" cannot be used", db::to_uuid(institution)),
        ));
    }
    let may_assume: bool =
        db::scalar("SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER')", &[role.as_str().into()])?;
    db::run(
        "SELECT pg_catalog.set_config('search_path', $1, true),
                pg_catalog.set_config('tenant_control.institution_id', $2, true)",
        &[format!("{}, public", quote_identifier(&schema)).into(), db::to_uuid(institution).to_string().into()],
    )?;
    if may_assume {
        db::run("SELECT pg_catalog.set_config('role', $1, true)", &[role.as_str().into()])?;
    }
    Ok(schema)
}
