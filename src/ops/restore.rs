//! Restores: a whole institution from a backup (into its live schema, a
//! dropped one, or a new name), and one table into the live schema.
//!
//! A restore never writes to the backup. It builds the restored copy under a
//! temporary name, owned by and granted to the tenant's own role (which gets
//! no USAGE on it), while the live schema stays in use; then it swaps: the
//! live schema is detached into a backup (reason RESTORE, still owned by the
//! tenant's role, which loses its USAGE) and the copy is renamed into its
//! place. Renames take no table locks, so the swap is as quick whatever the
//! size; everything commits together, and the role keeps its identity, so
//! readers see the old schema or the new one.

use crate::copy::schema_copy::{self, TableCopy};
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::name::{RoleName, TenantName};
use crate::core::restricted;
use crate::core::restricted::internal_ddl;
use crate::ops::backup::{self, Backup};
use crate::ops::lifecycle;
use crate::registry::oplog::Operation;
use crate::registry::{self, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::quote_qualified_identifier;
use std::time::Instant;

pub struct Restored {
    pub schema_id: uuid::Uuid,
    pub schema: TenantName,
    /// The schema the restore replaced, kept as a backup.
    pub replaced: Option<TenantName>,
    pub swap_ms: f64,
    /// A recovery drill: the catalogue id of the copy.
    pub drill: Option<uuid::Uuid>,
}

pub fn restore(
    op: &mut Operation,
    backup_id: Option<pgrx::Uuid>,
    target_schema: Option<&str>,
    allow_other_institution: bool,
) -> TcResult<Restored> {
    let backup = backup::lock(backup_id, false)?;
    op.note("backup_id", backup.id.to_string());
    op.note("backup_schema", backup.schema.as_str());
    let name = target_schema.map(|t| TenantName::parse(Some(t))).transpose()?;
    // A name registered to a live schema means "in place of that schema".
    let named_tenant = match &name {
        Some(name) => db::value::<pgrx::Uuid>(
            "SELECT id FROM tenant.tenant_schemas WHERE schema_name = $1 AND status <> 'DROPPED'",
            &[name.as_str().into()],
        )?
        .map(db::to_uuid),
        None => None,
    };
    let target_id = named_tenant.unwrap_or(backup.schema_id);
    op.schema_id = Some(target_id);
    locks::tenant_data(target_id, false)?;
    let tenant = registry::lock(Some(db::to_pg_uuid(target_id)))?;
    op.note("schema_name", tenant.schema.as_str());
    if tenant.id != backup.schema_id {
        let source = db::value::<pgrx::Uuid>(
            "SELECT institution_id FROM tenant.tenant_schemas WHERE id = $1",
            &[db::to_pg_uuid(backup.schema_id).into()],
        )?
        .map(db::to_uuid);
        let other = source != tenant.institution_id;
        if other && !allow_other_institution {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("backup {} belongs to another institution than schema \"{}\"", backup.id, tenant.schema),
            )
            .detail(format!(
                "The backup was taken from institution {}; \"{}\" belongs to institution {}.",
                display(source),
                tenant.schema,
                display(tenant.institution_id)
            ))
            .hint("Pass allow_other_institution => true to replace its data with the backup's all the same."));
        }
        op.note("other_institution", other);
    }
    if tenant.status == Status::Spare {
        registry::require_live(&tenant)?;
    }
    if tenant.status == Status::Dropped {
        let schema = name.unwrap_or_else(|| tenant.schema.clone());
        return recreate(op, &backup, &tenant, schema);
    }
    // A new name for a live institution: a recovery drill beside it.
    if let Some(name) = name.filter(|n| *n != tenant.schema) {
        return drill(op, &backup, &tenant, name);
    }
    in_place(op, &backup, &tenant)
}

fn display(id: Option<uuid::Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_else(|| "?".into())
}

