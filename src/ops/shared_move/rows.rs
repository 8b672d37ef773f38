//! Reading and writing one side of a move: the institution's rows in a
//! shared table or in its schema, copied a batch at a time and hashed.

use super::plan::{self, TablePlan};
use super::{Direction, Move};
use crate::copy::schema_copy::HASH_SETTINGS;
use crate::core::db::{self, col};
use crate::core::errors::TcResult;
use crate::core::restricted::{as_role, internal_ddl};
use crate::registry::{Status, Tenant};
use pgrx::spi::{quote_identifier, quote_qualified_identifier};

/// The table as SQL on one side: the shared table, or the institution's.
pub(super) fn table_of(plan: &TablePlan, shared_side: bool, tenant: &Tenant) -> String {
    if shared_side {
        plan.shared()
    } else {
        quote_qualified_identifier(tenant.schema.as_str(), &plan.table)
    }
}

/// The institution's rows on one side (`$1` is the institution).
pub(super) fn rows_of(plan: &TablePlan, shared_side: bool, tenant: &Tenant) -> String {
    let table = table_of(plan, shared_side, tenant);
    if shared_side {
        format!("{table} s WHERE s.{} OPERATOR(pg_catalog.=) $1", quote_identifier(&plan.tenant_column))
    } else {
        format!("{table} s WHERE $1::uuid IS NOT NULL")
    }
}

/// Rows on the source side (`source`) or the target side of a move.
pub(super) fn side_count(
    plan: &TablePlan,
    direction: Direction,
    source: bool,
    institution: uuid::Uuid,
    tenant: &Tenant,
) -> TcResult<i64> {
    let shared_side = source == (direction == Direction::ToSchema);
    db::scalar(
        &format!("SELECT pg_catalog.count(*) FROM {}", rows_of(plan, shared_side, tenant)),
        &[db::to_pg_uuid(institution).into()],
    )
}

/// Copy the next `batch_size` rows of one table after `last_key`; returns
/// how many, and the last key copied (as text, one element per key column).
/// Values and keys travel as text (json, and the key array): the settings
/// text forms depend on are pinned, for both ends and every call alike.
pub(super) fn copy_batch(
    running: &Move,
    tenant: &Tenant,
    plan: &TablePlan,
    last_key: Option<Vec<String>>,
    batch_size: i32,
) -> TcResult<(i64, Option<Vec<String>>)> {
    db::with_settings(HASH_SETTINGS, || copy_pinned(running, tenant, plan, last_key, batch_size))
}

