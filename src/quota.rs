//! Storage quotas: the limit in the registry. (Enforcement is not built yet.)

use crate::db;
use crate::errors::{TcError, TcResult};
use crate::lifecycle;
use crate::oplog::Operation;
use crate::registry;
use pgrx::prelude::*;

/// Set (or with NULL, remove) a tenant's storage limit, given as a size such
/// as '5 GB', '750MB' or '1048576'.
pub fn set(op: &mut Operation, schema_id: Option<pgrx::Uuid>, quota: Option<&str>) -> TcResult<Option<i64>> {
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    lifecycle::require_live(&tenant)?;
    let limit = quota.map(parse).transpose()?;
    op.note("quota", quota);
    op.note("quota_limit", limit);
    db::run(
        "UPDATE tenant.tenant_schemas SET quota_limit = $2, updated_at = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), limit.into()],
    )?;
    Ok(limit)
}

/// Bytes in a size, by PostgreSQL's own rules (pg_size_bytes: kB, MB, GB, TB,
/// PB, 1024-based); zero, negative, unparsable and overflowing sizes are refused.
fn parse(quota: &str) -> TcResult<i64> {
    let invalid = |why: &str| {
        TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid quota \"{quota}\": {why}"))
            .hint("Give a positive size such as '5 GB', '750 MB' or '1048576' (bytes), or NULL for no limit.")
    };
    let bytes =
        db::caught(|| db::scalar::<i64>("SELECT pg_catalog.pg_size_bytes($1)", &[quota.into()])).map_err(|error| {
            match error.code {
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE => invalid("it is too large"),
                _ => invalid(&error.message),
            }
        })?;
    if bytes <= 0 {
        return Err(invalid("a quota must be larger than zero"));
    }
    Ok(bytes)
}
