//! Cross-institution reports: fleet views (`tenant.create_fleet_view`), one
//! view in schema `tenant` over every ACTIVE institution's copy of a template
//! table, plus the columns `institution_id` and `schema_name`.
//!
//! The view is a UNION ALL with one branch per institution, regenerated from
//! the registry and the template whenever either changes (triggers on
//! tenant.tenant_schemas and tenant.migrations, see finalize.sql): the
//! extension's own create, drop, status and migrate paths all write there, so
//! no Rust path needs a hook. A regeneration that would produce the same text
//! is skipped, so most registry changes cost one catalog query.
//!
//! Who sees what: a view reads its tables with its owner's rights (the
//! extension's owner), so every branch is gated on the reader: the branch of
//! an institution yields rows only to a role that has the institution's role
//! (pg_has_role ... USAGE: the role itself, or a member that inherits it), and
//! every branch to platform administrators (tenant_control_admin) and
//! superusers. The gate has no column in it, so PostgreSQL evaluates it once
//! per branch (a one-time filter) and never scans the tables of a branch that
//! is closed. security_barrier keeps a reader's leaky functions from being
//! pushed below the gate.
//!
//! Only the columns the template has are shown; an institution whose table
//! lacks one (not migrated yet) shows NULL there, and one whose table is
//! missing is left out. Because the view follows the template as soon as a
//! migration is registered, it never holds a dependency on a column a pending
//! migration drops or retypes, so tenant migrations are not blocked by it.

use crate::copy::template::TEMPLATE_SCHEMA;
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};

/// The columns every fleet view adds before the template's own.
const ADDED_COLUMNS: [&str; 2] = ["institution_id", "schema_name"];

struct Column {
    name: String,
    sql_type: String,
}

/// Declare a fleet view and build it.
pub fn create(template_table: Option<&str>, view_name: Option<&str>) -> TcResult<String> {
    let table = template_table.ok_or_else(|| TcError::null_argument("template_table"))?;
    let view = view_name.ok_or_else(|| TcError::null_argument("view_name"))?;
    validate_view_name(view)?;
    if template_columns(table)?.is_none() {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{table}\" does not exist in schema {TEMPLATE_SCHEMA}"),
        )
        .hint("A fleet view reads a table of the template, named without its schema."));
    }
    let taken: bool = db::scalar(
        "SELECT pg_catalog.to_regclass(pg_catalog.quote_ident('tenant') || '.' || pg_catalog.quote_ident($1)) IS NOT NULL",
        &[view.into()],
    )?;
    if taken {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!("relation \"tenant.{view}\" already exists"),
        )
        .hint("Choose another view name, or drop the fleet view with tenant.drop_fleet_view first."));
    }
    db::run(
        "INSERT INTO tenant.fleet_views (view_name, template_table) VALUES ($1, $2)",
        &[view.into(), table.into()],
    )?;
    let (branches, _) = build(view, table)?;
    Ok(format!("fleet view tenant.{view} reads {table} of {branches} institution(s)"))
}

fn validate_view_name(view: &str) -> TcResult<()> {
    let valid = !view.is_empty()
        && view.len() <= 63
        && view.as_bytes()[0].is_ascii_lowercase()
        && view.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_NAME, format!("invalid view name \"{view}\""))
            .hint("Use up to 63 lowercase ASCII letters, digits and underscores, starting with a letter."))
    }
}

/// Forget a fleet view and drop it.
pub fn drop(view_name: Option<&str>) -> TcResult<String> {
    let view = view_name.ok_or_else(|| TcError::null_argument("view_name"))?;
    let known: Option<String> =
        db::value("DELETE FROM tenant.fleet_views WHERE view_name = $1 RETURNING view_name", &[view.into()])?;
    if known.is_none() {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("no fleet view \"{view}\""))
            .hint("The fleet views are listed in tenant.fleet_views."));
    }
    db::run(&format!("DROP VIEW IF EXISTS tenant.{}", quote_identifier(view)), &[])?;
    Ok(format!("fleet view tenant.{view} dropped"))
}

/// Rebuild every fleet view whose definition changed; returns how many were rebuilt.
pub fn refresh_all() -> TcResult<i64> {
    let views = db::rows("SELECT view_name, template_table FROM tenant.fleet_views ORDER BY view_name", &[], |row| {
        Ok((
            col::<String>(row, "view_name")?.unwrap_or_default(),
            col::<String>(row, "template_table")?.unwrap_or_default(),
        ))
    })?;
    let mut rebuilt = 0;
    for (view, table) in views {
        let (_, changed) = build(&view, &table)?;
        rebuilt += i64::from(changed);
    }
    Ok(rebuilt)
}

/// The template table's columns (None if it is not a table of the template).
fn template_columns(table: &str) -> TcResult<Option<Vec<Column>>> {
    let exists: bool = db::scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
        &[TEMPLATE_SCHEMA.into(), table.into()],
    )?;
    if !exists {
        return Ok(None);
    }
    let columns = db::rows(
        "SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS sql_type
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = $1 AND c.relname = $2)
            AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
        &[TEMPLATE_SCHEMA.into(), table.into()],
        |row| Ok(Column { name: col(row, "name")?.unwrap_or_default(), sql_type: col(row, "sql_type")?.unwrap_or_default() }),
    )?;
    Ok(Some(columns))
}

/// One ACTIVE institution's copy of the table and which template columns it
/// has with the template's type.
struct Branch {
    institution_id: String,
    schema: String,
    role: String,
    /// The table's oid: a restore swaps in a new table under the same name,
    /// which the view must follow although its text stays the same.
    relation: String,
    present: Vec<String>,
}

