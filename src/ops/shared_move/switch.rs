//! The last step of a move: verification, then the switch of sides in the
//! same transaction; or, on a difference, a fresh start of the copy.

use super::plan::TablePlan;
use super::rows::{count_and_hash, into_schema, rows_of, table_of};
use super::{Direction, Move, Step, MAX_VERIFY_ATTEMPTS};
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::restricted::internal_ddl;
use crate::ops::lifecycle;
use crate::registry::oplog::{self, OpKind};
use crate::registry::{self, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// Verify every table, then finish the move in the same transaction; or,
/// on a difference, discard the copies so that the next steps copy again.
pub(super) fn switch(running: &Move, tenant: &Tenant) -> TcResult<Step> {
    let to_schema = running.direction == Direction::ToSchema;
    let mut verified = Vec::new();
    for plan in &running.plan {
        let source = count_and_hash(plan, to_schema, running.institution, tenant)?;
        let target = count_and_hash(plan, !to_schema, running.institution, tenant)?;
        if source != target {
            return start_again(running, tenant, plan, source.0, target.0);
        }
        verified.push(source.0);
    }
    // Readers in the institution's context hold this lock shared: none is
    // between choosing a side and reading it while the side changes.
    locks::shared_move(&running.institution, false)?;
    let moved: i64 = verified.iter().sum();
    let message = if to_schema {
        for (plan, expected) in running.plan.iter().zip(&verified).rev() {
            let deleted: i64 = db::scalar(
                &format!(
                    "WITH gone AS (DELETE FROM {} s WHERE s.{} = $1 RETURNING 1) SELECT pg_catalog.count(*) FROM gone",
                    plan.shared(),
                    quote_identifier(&plan.tenant_column)
                ),
                &[db::to_pg_uuid(running.institution).into()],
            )?;
            if deleted != *expected {
                return Err(changed_meanwhile(plan));
            }
        }
        advance_sequences(running, tenant, false)?;
        let (schema, role) = (tenant.schema.quoted(), tenant.role.quoted());
        internal_ddl(|| db::run(&format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"), &[]))?;
        registry::set_status(tenant, Status::Active)?;
        format!("institution {} moved to schema \"{}\": {moved} row(s) verified", running.institution, tenant.schema)
    } else {
        advance_sequences(running, tenant, true)?;
        let description = format!("drop schema \"{}\" after its move to the shared tables", tenant.schema);
        let (_, dropped) = oplog::record(OpKind::Drop, Some(tenant.id), description, |op| {
            op.note("reason", "move_to_shared");
            lifecycle::drop(op, Some(db::to_pg_uuid(tenant.id)))
        });
        let backup = dropped?.backup.map(|b| b.as_str().to_string()).unwrap_or_default();
        format!(
            "institution {} moved to the shared tables: {moved} row(s) verified; schema \"{}\" kept as backup \"{backup}\"",
            running.institution, tenant.schema
        )
    };
    db::run(
        "UPDATE tenant.shared_moves SET finished_at = pg_catalog.now(), updated_at = pg_catalog.now() WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    Ok(Step { finished: true, abandoned: false, message })
}

pub(super) fn changed_meanwhile(plan: &TablePlan) -> TcError {
    TcError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("rows of \"{}\" changed while the move verified them", plan.shared_label()),
    )
    .hint("CALL the procedure again: it verifies again, and copies again what differs.")
}

/// A difference after copying (a write that began before the move closed
/// the institution): empty every target table (children first) and copy
/// them all again, a bounded number of times.
pub(super) fn start_again(
    running: &Move,
    tenant: &Tenant,
    plan: &TablePlan,
    source: i64,
    target: i64,
) -> TcResult<Step> {
    if running.attempts >= MAX_VERIFY_ATTEMPTS {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "the copy of \"{}\" differs from its source after {} attempts",
                plan.shared_label(),
                running.attempts + 1
            ),
        )
        .detail(format!("source: {source} row(s), copy: {target} row(s)"))
        .hint("Something still writes the institution's rows: find it, then CALL the procedure again."));
    }
    empty_targets(running, tenant)?;
    db::run(
        "UPDATE tenant.shared_move_tables SET rows_copied = 0, last_key = NULL, copied = false WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    db::run(
        "UPDATE tenant.shared_moves SET verify_attempts = verify_attempts + 1, updated_at = pg_catalog.now()
          WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    Ok(Step::going(format!(
        "verification found {source} row(s) in the source of \"{}\" and {target} in its copy: copying every table again",
        plan.shared_label()
    )))
}

/// Delete the move's copies on the target side, children first: the
/// institution's rows in the shared tables (a move to them starts only
/// when there are none), or every row of the schema's tables (a move into
/// it starts only when they are empty), as the tenant's role.
fn empty_targets(running: &Move, tenant: &Tenant) -> TcResult<()> {
    let to_schema = running.direction == Direction::ToSchema;
    for table in running.plan.iter().rev() {
        let delete = format!("DELETE FROM {}", rows_of(table, !to_schema, tenant));
        let institution = db::to_pg_uuid(running.institution);
        if to_schema {
            into_schema(tenant, || db::run(&delete, &[institution.into()]))?;
        } else {
            db::run(&delete, &[institution.into()])?;
        }
    }
    Ok(())
}

/// Another operation changed the institution while the move ran (it is no
/// longer MAINTENANCE: dropped, suspended, activated by hand): give the move
/// up. The source was never touched; the copies are deleted (a dropped
/// schema's go with its backup), and the move's state with them.
pub(super) fn abandon(running: &Move, tenant: &Tenant) -> TcResult<Step> {
    if !(running.direction == Direction::ToSchema && tenant.status == Status::Dropped) {
        empty_targets(running, tenant)?;
    }
    db::run(
        "DELETE FROM tenant.shared_moves WHERE institution_id = $1",
        &[db::to_pg_uuid(running.institution).into()],
    )?;
    Ok(Step {
        finished: true,
        abandoned: true,
        message: format!(
            "the move of institution {} was given up: its schema \"{}\" became {} meanwhile; its rows are where they were before the move",
            running.institution,
            tenant.schema,
            tenant.status.as_str()
        ),
    })
}

/// Sequences of the target side's key columns (serial, identity) advanced
/// past the largest value moved in, so that new rows do not collide.
pub(super) fn advance_sequences(running: &Move, tenant: &Tenant, shared_side: bool) -> TcResult<()> {
    for plan in &running.plan {
        let table = table_of(plan, shared_side, tenant);
        let sequences = db::rows(
            "SELECT a.attname::text AS name, pg_catalog.pg_get_serial_sequence($1, a.attname::text) AS sequence
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                AND pg_catalog.pg_get_serial_sequence($1, a.attname::text) IS NOT NULL",
            &[table.as_str().into()],
            |row| {
                Ok((
                    col::<String>(row, "name")?.unwrap_or_default(),
                    col::<String>(row, "sequence")?.unwrap_or_default(),
                ))
            },
        )?;
        for (column, sequence) in sequences {
            db::run(
                &format!(
                    "SELECT pg_catalog.setval($1::regclass, m.top)
                       FROM (SELECT pg_catalog.max(s.{})::bigint AS top FROM {table} s) m
                      WHERE m.top > COALESCE(pg_catalog.pg_sequence_last_value($1::regclass), 0)",
                    quote_identifier(&column)
                ),
                &[sequence.as_str().into()],
            )?;
        }
    }
    Ok(())
}
