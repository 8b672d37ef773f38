//! Copy an institution from another database or server running
//! tenant_control (`tenant.copy_institution_from`): as a new registered
//! institution, in place of the local one (swapped like an in-place restore:
//! the replaced schema is kept as a backup), or under a new name beside the
//! local one as a drill (a backup no tenant role reaches).
//!
//! Everything is read from the source in ONE REPEATABLE READ transaction
//! (`remote::with_source`): its registry row, its settings
//! (`tenant.institution_settings`: config, quota, limits, row limits,
//! archives, administrators, applied here by
//! `tenant.receive_institution_settings`), its structure from its own
//! generators (`tenant.institution_structure`), the row counts and hashes of
//! its tables (`tenant.institution_manifest`, which logs the read there),
//! the rows, the sequence positions. The rows land in bare staging tables
//! as text converted by built-in input functions, then the tenant's role
//! loads them in a security-restricted operation (`schema_copy::fill`), as a
//! restore does: nothing the source tenant wrote runs with more rights than
//! the role it arrives as. The copy must hash as the source did, table by
//! table, before it is registered or swapped in.

use crate::copy::remote::{self, Remote};
use crate::copy::schema_copy::{self, TableCopy};
use crate::copy::template;
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::name::{RoleName, TenantName};
use crate::core::restricted::internal_ddl;
use crate::ops::backup;
use crate::ops::lifecycle;
use crate::ops::migrate;
use crate::ops::restore;
use crate::registry::oplog::Operation;
use crate::registry::{self, Built, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::{quote_literal, quote_qualified_identifier};
use std::time::Instant;

const SOURCE_ROW: &str = include_str!("../../sql/queries/portable_source_row.sql");
const SEQUENCES: &str = include_str!("../../sql/queries/portable_sequences.sql");
const STAGING: &str = include_str!("../../sql/queries/portable_staging.sql");
/// work_mem while one table's rows arrive (one table at a time).
const READ_WORK_MEM: &str = "64MB";

pub struct Request<'a> {
    pub source: &'a str,
    pub institution: uuid::Uuid,
    pub schema_name: Option<&'a str>,
    pub in_place: bool,
    pub migrate: bool,
}

pub struct Copied {
    pub schema_id: uuid::Uuid,
    pub schema: TenantName,
    /// In place: the schema the copy replaced, kept as a backup.
    pub replaced: Option<TenantName>,
    /// Beside a live institution: the catalogue id of the drill.
    pub drill: Option<uuid::Uuid>,
    pub rows: i64,
}

/// The institution on the source: its registry row, and the backup a copy
/// of a dropped one reads.
struct Found {
    schema_id: uuid::Uuid,
    schema: TenantName,
    status: String,
    version: i32,
    /// Bytes of the schema the copy reads, for the free-space check here.
    size: i64,
    backup_id: Option<uuid::Uuid>,
    template_version: i32,
    database: String,
}

impl Found {
    /// The version of the schema the copy reads (a backup's own).
    fn copy_version(&self, backup_version: Option<i32>) -> i32 {
        backup_version.unwrap_or(self.version)
    }

    fn arguments(&self) -> String {
        let backup = self.backup_id.map(|b| format!("'{b}'::uuid")).unwrap_or_else(|| "NULL::uuid".into());
        format!("'{}'::uuid, {backup}", self.schema_id)
    }
}

/// Where the copy goes.
enum Target {
    New(TenantName),
    InPlace(Tenant),
    Drill(Tenant, TenantName),
}

