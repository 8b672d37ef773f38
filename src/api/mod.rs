//! The SQL surface: thin `#[pg_extern]` wrappers. Operations that change a
//! tenant answer with a status row (SUCCESS or ERROR with the SQLSTATE) and
//! leave a row in the operation log either way; a failed one leaves nothing
//! else behind.

pub mod audit;
pub mod event_dispatch;
pub mod fleet;
pub mod grant_filter;
pub mod lifecycle_data;
pub mod portable;

use crate::core::errors::{OrRaise, TcError};
use crate::integrity;
use crate::ops::backup;
use crate::ops::lifecycle;
use crate::ops::maintenance;
use crate::ops::migrate;
use crate::ops::pool;
use crate::ops::quota;
use crate::ops::restore;
use crate::registry;
use crate::registry::oplog::{self, OpKind};
use pgrx::prelude::*;

fn failure(error: &TcError) -> (String, String, Option<String>) {
    ("ERROR".into(), error.summary(), Some(error.sqlstate()))
}

/// The ERROR row of a function whose status row carries one value (an id, a
/// limit, ...) between the message and the SQLSTATE: no value.
fn failure_with_value<T>(error: &TcError) -> (String, String, Option<T>, Option<String>) {
    let (status, message, sqlstate) = failure(error);
    (status, message, None, sqlstate)
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
        institution_id.map(|id| crate::core::db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into())
    );
    let (_, outcome) =
        oplog::record(OpKind::Create, None, description, |op| lifecycle::create(op, institution_id, schema_name));
    let row = match outcome {
        Ok(created) => (
            "SUCCESS".into(),
            format!("created schema \"{}\"", created.schema),
            Some(crate::core::db::to_pg_uuid(created.schema_id)),
            None,
        ),
        Err(error) => failure_with_value(&error),
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
        oplog::record(OpKind::Drop, schema_id.map(crate::core::db::to_uuid), described("drop", schema_id), |op| {
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
        Err(error) => failure_with_value(&error),
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
        schema_id.map(crate::core::db::to_uuid),
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
        registry::require_live(&tenant)?;
        quota::recount(&tenant)
    })
    .or_raise()
}

/// Internal: refuse (53400) or warn about a statement that makes a tenant's
/// schema grow; called by the quota guard and DDL triggers.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_check_growth(schema_name: &str) {
    quota::check_growth(schema_name).or_raise()
}

/// Internal: `quota_check_growth` for DDL (the quota event trigger); DDL a
/// superuser runs (pg_restore of an over-quota tenant) is not refused.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_check_ddl(schema_name: &str) {
    quota::check_ddl_growth(schema_name).or_raise()
}

/// `tenant.refuse_drop_with_tenants()`, the event trigger on DROP EXTENSION
/// and DROP SCHEMA (ddl_command_start). Written against the C calling
/// convention because pgrx has no event-trigger functions, and only the
/// parse tree tells which extension or schema the command drops.
#[no_mangle]
pub extern "C" fn pg_finfo_tc_refuse_drop_with_tenants() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// # Safety
/// Called by PostgreSQL as an event trigger function, with `fcinfo` valid.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_refuse_drop_with_tenants(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL passes EventTriggerData as the context of an event
    // trigger call; anything else is refused by is_a.
    let context = unsafe { (*fcinfo).context };
    if !unsafe { pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) } {
        TcError::new(PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, "not called by an event trigger")
            .raise();
    }
    let parsetree = unsafe { (*(context as *mut pg_sys::EventTriggerData)).parsetree };
    if unsafe { drops_the_extension(parsetree) } && !crate::core::settings::allow_drop_with_tenants() {
        refuse_drop_with_tenants().or_raise();
    }
    pg_sys::Datum::from(0)
}

/// Refuse to drop the extension while institutions (registry rows not
/// DROPPED, spares aside) or catalogued backups exist.
fn refuse_drop_with_tenants() -> crate::core::errors::TcResult<()> {
    let (institutions, backups) = crate::core::db::rows(
        "SELECT (SELECT pg_catalog.count(*) FROM tenant.tenant_schemas
                  WHERE status OPERATOR(pg_catalog.<>) ALL (ARRAY['DROPPED', 'SPARE'])) AS institutions,
                (SELECT pg_catalog.count(*) FROM tenant.schema_backups) AS backups",
        &[],
        |row| {
            Ok((
                crate::core::db::col::<i64>(row, "institutions")?.unwrap_or(0),
                crate::core::db::col::<i64>(row, "backups")?.unwrap_or(0),
            ))
        },
    )?
    .into_iter()
    .next()
    .unwrap_or((0, 0));
    if institutions == 0 && backups == 0 {
        return Ok(());
    }
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        format!(
            "cannot drop extension tenant_control: {institutions} institution schema(s) and {backups} backup(s) are registered"
        ),
    )
    .detail(
        "Dropping it would discard the registry, the operation log and the backup catalogue, \
         and leave the tenants' schemas, roles and backups behind, unmanaged.",
    )
    .hint(
        "Drop each institution with tenant.drop_institution_schema(schema_id) and remove each backup with \
         tenant.remove_backup(backup_id); or, to discard them knowingly, \
         SET LOCAL tenant_control.allow_drop_with_tenants = on in the transaction that drops the extension.",
    ))
}

