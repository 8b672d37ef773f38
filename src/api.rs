//! The SQL surface: thin `#[pg_extern]` wrappers. Operations that change a
//! tenant answer with a status row (SUCCESS or ERROR with the SQLSTATE) and
//! leave a row in the operation log either way; a failed one leaves nothing
//! else behind.

use crate::errors::{OrRaise, TcError};
use crate::integrity;
use crate::lifecycle;
use crate::maintenance;
use crate::migrate;
use crate::oplog::{self, OpKind};
use crate::pool;
use crate::quota;
use crate::registry;
use pgrx::prelude::*;

fn failure(error: &TcError) -> (String, String, Option<String>) {
    ("ERROR".into(), error.summary(), Some(error.sqlstate()))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn create_institution_schema(
    institution_id: Option<pgrx::Uuid>,
    schema_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(schema_id, Option<pgrx::Uuid>),
        name!(sqlstate, Option<String>),
    ),
> {
    let description = format!(
        "create schema for institution {}",
        institution_id.map(|id| crate::db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into())
    );
    let (_, outcome) =
        oplog::record(OpKind::Create, None, description, |op| lifecycle::create(op, institution_id, schema_name));
    let row = match outcome {
        Ok(created) => (
            "SUCCESS".into(),
            format!("created schema \"{}\"", created.schema),
            Some(crate::db::to_pg_uuid(created.schema_id)),
            None,
        ),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, sqlstate)
        }
    };
    TableIterator::once(row)
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn drop_institution_schema(
    schema_id: Option<pgrx::Uuid>,
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(backup_schema, Option<String>),
        name!(sqlstate, Option<String>),
    ),
> {
    let (op, outcome) =
        oplog::record(OpKind::Drop, schema_id.map(crate::db::to_uuid), described("drop", schema_id), |op| {
            lifecycle::drop(op, schema_id)
        });
    let schema = op.schema_name();
    let row = match outcome {
        Ok(dropped) => {
            let message = match &dropped.backup {
                Some(backup) => format!(
                    "dropped schema \"{schema}\"; its contents are kept in backup schema \"{}\"",
                    backup.as_str()
                ),
                None => format!("dropped institution schema \"{schema}\", whose schema was already missing"),
            };
            ("SUCCESS".into(), message, dropped.backup.map(|b| b.as_str().to_string()), None)
        }
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, sqlstate)
        }
    };
    TableIterator::once(row)
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_institution_status(
    schema_id: Option<pgrx::Uuid>,
    new_status: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(status, String), name!(message, String), name!(sqlstate, Option<String>))> {
    let (op, outcome) = oplog::record(
        OpKind::StatusChange,
        schema_id.map(crate::db::to_uuid),
        described("change status of", schema_id),
        |op| lifecycle::set_status(op, schema_id, new_status, reason),
    );
    let schema = op.schema_name();
    let row = match outcome {
        Ok(changed) if changed.from == changed.to => {
            ("SUCCESS".into(), format!("schema \"{schema}\" is already {}", changed.to.as_str()), None)
        }
        Ok(changed) => (
            "SUCCESS".into(),
            format!("schema \"{schema}\" changed from {} to {}", changed.from.as_str(), changed.to.as_str()),
            None,
        ),
        Err(error) => failure(&error),
    };
    TableIterator::once(row)
}

/// Recount one tenant's tables and storage into the registry; returns the bytes.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn refresh_storage(schema_id: Option<pgrx::Uuid>) -> i64 {
    oplog::with_lock_timeout(|| {
        let tenant = registry::lock(schema_id)?;
        lifecycle::require_live(&tenant)?;
        registry::refresh_counters(&tenant)
    })
    .or_raise()
}

fn described(verb: &str, schema_id: Option<pgrx::Uuid>) -> String {
    match schema_id {
        Some(id) => format!("{verb} institution schema {}", crate::db::to_uuid(id)),
        None => format!("{verb} institution schema NULL"),
    }
}

/// Register migration `version` (the next number) and apply it to the template.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn register_migration(
    version: Option<i32>,
    script: Option<&str>,
    description: Option<&str>,
) -> TableIterator<'static, (name!(status, String), name!(message, String), name!(sqlstate, Option<String>))> {
    let description_text = format!(
        "register migration {} and apply it to the template",
        version.map_or_else(|| "NULL".to_string(), |v| v.to_string())
    );
    let (_, outcome) = oplog::record(OpKind::Migrate, None, description_text, |op| {
        migrate::register(op, version, script, description)
    });
    TableIterator::once(match outcome {
        Ok(version) => ("SUCCESS".into(), format!("the template is at version {version}"), None),
        Err(error) => failure(&error),
    })
}

/// Bring one tenant (or spare) schema to the template's version.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn migrate_institution_schema(
    schema_id: Option<pgrx::Uuid>,
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(from_version, Option<i32>),
        name!(to_version, Option<i32>),
        name!(sqlstate, Option<String>),
    ),