pub fn copy_from(op: &mut Operation, request: &Request) -> TcResult<Copied> {
    require_superuser()?;
    op.note("institution_id", request.institution.to_string());
    // A connection string may hold a password: only a server's name is logged.
    let connection_string = request.source.contains('=') || request.source.contains("://");
    op.note("source", if connection_string { "a connection string (not logged)" } else { request.source });
    remote::with_source(request.source, |remote| {
        let (found, backup_version) = find(remote, request.institution)?;
        op.note("source_database", found.database.as_str());
        op.note("source_schema", found.schema.as_str());
        if let Some(backup) = found.backup_id {
            op.note("source_backup_id", backup.to_string());
        }
        let target = target(request, &found)?;
        // The template's version holds until the copy commits (a migration
        // of the template waits, as it does for a new institution).
        locks::template_shared()?;
        let version = found.copy_version(backup_version);
        let migrate_to = check_versions(request, &found, version, &target)?;
        // As a backup does: refuse up front what the disk cannot hold.
        backup::require_space(
            found.size,
            &format!("copy institution {} ({} bytes on the source)", request.institution, found.size),
        )?;
        match target {
            Target::New(name) => as_new(op, remote, request, &found, version, name, migrate_to),
            Target::InPlace(tenant) => in_place(op, remote, &found, version, tenant, migrate_to),
            Target::Drill(tenant, name) => drill(op, remote, &found, version, tenant, name),
        }
    })
}

fn require_superuser() -> TcResult<()> {
    let superuser: bool = db::scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user", &[])?;
    if superuser {
        return Ok(());
    }
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "tenant.copy_institution_from requires a superuser session",
    )
    .detail("The connection to the source is opened with the rights of the extension's owner."))
}

fn find(remote: &Remote, institution: uuid::Uuid) -> TcResult<(Found, Option<i32>)> {
    let query = SOURCE_ROW.replace("$1", &quote_literal(institution.to_string()));
    let columns = [
        "id",
        "schema_name",
        "status",
        "version",
        "backup_id",
        "backup_version",
        "size",
        "template_version",
        "database",
    ];
    let text = |row: &pgrx::spi::SpiHeapTupleData, name: &str| db::col::<String>(row, name);
    let number = |value: Option<String>| value.and_then(|v| v.parse::<i64>().ok());
    let rows = remote.rows(&query, &columns, |row| {
        let found = Found {
            schema_id: text(row, "id")?.and_then(|v| v.parse().ok()).unwrap_or_default(),
            schema: TenantName::from_registry(text(row, "schema_name")?.unwrap_or_default()),
            status: text(row, "status")?.unwrap_or_default(),
            version: number(text(row, "version")?).unwrap_or(0) as i32,
            size: number(text(row, "size")?).unwrap_or(0),
            backup_id: text(row, "backup_id")?.and_then(|v| v.parse().ok()),
            template_version: number(text(row, "template_version")?).unwrap_or(0) as i32,
            database: text(row, "database")?.unwrap_or_default(),
        };
        Ok((found, number(text(row, "backup_version")?).map(|v| v as i32)))
    })?;
    let Some((found, backup_version)) = rows.into_iter().next() else {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("the source has no institution {institution}"),
        ));
    };
    if found.status == "DROPPED" && found.backup_id.is_none() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("institution {institution} was dropped on the source and no backup of it is left there"),
        ));
    }
    Ok((found, backup_version))
}

/// A new institution here, the local one in place, or a drill beside it.
fn target(request: &Request, found: &Found) -> TcResult<Target> {
    let name = request.schema_name.map(|n| TenantName::parse(Some(n))).transpose()?;
    let local = db::value::<pgrx::Uuid>(
        "SELECT id FROM tenant.tenant_schemas WHERE institution_id = $1 AND status <> 'DROPPED'",
        &[db::to_pg_uuid(request.institution).into()],
    )?;
    let Some(local) = local else {
        if request.in_place {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("institution {} has no schema here to copy in place of", request.institution),
            )
            .hint("Copy it as a new institution: in_place => false."));
        }
        let name = name.unwrap_or_else(|| found.schema.clone());
        // As a create does: the institution first, the name second.
        lifecycle::require_institution(request.institution)?;
        locks::institution(&request.institution)?;
        locks::schema_name(&name)?;
        return Ok(Target::New(name));
    };
    // As a restore does: the tenant's data first, its registry row second.
    locks::tenant_data(db::to_uuid(local), false)?;
    let tenant = registry::lock(Some(local))?;
    registry::require_live(&tenant)?;
    match (request.in_place, name) {
        (true, Some(name)) if name != tenant.schema => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a copy in place keeps the schema's name \"{}\"; \"{name}\" was asked for", tenant.schema),
        )),
        (true, _) => Ok(Target::InPlace(tenant)),
        (false, Some(name)) if name != tenant.schema => Ok(Target::Drill(tenant, name)),
        (false, _) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("institution {} already has the schema \"{}\" here", request.institution, tenant.schema),
        )
        .hint("Pass in_place => true to replace it, or schema_name => 'another_name' for a drill beside it.")),
    }
}

