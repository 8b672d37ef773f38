//! Reference rows of the template: a table marked with
//! tenant.set_template_rows has its rows copied into every new tenant
//! (lookup tables, an ORM's migration history such as `django_migrations`).
//!
//! The rows are copied when a tenant is created (or claimed from the warm
//! pool), after its schema exists, the way a backup's rows are restored
//! (`schema_copy::copy_rows`): read by the extension's owner into bare
//! staging tables, then inserted as the tenant's role in a
//! security-restricted operation, so the tenant's CHECKs, defaults and
//! triggers never run with more than the tenant's rights.
//!
//! Later changes reach existing tenants through migrations: a migration's
//! script runs in every tenant, so the rows it inserts, updates or deletes in
//! the template's marked table it changes in each tenant's table alike.

use crate::copy::schema_copy;
use crate::copy::template::TEMPLATE_SCHEMA;
use crate::core::catalog;
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::name::{RoleName, TenantName};
use pgrx::prelude::*;

/// Mark (`copy` true) or unmark a table of the template.
pub fn mark(table_name: Option<&str>, copy: Option<bool>) -> TcResult<()> {
    let table = table_name.ok_or_else(|| TcError::null_argument("table_name"))?;
    let copy = copy.ok_or_else(|| TcError::null_argument("copy"))?;
    if !copy {
        db::run("DELETE FROM tenant.template_row_tables WHERE table_name = $1", &[table.into()])?;
        return Ok(());
    }
    let kind: Option<String> = db::value(
        "SELECT c.relkind::text FROM pg_catalog.pg_class c
          WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relname = $2",
        &[TEMPLATE_SCHEMA.into(), table.into()],
    )?;
    match kind.as_deref() {
        Some("r") => {}
        None => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("table \"{table}\" does not exist in schema {TEMPLATE_SCHEMA}"),
            )
            .hint("Name a table of the template, unqualified and as it is spelled in the catalog."))
        }
        Some(_) => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{table}\" in schema {TEMPLATE_SCHEMA} is not an ordinary table"),
            ))
        }
    }
    db::run(
        "INSERT INTO tenant.template_row_tables (table_name) VALUES ($1) ON CONFLICT (table_name) DO NOTHING",
        &[table.into()],
    )
}

/// Copy the rows of the marked tables of the template into the new tenant
/// `schema`, as its role; returns the rows copied. A mark whose table the
/// template no longer has copies nothing.
pub fn copy_marked(schema: &TenantName, role: &RoleName) -> TcResult<i64> {
    // Most templates mark no table: every create asks, and a new connection
    // would plan the query below only to find nothing.
    if !catalog::with_query_snapshot(|snapshot| catalog::holds_a_row(snapshot, c"template_row_tables")) {
        return Ok(0);
    }
    let names: Vec<String> = db::rows("SELECT table_name FROM tenant.template_row_tables", &[], |row| {
        Ok(row.get::<String>(1)?.unwrap_or_default())
    })?;
    if names.is_empty() {
        return Ok(0);
    }
    let template = TenantName::from_registry(TEMPLATE_SCHEMA.to_string());
    let copied = schema_copy::copy_rows(&template, schema, role, &names)?;
    Ok(copied.iter().map(|table| table.rows).sum())
}
