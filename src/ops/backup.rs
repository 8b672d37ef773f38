//! Backups of one institution: taking them, the catalogue, verifying, removing.
//!
//! Every backup is a schema `tc_backup_<32 hex>` with its own NOLOGIN role
//! `tc_backup_<32 hex>_owner` standing for the tenant's role inside it (what
//! the tenant's role owned or was granted, that role owns or is granted in
//! the backup; a drop renames the tenant's role into such a role, or hands
//! its objects to a fresh one when another database uses it). The role has
//! no USAGE on the schema and no members, so no tenant reaches a backup.
//! (The schema a restore replaces stays owned by the tenant's role, which
//! loses its USAGE on it.) A backup is restored by the same generators that
//! made it, reading the backup and writing a tenant.

use crate::copy::schema_copy::{self, TableCopy};
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::name::{RoleName, TenantName};
use crate::core::restricted::internal_ddl;
use crate::core::settings;
use crate::registry::oplog::Operation;
use crate::registry::{self, Tenant};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::time::Instant;

pub struct Taken {
    pub backup_id: uuid::Uuid,
    pub backup: TenantName,
    pub rows: i64,
    pub size: i64,
}

/// Copy the tenant into a new backup schema, consistent as of one snapshot.
/// With `verify`, the copy also hashes every source table in that snapshot
/// and the backup must hash the same, or nothing is kept.
pub fn take(op: &mut Operation, schema_id: Option<pgrx::Uuid>, verify: bool) -> TcResult<Taken> {
    let id = schema_id.map(db::to_uuid).ok_or_else(|| TcError::null_argument("schema_id"))?;
    locks::tenant_data(id, true)?;
    let tenant = registry::lock_key_share(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    op.note("institution_id", tenant.institution_id.map(|id| id.to_string()));
    registry::require_live(&tenant)?;
    let estimate = schema_size(&tenant.schema)?;
    op.note("estimated_bytes", estimate);
    require_space(estimate, &format!("back up schema \"{}\"", tenant.schema))?;

    let started = Instant::now();
    let backup_id = uuid::Uuid::new_v4();
    let backup = TenantName::backup(&backup_id);
    let role = backup.role();
    let prelude = [format!("CREATE ROLE {} NOLOGIN", role.quoted()), format!("CREATE SCHEMA {}", backup.quoted())];
    let copied =
        schema_copy::copy_schema(&tenant.schema, &tenant.role, &backup, &role, &prelude, &tenant.role, verify)?;
    let size = schema_size(&backup)?;
    register(backup_id, &tenant, &backup, &role, "BACKUP", size, started.elapsed().as_secs_f64() * 1000.0)?;
    record_tables(backup_id, &copied)?;
    if verify {
        require_match(backup_id)?;
    }
    account(tenant.id, true)?;
    let rows = copied.iter().map(|t| t.rows).sum();
    op.note("backup_id", backup_id.to_string());
    op.note("backup_schema", backup.as_str());
    op.note("size_bytes", size);
    op.note("row_count", rows);
    op.note("verified", verify);
    op.note(
        "tables",
        copied.iter().map(|t| (t.name.clone(), serde_json::Value::from(t.rows))).collect::<serde_json::Map<_, _>>(),
    );
    Ok(Taken { backup_id, backup, rows, size })
}

/// Prove a fresh copy hashes like the rows it was copied from (its manifest),
/// and mark it verified; a mismatch fails the copy (XX001).
pub fn require_match(backup_id: uuid::Uuid) -> TcResult<()> {
    let checks = check(backup_id, None)?;
    if let Some(bad) = checks.iter().find(|c| !c.matches) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("the backup of table \"{}\" does not match the tenant's rows", bad.table),
        )
        .detail(format!(
            "copied {} rows hashing {}, the backup holds {} rows hashing {}",
            bad.recorded_rows.unwrap_or(0),
            bad.recorded_hash.as_deref().unwrap_or("?"),
            bad.backup_rows,
            bad.backup_hash
        )));
    }
    mark_verified(backup_id)
}

/// Bytes a schema's relations occupy (tables with TOAST and indexes, matviews, sequences).
pub fn schema_size(schema: &TenantName) -> TcResult<i64> {
    db::scalar(
        "SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint FROM pg_catalog.pg_class c
          WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'm', 'S')",
        &[schema.as_str().into()],
    )
}

