//! Tenant context for applications, and isolation of shared tables.
//!
//! `tenant.set_context` points the current transaction, and only it, at one
//! institution. Everything it sets is transaction-local (like SET LOCAL), so
//! nothing survives COMMIT or ROLLBACK to leak into the next client of a
//! transaction-pooling connection. The institution it records,
//! `tenant_control.institution_id`, is a superuser-only setting that only
//! `tenant.enter_context` sets: no session can claim another institution with
//! SET, so shared-table policies can trust `tenant.current_institution()`.

use crate::core::db;
use crate::core::errors::{self, OrRaise, TcError, TcResult};
use crate::core::settings;
use crate::ops::context_cache;
use crate::ops::context_role;
use crate::ops::lifecycle;
use crate::ops::quota;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_qualified_identifier};

/// The name of the policy `enable_shared_table_isolation` puts on a shared table.
const SHARED_TABLE_POLICY: &str = "tc_institution_isolation";

/// Check that the institution may be entered, record it as the transaction's
/// institution, and return its schema and role (NULL for an institution that
/// has shared-table rows only). Runs with the extension owner's rights:
/// applications cannot read the registry, nor set the institution themselves.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn enter_context(
    institution_id: Option<pgrx::Uuid>,
) -> TableIterator<'static, (name!(schema_name, Option<String>), name!(owner_role, Option<String>))> {
    TableIterator::once(errors::at_boundary(|| enter(institution_id)))
}

/// An institution's registry row as `enter` reads it.
struct Registered {
    schema: String,
    role: String,
    status: String,
    location: Option<String>,
    quota: (Option<String>, Option<i64>, Option<i64>),
    limited: bool,
    /// A move between shared tables and this schema: `TO_SCHEMA:RUNNING`,
    /// `TO_SHARED:DONE`, ... (ops/shared_move).
    shared_move: Option<String>,
    /// Its last access was recorded less than a minute ago (by any connection).
    recent: bool,
}

impl Registered {
    fn from_row(row: &pgrx::spi::SpiHeapTupleData) -> TcResult<Registered> {
        Ok(Registered {
            schema: db::col::<String>(row, "schema_name")?.unwrap_or_default(),
            role: db::col::<String>(row, "owner_role")?.unwrap_or_default(),
            status: db::col::<String>(row, "status")?.unwrap_or_default(),
            location: db::col::<String>(row, "location")?,
            quota: (
                db::col::<String>(row, "quota_state")?,
                db::col::<i64>(row, "storage_used")?,
                db::col::<i64>(row, "quota_limit")?,
            ),
            limited: db::col::<bool>(row, "limited")?.unwrap_or(false),
            shared_move: db::col::<String>(row, "shared_move")?,
            recent: db::col::<bool>(row, "recent")?.unwrap_or(false),
        })
    }
}

// The common case, an ACTIVE institution that no move between shared tables
// and a schema ever concerned, in a query that reads two tables fewer than
// `registered` (a new connection's first set_context opens and plans every
// table it names). Anything else gets no row here and is read by `registered`.
fn registered_plainly(institution: uuid::Uuid) -> TcResult<Option<Registered>> {
    let found = db::rows_kept_read(
        "SELECT t.schema_name, t.owner_role, t.status, t.quota_state, t.storage_used, t.quota_limit,
                EXISTS (SELECT 1 FROM tenant.institution_limits l WHERE l.schema_id = t.id) AS limited,
                NULL::text AS location, NULL::text AS shared_move,
                t.last_accessed_at >= pg_catalog.now() - interval '1 minute' AS recent
           FROM tenant.tenant_schemas t
          WHERE t.institution_id = $1 AND t.status = 'ACTIVE'
            AND NOT EXISTS (SELECT 1 FROM tenant.shared_moves s WHERE s.institution_id = $1)",
        &[pg_sys::UUIDOID.into()],
        &[db::to_pg_uuid(institution).into()],
        Registered::from_row,
    )?;
    Ok(found.into_iter().next())
}

