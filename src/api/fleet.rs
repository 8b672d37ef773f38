//! The SQL surface of fleet work (issue 15): thin `#[pg_extern]` wrappers
//! around `fleet_run`. EXECUTE is for tenant_control_admin only (finalize.sql
//! revokes every function of schema tenant from PUBLIC).

use crate::core::db;
use crate::core::errors::{OrRaise, TcResult};
use crate::ops::fleet_report;
use crate::ops::fleet_run::{self, Job, Outcome};
use crate::ops::reference;
use crate::registry::oplog::{self, OpKind};
use pgrx::datum::Interval;
use pgrx::prelude::*;

/// One institution's row (the column names are repeated in each signature:
/// pgrx reads them from there).
type OutcomeRow =
    (pgrx::Uuid, Option<String>, String, Option<i64>, Option<pgrx::JsonB>, Option<String>, Option<String>, f64);

fn row(outcome: Outcome) -> OutcomeRow {
    (
        db::to_pg_uuid(outcome.institution_id),
        outcome.schema_name,
        outcome.status.to_string(),
        outcome.row_count,
        outcome.result.map(pgrx::JsonB),
        outcome.sqlstate,
        outcome.message,
        outcome.duration_ms,
    )
}

/// Run a statement in each chosen institution, as its role, in its own
/// subtransaction; one row per institution. See docs/_fragments/fleet.md.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)]
fn run_in_each(
    statement: Option<&str>,
    institutions: default!(Option<Vec<Option<pgrx::Uuid>>>, "NULL"),
    parameters: default!(Option<Vec<Option<String>>>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
    lock_timeout: default!(Option<Interval>, "NULL"),
    statement_timeout: default!(Option<Interval>, "NULL"),
    config_filter: default!(Option<pgrx::JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(institution_id, pgrx::Uuid),
        name!(schema_name, Option<String>),
        name!(status, String),
        name!(row_count, Option<i64>),
        name!(result, Option<pgrx::JsonB>),
        name!(sqlstate, Option<String>),
        name!(message, Option<String>),
        name!(duration_ms, f64),
    ),
> {
    let dry_run = dry_run.unwrap_or(false);
    let job = Job::new(statement, parameters, lock_timeout, statement_timeout).or_raise();
    let targets = fleet_run::targets(institutions, config_filter).or_raise();
    let description =
        format!("{} a statement in {} institution(s)", if dry_run { "dry run of" } else { "run" }, targets.len());
    let (_, outcome) =
        oplog::record(OpKind::FleetRun, None, description, |op| fleet_run::run_all(op, &job, &targets, dry_run));
    TableIterator::new(outcome.or_raise().into_iter().map(row))
}

/// Internal (tenant.run_in_each_committed): record a run and its PENDING
/// institutions; returns the run id.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn fleet_run_start(
    statement: Option<&str>,
    institutions: Option<Vec<Option<pgrx::Uuid>>>,
    parameters: Option<Vec<Option<String>>>,
    lock_timeout: Option<Interval>,
    statement_timeout: Option<Interval>,
    config_filter: Option<pgrx::JsonB>,
) -> i64 {
    let started: TcResult<i64> = (|| {
        let job = Job::new(statement, parameters, lock_timeout, statement_timeout)?;
        let targets = fleet_run::targets(institutions, config_filter)?;
        fleet_run::start(&job, &targets)
    })();
    started.or_raise()
}

/// Internal (tenant.run_in_each_committed): run one PENDING institution of a
/// run; no row when it was already done or is being done by another session.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn fleet_run_step(
    run_id: Option<i64>,
    institution_id: Option<pgrx::Uuid>,
) -> TableIterator<
    'static,
    (
        name!(institution_id, pgrx::Uuid),
        name!(schema_name, Option<String>),
        name!(status, String),
        name!(row_count, Option<i64>),
        name!(result, Option<pgrx::JsonB>),
        name!(sqlstate, Option<String>),
        name!(message, Option<String>),
        name!(duration_ms, f64),
    ),
> {
    TableIterator::new(fleet_run::step(run_id, institution_id).or_raise().into_iter().map(row))
}

/// Internal (tenant.run_in_each_committed): close a run (COMPLETED when
/// nothing is PENDING) and log it as a FLEET_RUN operation; returns a summary.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn fleet_run_finish(run_id: Option<i64>) -> String {
    let description = format!("run a statement in many institutions, one commit each (run {})", run_id.unwrap_or(0));
    let (_, outcome) = oplog::record(OpKind::FleetRun, None, description, |op| fleet_run::finish(op, run_id));
    outcome.or_raise()
}

/// A view `tenant.<view_name>` over every ACTIVE institution's copy of a
/// template table, kept up to date as institutions come and go.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn create_fleet_view(template_table: Option<&str>, view_name: Option<&str>) -> String {
    fleet_report::create(template_table, view_name).or_raise()
}

/// Drop a fleet view and stop maintaining it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn drop_fleet_view(view_name: Option<&str>) -> String {
    fleet_report::drop(view_name).or_raise()
}

/// Rebuild the fleet views whose definition changed; returns how many.
/// Called by the triggers on the registry and the migrations.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn refresh_fleet_views() -> i64 {
    fleet_report::refresh_all().or_raise()
}

/// Internal (tenant.sync_reference): declare a reference source; returns its id.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn reference_declare(
    source: Option<pg_sys::Oid>,
    target_table: Option<&str>,
    key_column: Option<&str>,
    on_conflict: Option<&str>,
) -> i64 {
    reference::declare(source, target_table, key_column, on_conflict).or_raise()
}

/// Internal (tenant.sync_reference): sync one source into one institution.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn reference_sync_one(
    source_id: Option<i64>,
    schema_id: Option<pgrx::Uuid>,
) -> TableIterator<
    'static,
    (name!(inserted, i64), name!(updated, i64), name!(conflicts, i64), name!(skipped, Option<String>)),
> {
    let synced = reference::sync_one(source_id, schema_id).or_raise();
    TableIterator::once((synced.inserted, synced.updated, synced.conflicts, synced.skipped))
}

/// Internal (trigger on the registry): give a new institution every source's data.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn reference_sync_new(schema_id: Option<pgrx::Uuid>) -> i64 {
    reference::sync_new_institution(schema_id).or_raise()
}
