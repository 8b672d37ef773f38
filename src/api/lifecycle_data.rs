//! The SQL surface of data lifecycle and governance (issue 16): thin
//! `#[pg_extern]` wrappers. The procedures that commit between batches
//! (`tenant.apply_retention`) are PL/pgSQL in sql/finalize.sql.

use crate::core::errors::OrRaise;
use crate::ops::limits;
use crate::ops::retention;
use crate::ops::shared_move;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Set, replace or (keep NULL) remove the retention rule of a template table.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_retention(
    table_name: Option<&str>,
    date_column: Option<&str>,
    keep: Option<Interval>,
    archive: Option<bool>,
) -> String {
    retention::set_rule(table_name, date_column, keep, archive).or_raise()
}

/// Internal: one batch of tenant.apply_retention for one institution and table.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn retention_batch(
    schema_id: Option<pgrx::Uuid>,
    table_name: Option<&str>,
    started_at: Option<TimestampWithTimeZone>,
    batch_size: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(removed, i64),
        name!(archive_table, Option<String>),
        name!(cutoff, Option<TimestampWithTimeZone>),
        name!(skipped, Option<String>),
    ),
> {
    let done = retention::batch(schema_id, table_name, started_at, batch_size).or_raise();
    TableIterator::once((done.removed, done.archive_table, done.cutoff, done.skipped))
}

/// Internal: the RETENTION log row of one institution and table.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn note_retention(
    schema_id: Option<pgrx::Uuid>,
    table_name: Option<&str>,
    details: Option<pgrx::JsonB>,
    sqlstate: Option<&str>,
    message: Option<&str>,
) {
    retention::note(schema_id, table_name, details, sqlstate, message).or_raise()
}

/// Set an institution's limits (settings applied by tenant.set_context, and
/// max_transactions); NULL or '{}' removes them. Returns what is stored.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_limits(schema_id: Option<pgrx::Uuid>, limits: Option<pgrx::JsonB>) -> pgrx::JsonB {
    pgrx::JsonB(limits::set(schema_id, limits).or_raise())
}

/// Internal: for tenant.set_context, the settings of an institution's limits,
/// after taking one of its transaction slots (53300 when none is free).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn context_limits(
    institution_id: Option<pgrx::Uuid>,
) -> TableIterator<'static, (name!(name, String), name!(value, String))> {
    TableIterator::new(limits::context_limits(institution_id).or_raise())
}

/// Limit the rows of one template table of an institution; NULL removes the limit.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_row_limit(schema_id: Option<pgrx::Uuid>, table_name: Option<&str>, max_rows: Option<i64>) -> String {
    limits::set_row_limit(schema_id, table_name, max_rows).or_raise()
}

/// Name the template table a shared table moves to, and the columns whose
/// names differ; NULL and '{}' remove the mapping.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_column_mapping(
    shared_table: Option<&str>,
    table_name: default!(Option<&str>, "NULL"),
    columns: default!(Option<pgrx::JsonB>, "'{}'"),
) -> String {
    shared_move::plan::set_mapping(shared_table, table_name, columns).or_raise()
}

/// Internal: one step of tenant.move_to_schema / tenant.move_to_shared.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn shared_move_step(
    institution_id: Option<pgrx::Uuid>,
    direction: Option<&str>,
    batch_size: Option<i32>,
    first: Option<bool>,
) -> TableIterator<'static, (name!(finished, bool), name!(abandoned, bool), name!(message, String))> {
    let step = shared_move::step(institution_id, direction, batch_size, first).or_raise();
    TableIterator::once((step.finished, step.abandoned, step.message))
}