// The live row through the partial unique index (tenant_schemas_institution_live);
// only an institution without one (an error) reads further, for the message.
fn registered(institution: uuid::Uuid) -> TcResult<Option<Registered>> {
    let found = db::rows_kept_read(
        "SELECT t.schema_name, t.owner_role, t.status, t.quota_state, t.storage_used, t.quota_limit,
                EXISTS (SELECT 1 FROM tenant.institution_limits l WHERE l.schema_id = t.id) AS limited,
                CASE WHEN t.status = 'MOVED' THEN
                     (SELECT m.location FROM tenant.institution_moves m WHERE m.schema_id = t.id AND m.step = 'MOVED') END AS location,
                (SELECT s.direction || CASE WHEN s.finished_at IS NULL THEN ':RUNNING' ELSE ':DONE' END
                   FROM tenant.shared_moves s WHERE s.institution_id = $1 AND s.schema_id = t.id) AS shared_move,
                t.last_accessed_at >= pg_catalog.now() - interval '1 minute' AS recent
           FROM tenant.tenant_schemas t WHERE t.institution_id = $1 AND t.status <> 'DROPPED'
         UNION ALL
         (SELECT d.schema_name, d.owner_role, d.status, d.quota_state, d.storage_used, d.quota_limit, false, NULL,
                 (SELECT s.direction || CASE WHEN s.finished_at IS NULL THEN ':RUNNING' ELSE ':DONE' END
                    FROM tenant.shared_moves s WHERE s.institution_id = $1 AND s.schema_id = d.id), false
            FROM tenant.tenant_schemas d WHERE d.institution_id = $1 AND d.status = 'DROPPED' ORDER BY d.created_at DESC LIMIT 1)
         LIMIT 1",
        &[pg_sys::UUIDOID.into()],
        &[db::to_pg_uuid(institution).into()],
        Registered::from_row,
    )?;
    Ok(found.into_iter().next())
}

fn enter(institution_id: Option<pgrx::Uuid>) -> TcResult<(Option<String>, Option<String>)> {
    let institution = db::to_uuid(institution_id.ok_or_else(|| TcError::null_argument("institution_id"))?);
    let running = |found: &Option<Registered>| {
        found.as_ref().and_then(|r| r.shared_move.as_deref()).is_some_and(|m| m.ends_with(":RUNNING"))
    };
    let reading = context_cache::reading();
    let mut found = match registered_plainly(institution)? {
        Some(plain) => Some(plain),
        None => registered(institution)?,
    };
    if running(&found) {
        // A move between shared tables and a schema is under way: hold its
        // last step off until this transaction ends, then look again (a new
        // snapshot in READ COMMITTED: that step may just have committed).
        crate::core::locks::shared_move(&institution, true)?;
        found = registered(institution)?;
    }
    if found.as_ref().is_some_and(|r| r.status == "MAINTENANCE") {
        // Rare: perhaps a move to another server whose cut-over was
        // interrupted; resolve it (tenant.move_settle) and look again.
        if let Some(message) = db::value::<String>("SELECT tenant.move_settle($1)", &[institution_id.into()])? {
            return Err(TcError::new(PgSqlErrorCode::ERRCODE_OBJECT_IN_USE, message).hint(
                "Retry in a moment; tenant.locate_institution(...) answers the new location once the target has taken over.",
            ));
        }
        found = registered(institution)?;
    }
    let recent = found.as_ref().is_some_and(|row| row.recent);
    let context = match found {
        Some(row)
            if (row.status == "MAINTENANCE"
                && matches!(row.shared_move.as_deref(), Some("TO_SCHEMA:RUNNING" | "TO_SHARED:RUNNING")))
                || (row.status == "DROPPED" && row.shared_move.as_deref() == Some("TO_SHARED:DONE")) =>
        {
            shared_move_context(row)?
        }
        Some(Registered { schema, location: Some(location), .. }) => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("institution {institution} has moved to {location}: its schema \"{schema}\" here is a locked-out copy"),
            )
            .hint("Connect to the new location; tenant.locate_institution(...) tells applications where an institution lives."));
        }
        Some(Registered { schema, status, .. }) if status != "ACTIVE" => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("institution {institution} is {status}: its schema \"{schema}\" cannot be used"),
            ));
        }
        Some(Registered { schema, role, quota, limited, shared_move, .. }) => {
            let warned = match quota {
                (Some(state), Some(used), Some(limit)) if state != "OK" => {
                    quota::warn_near_limit(institution, &schema, used, limit);
                    true
                }
                _ => false,
            };
            // Only an institution with limits pays for them.
            if limited {
                crate::ops::limits::apply_in_context(institution_id)?;
            }
            if !warned && !limited && shared_move.is_none() {
                context_cache::remember(reading, institution, &schema, &role);
            }
            (Some(schema), Some(role))
        }
        None if settings::institutions_table().is_some() && lifecycle::require_institution(institution).is_ok() => {
            (None, None)
        }
        None => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("no institution schema for institution {institution}"),
            )
            .hint("An institution with shared-table rows only must be listed in tenant_control.institutions_table."));
        }
    };
    db::set_local("tenant_control.institution_id", &institution.to_string(), true)?;
    // Another connection recorded it a moment ago: no write (see last_access).
    if !recent {
        crate::ops::last_access::touch(institution);
    }
    Ok(context)
}