/// Bytes free for unprivileged use on the file system of the data directory.
/// PostgreSQL does not report it, so ask the operating system (statvfs).
pub fn free_bytes() -> TcResult<i64> {
    // SAFETY: DataDir is the absolute data directory path, set before any backend runs SQL.
    let dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(dir.as_ptr(), &mut stat) } != 0 {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_IO_ERROR,
            format!("could not read the free space of {}: {}", dir.to_string_lossy(), std::io::Error::last_os_error()),
        ));
    }
    Ok((stat.f_bavail as u128 * stat.f_frsize as u128).min(i64::MAX as u128) as i64)
}

/// Refuse, before anything is written, a copy (backup or restore) that would
/// leave less than `tenant_control.backup_reserve` free; `what` names it.
pub fn require_space(estimate: i64, what: &str) -> TcResult<()> {
    let free = free_bytes()?;
    let reserve = settings::backup_reserve_bytes();
    if estimate.saturating_add(reserve) > free {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_DISK_FULL, format!("not enough free space to {what}"))
            .detail(format!(
                "The copy needs about {estimate} bytes and tenant_control.backup_reserve keeps {reserve} bytes free; \
             the data directory's file system has {free} bytes free."
            ))
            .hint("Free space (tenant.cleanup_backups removes old backups) or lower tenant_control.backup_reserve."));
    }
    Ok(())
}

/// Enter a backup schema in the catalogue; `role` stands for the tenant's role in it.
pub fn register(
    backup_id: uuid::Uuid,
    tenant: &Tenant,
    backup: &TenantName,
    role: &RoleName,
    reason: &str,
    size: i64,
    duration_ms: f64,
) -> TcResult<()> {
    db::run(
        "INSERT INTO tenant.schema_backups
             (id, schema_id, backup_schema, source_schema, reason, size_bytes, source_version, duration_ms, backup_role)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::regrole)",
        &[
            db::to_pg_uuid(backup_id).into(),
            db::to_pg_uuid(tenant.id).into(),
            backup.as_str().into(),
            tenant.schema.as_str().into(),
            reason.into(),
            size.into(),
            tenant.version.into(),
            duration_ms.into(),
            role.as_str().into(),
        ],
    )
}

/// Store the per-table manifest of a backup and its total row count.
pub fn record_tables(backup_id: uuid::Uuid, tables: &[TableCopy]) -> TcResult<()> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let rows: Vec<i64> = tables.iter().map(|t| t.rows).collect();
    let hashes: Vec<Option<String>> = tables.iter().map(|t| t.hash.clone()).collect();
    db::run(
        "WITH manifest AS (
             INSERT INTO tenant.backup_tables (backup_id, table_name, row_count, content_hash)
             SELECT $1, m.name, m.rows, m.hash::numeric
               FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::text[]))
                    AS m(name, rows, hash)
             RETURNING row_count)
         UPDATE tenant.schema_backups SET row_count = (SELECT COALESCE(sum(row_count), 0) FROM manifest) WHERE id = $1",
        &[db::to_pg_uuid(backup_id).into(), names.into(), rows.into(), hashes.into()],
    )
}

fn mark_verified(backup_id: uuid::Uuid) -> TcResult<()> {
    db::run(
        "UPDATE tenant.schema_backups SET verified_at = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(backup_id).into()],
    )
}

/// A backup that was the tenant's own storage (detached by a drop): hash it
/// now, so that later verifications prove it unchanged.
pub fn seal(backup_id: uuid::Uuid, backup: &TenantName) -> TcResult<i64> {
    let tables = schema_copy::count_and_hash(backup)?;
    record_tables(backup_id, &tables)?;
    mark_verified(backup_id)?;
    Ok(tables.iter().map(|t| t.rows).sum())
}

/// Recount the bytes a tenant's backups hold into the registry; with
/// `taken`, also record that a backup was just taken.
pub fn account(schema_id: uuid::Uuid, taken: bool) -> TcResult<()> {
    // Lock the row first: the sum below then runs in a snapshot taken after a
    // concurrent backup that updated the row committed, and counts its bytes.
    db::run(
        "SELECT 1 FROM tenant.tenant_schemas WHERE id = $1 FOR NO KEY UPDATE",
        &[db::to_pg_uuid(schema_id).into()],
    )?;
    db::run(
        "UPDATE tenant.tenant_schemas
            SET backup_storage = (SELECT COALESCE(sum(b.size_bytes), 0) FROM tenant.schema_backups b WHERE b.schema_id = $1),
                last_backup = CASE WHEN $2 THEN pg_catalog.now() ELSE last_backup END
          WHERE id = $1",
        &[db::to_pg_uuid(schema_id).into(), taken.into()],
    )
}

