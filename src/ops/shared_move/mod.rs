//! Moves of one institution between shared tables and its own schema
//! (`tenant.move_to_schema`, `tenant.move_to_shared`), one step per
//! transaction: the procedures in sql/finalize.sql commit after each step.
//!
//! A move's state is durable (`tenant.shared_moves`, one row per table in
//! `tenant.shared_move_tables`), so a move stopped by its time limit, an
//! error or a crash goes on at the next call where it stopped. The steps:
//! 1. `begin`: check the plan (plan.rs) before anything moves; for a move to
//!    a schema create it from the template if the institution has none
//!    (registry row and schema in one transaction); close the institution
//!    for writes (MAINTENANCE, and read-only transactions in its context).
//! 2. `copy_batch`, once per batch: the next `batch_size` rows of the first
//!    table not yet copied, in primary-key order from the last key copied.
//! 3. `switch`: counts and content hashes of every table on both sides; if
//!    they differ, the copies are discarded and copied again; if they
//!    match, in the same transaction, readers are held off (see
//!    `locks::shared_move`), the source rows are deleted (to a schema) or the
//!    schema is retired into a backup (to the shared tables), sequences are
//!    advanced past the moved keys, and the move is marked finished.
//!
//! Rows are written into an institution's schema as its role, in a
//! security-restricted operation: its triggers, defaults and checks never
//! run with more rights. Reading either side and writing the shared tables
//! (the platform's own) run as the extension's owner; no tenant code runs
//! there (plan.rs refuses types that belong to an institution).

pub mod plan;
mod rows;
mod switch;

use crate::core::audit;
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::restricted::internal_ddl;
use crate::ops::lifecycle;
use crate::registry::oplog::{self, OpKind};
use crate::registry::{self, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::quote_qualified_identifier;
use plan::TablePlan;
use rows::{copy_batch, side_count};

/// Moves that find a difference after copying start again this many times
/// at most, then stop with an error (something keeps writing).
const MAX_VERIFY_ATTEMPTS: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToSchema,
    ToShared,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToSchema => "TO_SCHEMA",
            Direction::ToShared => "TO_SHARED",
        }
    }

    fn parse(text: Option<&str>) -> TcResult<Self> {
        match text {
            Some("TO_SCHEMA") => Ok(Direction::ToSchema),
            Some("TO_SHARED") => Ok(Direction::ToShared),
            _ => Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "direction must be TO_SCHEMA or TO_SHARED",
            )),
        }
    }

    /// The action of its events in tenant.audit_events.
    fn audit_action(self) -> &'static str {
        match self {
            Direction::ToSchema => "MOVE_TO_SCHEMA",
            Direction::ToShared => "MOVE_TO_SHARED",
        }
    }

    fn procedure(self) -> &'static str {
        match self {
            Direction::ToSchema => "tenant.move_to_schema",
            Direction::ToShared => "tenant.move_to_shared",
        }
    }
}

/// A move as stored.
struct Move {
    institution: uuid::Uuid,
    schema_id: uuid::Uuid,
    direction: Direction,
    plan: Vec<TablePlan>,
    finished: bool,
    attempts: i32,
}

/// What one step did: the procedure prints `message` as a NOTICE and stops
/// when `finished`.
pub struct Step {
    pub finished: bool,
    /// The move was given up (another operation changed the institution
    /// meanwhile): the procedure raises `message` after committing.
    pub abandoned: bool,
    pub message: String,
}

impl Step {
    fn going(message: String) -> Self {
        Step { finished: false, abandoned: false, message }
    }
}

/// One step of a move. `first`: the first step of a CALL, which starts the
/// move or reports that it resumes, and copies nothing.
pub fn step(
    institution: Option<pgrx::Uuid>,
    direction: Option<&str>,
    batch_size: Option<i32>,
    first: Option<bool>,
) -> TcResult<Step> {
    let institution = db::to_uuid(institution.ok_or_else(|| TcError::null_argument("institution_id"))?);
    let direction = Direction::parse(direction)?;
    let batch_size = batch_size.ok_or_else(|| TcError::null_argument("batch_size"))?;
    if batch_size < 1 {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch_size must be at least 1, not {batch_size}"),
        ));
    }
    let first = first.unwrap_or(false);
    let outcome =
        refuse_transaction_block(direction).and_then(|()| run_step(institution, direction, batch_size, first));
    audit_step(institution, direction, first, &outcome);
    outcome
}