/// The context of an institution a move concerns (one another operation
/// changed meanwhile is treated by its status). While the move runs the
/// institution's rows are read where they were (the shared tables, or the
/// schema), in a read-only transaction: writes wait for the move to end.
/// After a move to the shared tables the schema is a backup, and the
/// institution has shared-table rows only.
fn shared_move_context(row: Registered) -> TcResult<(Option<String>, Option<String>)> {
    match row.shared_move.as_deref() {
        Some("TO_SCHEMA:RUNNING") => {
            db::set_local("transaction_read_only", "on", false)?;
            Ok((None, None))
        }
        Some("TO_SHARED:RUNNING") => {
            db::set_local("transaction_read_only", "on", false)?;
            Ok((Some(row.schema), Some(row.role)))
        }
        _ => Ok((None, None)),
    }
}

/// Set the tenant for the rest of the transaction: the institution
/// (tenant.current_institution()), and for an institution with a schema the
/// search_path and, where the caller may assume it, the tenant's role.
/// Returns the schema, or NULL for a shared-table-only institution.
///
/// No SET clause on purpose: a function's SET clause would undo, at its exit,
/// the search_path this function sets. Every name in it is qualified.
#[pg_extern(volatile, parallel_unsafe)]
fn set_context(institution_id: Option<pgrx::Uuid>) -> Option<String> {
    errors::at_boundary(|| set(institution_id))
}

fn set(institution_id: Option<pgrx::Uuid>) -> TcResult<Option<String>> {
    let institution = db::to_uuid(institution_id.ok_or_else(|| TcError::null_argument("institution_id"))?);
    // SAFETY: a plain query of the transaction state.
    if !unsafe { pg_sys::IsTransactionBlock() } {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            "tenant.set_context must be called inside a transaction block",
        )
        .detail("The context lasts until the end of the transaction; outside a block it would end with this statement.")
        .hint("BEGIN; SELECT tenant.set_context(...); ...; COMMIT;"));
    }
    // An institution this connection entered in the last minute, unchanged
    // since: no need to ask the registry (see context_cache).
    if let Some((schema, role)) = context_cache::lookup(institution) {
        db::set_local("tenant_control.institution_id", &institution.to_string(), true)?;
        return enter_schema(schema, &role);
    }
    let found = db::rows_kept_read(
        "SELECT schema_name, owner_role FROM tenant.enter_context($1)",
        &[pg_sys::UUIDOID.into()],
        &[institution_id.into()],
        |row| Ok((db::col::<String>(row, "schema_name")?, db::col::<String>(row, "owner_role")?)),
    )?;
    let Some((Some(schema), Some(role))) = found.into_iter().next() else {
        return Ok(None);
    };
    enter_schema(schema, &role)
}