/// Whether a statement is DROP EXTENSION tenant_control or DROP SCHEMA tenant
/// (which drops the extension along with its schema).
unsafe fn drops_the_extension(parsetree: *mut pg_sys::Node) -> bool {
    if !unsafe { pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropStmt) } {
        return false;
    }
    let drop = unsafe { &*(parsetree as *mut pg_sys::DropStmt) };
    let ours = match drop.removeType {
        pg_sys::ObjectType::OBJECT_EXTENSION => "tenant_control",
        pg_sys::ObjectType::OBJECT_SCHEMA => "tenant",
        _ => return false,
    };
    let names = unsafe { pgrx::PgList::<pg_sys::Node>::from_pg(drop.objects) };
    let named = names.iter_ptr().any(|name| unsafe {
        pgrx::is_a(name, pg_sys::NodeTag::T_String)
            && std::ffi::CStr::from_ptr((*(name as *mut pg_sys::String)).sval).to_bytes() == ours.as_bytes()
    });
    named
}

fn described(verb: &str, schema_id: Option<pgrx::Uuid>) -> String {
    match schema_id {
        Some(id) => format!("{verb} institution schema {}", crate::core::db::to_uuid(id)),
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
    let (op, outcome) = oplog::record(
        OpKind::Migrate,
        schema_id.map(crate::core::db::to_uuid),
        described("migrate", schema_id),
        |op| migrate::migrate(op, schema_id),
    );
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
        Ok(id) => (
            "SUCCESS".into(),
            format!("spare schema \"{schema}\" is ready"),
            Some(crate::core::db::to_pg_uuid(id)),
            None,
        ),
        Err(error) => failure_with_value(&error),
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
        schema_id.map(crate::core::db::to_uuid),
        described("set the quota of", schema_id),
        |op| quota::set(op, schema_id, quota),
    );
    let schema = op.schema_name();
    TableIterator::once(match outcome {
        Ok(Some(limit)) => ("SUCCESS".into(), format!("schema \"{schema}\" may use {limit} bytes"), Some(limit), None),
        Ok(None) => ("SUCCESS".into(), format!("schema \"{schema}\" has no storage limit"), None, None),
        Err(error) => failure_with_value(&error),
    })
}

/// Back up one institution into a new backup schema (see README, Backup and restore).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_institution_schema(
    schema_id: Option<pgrx::Uuid>,
    verify: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(backup_id, Option<pgrx::Uuid>),
        name!(sqlstate, Option<String>),
    ),
> {
    let (op, outcome) =
        oplog::record(OpKind::Backup, schema_id.map(crate::core::db::to_uuid), described("back up", schema_id), |op| {
            backup::take(op, schema_id, verify)
        });
    let schema = op.schema_name();
    TableIterator::once(match outcome {
        Ok(taken) => (
            "SUCCESS".into(),
            format!(
                "backed up schema \"{schema}\" into \"{}\": {} rows, {} bytes{}",
                taken.backup,
                taken.rows,
                taken.size,
                if verify { ", verified" } else { "" }
            ),
            Some(crate::core::db::to_pg_uuid(taken.backup_id)),
            None,
        ),
        Err(error) => failure_with_value(&error),
    })
}

/// Prove a backup holds what was copied (and, optionally, what the live schema holds now).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn verify_backup(
    backup_id: Option<pgrx::Uuid>,
    against_live: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(backup_rows, i64),
        name!(backup_hash, String),
        name!(recorded_rows, Option<i64>),
        name!(recorded_hash, Option<String>),
        name!(live_rows, Option<i64>),
        name!(live_hash, Option<String>),
        name!(matches, bool),
    ),
> {
    let description = format!(
        "verify backup {}{}",
        backup_id.map(|id| crate::core::db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into()),
        if against_live { " against the live schema" } else { "" }
    );
    let (_, outcome) =
        oplog::record(OpKind::IntegrityCheck, None, description, |op| backup::verify(op, backup_id, against_live));
    let checks = outcome.or_raise();
    TableIterator::new(checks.into_iter().map(|c| {
        (c.table, c.backup_rows, c.backup_hash, c.recorded_rows, c.recorded_hash, c.live_rows, c.live_hash, c.matches)
    }))
}

/// Restore an institution from a backup: in place (NULL), or under a name.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn restore_institution_schema(
    backup_id: Option<pgrx::Uuid>,
    target_schema: default!(Option<&str>, "NULL"),
    allow_other_institution: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(schema_id, Option<pgrx::Uuid>),
        name!(replaced_by_backup, Option<String>),
        name!(swap_ms, Option<f64>),
        name!(sqlstate, Option<String>),
    ),
