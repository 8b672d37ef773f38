//! The registry's side of the audit trail: a row trigger on
//! `tenant.tenant_schemas` (config, quota and status changes) and on
//! `tenant.institution_admins` (grants and revocations) notes each change
//! for `core::audit`, which writes it when the transaction ends.
//! `tenant.audit_report` is SQL, in sql/finalize.sql.

use crate::core::audit;
use crate::core::db;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, JsonB, PgTrigger, PgTriggerError};
use serde_json::{json, Value};

type Row<'a> = PgHeapTuple<'a, AllocatedByPostgres>;

/// Internal: AFTER row trigger; its one argument names what is watched:
/// CONFIG, QUOTA or STATUS on the registry, ADMIN on the grants.
#[pg_trigger]
fn audit_registry_change<'a>(trigger: &'a PgTrigger<'a>) -> Result<Option<Row<'a>>, PgTriggerError> {
    let watched = trigger.extra_args()?.into_iter().next().unwrap_or_default();
    let (old, new) = (trigger.old(), trigger.new());
    // Only the extension's own tables: anyone else attaching this function
    // would need EXECUTE on it, which no one but the owner has.
    if trigger.table_schema()? != "tenant" {
        return Ok(None);
    }
    match watched.as_str() {
        "ADMIN" => {
            let (action, row) = match (&old, &new) {
                (None, Some(row)) => ("ADMIN_GRANT", row),
                (Some(row), _) => ("ADMIN_REVOKE", row),
                (None, None) => return Ok(None),
            };
            let role: Option<String> = row.get_by_name("role_name").ok().flatten();
            let institution = uuid_of(row, "institution_id");
            audit::note_registry_change(action, None, institution, json!({ "role_name": role }));
        }
        column @ ("CONFIG" | "QUOTA" | "STATUS") => {
            let (Some(old), Some(new)) = (&old, &new) else { return Ok(None) };
            let (before, after) = (value_of(old, column), value_of(new, column));
            audit::note_registry_change(
                column,
                uuid_of(new, "id"),
                uuid_of(new, "institution_id").or_else(|| uuid_of(old, "institution_id")),
                json!({ "old": before, "new": after }),
            );
        }
        _ => {}
    }
    Ok(None)
}

fn uuid_of(row: &Row<'_>, column: &str) -> Option<uuid::Uuid> {
    row.get_by_name::<pgrx::Uuid>(column).ok().flatten().map(db::to_uuid)
}

fn value_of(row: &Row<'_>, watched: &str) -> Value {
    match watched {
        "CONFIG" => row.get_by_name::<JsonB>("config").ok().flatten().map(|config| config.0).unwrap_or(Value::Null),
        "QUOTA" => json!(row.get_by_name::<i64>("quota_limit").ok().flatten()),
        _ => json!(row.get_by_name::<String>("status").ok().flatten()),
    }
}
