//! Versioned migrations: numbered scripts applied to the template when they
//! are registered, and to each tenant (one tenant per transaction) by the
//! procedure tenant.apply_migrations.

use crate::db;
use crate::errors::{TcError, TcResult};
use crate::lifecycle;
use crate::oplog::Operation;
use crate::registry::{self, Status};
use crate::template::{self, TEMPLATE_SCHEMA};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

pub struct Migration {
    pub version: i32,
    pub script: String,
}

/// Register the next migration and apply it to the template.
pub fn register(
    op: &mut Operation,
    version: Option<i32>,
    script: Option<&str>,
    description: Option<&str>,
) -> TcResult<i32> {
    let version = version.ok_or_else(|| TcError::null_argument("version"))?;
    let script = script.ok_or_else(|| TcError::null_argument("script"))?;
    if script.trim().is_empty() {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the migration script is empty"));
    }
    let description = description.ok_or_else(|| TcError::null_argument("description"))?;
    op.note("version", version);
    op.note("description", description);
    require_superuser("registering a migration")?;
    // Exclusive against the copies create_institution_schema takes (shared).
    template::lock_exclusive()?;
    let next = template::version()? + 1;
    if version != next {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("migration {version} cannot be registered: the next migration is {next}"),
        ));
    }
    run_script(TEMPLATE_SCHEMA, &Migration { version, script: script.to_string() })?;
    template::note_change("MIGRATION")?;
    db::run(
        "INSERT INTO tenant.migrations (version, description, script) VALUES ($1, $2, $3)",
        &[version.into(), description.into(), script.into()],
    )?;
    Ok(version)
}

pub struct Migrated {
    pub schema: String,
    pub from: i32,
    pub to: i32,
}

/// Bring one tenant to the template's version: all its pending migrations
/// apply, or none does.
pub fn migrate(op: &mut Operation, schema_id: Option<pgrx::Uuid>) -> TcResult<Migrated> {
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    // Spare schemas of the warm pool are migrated like institutions' schemas.
    if tenant.status == Status::Dropped {
        return lifecycle::require_live(&tenant).map(|_| unreachable!());
    }
    let from = tenant.version;
    let pending = pending_since(from)?;
    let to = pending.last().map_or(from, |m| m.version);
    op.note("from_version", from);
    op.note("target_version", to);
    lifecycle::internal_ddl(|| {
        pending.iter().try_for_each(|migration| run_script(tenant.schema.as_str(), migration))?;
        // What a migration adds gets the privileges and owners the template gives it.
        if !pending.is_empty() {
            template::grant_like_template(&tenant.schema, &tenant.role)?;
        }
        Ok(())
    })?;
    op.note("to_version", to);
    if to != from {
        registry::set_version(&tenant, to)?;
        registry::refresh_counters(&tenant)?;
    }
    Ok(Migrated { schema: tenant.schema.as_str().to_string(), from, to })
}

fn pending_since(version: i32) -> TcResult<Vec<Migration>> {
    db::rows(
        "SELECT version, script FROM tenant.migrations WHERE version > $1 ORDER BY version",
        &[version.into()],
        |row| {
            Ok(Migration {
                version: db::col::<i32>(row, "version")?.unwrap_or_default(),
                script: db::col::<String>(row, "script")?.unwrap_or_default(),
            })
        },
    )
}

/// A migration script names objects without a schema: it runs with the
/// schema being migrated first on the search_path.
fn run_script(schema: &str, migration: &Migration) -> TcResult<()> {
    let path = format!("{}, pg_catalog", quote_identifier(schema));
    db::with_setting("search_path", &path, || {
        db::run_explained(&migration.script, &format!("migration {} on schema {schema}", migration.version))
    })
}

fn require_superuser(what: &str) -> TcResult<()> {
    let superuser: bool = db::scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user", &[])?;
    if superuser {
        Ok(())
    } else {
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{what} requires a superuser session"),
        )
        .detail("A migration script runs with the rights of the extension's owner."))
    }
}
