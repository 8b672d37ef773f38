//! The operation log. `record` runs an operation atomically and writes one
//! row to `tenant.schema_operations` whatever happens: COMPLETED with what the
//! operation reported, or FAILED with the error and its SQLSTATE, in which case
//! everything the operation did has been rolled back. Each attempt is also
//! noted for the audit trail (`core::audit`), which keeps it even when the
//! caller's transaction rolls back.

use crate::core::audit;
use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::settings;
use crate::core::subxact;
use crate::registry;
use pgrx::pg_sys::{FLOAT8OID, JSONBOID, TEXTOID, UUIDOID};
use serde_json::{Map, Value};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Drop,
    StatusChange,
    Migrate,
    QuotaSet,
    QuotaCheck,
    Backup,
    Restore,
    IntegrityCheck,
    Optimize,
    UsageSnapshot,
    Retention,
    /// A statement run in many institutions (tenant.run_in_each and its committed variant).
    FleetRun,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "CREATE",
            OpKind::Drop => "DROP",
            OpKind::StatusChange => "STATUS_CHANGE",
            OpKind::Migrate => "MIGRATE",
            OpKind::QuotaSet => "QUOTA_SET",
            OpKind::QuotaCheck => "QUOTA_CHECK",
            OpKind::Backup => "BACKUP",
            OpKind::Restore => "RESTORE",
            OpKind::IntegrityCheck => "INTEGRITY_CHECK",
            OpKind::Optimize => "OPTIMIZE",
            OpKind::UsageSnapshot => "USAGE_SNAPSHOT",
            OpKind::Retention => "RETENTION",
            OpKind::FleetRun => "FLEET_RUN",
        }
    }
}

/// What an operation tells the log about itself while it runs.
#[derive(Debug)]
pub struct Operation {
    pub kind: OpKind,
    pub schema_id: Option<uuid::Uuid>,
    pub description: String,
    pub metadata: Map<String, Value>,
}

impl Operation {
    pub fn note(&mut self, key: &str, value: impl Into<Value>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    /// Note a typed shape (a `#[derive(Serialize)]` struct) under `key`.
    pub fn note_shape<T: serde::Serialize>(&mut self, key: &str, value: &T) {
        self.note(key, serde_json::to_value(value).unwrap_or(Value::Null));
    }

    /// The schema the operation named, for messages ("?" if it failed before knowing).
    pub fn schema_name(&self) -> String {
        self.metadata.get("schema_name").and_then(Value::as_str).unwrap_or("?").to_string()
    }
}

pub fn record<T>(
    kind: OpKind,
    schema_id: Option<uuid::Uuid>,
    description: String,
    work: impl FnOnce(&mut Operation) -> TcResult<T>,
) -> (Operation, TcResult<T>) {
    let mut op = Operation { kind, schema_id, description, metadata: Map::new() };
    let started = Instant::now();
    let outcome = subxact::atomically(|| with_lock_timeout(|| work(&mut op)));
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    write(&op, &outcome, elapsed_ms).unwrap_or_else(|error| error.raise());
    (op, outcome)
}

/// Operations wait at most `tenant_control.lock_timeout` for a lock, so a busy
/// tenant's traffic never queues behind them; the caller's setting is restored.
pub fn with_lock_timeout<T>(work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    db::with_setting("lock_timeout", &format!("{}ms", settings::lock_timeout_ms()), work)
}

fn write<T>(op: &Operation, outcome: &TcResult<T>, elapsed_ms: f64) -> TcResult<()> {
    let (status, sqlstate, message) = match outcome {
        Ok(_) => ("COMPLETED", None, None),
        Err(error) => ("FAILED", Some(error.sqlstate()), Some(error.summary())),
    };
    // A failed operation may have rolled back the very registry row it named:
    // the log names only a row that is there.
    let registered = op.schema_id.and_then(|id| registry::registered(id).map(|row| (id, row)));
    let institution_id = op.metadata.get("institution_id").and_then(Value::as_str).and_then(|id| id.parse().ok());
    audit::note_operation(audit::OperationEvent {
        kind: op.kind.as_str(),
        schema_id: op.schema_id,
        institution_id: institution_id.or(registered.as_ref().and_then(|(_, row)| row.institution_id)),
        description: &op.description,
        failure: outcome.as_ref().err().map(|error| (error.sqlstate(), error.summary())),
    });
    // A kept plan: every operation writes one row.
    let types = [UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, FLOAT8OID].map(Into::into);
    db::run_kept(
        "INSERT INTO tenant.schema_operations
             (schema_id, operation_type, status, description, metadata, error_sqlstate, error_message,
              started_at, completed_at, duration_ms, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7,
                 pg_catalog.clock_timestamp() - $8 * interval '1 millisecond', pg_catalog.clock_timestamp(),
                 $8, session_user)",
        &types,
        &[
            registered.map(|(id, _)| db::to_pg_uuid(id)).into(),
            op.kind.as_str().into(),
            status.into(),
            op.description.as_str().into(),
            pgrx::JsonB(Value::Object(op.metadata.clone())).into(),
            sqlstate.into(),
            message.into(),
            elapsed_ms.into(),
        ],
    )
}

/// A FAILED row for work that ran outside `record` (a scheduled job whose
/// error was caught by its procedure, which then commits the row and raises).
pub fn record_failure(
    kind: OpKind,
    schema_id: Option<uuid::Uuid>,
    description: String,
    error: &crate::core::errors::TcError,
) -> TcResult<()> {
    let op = Operation { kind, schema_id, description, metadata: Map::new() };
    write::<()>(&op, &Err(error.clone()), 0.0)
}
