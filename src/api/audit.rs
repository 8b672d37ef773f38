//! The registry's side of the audit trail: row triggers on the extension's
//! tables of record note each change for `core::audit`, which writes it when
//! the transaction ends: `tenant.tenant_schemas` (config, quota and status),
//! `tenant.institution_admins` (grants), `tenant.institution_limits`,
//! `tenant.row_limits` (max_rows) and `tenant.retention_rules`.
//! `tenant.audit_report` is SQL, in sql/finalize.sql.

use crate::core::audit;
use crate::core::db;
use crate::registry;
use pgrx::datum::Interval;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, JsonB, PgTrigger, PgTriggerError};
use serde_json::{json, Value};

type Row<'a> = PgHeapTuple<'a, AllocatedByPostgres>;

/// Internal: AFTER row trigger; its one argument names what is watched:
/// CONFIG, QUOTA or STATUS on the registry, ADMIN on the grants, LIMITS,
/// ROW_LIMIT or RETENTION_RULE on the tables of those names.
#[pg_trigger]
fn audit_registry_change<'a>(trigger: &'a PgTrigger<'a>) -> Result<Option<Row<'a>>, PgTriggerError> {
    // Only the extension's own tables: anyone else attaching this function
    // would need EXECUTE on it, which no one but the owner has.
    if trigger.table_schema()? != "tenant" {
        return Ok(None);
    }
    let watched = trigger.extra_args()?.into_iter().next().unwrap_or_default();
    let (old, new) = (trigger.old(), trigger.new());
    let Some(row) = new.as_ref().or(old.as_ref()) else { return Ok(None) };
    let action = match (watched.as_str(), &old, &new) {
        ("ADMIN", None, _) => "ADMIN_GRANT",
        ("ADMIN", Some(_), _) => "ADMIN_REVOKE",
        (known @ ("CONFIG" | "QUOTA" | "STATUS" | "LIMITS" | "ROW_LIMIT" | "RETENTION_RULE"), _, _) => known,
        _ => return Ok(None),
    };
    let detail = if action.starts_with("ADMIN") {
        json!({ "role_name": row.get_by_name::<String>("role_name").ok().flatten() })
    } else {
        let mut detail = json!({
            "old": old.as_ref().map(|old| value_of(old, action)),
            "new": new.as_ref().map(|new| value_of(new, action)),
        });
        if matches!(action, "ROW_LIMIT" | "RETENTION_RULE") {
            detail["table_name"] = json!(row.get_by_name::<String>("table_name").ok().flatten());
        }
        detail
    };
    let schema_id = if action == "CONFIG" || action == "QUOTA" || action == "STATUS" {
        uuid_of(row, "id")
    } else {
        uuid_of(row, "schema_id")
    };
    let institution = match action {
        // The fleet's rules: no institution.
        "RETENTION_RULE" => None,
        // Limits name their tenant only: the registry knows its institution.
        "LIMITS" | "ROW_LIMIT" => schema_id.and_then(registry::registered).and_then(|tenant| tenant.institution_id),
        _ => uuid_of(row, "institution_id"),
    };
    audit::note_registry_change(action, schema_id, institution, detail);
    Ok(None)
}

fn uuid_of(row: &Row<'_>, column: &str) -> Option<uuid::Uuid> {
    row.get_by_name::<pgrx::Uuid>(column).ok().flatten().map(db::to_uuid)
}

/// What the watched columns of one version of the row hold.
fn value_of(row: &Row<'_>, action: &str) -> Value {
    let jsonb = |column| row.get_by_name::<JsonB>(column).ok().flatten().map(|value| value.0).unwrap_or(Value::Null);
    match action {
        "CONFIG" => jsonb("config"),
        "LIMITS" => jsonb("limits"),
        "QUOTA" => json!(row.get_by_name::<i64>("quota_limit").ok().flatten()),
        "ROW_LIMIT" => json!(row.get_by_name::<i64>("max_rows").ok().flatten()),
        "RETENTION_RULE" => json!({
            "date_column": row.get_by_name::<String>("date_column").ok().flatten(),
            "keep": row.get_by_name::<Interval>("keep").ok().flatten(),
            "archive": row.get_by_name::<bool>("archive").ok().flatten(),
        }),
        _ => json!(row.get_by_name::<String>("status").ok().flatten()),
    }
}