> {
    let description = format!(
        "restore backup {}{}",
        backup_id.map(|id| crate::core::db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into()),
        target_schema.map(|t| format!(" into schema {t}")).unwrap_or_default()
    );
    let (_, outcome) = oplog::record(OpKind::Restore, None, description, |op| {
        restore::restore(op, backup_id, target_schema, allow_other_institution)
    });
    TableIterator::once(match outcome {
        Ok(done) => (
            "SUCCESS".into(),
            match (&done.replaced, done.drill) {
                (_, Some(drill)) => format!(
                    "restored the backup as drill schema \"{}\" (backup {drill}), which no tenant role can read; \
                     remove it with tenant.remove_backup",
                    done.schema
                ),
                (Some(kept), None) => {
                    format!("restored schema \"{}\"; the schema it replaced is kept as backup \"{kept}\"", done.schema)
                }
                (None, None) => format!("restored schema \"{}\"", done.schema),
            },
            Some(crate::core::db::to_pg_uuid(done.schema_id)),
            done.replaced.map(|r| r.as_str().to_string()),
            Some(done.swap_ms),
            None,
        ),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, None, None, sqlstate)
        }
    })
}

/// Bring one table's rows back from a backup into the live schema.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn restore_table(
    backup_id: Option<pgrx::Uuid>,
    table_name: Option<&str>,
    mode: default!(Option<&str>, "'missing'"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(deleted, Option<i64>),
        name!(inserted, Option<i64>),
        name!(sqlstate, Option<String>),
    ),
> {
    let description = format!("restore table {} from backup", table_name.unwrap_or("NULL"));
    let (_, outcome) =
        oplog::record(OpKind::Restore, None, description, |op| restore::restore_table(op, backup_id, table_name, mode));
    TableIterator::once(match outcome {
        Ok(done) => (
            "SUCCESS".into(),
            format!(
                "table \"{}\".\"{}\": {} rows deleted, {} rows restored",
                done.schema,
                table_name.unwrap_or_default(),
                done.deleted,
                done.inserted
            ),
            Some(done.deleted),
            Some(done.inserted),
            None,
        ),
        Err(error) => {
            let (status, message, sqlstate) = failure(&error);
            (status, message, None, None, sqlstate)
        }
    })
}

/// Remove a backup (its schema, role and catalogue row); logged as a BACKUP operation.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn remove_backup(
    backup_id: Option<pgrx::Uuid>,
    reason: default!(Option<&str>, "'requested'"),
) -> TableIterator<'static, (name!(status, String), name!(message, String), name!(sqlstate, Option<String>))> {
    let description = format!(
        "remove backup {}",
        backup_id.map(|id| crate::core::db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into())
    );
    let why = reason.unwrap_or("requested");
    let (_, outcome) = oplog::record(OpKind::Backup, None, description, |op| backup::remove(op, backup_id, why));
    TableIterator::once(match outcome {
        Ok(schema) => ("SUCCESS".into(), format!("removed backup schema \"{schema}\" ({why})"), None),
        Err(error) => failure(&error),
    })
}

/// Free space on the data directory's file system, in bytes (what backups check).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_free_space() -> i64 {
    backup::free_bytes().or_raise()
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
    // Before any query of the check's own (pgrx gives every SPI statement a transaction id).
    let shareable = integrity::parallel::caller_sees_committed_only();
    let fix = fix.ok_or_else(|| TcError::null_argument("fix")).or_raise();
    let description = match schema_id {
        Some(_) => described(if fix { "check and fix" } else { "check" }, schema_id),
        None => format!("{} every institution schema", if fix { "check and fix" } else { "check" }),
    };
    let (_, outcome) =
        oplog::record(OpKind::IntegrityCheck, schema_id.map(crate::core::db::to_uuid), description, |op| {
            integrity::check(op, schema_id, fix, shareable)
        });
    TableIterator::new(outcome.or_raise().into_iter().map(|f| {
        (
            f.schema_id.map(crate::core::db::to_pg_uuid),
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
        Err(error) => failure_with_value(&error),
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
    let (_, outcome) = oplog::record(
        OpKind::Optimize,
        schema_id.map(crate::core::db::to_uuid),
        described("optimize", schema_id),
        |op| maintenance::optimize(op, schema_id),
    );
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

/// tenant_control.health_backup_max_age in seconds (0: not checked), for the health checks.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn health_backup_max_age() -> i32 {
    crate::core::settings::health_backup_max_age_s()
}

/// Mark a table of the template so that its rows are copied into every new
/// tenant (`copy => false` removes the mark).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_template_rows(table_name: Option<&str>, copy: default!(Option<bool>, true)) {
    crate::copy::template_rows::mark(table_name, copy).or_raise()
}