> {
    let (op, outcome) =
        oplog::record(OpKind::Migrate, schema_id.map(crate::db::to_uuid), described("migrate", schema_id), |op| {
            migrate::migrate(op, schema_id)
        });
    let version = |key: &str| op.metadata.get(key).and_then(|v| v.as_i64()).map(|v| v as i32);
    TableIterator::once(match outcome {
        Ok(done) if done.from == done.to => (
            "SUCCESS".into(),
            format!("schema \"{}\" is at version {}", done.schema, done.to),
            Some(done.from),
            Some(done.to),
            None,
        ),
        Ok(done) => (
            "SUCCESS".into(),
            format!("schema \"{}\" migrated from version {} to {}", done.schema, done.from, done.to),
            Some(done.from),
            Some(done.to),
            None,
        ),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, version("from_version"), version("from_version"), sqlstate)
        }
    })
}

/// Build one spare schema for the warm pool (called by tenant.fill_pool).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn add_spare_schema() -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(schema_id, Option<pgrx::Uuid>),
        name!(sqlstate, Option<String>),
    ),
> {
    let (op, outcome) =
        oplog::record(OpKind::Create, None, "create a spare schema for the warm pool".into(), pool::add_spare);
    let schema = op.schema_name();
    TableIterator::once(match outcome {
        Ok(id) => {
            ("SUCCESS".into(), format!("spare schema \"{schema}\" is ready"), Some(crate::db::to_pg_uuid(id)), None)
        }
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, sqlstate)
        }
    })
}

/// Set a tenant's storage limit ('5 GB', '750 MB', bytes; NULL removes it).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_quota(
    schema_id: Option<pgrx::Uuid>,
    quota: Option<&str>,
) -> TableIterator<
    'static,
    (name!(status, String), name!(message, String), name!(quota_limit, Option<i64>), name!(sqlstate, Option<String>)),
> {
    let (op, outcome) = oplog::record(
        OpKind::QuotaSet,
        schema_id.map(crate::db::to_uuid),
        described("set the quota of", schema_id),
        |op| quota::set(op, schema_id, quota),
    );
    let schema = op.schema_name();
    TableIterator::once(match outcome {
        Ok(Some(limit)) => ("SUCCESS".into(), format!("schema \"{schema}\" may use {limit} bytes"), Some(limit), None),
        Ok(None) => ("SUCCESS".into(), format!("schema \"{schema}\" has no storage limit"), None, None),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, sqlstate)
        }
    })
}

/// Check the registry, the catalogs, every tenant's structure against the
/// template, every foreign key against the data and the counters; with
/// `fix`, repair what can be repaired without losing data.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn check_integrity(
    schema_id: default!(Option<pgrx::Uuid>, "NULL"),
    fix: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(tenant_schema_id, Option<pgrx::Uuid>),
        name!(schema_name, Option<String>),
        name!(check_name, String),
        name!(severity, String),
        name!(object, String),
        name!(detail, String),
        name!(fixed, bool),
    ),
> {
    let fix = fix.ok_or_else(|| TcError::null_argument("fix")).or_raise();
    let description = match schema_id {
        Some(_) => described(if fix { "check and fix" } else { "check" }, schema_id),
        None => format!("{} every institution schema", if fix { "check and fix" } else { "check" }),
    };
    let (_, outcome) = oplog::record(OpKind::IntegrityCheck, schema_id.map(crate::db::to_uuid), description, |op| {
        integrity::check(op, schema_id, fix)
    });
    TableIterator::new(outcome.or_raise().into_iter().map(|f| {
        (
            f.schema_id.map(crate::db::to_pg_uuid),
            f.schema_name,
            f.check.to_string(),
            f.severity.as_str().to_string(),
            f.object,
            f.detail,
            f.fixed,
        )
    }))
}

/// Record one usage row per tenant (tenant.usage_snapshots); logs USAGE_SNAPSHOT.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn record_usage_snapshot() -> TableIterator<
    'static,
    (name!(status, String), name!(message, String), name!(tenants, Option<i64>), name!(sqlstate, Option<String>)),
> {
    let (_, outcome) = oplog::record(
        OpKind::UsageSnapshot,
        None,
        "record a usage snapshot of every tenant".into(),
        maintenance::snapshot,
    );
    TableIterator::once(match outcome {
        Ok(count) => ("SUCCESS".into(), format!("usage of {count} tenant(s) recorded"), Some(count), None),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, sqlstate)
        }
    })
}

/// ANALYZE a tenant's tables, set last_optimized, log OPTIMIZE; returns the
/// VACUUM and REINDEX CONCURRENTLY statements (and pg_cron schedules for them)
/// that cannot run inside a function.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn optimize_institution_schema(
    schema_id: Option<pgrx::Uuid>,
) -> TableIterator<'static, (name!(kind, String), name!(statement, String))> {
    let (_, outcome) =
        oplog::record(OpKind::Optimize, schema_id.map(crate::db::to_uuid), described("optimize", schema_id), |op| {
            maintenance::optimize(op, schema_id)
        });
    TableIterator::new(outcome.or_raise())
}

/// Internal: the FAILED log row of a scheduled job, written by its procedure.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn note_job_failure(
    operation_type: Option<&str>,
    schema_id: Option<pgrx::Uuid>,
    description: Option<&str>,
    sqlstate: Option<&str>,
    message: Option<&str>,
) {
    maintenance::note_job_failure(operation_type, schema_id, description, sqlstate, message).or_raise()
}

/// tenant_control.backup_max_age in seconds (0: not checked), for the health checks.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_max_age() -> i32 {
    crate::settings::BACKUP_MAX_AGE_S.get()
}
