//! Per-institution limits (issue 16, noisy neighbours): settings that
//! `tenant.set_context` applies to the transaction it points at an
//! institution, and a cap on the transactions in one institution's context.
//!
//! The limits live in `tenant.institution_limits`, which only platform
//! administrators change (an institution administrator may change its
//! registry `config`, so the limits cannot live there). Each value must lie
//! within the bounds in `tenant.limit_bounds`, in the setting's base unit.

use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::restricted;
use crate::core::subxact;
use crate::registry;
use pgrx::prelude::*;
use serde_json::{Map, Value};

/// The settings set_context may apply; `max_transactions` is the cap.
const SETTINGS: &[&str] = &["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "work_mem"];
const MAX_TRANSACTIONS: &str = "max_transactions";

fn invalid(message: String) -> TcError {
    TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// `tenant.set_limits`: validate and store an institution's limits; NULL or
/// `{}` removes them. Returns what is stored.
pub fn set(schema_id: Option<pgrx::Uuid>, limits: Option<pgrx::JsonB>) -> TcResult<Value> {
    let tenant = registry::lock(schema_id)?;
    registry::require_live(&tenant)?;
    let fields = match limits.map(|json| json.0) {
        None => Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(other) => return Err(invalid(format!("limits must be a json object, not {other}"))),
    };
    let mut stored = Map::new();
    for (name, value) in fields {
        let normalized = if name == MAX_TRANSACTIONS {
            let count = value
                .as_i64()
                .filter(|_| value.is_i64() || value.is_u64())
                .ok_or_else(|| invalid(format!("max_transactions must be a whole number, not {value}")))?;
            within_bounds(&name, count, &count.to_string())?;
            Value::from(count)
        } else if SETTINGS.contains(&name.as_str()) {
            let text = match &value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => return Err(invalid(format!("{name} must be a string such as \"5s\" or \"64MB\", not {value}"))),
            };
            within_bounds(&name, in_base_unit(&name, &text)?, &text)?;
            Value::String(text)
        } else {
            return Err(invalid(format!("unknown limit \"{name}\""))
                .hint(format!("Limits are {}, and {MAX_TRANSACTIONS}.", SETTINGS.join(", "))));
        };
        stored.insert(name, normalized);
    }
    if stored.is_empty() {
        db::run("DELETE FROM tenant.institution_limits WHERE schema_id = $1", &[db::to_pg_uuid(tenant.id).into()])?;
    } else {
        db::run(
            "INSERT INTO tenant.institution_limits AS l (schema_id, limits) VALUES ($1, $2)
             ON CONFLICT (schema_id) DO UPDATE SET limits = excluded.limits, set_at = pg_catalog.now(), set_by = session_user",
            &[db::to_pg_uuid(tenant.id).into(), pgrx::JsonB(Value::Object(stored.clone())).into()],
        )?;
    }
    Ok(Value::Object(stored))
}

/// The value of a setting in its base unit (ms, kB), as PostgreSQL parses it:
/// set in a subtransaction that is rolled back, so nothing changes.
fn in_base_unit(name: &str, value: &str) -> TcResult<i64> {
    subxact::rolled_back(|| {
        db::run("SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()])?;
        db::scalar::<i64>(
            "SELECT s.setting::bigint FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    })
    .map_err(|error| invalid(format!("invalid value \"{value}\" for {name}: {}", error.message)))
}

/// The platform's bounds when `tenant.limit_bounds` has no row for a
/// setting: (setting, min, max, unit), in the setting's base unit. (The
/// table holds only overrides: rows the extension put there itself would
/// collide with the dumped rows on pg_restore.)
const DEFAULT_BOUNDS: &[(&str, i64, i64, &str)] = &[
    ("statement_timeout", 100, 3_600_000, "ms"),
    ("lock_timeout", 10, 600_000, "ms"),
    ("idle_in_transaction_session_timeout", 1000, 3_600_000, "ms"),
    ("work_mem", 64, 1_048_576, "kB"),
    ("max_transactions", 1, 10_000, "transactions"),
];

fn within_bounds(name: &str, value: i64, given: &str) -> TcResult<()> {
    let (_, default_min, default_max, unit) = DEFAULT_BOUNDS
        .iter()
        .find(|(setting, ..)| *setting == name)
        .copied()
        .ok_or_else(|| invalid(format!("no bounds for {name}")))?;
    let overridden =
        db::rows("SELECT min_value, max_value FROM tenant.limit_bounds WHERE setting = $1", &[name.into()], |row| {
            Ok((col::<i64>(row, "min_value")?, col::<i64>(row, "max_value")?))
        })?;
    let (min, max) = match overridden.into_iter().next() {
        Some((Some(min), Some(max))) => (min, max),
        _ => (default_min, default_max),
    };
    if value < min || value > max {
        return Err(invalid(format!(
            "{name} = {given} is outside the bounds the platform allows: {min} to {max} {unit}"
        ))
        .hint("A superuser may set other bounds in tenant.limit_bounds (in the setting's base unit)."));
    }
    Ok(())
}

/// Called by `tenant.enter_context` (as the extension's owner) for an
/// institution that has limits: take a transaction slot of the institution
/// and apply its settings for the rest of the transaction (as a user could:
/// user-settable settings only; enter_context's SET clause restores its own
/// search_path, nothing else). 53300 when all its slots are taken.
pub fn apply_in_context(institution_id: Option<pgrx::Uuid>) -> TcResult<()> {
    for (name, value) in context_limits(institution_id)? {
        crate::core::db::set_local(&name, &value, false)?;
    }
    Ok(())
}

/// `tenant.context_limits` (SECURITY DEFINER): the settings of an
/// institution's limits, after taking one of its `max_transactions` slots:
/// transaction-level advisory locks, released at COMMIT or ROLLBACK. A slot
/// this transaction already holds is taken again (advisory locks nest).
pub fn context_limits(institution_id: Option<pgrx::Uuid>) -> TcResult<Vec<(String, String)>> {
    let institution = institution_id.ok_or_else(|| TcError::null_argument("institution_id"))?;
    let found = db::rows(
        "SELECT t.id, l.limits FROM tenant.tenant_schemas t JOIN tenant.institution_limits l ON l.schema_id = t.id
          WHERE t.institution_id = $1 AND t.status NOT IN ('DROPPED', 'SPARE')",
        &[institution.into()],
        |row| Ok((col::<pgrx::Uuid>(row, "id")?, col::<pgrx::JsonB>(row, "limits")?.map(|json| json.0))),
    )?;
    let Some((Some(schema_id), Some(Value::Object(limits)))) = found.into_iter().next() else {
        return Ok(Vec::new());
    };
    if let Some(cap) = limits.get(MAX_TRANSACTIONS).and_then(Value::as_i64) {
        take_slot(db::to_uuid(schema_id), db::to_uuid(institution), cap)?;
    }
    Ok(limits
        .into_iter()
        .filter(|(name, _)| SETTINGS.contains(&name.as_str()))
        .filter_map(|(name, value)| value.as_str().map(|text| (name.clone(), text.to_string())))
        .collect())
}

/// Drop one of the row limit's triggers of `target` (a quoted, qualified
/// name) when it is there: DROP TRIGGER IF EXISTS would send the caller a
/// "does not exist, skipping" NOTICE for each one missing.
fn drop_trigger(target: &str, trigger: &str) -> TcResult<()> {
    let present: bool = db::scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                         WHERE g.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
                           AND g.tgname OPERATOR(pg_catalog.=) $2)",
        &[target.into(), trigger.into()],
    )?;
    if present {
        db::run(&format!("DROP TRIGGER {} ON {target}", pgrx::spi::quote_identifier(trigger)), &[])?;
    }
    Ok(())
}

fn take_slot(schema_id: uuid::Uuid, institution: uuid::Uuid, cap: i64) -> TcResult<()> {
    let taken: bool = db::scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.generate_series(0, $3 - 1) AS k(slot)
                         WHERE pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2 || ':' || k.slot)))",
        &[locks::SLOT_LOCK_CLASS.into(), schema_id.to_string().into(), cap.into()],
    )?;
    if taken {
        Ok(())
    } else {
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_TOO_MANY_CONNECTIONS,
            format!("institution {institution} already has {cap} transaction(s) in its context, its limit"),
        )
        .hint("Retry when one of them ends; the limit is max_transactions of tenant.set_limits."))
    }
}