fn branches(table: &str) -> TcResult<Vec<Branch>> {
    db::rows(
        "WITH wanted AS (
             SELECT a.attname, a.atttypid, a.atttypmod FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                   WHERE n.nspname = $1 AND c.relname = $2)
                AND a.attnum > 0 AND NOT a.attisdropped)
         SELECT t.institution_id::text AS institution_id, t.schema_name, t.owner_role, c.oid::text AS relation,
                ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a JOIN wanted w
                          ON w.attname = a.attname AND w.atttypid = a.atttypid AND w.atttypmod = a.atttypmod
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS present
           FROM tenant.tenant_schemas t
           JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name
           JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')
          WHERE t.status = 'ACTIVE'
          ORDER BY t.schema_name",
        &[TEMPLATE_SCHEMA.into(), table.into()],
        |row| {
            Ok(Branch {
                institution_id: col(row, "institution_id")?.unwrap_or_default(),
                schema: col(row, "schema_name")?.unwrap_or_default(),
                role: col(row, "owner_role")?.unwrap_or_default(),
                relation: col(row, "relation")?.unwrap_or_default(),
                present: col(row, "present")?.unwrap_or_default(),
            })
        },
    )
}

/// Who may read every branch.
const ADMIN_GATE: &str = "pg_catalog.pg_has_role('tenant_control_admin', 'USAGE')";

fn branch_sql(branch: &Branch, table: &str, columns: &[Column]) -> String {
    let mut select = vec![
        format!("{}::uuid AS institution_id", quote_literal(&branch.institution_id)),
        format!("{}::text AS schema_name", quote_literal(&branch.schema)),
    ];
    for column in columns {
        let name = quote_identifier(&column.name);
        if branch.present.contains(&column.name) {
            select.push(format!("t.{name}"));
        } else {
            select.push(format!("NULL::{} AS {name}", column.sql_type));
        }
    }
    format!(
        "SELECT {} FROM {}.{} t WHERE {ADMIN_GATE} OR pg_catalog.pg_has_role({}, 'USAGE')",
        select.join(", "),
        quote_identifier(&branch.schema),
        quote_identifier(table),
        quote_literal(&branch.role)
    )
}

fn empty_sql(columns: &[Column]) -> String {
    let mut select = vec!["NULL::uuid AS institution_id".to_string(), "NULL::text AS schema_name".to_string()];
    select.extend(columns.iter().map(|c| format!("NULL::{} AS {}", c.sql_type, quote_identifier(&c.name))));
    format!("SELECT {} WHERE false", select.join(", "))
}

/// (Re)build one fleet view from the registry and the template; returns the
/// number of institutions in it. Nothing happens when the text is unchanged.
/// A template table that no longer exists leaves the view out (dropped) until
/// it is back, so that it holds no dependency on the institutions' tables.
fn build(view: &str, table: &str) -> TcResult<(usize, bool)> {
    let qualified = format!("tenant.{}", quote_identifier(view));
    let Some(columns) = template_columns(table)? else {
        db::run(&format!("DROP VIEW IF EXISTS {qualified}"), &[])?;
        db::run("UPDATE tenant.fleet_views SET definition_md5 = NULL WHERE view_name = $1", &[view.into()])?;
        pgrx::notice!("fleet view {qualified} is dropped until its template table \"{table}\" exists again");
        return Ok((0, true));
    };
    if let Some(clash) = columns.iter().find(|c| ADDED_COLUMNS.contains(&c.name.as_str())) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
            format!("template table \"{table}\" has a column \"{}\", which a fleet view adds itself", clash.name),
        ));
    }
    let branches = branches(table)?;
    let body = if branches.is_empty() {
        empty_sql(&columns)
    } else {
        branches.iter().map(|b| branch_sql(b, table, &columns)).collect::<Vec<_>>().join("\nUNION ALL\n")
    };
    let relations: Vec<&str> = branches.iter().map(|b| b.relation.as_str()).collect();
    let digest = format!("{body}\n-- {}", relations.join(","));
    // The previous digest is compared under the row's lock: two sessions
    // refreshing at once rebuild one after the other.
    let changed: bool = db::scalar(
        "WITH previous AS (SELECT f.definition_md5 FROM tenant.fleet_views f WHERE f.view_name = $1 FOR UPDATE)
         UPDATE tenant.fleet_views f SET definition_md5 = pg_catalog.md5($2), refreshed_at = pg_catalog.now()
           FROM previous WHERE f.view_name = $1
         RETURNING previous.definition_md5 IS DISTINCT FROM pg_catalog.md5($2)
                OR pg_catalog.to_regclass('tenant.' || pg_catalog.quote_ident($1)) IS NULL",
        &[view.into(), digest.as_str().into()],
    )?;
    if changed {
        db::run(&format!("DROP VIEW IF EXISTS {qualified}"), &[])?;
        db::run(&format!("CREATE VIEW {qualified} WITH (security_barrier) AS\n{body}"), &[])?;
        // Rows are gated per branch (see the module comment): anyone may ask.
        db::run(&format!("GRANT SELECT ON {qualified} TO PUBLIC"), &[])?;
        db::run(
            &format!(
                "COMMENT ON VIEW {qualified} IS {}",
                quote_literal(format!(
                    "Fleet view of {TEMPLATE_SCHEMA}.{table} over every ACTIVE institution (tenant.create_fleet_view); each reader sees the institutions whose role it has, platform administrators see all."
                ))
            ),
            &[],
        )?;
    }
    Ok((branches.len(), changed))
}
