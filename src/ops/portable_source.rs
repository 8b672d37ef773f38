//! The source side of a copy between databases: what
//! `tenant.copy_institution_from` on the target reads here, through this
//! database's own functions, in one REPEATABLE READ transaction: the
//! structure from this database's generators (so a copy is built the way this
//! database builds its own copies) and the row counts and content hashes of
//! the very snapshot the rows are read in.

use crate::copy::schema_copy::{self, TableCopy};
use crate::copy::template;
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::name::{RoleName, TenantName};
use crate::ops::backup;
use crate::registry::oplog::Operation;
use crate::registry::{self, Tenant};
use pgrx::prelude::*;

/// The schema a copy reads: the institution's live schema, or (with
/// `backup_id`) one of its backups, with the role that stands for the
/// tenant's role in it.
fn resolve(schema_id: Option<pgrx::Uuid>, backup_id: Option<pgrx::Uuid>) -> TcResult<(Tenant, TenantName, RoleName)> {
    let tenant = registry::lock_key_share(schema_id)?;
    if backup_id.is_none() {
        registry::require_live(&tenant)?;
        let (schema, role) = (tenant.schema.clone(), tenant.role.clone());
        return Ok((tenant, schema, role));
    }
    let backup = backup::lock(backup_id, false)?;
    if backup.schema_id != tenant.id {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("backup {} was not taken from institution schema {}", backup.id, tenant.id),
        ));
    }
    Ok((tenant, backup.schema, backup.role))
}

/// The statements that rebuild the schema elsewhere, with the places of the
/// schema's and its role's names left as slots, each with its generator's kind.
pub fn structure(
    schema_id: Option<pgrx::Uuid>,
    backup_id: Option<pgrx::Uuid>,
) -> TcResult<Vec<(String, serde_json::Value)>> {
    let (_, schema, role) = resolve(schema_id, backup_id)?;
    template::refuse_unsupported_in(schema.as_str(), "the", "nothing was copied")?;
    let statements = template::generate_for_load(schema.as_str(), role.as_str())?;
    Ok(statements.into_iter().map(|(kind, statement)| (kind.to_string(), template::parts_json(&statement))).collect())
}

/// Row count and content hash of every table, in the caller's snapshot,
/// logged as a read of the institution for a copy to `destination`.
pub fn manifest(
    op: &mut Operation,
    schema_id: Option<pgrx::Uuid>,
    backup_id: Option<pgrx::Uuid>,
    destination: Option<&str>,
) -> TcResult<Vec<TableCopy>> {
    let (tenant, schema, _) = resolve(schema_id, backup_id)?;
    op.schema_id = Some(tenant.id);
    op.note("schema_name", tenant.schema.as_str());
    op.note("copy_out", true);
    op.note("read_schema", schema.as_str());
    if let Some(backup_id) = backup_id {
        op.note("backup_id", db::to_uuid(backup_id).to_string());
    }
    if let Some(destination) = destination {
        op.note("copied_to", destination);
    }
    let tables = schema_copy::count_and_hash(&schema)?;
    op.note("tables", tables.len());
    op.note("rows", tables.iter().map(|t| t.rows).sum::<i64>());
    Ok(tables)
}