/// The copy's version must be the local template's, or older and migrated on
/// arrival when asked. A drill is a backup: it keeps its version.
fn check_versions(request: &Request, found: &Found, version: i32, target: &Target) -> TcResult<Option<i32>> {
    let local = template::version()?;
    if version == local || matches!(target, Target::Drill(..)) {
        return Ok(None);
    }
    if version < local && request.migrate {
        return Ok(Some(local));
    }
    let hint = if version < local {
        "Pass migrate => true to run the missing migrations on arrival."
    } else {
        "Register the source's newer migrations here first (tenant.register_migration)."
    };
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "institution {} is at template version {version} on the source, the template here is at version {local}",
            request.institution
        ),
    )
    .detail(format!("The source's template is at version {}.", found.template_version))
    .hint(hint))
}

fn as_new(
    op: &mut Operation,
    remote: &Remote,
    request: &Request,
    found: &Found,
    version: i32,
    name: TenantName,
    migrate_to: Option<i32>,
) -> TcResult<Copied> {
    op.note("schema_name", name.as_str());
    let taken = registry::taken(request.institution, &name)?;
    if taken.institution_of_schema.is_some() || taken.schema_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{name}\" already exists"),
        )
        .hint("Copy under another name with schema_name."));
    }
    if taken.role_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("role \"{}\" already exists", name.role()),
        )
        .detail("Roles belong to the whole cluster: a copy from another database of this cluster needs another name.")
        .hint("Copy under another name with schema_name: the institution gets a role of that name."));
    }
    let role = name.role();
    let temporary = TenantName::restoring(&uuid::Uuid::new_v4());
    let prelude = vec![
        format!("CREATE ROLE {} NOLOGIN", role.quoted()),
        // Applications assume the tenant's role through tenant.set_context.
        format!("GRANT {} TO tenant_control_app", role.quoted()),
        format!("CREATE SCHEMA {}", temporary.quoted()),
    ];
    let settings = source_settings(remote, found)?;
    let copied = build(op, remote, found, &temporary, &role, &role, prelude)?;
    let status = match found.status.as_str() {
        "SUSPENDED" => Status::Suspended,
        "MAINTENANCE" => Status::Maintenance,
        _ => Status::Active,
    };
    internal_ddl(|| restore::move_in(&temporary, &name, &role, status))?;
    let tables = copied.len() as i32;
    let id = registry::insert(Some(request.institution), &name, &Built { version, tables }, status)?;
    op.schema_id = Some(id);
    let tenant = Tenant { id, institution_id: Some(request.institution), schema: name, role, status, version };
    arrive(op, &tenant, &settings, version, migrate_to)?;
    Ok(Copied { schema_id: id, schema: tenant.schema, replaced: None, drill: None, rows: rows(&copied) })
}

fn in_place(
    op: &mut Operation,
    remote: &Remote,
    found: &Found,
    version: i32,
    tenant: Tenant,
    migrate_to: Option<i32>,
) -> TcResult<Copied> {
    op.schema_id = Some(tenant.id);
    op.note("schema_name", tenant.schema.as_str());
    op.note("in_place", true);
    let temporary = TenantName::restoring(&uuid::Uuid::new_v4());
    let prelude = vec![format!("CREATE SCHEMA {}", temporary.quoted())];
    let settings = source_settings(remote, found)?;
    let copied = build(op, remote, found, &temporary, &tenant.role, &tenant.role, prelude)?;
    let clock = Instant::now();
    let replaced = internal_ddl(|| {
        let replaced = lifecycle::detach(op, &tenant, "RESTORE", false)?;
        restore::move_in(&temporary, &tenant.schema, &tenant.role, tenant.status)?;
        Ok(replaced)
    })?;
    op.note("swap_ms", clock.elapsed().as_secs_f64() * 1000.0);
    registry::set_version(&tenant, version)?;
    arrive(op, &tenant, &settings, version, migrate_to)?;
    Ok(Copied {
        schema_id: tenant.id,
        schema: tenant.schema,
        replaced: replaced.map(|(_, schema)| schema),
        drill: None,
        rows: rows(&copied),
    })
}

