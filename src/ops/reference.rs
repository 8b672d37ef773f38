//! Reference data kept in sync (`tenant.sync_reference`): a shared table is
//! the source of a table in every institution, matched on a key column.
//!
//! For each institution and source row the extension remembers the digest of
//! what it last wrote (`tenant.reference_rows`). At the next sync a row whose
//! digest still matches is updated from the source; a row the institution
//! changed or deleted since, or a row of that key the institution made
//! itself, is a conflict, handled by the source's policy: `report` (left as
//! it is, listed in `tenant.reference_conflicts` with both versions),
//! `keep_local` (left as it is, not listed) or `overwrite` (the source wins).
//! Rows removed from the source are left in the institutions.
//!
//! The source is read with the extension's rights; everything that touches
//! the institution's table (reading it, writing it, its triggers and
//! defaults) runs as the institution's role in a security-restricted
//! operation, like any other work on tenant data.

use crate::copy::template::TEMPLATE_SCHEMA;
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::restricted;
use crate::core::subxact;
use crate::registry::{self, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Report,
    KeepLocal,
    Overwrite,
}

impl Policy {
    fn parse(text: Option<&str>) -> TcResult<Self> {
        match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
            Some("report") => Ok(Policy::Report),
            Some("keep_local") => Ok(Policy::KeepLocal),
            Some("overwrite") => Ok(Policy::Overwrite),
            _ => Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("on_conflict must be report, keep_local or overwrite, not {}", text.unwrap_or("NULL")),
            )),
        }
    }
}

/// A declared source.
struct Source {
    id: i64,
    relation: String,
    target: String,
    key: String,
    columns: Vec<String>,
    policy: Policy,
}

/// Declare (or re-declare) `source` as the source of `target_table` in every
/// institution; returns the source's id.
pub fn declare(
    source: Option<pg_sys::Oid>,
    target_table: Option<&str>,
    key_column: Option<&str>,
    on_conflict: Option<&str>,
) -> TcResult<i64> {
    let source = source.ok_or_else(|| TcError::null_argument("source"))?;
    let target = target_table.ok_or_else(|| TcError::null_argument("target_table"))?;
    let key = key_column.ok_or_else(|| TcError::null_argument("key_column"))?;
    Policy::parse(on_conflict)?;
    let relation: Option<String> = db::value(
        "SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND n.nspname <> $2 AND NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname)",
        &[source.into(), TEMPLATE_SCHEMA.into()],
    )?;
    let relation = relation.ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            "the source must be a shared table or view outside the institutions' schemas",
        )
    })?;
    // The columns copied: those of the source that the template's table has.
    let columns: Vec<String> = db::scalar(
        "SELECT COALESCE(pg_catalog.array_agg(s.attname::text ORDER BY s.attnum), '{}')
           FROM pg_catalog.pg_attribute s
          WHERE s.attrelid = $1 AND s.attnum > 0 AND NOT s.attisdropped
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute t
                         WHERE t.attrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($2) || '.' || pg_catalog.quote_ident($3))
                           AND t.attname = s.attname AND t.attnum > 0 AND NOT t.attisdropped)",
        &[source.into(), TEMPLATE_SCHEMA.into(), target.into()],
    )?;
    let target_exists: bool = db::scalar(
        "SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2)) IS NOT NULL",
        &[TEMPLATE_SCHEMA.into(), target.into()],
    )?;
    if !target_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{target}\" does not exist in schema {TEMPLATE_SCHEMA}"),
        ));
    }
    if !columns.iter().any(|c| c == key) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("key column \"{key}\" is not in both {relation} and {TEMPLATE_SCHEMA}.{target}"),
        ));
    }
    db::scalar(
        "INSERT INTO tenant.reference_sources (source, target_table, key_column, columns, on_conflict)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (source, target_table) DO UPDATE
            SET key_column = EXCLUDED.key_column, columns = EXCLUDED.columns, on_conflict = EXCLUDED.on_conflict
         RETURNING id",
        &[
            relation.as_str().into(),
            target.into(),
            key.into(),
            columns.into(),
            on_conflict.unwrap_or("report").trim().to_ascii_lowercase().into(),
        ],
    )
}