/// A backup in the catalogue.
#[derive(Debug, Clone)]
pub struct Backup {
    pub id: uuid::Uuid,
    pub schema_id: uuid::Uuid,
    pub schema: TenantName,
    pub role: RoleName,
    pub source_version: Option<i32>,
}

/// Look a backup up and lock its catalogue row: FOR SHARE while it is read
/// (verify, restore), FOR UPDATE to remove it.
pub fn lock(backup_id: Option<pgrx::Uuid>, for_update: bool) -> TcResult<Backup> {
    let id = backup_id.ok_or_else(|| TcError::null_argument("backup_id"))?;
    let mode = if for_update { "UPDATE" } else { "SHARE" };
    let found = db::rows(
        &format!(
            "SELECT b.id, b.schema_id, b.backup_schema, b.source_version,
                    (SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.oid = b.backup_role) AS role
               FROM tenant.schema_backups b WHERE b.id = $1 FOR {mode} OF b"
        ),
        &[id.into()],
        |row| {
            let missing = || TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "catalogue row has NULL columns");
            Ok(Backup {
                id: db::to_uuid(db::col(row, "id")?.ok_or_else(missing)?),
                schema_id: db::to_uuid(db::col(row, "schema_id")?.ok_or_else(missing)?),
                schema: TenantName::from_registry(db::col(row, "backup_schema")?.ok_or_else(missing)?),
                role: RoleName::from_registry(db::col(row, "role")?.ok_or_else(missing)?),
                source_version: db::col(row, "source_version")?,
            })
        },
    )?;
    found.into_iter().next().ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("no backup with id {} in tenant.backups", db::to_uuid(id)),
        )
        .hint("List backups with SELECT * FROM tenant.backups.")
    })
}

/// One table of a verification.
#[derive(Debug, Clone)]
pub struct Check {
    pub table: String,
    pub backup_rows: i64,
    pub backup_hash: String,
    pub recorded_rows: Option<i64>,
    pub recorded_hash: Option<String>,
    pub live_rows: Option<i64>,
    pub live_hash: Option<String>,
    pub matches: bool,
}

/// Hash every table of the backup (and of the live schema, when given) and
/// compare with the manifest. A hash the manifest lacks is recorded.
pub fn check(backup_id: uuid::Uuid, live: Option<&TenantName>) -> TcResult<Vec<Check>> {
    let backup = lock(Some(db::to_pg_uuid(backup_id)), false)?;
    let hashed = schema_copy::count_and_hash(&backup.schema)?;
    let recorded = db::rows(
        "SELECT table_name, row_count, content_hash::text AS content_hash FROM tenant.backup_tables WHERE backup_id = $1",
        &[db::to_pg_uuid(backup_id).into()],
        |row| {
            Ok((
                db::col::<String>(row, "table_name")?.unwrap_or_default(),
                db::col::<i64>(row, "row_count")?.unwrap_or(0),
                db::col::<String>(row, "content_hash")?,
            ))
        },
    )?;
    let live_tables = match live {
        Some(schema) => Some(schema_copy::count_and_hash(schema)?),
        None => None,
    };
    let first_verification = recorded.is_empty();
    let mut checks = Vec::new();
    for table in &hashed {
        let hash = table.hash.clone().unwrap_or_default();
        let known = recorded.iter().find(|(name, _, _)| *name == table.name);
        let (recorded_rows, recorded_hash) = match known {
            Some((_, rows, hash)) => (Some(*rows), hash.clone()),
            None => (None, None),
        };
        let live_table = live_tables.as_ref().map(|tables| tables.iter().find(|t| t.name == table.name));
        let (live_rows, live_hash) = match live_table.flatten() {
            Some(t) => (Some(t.rows), t.hash.clone()),
            None => (None, None),
        };
        let recorded_ok = match known {
            Some(_) => recorded_rows == Some(table.rows) && recorded_hash.as_ref().is_none_or(|h| *h == hash),
            None => first_verification,
        };
        let live_ok = live.is_none() || (live_rows == Some(table.rows) && live_hash.as_ref() == Some(&hash));
        checks.push(Check {
            table: table.name.clone(),
            backup_rows: table.rows,
            backup_hash: hash,
            recorded_rows,
            recorded_hash,
            live_rows,
            live_hash,
            matches: recorded_ok && live_ok,
        });
    }
    // Tables recorded but gone from the backup, and live tables the backup lacks.
    for (name, rows, hash) in &recorded {
        if !hashed.iter().any(|t| t.name == *name) {
            checks.push(missing_table(name, Some(*rows), hash.clone(), None));
        }
    }
    for table in live_tables.iter().flatten() {
        if !hashed.iter().any(|t| t.name == table.name) {
            checks.push(missing_table(&table.name, None, None, Some(table)));
        }
    }
    if first_verification {
        record_tables(backup_id, &hashed)?;
    } else {
        // A hash not recorded yet is recorded once the rows are those copied.
        let (unhashed, hashes): (Vec<String>, Vec<String>) = checks
            .iter()
            .filter(|c| c.recorded_hash.is_none() && c.recorded_rows == Some(c.backup_rows))
            .map(|c| (c.table.clone(), c.backup_hash.clone()))
            .unzip();
        db::run(
            "UPDATE tenant.backup_tables b SET content_hash = h.hash::numeric
               FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS h(name, hash)
              WHERE b.backup_id = $1 AND b.table_name = h.name",
            &[db::to_pg_uuid(backup_id).into(), unhashed.into(), hashes.into()],
        )?;
    }
    if checks.iter().all(|c| c.matches) {
        mark_verified(backup_id)?;
    }
    Ok(checks)
}