fn copy_pinned(
    running: &Move,
    tenant: &Tenant,
    plan: &TablePlan,
    last_key: Option<Vec<String>>,
    batch_size: i32,
) -> TcResult<(i64, Option<Vec<String>>)> {
    let from_shared = running.direction == Direction::ToSchema;
    let key_column = |i: usize| {
        let (ours, theirs) = &plan.columns[i];
        format!("s.{}", quote_identifier(if from_shared { theirs } else { ours }))
    };
    let keys: Vec<String> = plan.key.iter().map(|&i| key_column(i)).collect();
    let keys = keys.join(", ");
    let after = if last_key.is_some() {
        let bound: Vec<String> = plan
            .key_types
            .iter()
            .enumerate()
            .map(|(n, type_name)| format!("($2::text[])[{}]::{type_name}", n + 1))
            .collect();
        format!(" AND ({keys}) OPERATOR(pg_catalog.>) ({})", bound.join(", "))
    } else {
        String::new()
    };
    // Columns named as on the target side: the rows become its row type.
    let selected: Vec<String> = plan
        .columns
        .iter()
        .map(|(ours, theirs)| {
            let (from, to) = if from_shared { (theirs, ours) } else { (ours, theirs) };
            format!("s.{} AS {}", quote_identifier(from), quote_identifier(to))
        })
        .collect();
    let key_text: Vec<String> = plan.key.iter().map(|&i| format!("{}::text", key_column(i))).collect();
    let read = format!(
        "WITH b AS MATERIALIZED (
             SELECT {}, ARRAY[{}] AS tc_key, pg_catalog.row_number() OVER (ORDER BY {keys}) AS tc_n
               FROM {}{after} ORDER BY {keys} LIMIT $3)
         SELECT (SELECT pg_catalog.count(*) FROM b) AS n,
                (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(b) - 'tc_key' - 'tc_n') FROM b) AS batch,
                (SELECT b.tc_key FROM b ORDER BY b.tc_n DESC LIMIT 1) AS last_key",
        selected.join(", "),
        key_text.join(", "),
        rows_of(plan, from_shared, tenant),
    );
    let (n, batch, new_key) = db::rows(
        &read,
        &[
            db::to_pg_uuid(running.institution).into(),
            last_key.unwrap_or_default().into(),
            (if plan.whole { i64::MAX } else { i64::from(batch_size) }).into(),
        ],
        |row| {
            Ok((
                col::<i64>(row, "n")?.unwrap_or(0),
                col::<pgrx::JsonB>(row, "batch")?,
                col::<Vec<String>>(row, "last_key")?,
            ))
        },
    )?
    .into_iter()
    .next()
    .unwrap_or((0, None, None));
    let Some(batch) = batch else {
        return Ok((0, None));
    };
    let target_columns = plan::column_list(plan, !from_shared, "r.");
    let bare = plan::column_list(plan, !from_shared, "");
    if from_shared {
        let target = table_of(plan, false, tenant);
        let insert = format!(
            "INSERT INTO {target} ({}) OVERRIDING SYSTEM VALUE
             SELECT {target_columns} FROM pg_catalog.jsonb_populate_recordset(NULL::{target}, $1) r",
            bare
        );
        into_schema(tenant, || db::run(&insert, &[batch.into()]))?;
    } else {
        let target = plan.shared();
        let insert = format!(
            "INSERT INTO {target} ({}, {}) OVERRIDING SYSTEM VALUE
             SELECT $2, {target_columns} FROM pg_catalog.jsonb_populate_recordset(NULL::{target}, $1) r",
            quote_identifier(&plan.tenant_column),
            bare
        );
        db::run(&insert, &[batch.into(), db::to_pg_uuid(running.institution).into()])?;
    }
    Ok((n, new_key))
}

/// Write into the institution's schema as its role, in a security-restricted
/// operation. The schema is closed to its role while rows move in: USAGE is
/// granted for this transaction's work only.
pub(super) fn into_schema<T>(tenant: &Tenant, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    let (schema, role) = (tenant.schema.quoted(), tenant.role.quoted());
    // An ACTIVE schema (a move given up after someone opened it) stays open.
    let closed = tenant.status != Status::Active;
    internal_ddl(|| {
        if closed {
            db::run(&format!("GRANT USAGE ON SCHEMA {schema} TO {role}"), &[])?;
        }
        let outcome = as_role(tenant.role.as_str(), "pg_catalog, pg_temp", work)?;
        if closed {
            db::run(&format!("REVOKE ALL ON SCHEMA {schema} FROM {role}"), &[])?;
        }
        Ok(outcome)
    })
}

/// Count and content hash of the institution's rows of one side, over the
/// moved columns in the same order on both sides (generated columns are
/// computed again, the institution column is not carried): `record_out`
/// gives the same text for the same values of the same types.
pub(super) fn count_and_hash(
    plan: &TablePlan,
    shared_side: bool,
    institution: uuid::Uuid,
    tenant: &Tenant,
) -> TcResult<(i64, String)> {
    let statement = format!(
        "SELECT pg_catalog.count(*)::bigint AS n,
                COALESCE(pg_catalog.sum(pg_catalog.hashtextextended(pg_catalog.textin(pg_catalog.record_out(ROW({}))), 0)), 0)::text AS hash
           FROM {}",
        plan::column_list(plan, shared_side, "s."),
        rows_of(plan, shared_side, tenant)
    );
    db::with_settings(HASH_SETTINGS, || {
        let found = db::rows(&statement, &[db::to_pg_uuid(institution).into()], |row| {
            Ok((col::<i64>(row, "n")?.unwrap_or(0), col::<String>(row, "hash")?.unwrap_or_default()))
        })?;
        Ok(found.into_iter().next().unwrap_or_default())
    })
}