/// Build the backup's copy under a temporary schema, already owned by and
/// granted to the tenant's role `role`, which gets no USAGE on it yet.
/// `prelude` runs first (creating the role when the tenant has none).
fn build(backup: &Backup, op: &mut Operation, role: &RoleName, prelude: Vec<String>) -> TcResult<TenantName> {
    backup::require_space(backup::schema_size(&backup.schema)?, &format!("restore backup {}", backup.id))?;
    let started = Instant::now();
    let temporary = TenantName::restoring(&uuid::Uuid::new_v4());
    let prelude: Vec<String> = prelude.into_iter().chain([format!("CREATE SCHEMA {}", temporary.quoted())]).collect();
    let copied = schema_copy::copy_schema(&backup.schema, &backup.role, &temporary, role, &prelude, role, false)?;
    // The manifest's row counts must come back whole.
    require_manifest(backup, &copied)?;
    op.note("rows", copied.iter().map(|t| t.rows).sum::<i64>());
    op.note("build_ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(temporary)
}

/// Rename the built copy to the tenant's name and let the tenant's role in
/// (as its status allows). The role keeps its identity: a session that
/// assumed it before the swap reads the new schema after it.
pub fn move_in(temporary: &TenantName, schema: &TenantName, role: &RoleName, status: Status) -> TcResult<()> {
    lifecycle::rename_schema(temporary, schema)?;
    if status.grants_access() {
        db::run(&format!("GRANT USAGE, CREATE ON SCHEMA {} TO {}", schema.quoted(), role.quoted()), &[])?;
    }
    Ok(())
}

fn in_place(op: &mut Operation, backup: &Backup, tenant: &Tenant) -> TcResult<Restored> {
    let temporary = build(backup, op, &tenant.role, Vec::new())?;
    let clock = Instant::now();
    let replaced = internal_ddl(|| {
        let replaced = lifecycle::detach(op, tenant, "RESTORE", false)?;
        move_in(&temporary, &tenant.schema, &tenant.role, tenant.status)?;
        Ok(replaced)
    })?;
    let swap_ms = clock.elapsed().as_secs_f64() * 1000.0;
    op.note("swap_ms", swap_ms);
    finish(tenant, &tenant.schema, backup)?;
    Ok(Restored {
        schema_id: tenant.id,
        schema: tenant.schema.clone(),
        replaced: replaced.map(|(_, schema)| schema),
        swap_ms,
        drill: None,
    })
}

/// Bring a DROPPED tenant back under its old name or a new one.
fn recreate(op: &mut Operation, backup: &Backup, tenant: &Tenant, schema: TenantName) -> TcResult<Restored> {
    let institution = tenant.institution_id.ok_or_else(|| TcError::unknown_tenant(tenant.id))?;
    let taken = registry::taken(institution, &schema)?;
    if let Some(existing) = taken.schema_of_institution {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("institution {institution} already has the schema \"{existing}\""),
        )
        .hint(format!("Restore in place of it with target_schema => '{existing}'.")));
    }
    if taken.institution_of_schema.is_some() || taken.schema_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{schema}\" already exists"),
        )
        .hint("Restore under another name with target_schema."));
    }
    // A drop keeps the tenant's role only when another database of the
    // cluster uses one of that name: never adopt it (its members there would
    // reach this tenant).
    if taken.role_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("role \"{}\" already exists", schema.role()),
        )
        .detail("Roles belong to the whole cluster; another database (or an earlier tenant) uses this one.")
        .hint("Restore under another name with target_schema: the tenant gets a role of that name."));
    }
    let role = schema.role();
    let prelude = vec![format!("CREATE ROLE {} NOLOGIN", role.quoted())];
    let temporary = build(backup, op, &role, prelude)?;
    let clock = Instant::now();
    internal_ddl(|| move_in(&temporary, &schema, &role, Status::Active))?;
    let swap_ms = clock.elapsed().as_secs_f64() * 1000.0;
    op.note("swap_ms", swap_ms);
    db::run(
        "UPDATE tenant.tenant_schemas
            SET status = 'ACTIVE', schema_name = $2, owner_role = $3, updated_at = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), schema.as_str().into(), schema.role().as_str().into()],
    )?;
    finish(tenant, &schema, backup)?;
    Ok(Restored { schema_id: tenant.id, schema, replaced: None, swap_ms, drill: None })
}

/// Registry after a restore: the backup's version, fresh counters, backup bytes.
fn finish(tenant: &Tenant, schema: &TenantName, backup: &Backup) -> TcResult<()> {
    let mut restored = tenant.clone();
    restored.schema = schema.clone();
    if let Some(version) = backup.source_version {
        registry::set_version(&restored, version)?;
    }
    registry::refresh_counters(&restored)?;
    backup::account(tenant.id, false)
}

/// The rows a copy read from a backup against the backup's manifest: the
/// same row count per table, and the same hash when both were computed.
fn require_manifest(backup: &Backup, copied: &[TableCopy]) -> TcResult<()> {
    let recorded = db::rows(
        "SELECT table_name, row_count, content_hash::text AS content_hash FROM tenant.backup_tables WHERE backup_id = $1",
        &[db::to_pg_uuid(backup.id).into()],
        |row| {
            Ok((
                db::col::<String>(row, "table_name")?.unwrap_or_default(),
                db::col::<i64>(row, "row_count")?,
                db::col::<String>(row, "content_hash")?,
            ))
        },
    )?;
    for (table, rows, hash) in recorded {
        let found = copied.iter().find(|t| t.name == table);
        let same_rows = found.map(|t| t.rows) == rows;
        let same_hash = match (found.and_then(|t| t.hash.as_ref()), &hash) {
            (Some(read), Some(recorded)) => read == recorded,
            _ => true,
        };
        if !(same_rows && same_hash) {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("table \"{table}\" of backup {} no longer holds the rows it recorded", backup.id),
            )
            .detail(format!(
                "recorded {rows:?} rows hashing {hash:?}, read {:?} rows hashing {:?}",
                found.map(|t| t.rows),
                found.and_then(|t| t.hash.clone())
            )));
        }
    }
    Ok(())
}