fn source(id: i64) -> TcResult<Source> {
    let found = db::rows(
        "SELECT id, source, target_table, key_column, columns, on_conflict FROM tenant.reference_sources WHERE id = $1",
        &[id.into()],
        |row| {
            Ok(Source {
                id: col(row, "id")?.unwrap_or_default(),
                relation: col(row, "source")?.unwrap_or_default(),
                target: col(row, "target_table")?.unwrap_or_default(),
                key: col(row, "key_column")?.unwrap_or_default(),
                columns: col(row, "columns")?.unwrap_or_default(),
                policy: Policy::parse(col::<String>(row, "on_conflict")?.as_deref())?,
            })
        },
    )?;
    found.into_iter().next().ok_or_else(|| {
        TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("no reference source {id}"))
            .hint("The sources are listed in tenant.reference_sources.")
    })
}

/// `jsonb_build_object('c1', <alias>.c1, ...)` over the copied columns.
fn row_json(columns: &[String], alias: &str) -> String {
    let pairs: Vec<String> =
        columns.iter().map(|c| format!("{}, {alias}.{}", quote_literal(c), quote_identifier(c))).collect();
    format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
}

/// What one institution's sync did.
#[derive(Debug, Default)]
pub struct Synced {
    pub inserted: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub skipped: Option<String>,
}

/// Sync one source into one institution, atomically; an error leaves the
/// institution as it was.
pub fn sync_one(source_id: Option<i64>, schema_id: Option<pgrx::Uuid>) -> TcResult<Synced> {
    let source = source(source_id.ok_or_else(|| TcError::null_argument("source_id"))?)?;
    subxact::atomically(|| {
        let tenant = registry::lock(schema_id)?;
        if tenant.status != Status::Active {
            return Ok(Synced {
                skipped: Some(format!("{} is {}", tenant.schema, tenant.status.as_str())),
                ..Synced::default()
            });
        }
        sync_into(&source, &tenant)
    })
}