/// `tenant.set_row_limit`: at most `max_rows` rows in one table of an
/// institution (NULL removes the limit). The count is kept in
/// `tenant.row_limits` by statement triggers (`tc_row_limit_*`, the
/// extension's own) that update it by the rows each statement inserted or
/// deleted: concurrent inserts queue on that one counter row, so the limit
/// is exact (READ COMMITTED re-reads it; REPEATABLE READ gets 40001, retry).
pub fn set_row_limit(schema_id: Option<pgrx::Uuid>, table: Option<&str>, max_rows: Option<i64>) -> TcResult<String> {
    let table = table.ok_or_else(|| TcError::null_argument("table_name"))?;
    if let Some(max) = max_rows.filter(|max| *max < 0) {
        return Err(invalid(format!("max_rows must be zero or more, not {max}")));
    }
    crate::registry::oplog::with_lock_timeout(|| {
        let tenant = registry::lock(schema_id)?;
        registry::require_live(&tenant)?;
        let present: bool = db::scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                             WHERE c.relnamespace OPERATOR(pg_catalog.=) 'tenant_template'::pg_catalog.regnamespace
                               AND c.relname OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) 'r')
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                             WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace($2)
                               AND c.relname OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) 'r')",
            &[table.into(), tenant.schema.as_str().into()],
        )?;
        if !present {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("table \"{table}\" is not a table of the template in schema \"{}\"", tenant.schema),
            ));
        }
        let target = format!("{}.{}", tenant.schema.quoted(), pgrx::spi::quote_identifier(table));
        let id = db::to_pg_uuid(tenant.id);
        restricted::internal_ddl(|| {
            for (event, transition) in [("insert", "NEW TABLE AS new_rows"), ("delete", "OLD TABLE AS old_rows")] {
                drop_trigger(&target, &format!("tc_row_limit_{event}"))?;
                if max_rows.is_some() {
                    db::run(
                        &format!(
                            "CREATE TRIGGER tc_row_limit_{event} AFTER {} ON {target} REFERENCING {transition}
                             FOR EACH STATEMENT EXECUTE FUNCTION tenant.row_limit_guard()",
                            event.to_uppercase()
                        ),
                        &[],
                    )?;
                }
            }
            drop_trigger(&target, "tc_row_limit_truncate")?;
            let Some(max) = max_rows else {
                db::run(
                    "DELETE FROM tenant.row_limits WHERE schema_id = $1 AND table_name = $2",
                    &[id.into(), table.into()],
                )?;
                return Ok(format!("no row limit on \"{table}\" in \"{}\"", tenant.schema));
            };
            db::run(
                &format!(
                    "CREATE TRIGGER tc_row_limit_truncate AFTER TRUNCATE ON {target}
                     FOR EACH STATEMENT EXECUTE FUNCTION tenant.row_limit_guard()"
                ),
                &[],
            )?;
            // Writers wait while the rows are counted, so the count starts exact.
            db::run(&format!("LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE"), &[])?;
            let rows: i64 = db::scalar(&format!("SELECT pg_catalog.count(*) FROM {target}"), &[])?;
            db::run(
                "INSERT INTO tenant.row_limits AS l (schema_id, table_name, max_rows, row_count) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (schema_id, table_name) DO UPDATE
                    SET max_rows = excluded.max_rows, row_count = excluded.row_count, set_at = pg_catalog.now(), set_by = session_user",
                &[id.into(), table.into(), max.into(), rows.into()],
            )?;
            Ok(format!("at most {max} rows in \"{table}\" of \"{}\" (now {rows})", tenant.schema))
        })
    })
}