/// The audit trail gets a move's start or resumption, its end (finished or
/// given up) and every failure, refusals before anything moves included;
/// not each batch in between (the progress view shows those).
fn audit_step(institution: uuid::Uuid, direction: Direction, first: bool, outcome: &TcResult<Step>) {
    let (description, failure) = match outcome {
        Err(error) => (String::new(), Some((error.sqlstate(), error.summary()))),
        Ok(step) if first || step.finished || step.abandoned => (step.message.clone(), None),
        Ok(_) => return,
    };
    audit::note_operation(audit::OperationEvent {
        kind: direction.audit_action(),
        schema_id: None,
        institution_id: Some(institution),
        description: &description,
        failure,
    });
}

fn run_step(institution: uuid::Uuid, direction: Direction, batch_size: i32, first: bool) -> TcResult<Step> {
    oplog::with_lock_timeout(|| {
        // One step of one institution at a time, serialized with its creation.
        locks::institution(&institution)?;
        match load(institution)? {
            Some(running) if !running.finished && running.direction != direction => Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("institution {institution} is being moved the other way ({})", running.direction.as_str()),
            )
            .hint(format!("CALL {}(...) to finish that move first.", running.direction.procedure()))),
            Some(running) if !running.finished => {
                if first {
                    resume(&running)
                } else {
                    next(&running, batch_size)
                }
            }
            _ => begin(institution, direction),
        }
    })
}

/// A procedure that commits cannot run inside a transaction block: say so
/// before anything happens, rather than fail at its first COMMIT.
fn refuse_transaction_block(direction: Direction) -> TcResult<()> {
    // SAFETY: a plain query of the transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("{} cannot run inside a transaction block", direction.procedure()),
        )
        .detail("It commits after every batch.")
        .hint("CALL it on its own, outside BEGIN ... COMMIT."));
    }
    Ok(())
}

fn load(institution: uuid::Uuid) -> TcResult<Option<Move>> {
    let found = db::rows(
        "SELECT schema_id, direction, plan, finished_at IS NOT NULL AS finished, verify_attempts
           FROM tenant.shared_moves WHERE institution_id = $1 FOR UPDATE",
        &[db::to_pg_uuid(institution).into()],
        |row| {
            let plan = col::<pgrx::JsonB>(row, "plan")?.map(|j| j.0).unwrap_or_default();
            Ok(Move {
                institution,
                schema_id: db::to_uuid(col::<pgrx::Uuid>(row, "schema_id")?.unwrap_or(pgrx::Uuid::from_bytes([0; 16]))),
                direction: Direction::parse(col::<String>(row, "direction")?.as_deref())?,
                plan: serde_json::from_value(plan).map_err(|e| {
                    TcError::new(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("stored move plan unreadable: {e}"))
                })?,
                finished: col::<bool>(row, "finished")?.unwrap_or(false),
                attempts: col::<i32>(row, "verify_attempts")?.unwrap_or(0),
            })
        },
    )?;
    Ok(found.into_iter().next())
}

/// The institution's registry row that is not DROPPED, if any.
fn live_tenant(institution: uuid::Uuid) -> TcResult<Option<Tenant>> {
    let found = db::rows(
        "SELECT id, institution_id, schema_name, owner_role, status, version FROM tenant.tenant_schemas
          WHERE institution_id = $1 AND status <> 'DROPPED' FOR NO KEY UPDATE",
        &[db::to_pg_uuid(institution).into()],
        registry::tenant_of,
    )?;
    Ok(found.into_iter().next())
}

fn require_active(tenant: &Tenant) -> TcResult<()> {
    if tenant.status != Status::Active {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("institution schema \"{}\" is {}", tenant.schema, tenant.status.as_str()),
        )
        .hint("Only an ACTIVE institution can be moved."));
    }
    Ok(())
}