/// Point the transaction at an institution's schema, and switch to its role.
fn enter_schema(schema: String, role: &str) -> TcResult<Option<String>> {
    db::set_local("search_path", &format!("{}, public", quote_identifier(&schema)), false)?;
    // The role is switched without making anyone a member of it: see context_role.
    if context_role::may_assume_tenant_roles() {
        context_role::assume_for_transaction(role)?;
    }
    Ok(Some(schema))
}

/// The institution of the current transaction, or NULL outside a context.
/// Reading it through the library (not current_setting) guarantees the
/// setting is defined as superuser-only before anyone reads it: a value a
/// session SET before the library loaded is discarded then.
#[pg_extern(stable, parallel_safe)]
fn current_institution() -> Option<pgrx::Uuid> {
    settings::institution_id().and_then(|text| uuid::Uuid::parse_str(&text).ok()).map(db::to_pg_uuid)
}

/// Hybrid tenancy: put a table shared by several institutions (a uuid column
/// naming each row's institution) under a forced row-level security policy
/// keyed on tenant.current_institution(); platform administrators see all rows.
/// Runs with the caller's rights: only the table's owner may change its policies.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn enable_shared_table_isolation(
    table_name: Option<&str>,
    tenant_column: default!(Option<&str>, "'institution_id'"),
) -> String {
    isolate_shared_table(table_name, tenant_column).or_raise()
}

fn isolate_shared_table(table_name: Option<&str>, tenant_column: Option<&str>) -> TcResult<String> {
    let table = table_name.ok_or_else(|| TcError::null_argument("table_name"))?;
    let column = tenant_column.ok_or_else(|| TcError::null_argument("tenant_column"))?;
    let found = db::rows(
        "SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
                (SELECT a.atttypid::regtype::text FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped) AS column_type,
                n.nspname IN ('tenant', 'tenant_template') OR EXISTS (
                    SELECT 1 FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname) AS in_tenant_schema
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = pg_catalog.to_regclass($1)",
        &[table.into(), column.into()],
        |row| {
            Ok((
                db::col::<String>(row, "schema")?.unwrap_or_default(),
                db::col::<String>(row, "name")?.unwrap_or_default(),
                db::col::<String>(row, "kind")?.unwrap_or_default(),
                db::col::<String>(row, "column_type")?,
                db::col::<bool>(row, "in_tenant_schema")?.unwrap_or(false),
            ))
        },
    )?;
    let Some((schema, name, kind, column_type, in_tenant_schema)) = found.into_iter().next() else {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("table \"{table}\" does not exist")));
    };
    if !matches!(kind.as_str(), "r" | "p") {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("\"{schema}.{name}\" is not a table"),
        ));
    }
    if in_tenant_schema {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("table \"{schema}.{name}\" is not a shared table: it lives in a tenant_control schema"),
        )
        .hint("A tenant's own tables are isolated by its schema and role; share tables from another schema."));
    }
    match column_type.as_deref() {
        None => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of table \"{schema}.{name}\" does not exist"),
            ))
        }
        Some("uuid") => {}
        Some(other) => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{column}\" of table \"{schema}.{name}\" is {other}, not uuid"),
            ))
        }
    }
    let table = quote_qualified_identifier(&schema, &name);
    let mine = format!("{} = (SELECT tenant.current_institution())", quote_identifier(column));
    for statement in [
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS {SHARED_TABLE_POLICY} ON {table}"),
        format!("CREATE POLICY {SHARED_TABLE_POLICY} ON {table} USING ({mine}) WITH CHECK ({mine})"),
        format!("DROP POLICY IF EXISTS tc_platform_admin ON {table}"),
        format!("CREATE POLICY tc_platform_admin ON {table} TO tenant_control_admin USING (true) WITH CHECK (true)"),
    ] {
        db::run(&statement, &[])?;
    }
    Ok(format!("rows of {schema}.{name} are visible to the institution in column \"{column}\" only"))
}
