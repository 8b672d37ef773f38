//! Fleet upkeep: usage snapshots for billing, per-tenant ANALYZE with the
//! VACUUM and REINDEX statements a function cannot run, and the FAILED log
//! rows of scheduled jobs.

use crate::core::db;
use crate::core::errors::{code_of, TcError, TcResult};
use crate::registry;
use crate::registry::oplog::{self, OpKind, Operation};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// Record one usage row per tenant (not DROPPED, not SPARE) in one statement:
/// storage and the activity counters, with the activity of the period since
/// the tenant's previous snapshot (see tenant.tenant_stats).
pub fn snapshot(op: &mut Operation) -> TcResult<i64> {
    let recorded: i64 = db::scalar(
        "WITH recorded AS (
             INSERT INTO tenant.usage_snapshots
                 (taken_at, schema_id, schema_name, status, table_count, storage_bytes, row_estimate, seq_scans, idx_scans,
                  tup_inserted, tup_updated, tup_deleted, period_start, inserted, updated, deleted)
             SELECT pg_catalog.now(), s.schema_id, s.schema_name, s.status, s.tables, s.total_bytes, s.row_estimate,
                    s.seq_scans, s.idx_scans, s.tup_inserted, s.tup_updated, s.tup_deleted, s.snapshot_at,
                    s.inserted_since_snapshot, s.updated_since_snapshot, s.deleted_since_snapshot
               FROM tenant.tenant_stats s WHERE s.status <> 'SPARE'
             RETURNING 1)
         SELECT count(*) FROM recorded",
        &[],
    )?;
    op.note("tenants", recorded);
    Ok(recorded)
}

/// ANALYZE every table and materialized view of a tenant (allowed inside a
/// transaction), note when, and return what must run outside one.
pub fn optimize(op: &mut Operation, schema_id: Option<pgrx::Uuid>) -> TcResult<Vec<(String, String)>> {
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    registry::require_live(&tenant)?;
    let tables = db::rows(
        "SELECT c.relname::text AS name FROM pg_catalog.pg_class c
          WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'm')
          ORDER BY 1",
        &[tenant.schema.as_str().into()],
        |row| Ok(db::col::<String>(row, "name")?.unwrap_or_default()),
    )?;
    let qualified: Vec<String> =
        tables.iter().map(|table| format!("{}.{}", tenant.schema.quoted(), quote_identifier(table))).collect();
    if !qualified.is_empty() {
        db::run(&format!("ANALYZE {}", qualified.join(", ")), &[])?;
    }
    db::run(
        "UPDATE tenant.tenant_schemas SET last_optimized = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into()],
    )?;
    op.note("analyzed", tables.len());
    let mut statements = Vec::new();
    if !qualified.is_empty() {
        statements.push(("VACUUM".to_string(), format!("VACUUM {}", qualified.join(", "))));
    }
    statements.push(("REINDEX".to_string(), format!("REINDEX SCHEMA CONCURRENTLY {}", tenant.schema.quoted())));
    // pg_cron runs a job's command as one statement, outside a transaction block.
    let schedules = statements
        .iter()
        .map(|(kind, statement)| {
            let (job, schedule) = match kind.as_str() {
                "VACUUM" => (format!("tenant_control vacuum {}", tenant.schema), "30 3 * * 0"),
                _ => (format!("tenant_control reindex {}", tenant.schema), "30 4 * * 0"),
            };
            db::scalar::<String>(
                "SELECT pg_catalog.format('SELECT cron.schedule(%L, %L, %L)', $1::text, $2::text, $3::text)",
                &[job.as_str().into(), schedule.into(), statement.as_str().into()],
            )
            .map(|scheduled| ("CRON".to_string(), scheduled))
        })
        .collect::<TcResult<Vec<_>>>()?;
    statements.extend(schedules);
    Ok(statements)
}

/// A FAILED row for a scheduled job whose procedure caught the error.
pub fn note_job_failure(
    operation_type: Option<&str>,
    schema_id: Option<pgrx::Uuid>,
    description: Option<&str>,
    sqlstate: Option<&str>,
    message: Option<&str>,
) -> TcResult<()> {
    let kind = match operation_type.ok_or_else(|| TcError::null_argument("operation_type"))? {
        "OPTIMIZE" => OpKind::Optimize,
        "INTEGRITY_CHECK" => OpKind::IntegrityCheck,
        "USAGE_SNAPSHOT" => OpKind::UsageSnapshot,
        "BACKUP" => OpKind::Backup,
        other => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("operation type \"{other}\" is not a scheduled job's"),
            )
            .hint("Use OPTIMIZE, INTEGRITY_CHECK, USAGE_SNAPSHOT or BACKUP."))
        }
    };
    let sqlstate = sqlstate.ok_or_else(|| TcError::null_argument("sqlstate"))?;
    if sqlstate.len() != 5 || !sqlstate.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid SQLSTATE \"{sqlstate}\""),
        ));
    }
    let error = TcError::new(code_of(sqlstate), message.unwrap_or("(no message)"));
    let description = description.ok_or_else(|| TcError::null_argument("description"))?;
    oplog::record_failure(kind, schema_id.map(db::to_uuid), description.to_string(), &error)
}