fn sync_into(source: &Source, tenant: &Tenant) -> TcResult<Synced> {
    let key = quote_identifier(&source.key);
    // The source, read with the extension's rights (the tenant cannot read it).
    let wanted: Vec<(String, Value)> = db::rows(
        &format!("SELECT s.{key}::text AS key, {} AS row FROM {} s", row_json(&source.columns, "s"), source.relation),
        &[],
        |row| {
            Ok((
                col(row, "key")?.unwrap_or_default(),
                col::<pgrx::JsonB>(row, "row")?.map(|j| j.0).unwrap_or(Value::Null),
            ))
        },
    )?;
    let synced: HashMap<String, String> = db::rows(
        "SELECT key, synced_md5 FROM tenant.reference_rows WHERE source_id = $1 AND schema_id = $2",
        &[source.id.into(), db::to_pg_uuid(tenant.id).into()],
        |row| Ok((col(row, "key")?.unwrap_or_default(), col(row, "synced_md5")?.unwrap_or_default())),
    )?
    .into_iter()
    .collect();
    let table = format!("{}.{}", tenant.schema.quoted(), quote_identifier(&source.target));
    let columns: Vec<String> = source.columns.iter().map(quote_identifier).collect();
    let column_list = columns.join(", ");
    let search_path = format!("{}, public, pg_temp", tenant.schema.quoted());
    let mut outcome = Synced::default();
    let mut written: Vec<(String, String)> = Vec::new();
    let mut conflicts: Vec<(String, &'static str, Option<Value>, Value)> = Vec::new();
    restricted::as_role(tenant.role.as_str(), &search_path, || {
        let local: HashMap<String, (String, Value)> = db::rows(
            &format!(
                "SELECT t.{key}::text AS key, pg_catalog.md5(({json})::text) AS digest, {json} AS row FROM {table} t",
                json = row_json(&source.columns, "t")
            ),
            &[],
            |row| {
                Ok((
                    col(row, "key")?.unwrap_or_default(),
                    (
                        col(row, "digest")?.unwrap_or_default(),
                        col::<pgrx::JsonB>(row, "row")?.map(|j| j.0).unwrap_or(Value::Null),
                    ),
                ))
            },
        )?
        .into_iter()
        .collect();
        for (row_key, row) in &wanted {
            let digest: String = db::scalar("SELECT pg_catalog.md5($1::text)", &[pgrx::JsonB(row.clone()).into()])?;
            let last = synced.get(row_key);
            let conflict = match (local.get(row_key), last) {
                // Already what the source says: nothing to write.
                (Some((mine, _)), _) if *mine == digest => {
                    written.push((row_key.clone(), digest.clone()));
                    continue;
                }
                (None, None) => None,
                (None, Some(_)) => Some(("DELETED", None)),
                (Some((mine, _)), Some(theirs)) if mine == theirs => None,
                (Some((_, local_row)), Some(_)) => Some(("CHANGED", Some(local_row.clone()))),
                (Some((_, local_row)), None) => Some(("LOCAL", Some(local_row.clone()))),
            };
            if let Some((kind, local_row)) = conflict {
                if source.policy != Policy::Overwrite {
                    if source.policy == Policy::Report {
                        conflicts.push((row_key.clone(), kind, local_row, row.clone()));
                    }
                    continue;
                }
            }
            let exists = local.contains_key(row_key);
            let record = format!("pg_catalog.jsonb_populate_record(NULL::{table}, $1)");
            if exists {
                db::run(
                    &format!(
                        "UPDATE {table} t SET ({column_list}) = (SELECT {column_list} FROM {record} r)
                          WHERE t.{key} OPERATOR(pg_catalog.=) ({record}).{key}"
                    ),
                    &[pgrx::JsonB(row.clone()).into()],
                )?;
                outcome.updated += 1;
            } else {
                db::run(
                    &format!("INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {record} r"),
                    &[pgrx::JsonB(row.clone()).into()],
                )?;
                outcome.inserted += 1;
            }
            written.push((row_key.clone(), digest));
        }
        Ok(())
    })?;
    record(source, tenant, &written, &conflicts)?;
    outcome.conflicts = conflicts.len() as i64;
    Ok(outcome)
}

/// What was written (its digest, for the next sync) and the conflicts found.
fn record(
    source: &Source,
    tenant: &Tenant,
    written: &[(String, String)],
    conflicts: &[(String, &'static str, Option<Value>, Value)],
) -> TcResult<()> {
    let (keys, digests): (Vec<String>, Vec<String>) = written.iter().cloned().unzip();
    let schema_id = db::to_pg_uuid(tenant.id);
    db::run(
        "INSERT INTO tenant.reference_rows (source_id, schema_id, key, synced_md5, synced_at)
         SELECT $1, $2, k.key, k.digest, pg_catalog.now()
           FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[])) AS k(key, digest)
         ON CONFLICT (source_id, schema_id, key) DO UPDATE SET synced_md5 = EXCLUDED.synced_md5, synced_at = EXCLUDED.synced_at",
        &[source.id.into(), schema_id.into(), keys.into(), digests.into()],
    )?;
    db::run(
        "DELETE FROM tenant.reference_conflict_rows WHERE source_id = $1 AND schema_id = $2",
        &[source.id.into(), schema_id.into()],
    )?;
    for (key, kind, local, theirs) in conflicts {
        db::run(
            "INSERT INTO tenant.reference_conflict_rows (source_id, schema_id, key, kind, local_row, source_row)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                source.id.into(),
                schema_id.into(),
                key.as_str().into(),
                (*kind).into(),
                local.clone().map(pgrx::JsonB).into(),
                pgrx::JsonB(theirs.clone()).into(),
            ],
        )?;
    }
    Ok(())
}

/// A new institution gets every declared source's data; a failure is a
/// WARNING, never a failed creation (a later sync_reference catches up).
pub fn sync_new_institution(schema_id: Option<pgrx::Uuid>) -> TcResult<i64> {
    let sources: Vec<i64> = db::rows("SELECT id FROM tenant.reference_sources ORDER BY id", &[], |row| {
        Ok(col(row, "id")?.unwrap_or_default())
    })?;
    let mut done = 0;
    for id in sources {
        match sync_one(Some(id), schema_id) {
            Ok(_) => done += 1,
            Err(error) => pgrx::warning!("reference source {id} could not be copied into the new institution: {error}"),
        }
    }
    Ok(done)
}