/// Check everything, then set the move up: nothing has moved when this
/// fails, and no schema is left without its registry row.
fn begin(institution: uuid::Uuid, direction: Direction) -> TcResult<Step> {
    let (tenant, plans) = match direction {
        Direction::ToSchema => begin_to_schema(institution)?,
        Direction::ToShared => begin_to_shared(institution)?,
    };
    registry::set_status(&tenant, Status::Maintenance)?;
    let mut total = 0;
    db::run("DELETE FROM tenant.shared_moves WHERE institution_id = $1", &[db::to_pg_uuid(institution).into()])?;
    db::run(
        "INSERT INTO tenant.shared_moves (institution_id, schema_id, direction, plan) VALUES ($1, $2, $3, $4)",
        &[
            db::to_pg_uuid(institution).into(),
            db::to_pg_uuid(tenant.id).into(),
            direction.as_str().into(),
            pgrx::JsonB(serde_json::to_value(&plans).unwrap_or_default()).into(),
        ],
    )?;
    for (position, plan) in plans.iter().enumerate() {
        let rows = side_count(plan, direction, true, institution, &tenant)?;
        total += rows;
        db::run(
            "INSERT INTO tenant.shared_move_tables (institution_id, position, table_name, shared_table, rows_total)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                db::to_pg_uuid(institution).into(),
                (position as i32).into(),
                plan.table.as_str().into(),
                plan.shared_label().into(),
                rows.into(),
            ],
        )?;
    }
    let whither = match direction {
        Direction::ToSchema => format!("from the shared tables to schema \"{}\"", tenant.schema),
        Direction::ToShared => format!("from schema \"{}\" to the shared tables", tenant.schema),
    };
    Ok(Step::going(format!("moving institution {institution} {whither}: {total} row(s) in {} table(s)", plans.len())))
}

fn begin_to_schema(institution: uuid::Uuid) -> TcResult<(Tenant, Vec<TablePlan>)> {
    let tenant = match live_tenant(institution)? {
        Some(tenant) => {
            require_active(&tenant)?;
            tenant
        }
        None => {
            // Refuse a mismatch before a schema exists, then create it.
            plan::make("tenant_template")?;
            let description = format!("create schema for institution {institution} (move from shared tables)");
            let (_, created) = oplog::record(OpKind::Create, None, description, |op| {
                lifecycle::create(op, Some(db::to_pg_uuid(institution)), None)
            });
            registry::lock(Some(db::to_pg_uuid(created?.schema_id)))?
        }
    };
    let plans = plan::make(tenant.schema.as_str())?;
    for plan in &plans {
        let rows = side_count(plan, Direction::ToSchema, false, institution, &tenant)?;
        if rows > 0 {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table \"{}.{}\" already has {rows} row(s)", tenant.schema, plan.table),
            )
            .detail("A move into a schema fills empty tables only."));
        }
    }
    // Nobody reaches the schema until the move is done; reads go to the shared tables.
    internal_ddl(|| {
        db::run(&format!("REVOKE ALL ON SCHEMA {} FROM {}", tenant.schema.quoted(), tenant.role.quoted()), &[])
    })?;
    Ok((tenant, plans))
}

fn begin_to_shared(institution: uuid::Uuid) -> TcResult<(Tenant, Vec<TablePlan>)> {
    let tenant = live_tenant(institution)?.ok_or_else(|| {
        TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("institution {institution} has no schema"))
    })?;
    require_active(&tenant)?;
    let plans = plan::make(tenant.schema.as_str())?;
    refuse_rows_left_behind(&tenant, &plans)?;
    for plan in &plans {
        // The shared rows of the institution are the move's copies, and
        // nothing else: a verification that differs deletes them all.
        let rows = side_count(plan, Direction::ToShared, false, institution, &tenant)?;
        if rows > 0 {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "shared table \"{}\" already has {rows} row(s) of institution {institution}",
                    plan.shared_label()
                ),
            )
            .detail("A move to the shared tables fills them with the schema's rows only."));
        }
        refuse_key_collisions(&tenant, plan)?;
    }
    // The role keeps USAGE on its schema: readers read it until the switch.
    Ok((tenant, plans))
}

/// Rows in a table of the schema that no shared table receives would be
/// left in the backup only.
fn refuse_rows_left_behind(tenant: &Tenant, plans: &[TablePlan]) -> TcResult<()> {
    let covered: Vec<String> = plans.iter().map(|p| p.table.clone()).collect();
    let tables: Vec<String> = db::rows(
        "SELECT c.relname::text FROM pg_catalog.pg_class c
          WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace($1)
            AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname::text <> ALL ($2)",
        &[tenant.schema.quoted().into(), covered.into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )?;
    for table in tables {
        let table_sql = quote_qualified_identifier(tenant.schema.as_str(), &table);
        let holds_rows: bool = db::scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table_sql})"), &[])?;
        if holds_rows {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table \"{}.{table}\" has rows and no shared table to receive them", tenant.schema),
            )
            .hint("Isolate a shared table for it (tenant.enable_shared_table_isolation), or map one with tenant.set_column_mapping."));
        }
    }
    Ok(())
}