fn missing_table(name: &str, rows: Option<i64>, hash: Option<String>, live: Option<&TableCopy>) -> Check {
    Check {
        table: name.to_string(),
        backup_rows: 0,
        backup_hash: String::new(),
        recorded_rows: rows,
        recorded_hash: hash,
        live_rows: live.map(|t| t.rows),
        live_hash: live.and_then(|t| t.hash.clone()),
        matches: false,
    }
}

/// The backup, and the live schema of its tenant when `against_live`.
pub fn verify(op: &mut Operation, backup_id: Option<pgrx::Uuid>, against_live: bool) -> TcResult<Vec<Check>> {
    let backup = lock(backup_id, false)?;
    op.schema_id = Some(backup.schema_id);
    op.note("backup_id", backup.id.to_string());
    op.note("backup_schema", backup.schema.as_str());
    let live = if against_live {
        let tenant = registry::lock_key_share(Some(db::to_pg_uuid(backup.schema_id)))?;
        registry::require_live(&tenant)?;
        op.note("schema_name", tenant.schema.as_str());
        Some(tenant.schema)
    } else {
        None
    };
    let checks = check(backup.id, live.as_ref())?;
    op.note("tables", checks.len());
    op.note("mismatched", checks.iter().filter(|c| !c.matches).map(|c| c.table.clone()).collect::<Vec<_>>());
    Ok(checks)
}

/// Remove a backup: its schema, its role and its catalogue row.
pub fn remove(op: &mut Operation, backup_id: Option<pgrx::Uuid>, why: &str) -> TcResult<TenantName> {
    let backup = lock(backup_id, true)?;
    op.schema_id = Some(backup.schema_id);
    op.note("action", "remove");
    op.note("why", why);
    op.note("backup_id", backup.id.to_string());
    op.note("backup_schema", backup.schema.as_str());
    let role = backup.role.clone();
    db::run("DELETE FROM tenant.schema_backups WHERE id = $1", &[db::to_pg_uuid(backup.id).into()])?;
    // The role goes too unless it still serves: another backup (a RESTORE
    // backup keeps the tenant's role) or a tenant.
    let role_serves: bool = db::scalar(
        "SELECT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_role = $1::text::regrole)
             OR EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.owner_role = $1 AND t.status <> 'DROPPED')",
        &[role.as_str().into()],
    )?;
    internal_ddl(|| {
        if registry::schema_exists(backup.schema.as_str())? {
            db::run(&format!("DROP SCHEMA {} CASCADE", backup.schema.quoted()), &[])?;
        }
        // Roles belong to the cluster: one another database still uses
        // (a copy of this database) keeps its role there.
        if !role_serves && registry::role_exists(&role)? {
            db::run(&format!("DROP OWNED BY {}", role.quoted()), &[])?;
            if !registry::used_in_other_database(&role)? {
                db::run(&format!("DROP ROLE {}", role.quoted()), &[])?;
            }
        }
        Ok(())
    })?;
    account(backup.schema_id, false)?;
    Ok(backup.schema)
}