/// The copy beside the live institution, catalogued as a DRILL backup of it:
/// a role of its own with no members stands for the tenant's role in it.
fn drill(
    op: &mut Operation,
    remote: &Remote,
    found: &Found,
    version: i32,
    tenant: Tenant,
    name: TenantName,
) -> TcResult<Copied> {
    op.schema_id = Some(tenant.id);
    op.note("schema_name", tenant.schema.as_str());
    op.note("drill_schema", name.as_str());
    if registry::schema_exists(name.as_str())? {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{name}\" already exists"),
        )
        .hint("Copy under another name with schema_name."));
    }
    let started = Instant::now();
    let drill_id = uuid::Uuid::new_v4();
    let role = TenantName::backup(&drill_id).role();
    let prelude = vec![format!("CREATE ROLE {} NOLOGIN", role.quoted()), format!("CREATE SCHEMA {}", name.quoted())];
    let copied = build(op, remote, found, &name, &role, &tenant.role, prelude)?;
    let mut source = tenant.clone();
    source.version = version;
    let size = backup::schema_size(&name)?;
    backup::register(drill_id, &source, &name, &role, "DRILL", size, started.elapsed().as_secs_f64() * 1000.0)?;
    backup::record_tables(drill_id, &copied)?;
    backup::require_match(drill_id)?;
    backup::account(tenant.id, false)?;
    op.note("drill_id", drill_id.to_string());
    Ok(Copied { schema_id: tenant.id, schema: name, replaced: None, drill: Some(drill_id), rows: rows(&copied) })
}

fn rows(copied: &[TableCopy]) -> i64 {
    copied.iter().map(|t| t.rows).sum()
}

/// The institution's settings on the source (`tenant.institution_settings`),
/// read in the copy's snapshot.
fn source_settings(remote: &Remote, found: &Found) -> TcResult<String> {
    let query = format!("SELECT tenant.institution_settings('{}'::uuid)::text", found.schema_id);
    let rows = remote.rows(&query, &["settings"], |row| db::col::<String>(row, "settings"))?;
    Ok(rows.into_iter().flatten().next().unwrap_or_else(|| "{}".into()))
}

/// The copy's version is recorded and migrated when asked; then the registry
/// row takes the source's settings (config, quota, limits, row limits,
/// administrators: `tenant.receive_institution_settings`) and is recounted.
fn arrive(op: &mut Operation, tenant: &Tenant, settings: &str, version: i32, migrate_to: Option<i32>) -> TcResult<()> {
    op.note("version", version);
    if let Some(to) = migrate_to {
        migrate::migrate(op, Some(db::to_pg_uuid(tenant.id)))?;
        op.note("migrated_to", to);
    }
    let applied = db::scalar::<String>(
        "SELECT tenant.receive_institution_settings($1, $2::jsonb)::text",
        &[db::to_pg_uuid(tenant.id).into(), settings.into()],
    )?;
    let skipped = serde_json::from_str::<serde_json::Value>(&applied)
        .ok()
        .and_then(|v| v.get("admins_skipped").cloned())
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
    if let Some(skipped) = skipped {
        pgrx::notice!("not granted here (no such role): institution administrator(s) {skipped}");
        op.note("admins_skipped", skipped);
    }
    registry::refresh_counters(tenant)?;
    backup::account(tenant.id, false)?;
    Ok(())
}