/// A recovery drill: the backup of a live institution restored under a new
/// name beside the live schema, to rehearse a restore or compare old rows
/// with live ones. The copy is a backup in all but name: a NOLOGIN role of
/// its own with no members stands for the tenant's role in it, no role gets
/// USAGE on it, the catalogue lists it with reason DRILL, and
/// tenant.remove_backup removes it. The rows read from the backup must hash
/// as its manifest recorded, and the copy must hash like them.
fn drill(op: &mut Operation, backup: &Backup, tenant: &Tenant, name: TenantName) -> TcResult<Restored> {
    op.note("drill_schema", name.as_str());
    if registry::schema_exists(name.as_str())? {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{name}\" already exists"),
        )
        .hint("Restore the drill under another name with target_schema."));
    }
    backup::require_space(backup::schema_size(&backup.schema)?, &format!("restore backup {} as a drill", backup.id))?;
    let started = Instant::now();
    let drill_id = uuid::Uuid::new_v4();
    let role = TenantName::backup(&drill_id).role();
    let prelude = [format!("CREATE ROLE {} NOLOGIN", role.quoted()), format!("CREATE SCHEMA {}", name.quoted())];
    // Loaded as the tenant's role, like a backup: its code runs with its rights.
    let copied = schema_copy::copy_schema(&backup.schema, &backup.role, &name, &role, &prelude, &tenant.role, true)?;
    require_manifest(backup, &copied)?;
    let mut source = tenant.clone();
    source.version = backup.source_version.unwrap_or(tenant.version);
    let size = backup::schema_size(&name)?;
    backup::register(drill_id, &source, &name, &role, "DRILL", size, started.elapsed().as_secs_f64() * 1000.0)?;
    backup::record_tables(drill_id, &copied)?;
    backup::require_match(drill_id)?;
    backup::account(tenant.id, false)?;
    op.note("drill_id", drill_id.to_string());
    op.note("rows", copied.iter().map(|t| t.rows).sum::<i64>());
    Ok(Restored { schema_id: tenant.id, schema: name, replaced: None, swap_ms: 0.0, drill: Some(drill_id) })
}

pub struct TableRestored {
    pub schema: TenantName,
    pub deleted: i64,
    pub inserted: i64,
}