/// A key of the schema's rows that the shared table already holds (another
/// institution's row) would stop the copy halfway: refuse it now.
fn refuse_key_collisions(tenant: &Tenant, plan: &TablePlan) -> TcResult<()> {
    let ours = plan.key.iter().map(|&i| format!("o.{}", pgrx::spi::quote_identifier(&plan.columns[i].0)));
    let theirs = plan.key.iter().map(|&i| format!("x.{}", pgrx::spi::quote_identifier(&plan.columns[i].1)));
    let clashes: i64 = db::scalar(
        &format!(
            "SELECT pg_catalog.count(*) FROM {} o WHERE EXISTS (SELECT 1 FROM {} x WHERE ({}) OPERATOR(pg_catalog.=) ({}))",
            quote_qualified_identifier(tenant.schema.as_str(), &plan.table),
            plan.shared(),
            theirs.collect::<Vec<_>>().join(", "),
            ours.collect::<Vec<_>>().join(", ")
        ),
        &[],
    )?;
    if clashes > 0 {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            format!(
                "{clashes} row(s) of \"{}.{}\" have a primary key shared table \"{}\" already holds",
                tenant.schema,
                plan.table,
                plan.shared_label()
            ),
        )
        .detail("Keys must be unique across the institutions of a shared table."));
    }
    Ok(())
}

fn resume(running: &Move) -> TcResult<Step> {
    db::run(
        "UPDATE tenant.shared_moves SET calls = calls + 1, updated_at = pg_catalog.now() WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    let (tables, copied, rows, total): (i64, i64, i64, i64) = db::rows(
        "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE copied),
                COALESCE(pg_catalog.sum(rows_copied), 0)::bigint, COALESCE(pg_catalog.sum(rows_total), 0)::bigint
           FROM tenant.shared_move_tables WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
        |row| {
            Ok((row.get(1)?.unwrap_or(0), row.get(2)?.unwrap_or(0), row.get(3)?.unwrap_or(0), row.get(4)?.unwrap_or(0)))
        },
    )?
    .into_iter()
    .next()
    .unwrap_or_default();
    Ok(Step::going(format!(
        "resuming the move of institution {}: {copied} of {tables} table(s) copied, {rows} of {total} row(s)",
        running.institution
    )))
}

/// The next batch, or the switch once every table is copied.
fn next(running: &Move, batch_size: i32) -> TcResult<Step> {
    let tenant = registry::lock(Some(db::to_pg_uuid(running.schema_id)))?;
    if tenant.status != Status::Maintenance {
        return switch::abandon(running, &tenant);
    }
    let pending = db::rows(
        "SELECT position, last_key, rows_copied, rows_total FROM tenant.shared_move_tables
          WHERE institution_id = $1 AND NOT copied ORDER BY position LIMIT 1",
        &[db::to_pg_uuid(running.institution).into()],
        |row| {
            Ok((
                col::<i32>(row, "position")?.unwrap_or(0),
                col::<Vec<String>>(row, "last_key")?,
                col::<i64>(row, "rows_copied")?.unwrap_or(0),
                col::<i64>(row, "rows_total")?.unwrap_or(0),
            ))
        },
    )?;
    let Some((position, last_key, done, total)) = pending.into_iter().next() else {
        return switch::switch(running, &tenant);
    };
    let plan = running.plan.get(position as usize).ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("move state names table {position} beyond its plan"),
        )
    })?;
    let (copied, new_key) = copy_batch(running, &tenant, plan, last_key, batch_size)?;
    db::run(
        "UPDATE tenant.shared_move_tables
            SET rows_copied = rows_copied + $3, last_key = COALESCE($4, last_key), copied = $3 < $5
          WHERE institution_id = $1 AND position = $2",
        &[
            db::to_pg_uuid(running.institution).into(),
            position.into(),
            copied.into(),
            new_key.into(),
            i64::from(batch_size).into(),
        ],
    )?;
    db::run(
        "UPDATE tenant.shared_moves SET batches = batches + 1, updated_at = pg_catalog.now() WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    let (shared, own) = (plan.shared_label(), format!("{}.{}", tenant.schema, plan.table));
    let (from, to) = if running.direction == Direction::ToSchema { (shared, own) } else { (own, shared) };
    Ok(Step::going(format!("{from} -> {to}: {} of {total} row(s)", done + copied)))
}