/// Build the copy in the new schema `target` (created by `prelude`), owned
/// by `role`, its rows loaded as `loader`; returns the tables with the
/// hashes both sides agree on.
fn build(
    op: &mut Operation,
    remote: &Remote,
    found: &Found,
    target: &TenantName,
    role: &RoleName,
    loader: &RoleName,
    prelude: Vec<String>,
) -> TcResult<Vec<TableCopy>> {
    let started = Instant::now();
    let structure = remote.rows(
        &format!("SELECT kind, statement::text FROM tenant.institution_structure({})", found.arguments()),
        &["kind", "statement"],
        |row| {
            let kind = db::col::<String>(row, "kind")?.unwrap_or_default();
            let text = db::col::<String>(row, "statement")?.unwrap_or_default();
            let value = serde_json::from_str(&text).map_err(|e| {
                TcError::new(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    format!("malformed statement from the source: {e}"),
                )
            })?;
            Ok((kind, template::parts_of(value)?))
        },
    )?;
    let (before, after) = schema_copy::split(&structure, target, role);
    schema_copy::ddl(target, prelude.into_iter().chain(before).collect(), "while creating the copy's tables")?;
    let tables = schema_copy::tables(target, target)?;
    let incoming = incoming_tables(target)?;
    // Only the tables tenant code can run in go through a staging table and the tenant's role.
    let (direct, staged): (Vec<_>, Vec<_>) = incoming.into_iter().partition(|t| t.direct);
    let creation = staged
        .iter()
        .enumerate()
        .map(|(n, t)| format!("CREATE UNLOGGED TABLE {} ({})", schema_copy::staging(target, n), t.definitions));
    schema_copy::ddl(target, creation.collect(), "while creating the copy's staging tables")?;
    op.note("direct_tables", direct.len());

    let destination = db::scalar::<String>(
        "SELECT pg_catalog.format('database %s of cluster %s', pg_catalog.current_database(),
                                  (SELECT system_identifier FROM pg_catalog.pg_control_system()))",
        &[],
    )?;
    let manifest = remote.rows(
        &format!(
            "SELECT table_name, row_count::text, content_hash FROM tenant.institution_manifest({}, {})",
            found.arguments(),
            quote_literal(&destination)
        ),
        &["table_name", "row_count", "content_hash"],
        |row| {
            Ok(TableCopy {
                name: db::col::<String>(row, "table_name")?.unwrap_or_default(),
                rows: db::col::<String>(row, "row_count")?.and_then(|r| r.parse().ok()).unwrap_or(-1),
                hash: db::col::<String>(row, "content_hash")?,
            })
        },
    )?;
    let source_schema = read_schema(remote, found)?;
    let into_staging = staged.iter().enumerate().map(|(n, t)| (t, schema_copy::staging(target, n), None));
    let into_tables = direct.iter().map(|t| {
        let columns = tables.iter().find(|c| c.name == t.name).and_then(|c| c.column_list()).unwrap_or_default();
        (t, quote_qualified_identifier(target.as_str(), &t.name), Some(columns))
    });
    for (table, into, columns) in into_staging.chain(into_tables) {
        read_rows(remote, &source_schema, &tables, table, &into, columns.as_deref())?;
    }
    set_sequences(remote, &source_schema, target)?;
    let views = remote.rows(
        &format!(
            "SELECT c.relname::text FROM pg_class c WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects({}, 'pg_class') AS so(oid))
                AND c.relkind = 'm' AND c.relispopulated ORDER BY c.oid",
            quote_literal(source_schema.as_str())
        ),
        &["name"],
        |row| Ok(db::col::<String>(row, "name")?.unwrap_or_default()),
    )?;
    // The staged tables, in the order of their staging tables' numbers.
    let loaded: Vec<_> =
        staged.iter().filter_map(|s| tables.iter().position(|t| t.name == s.name)).map(|i| tables[i].clone()).collect();
    schema_copy::fill(target, role, loader, &loaded, &views, after)?;
    let copied = schema_copy::count_and_hash(target)?;
    require_same(&manifest, &copied)?;
    op.note("tables", copied.len());
    op.note("rows", rows(&copied));
    op.note("build_ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(copied)
}

/// The schema the source reads: the live one, or the backup's.
fn read_schema(remote: &Remote, found: &Found) -> TcResult<TenantName> {
    let Some(backup) = found.backup_id else {
        return Ok(found.schema.clone());
    };
    let rows = remote.rows(
        &format!("SELECT backup_schema FROM tenant.schema_backups WHERE id = '{backup}'::uuid"),
        &["backup_schema"],
        |row| Ok(db::col::<String>(row, "backup_schema")?.unwrap_or_default()),
    )?;
    Ok(TenantName::from_registry(rows.into_iter().next().unwrap_or_default()))
}