/// Bring rows of one table back from a backup into the tenant's live table:
/// `missing` inserts the backup's rows whose primary key the live table lacks;
/// `replace` deletes the live rows and inserts the backup's.
pub fn restore_table(
    op: &mut Operation,
    backup_id: Option<pgrx::Uuid>,
    table: Option<&str>,
    mode: Option<&str>,
) -> TcResult<TableRestored> {
    let table = table.ok_or_else(|| TcError::null_argument("table_name"))?;
    let mode = mode.ok_or_else(|| TcError::null_argument("mode"))?.to_ascii_lowercase();
    if mode != "missing" && mode != "replace" {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("unknown mode \"{mode}\""))
            .hint(
                "Use 'missing' (insert the rows whose key is gone) or 'replace' (the whole table as in the backup).",
            ));
    }
    let backup = backup::lock(backup_id, false)?;
    op.schema_id = Some(backup.schema_id);
    let tenant = registry::lock(Some(db::to_pg_uuid(backup.schema_id)))?;
    op.note("schema_name", tenant.schema.as_str());
    op.note("backup_id", backup.id.to_string());
    op.note("table", table);
    op.note("mode", mode.as_str());
    registry::require_live(&tenant)?;
    let from = quote_qualified_identifier(backup.schema.as_str(), table);
    let into = quote_qualified_identifier(tenant.schema.as_str(), table);
    // Columns of the backup's table that the live table has and accepts.
    let found = db::rows(
        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(l.attname), ', ' ORDER BY l.attnum) AS columns,
                pg_catalog.string_agg(CASE WHEN b.atttypid = l.atttypid THEN pg_catalog.quote_ident(b.attname)
                                           ELSE pg_catalog.format('%I::pg_catalog.text::%s', b.attname,
                                                                  pg_catalog.format_type(l.atttypid, l.atttypmod)) END,
                                      ', ' ORDER BY l.attnum) AS values,
                (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.n)
                   FROM pg_catalog.pg_index i, pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, n),
                        pg_catalog.pg_attribute a
                  WHERE i.indrelid = pg_catalog.to_regclass($2) AND i.indisprimary
                    AND a.attrelid = i.indrelid AND a.attnum = k.attnum) AS key
           FROM pg_catalog.pg_attribute l
           JOIN pg_catalog.pg_attribute b ON b.attrelid = pg_catalog.to_regclass($1) AND b.attname = l.attname
                                         AND b.attnum > 0 AND NOT b.attisdropped
          WHERE l.attrelid = pg_catalog.to_regclass($2) AND l.attnum > 0 AND NOT l.attisdropped AND l.attgenerated = ''",
        &[from.as_str().into(), into.as_str().into()],
        |row| {
            Ok((db::col::<String>(row, "columns")?, db::col::<String>(row, "values")?, db::col::<String>(row, "key")?))
        },
    )?;
    let missing_table = |schema: &TenantName| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{table}\" does not exist in \"{schema}\""),
        )
    };
    for (relation, schema) in [(&from, &backup.schema), (&into, &tenant.schema)] {
        let relkind = db::value::<String>(
            "SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
            &[relation.as_str().into()],
        )?;
        if relkind.as_deref() != Some("r") {
            return Err(missing_table(schema));
        }
    }
    let (columns, values, key) = found.into_iter().next().unwrap_or((None, None, None));
    let values = values.unwrap_or_default();
    let columns = columns.ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("table \"{table}\" has no column in common with the backup"),
        )
    })?;
    let conflict = if mode == "replace" {
        String::new()
    } else {
        let key = key.ok_or_else(|| {
            TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
                format!("table \"{}\".\"{table}\" has no primary key to tell missing rows by", tenant.schema),
            )
            .hint("Use mode => 'replace'.")
        })?;
        format!(" ON CONFLICT ({key}) DO NOTHING")
    };
    // The backup's rows, copied raw (same column types, nothing of the
    // tenant's evaluated, whatever the backup table's row-level security) into
    // a temporary table the tenant's role may read for this call only.
    let staged =
        format!("pg_temp.{}", pgrx::spi::quote_identifier(format!("tc_restore_{}", uuid::Uuid::new_v4().simple())));
    db::run(&format!("CREATE TEMPORARY TABLE {staged} ON COMMIT DROP AS SELECT * FROM ONLY {from}"), &[])?;
    db::run(&format!("GRANT SELECT ON TABLE {staged} TO {}", tenant.role.quoted()), &[])?;
    // A suspended tenant's role has no USAGE on its schema: it gets it for
    // this call only.
    let lacks_usage: bool = db::scalar(
        "SELECT NOT pg_catalog.has_schema_privilege($1, $2, 'USAGE')",
        &[tenant.role.as_str().into(), tenant.schema.as_str().into()],
    )?;
    let usage = |verb: &str, direction: &str| {
        db::run(&format!("{verb} USAGE ON SCHEMA {} {direction} {}", tenant.schema.quoted(), tenant.role.quoted()), &[])
    };
    if lacks_usage {
        internal_ddl(|| usage("GRANT", "TO"))?;
    }
    // The data changes run as the tenant's role in a security-restricted
    // operation: its triggers, rules, CHECKs, defaults and policies act with
    // its rights only. Marked as the extension's own work, so that a tenant
    // near its quota still gets its rows back.
    let search_path = format!("pg_catalog, {}", tenant.schema.quoted());
    let (deleted, inserted) = internal_ddl(|| {
        restricted::as_role(tenant.role.as_str(), &search_path, || {
            // PostgreSQL refuses to queue deferred triggers (deferrable
            // foreign keys among them) inside a security-restricted
            // operation: they would fire later, outside it. Checked now.
            db::run("SET CONSTRAINTS ALL IMMEDIATE", &[])?;
            let deleted: i64 = if mode == "replace" {
                db::scalar(
                    &format!("WITH d AS (DELETE FROM {into} RETURNING 1) SELECT pg_catalog.count(*) FROM d"),
                    &[],
                )?
            } else {
                0
            };
            let inserted: i64 = db::scalar(
                &format!(
                    "WITH i AS (INSERT INTO {into} ({columns}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {staged}{conflict} RETURNING 1)
                     SELECT pg_catalog.count(*) FROM i"
                ),
                &[],
            )?;
            Ok((deleted, inserted))
        })
    })?;
    db::run(&format!("DROP TABLE {staged}"), &[])?;
    if lacks_usage {
        internal_ddl(|| usage("REVOKE", "FROM"))?;
    }
    op.note("deleted", deleted);
    op.note("inserted", inserted);
    Ok(TableRestored { schema: tenant.schema, deleted, inserted })
}