/// A table of the copy as its rows arrive (see sql/queries/portable_staging.sql).
struct Incoming {
    name: String,
    /// The column definition list the rows are read in.
    definitions: String,
    /// Inserted straight into the table: no tenant code can run there.
    direct: bool,
}

fn incoming_tables(target: &TenantName) -> TcResult<Vec<Incoming>> {
    template::catalog_read(|| {
        db::rows(STAGING, &[target.as_str().into()], |row| {
            Ok(Incoming {
                name: db::col::<String>(row, "name")?.unwrap_or_default(),
                // A table without columns (or only generated ones) still has rows.
                definitions: db::col::<String>(row, "definitions")?.unwrap_or_else(|| "tc_none pg_catalog.int4".into()),
                direct: db::col::<bool>(row, "direct")?.unwrap_or(false),
            })
        })
    })
}

/// Read one table from the source into `into`: its staging table, or (with
/// `columns`, for a direct table) the copy's table itself.
fn read_rows(
    remote: &Remote,
    source: &TenantName,
    tables: &[schema_copy::Table],
    table: &Incoming,
    into: &str,
    columns: Option<&str>,
) -> TcResult<()> {
    let selected =
        tables.iter().find(|t| t.name == table.name).and_then(|t| t.column_list()).unwrap_or_else(|| "1".into());
    let query = format!("SELECT {selected} FROM ONLY {}", quote_qualified_identifier(source.as_str(), &table.name));
    let statement = match columns {
        Some(columns) => format!(
            "INSERT INTO {into} ({columns}) OVERRIDING SYSTEM VALUE SELECT * FROM {}",
            remote.query_item(&query, &table.definitions)
        ),
        None => format!("INSERT INTO {into} SELECT * FROM {}", remote.query_item(&query, &table.definitions)),
    };
    // dblink holds a result in a tuplestore before the INSERT reads it: let it
    // keep more of a table in memory before it spills to a temporary file.
    db::with_setting("work_mem", READ_WORK_MEM, || {
        db::run_explained(&statement, &format!("while reading table \"{}\" from the source", table.name))
    })
}

/// Each sequence of the copy at the source's position.
fn set_sequences(remote: &Remote, source: &TenantName, target: &TenantName) -> TcResult<()> {
    let query = SEQUENCES.replace("$1", &quote_literal(source.as_str()));
    let sequences = remote.rows(&query, &["name", "table_name", "column_name", "last_value"], |row| {
        Ok((
            db::col::<String>(row, "name")?.unwrap_or_default(),
            db::col::<String>(row, "table_name")?,
            db::col::<String>(row, "column_name")?,
            db::col::<String>(row, "last_value")?,
        ))
    })?;
    for (name, table, column, last_value) in sequences {
        let Some(last_value) = last_value.and_then(|v| v.parse::<i64>().ok()) else {
            continue;
        };
        let sequence = match (table, column) {
            (Some(table), Some(column)) => db::scalar::<String>(
                "SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', $1::text, $2::text), $3)",
                &[target.as_str().into(), table.into(), column.into()],
            )?,
            _ => quote_qualified_identifier(target.as_str(), &name),
        };
        db::run("SELECT pg_catalog.setval($1::regclass, $2, true)", &[sequence.into(), last_value.into()])?;
    }
    Ok(())
}

/// The copy must hold, table by table, the rows the source counted and
/// hashed in the snapshot they were read in.
fn require_same(manifest: &[TableCopy], copied: &[TableCopy]) -> TcResult<()> {
    let missing = manifest.iter().find(|m| !copied.iter().any(|c| c.name == m.name));
    let extra = copied.iter().find(|c| !manifest.iter().any(|m| m.name == c.name));
    if let Some(table) = missing.or(extra) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("table \"{}\" is on one side of the copy only", table.name),
        ));
    }
    for source in manifest {
        let Some(copy) = copied.iter().find(|c| c.name == source.name) else { continue };
        if copy.rows != source.rows || copy.hash != source.hash {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("the copy of table \"{}\" does not hold the source's rows", source.name),
            )
            .detail(format!(
                "the source counted {} rows hashing {:?}, the copy holds {} rows hashing {:?}",
                source.rows, source.hash, copy.rows, copy.hash
            )));
        }
    }
    Ok(())
}
