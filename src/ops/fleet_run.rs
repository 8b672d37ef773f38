//! Run one SQL statement in many institutions (`tenant.run_in_each` and the
//! committed, resumable `tenant.run_in_each_committed`).
//!
//! The statement is text a platform administrator wrote, but it runs against
//! objects each tenant could have changed (its triggers, functions, column
//! defaults). So it runs in each institution as that institution's own role,
//! inside a security-restricted operation (`restricted::as_role`), with the
//! institution's schema on `search_path`: it can reach only what the tenant
//! can reach, and tenant code gains no rights. Each institution runs in its
//! own subtransaction: a failure is reported in its row and never stops the
//! others (a cancel or the caller's own statement timeout still stops all).

use crate::core::db::{self, col};
use crate::core::errors::{self, TcError, TcResult};
use crate::core::restricted;
use crate::core::settings;
use crate::core::subxact;
use crate::registry::oplog::Operation;
use crate::registry::{self, Status, Tenant};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiErrorCodes};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

/// What to run, with which parameters and limits.
#[derive(Debug, Clone)]
pub struct Job {
    pub statement: String,
    pub parameters: Vec<Option<String>>,
    pub lock_timeout_ms: i32,
    /// 0: no limit of its own (the caller's statement_timeout still applies).
    pub statement_timeout_ms: i32,
}

/// An institution chosen for a run: its live registry row, if it has one.
#[derive(Debug, Clone)]
pub struct Target {
    pub institution_id: uuid::Uuid,
    pub tenant: Option<Tenant>,
}

/// The result row of one institution.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub institution_id: uuid::Uuid,
    pub schema_name: Option<String>,
    pub status: &'static str,
    pub row_count: Option<i64>,
    pub result: Option<Value>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub duration_ms: f64,
}

impl Job {
    /// Validate the caller's arguments; `lock_timeout`/`statement_timeout`
    /// are intervals (NULL: tenant_control.lock_timeout, and no limit).
    pub fn new(
        statement: Option<&str>,
        parameters: Option<Vec<Option<String>>>,
        lock_timeout: Option<pgrx::datum::Interval>,
        statement_timeout: Option<pgrx::datum::Interval>,
    ) -> TcResult<Self> {
        let statement = statement.ok_or_else(|| TcError::null_argument("statement"))?;
        if statement.trim().is_empty() {
            return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the statement is empty"));
        }
        Ok(Job {
            statement: statement.to_string(),
            parameters: parameters.unwrap_or_default(),
            lock_timeout_ms: match lock_timeout {
                Some(interval) => milliseconds(interval, "lock_timeout")?,
                None => settings::lock_timeout_ms(),
            },
            statement_timeout_ms: match statement_timeout {
                Some(interval) => milliseconds(interval, "statement_timeout")?,
                None => 0,
            },
        })
    }
}

/// A positive interval as whole milliseconds (at most about 24 days).
fn milliseconds(interval: pgrx::datum::Interval, argument: &str) -> TcResult<i32> {
    let ms: f64 = db::scalar("SELECT pg_catalog.date_part('epoch', $1::interval) * 1000", &[interval.into()])?;
    if !(1.0..=i32::MAX as f64).contains(&ms) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} must be between 1 millisecond and 24 days, not {ms} ms"),
        ));
    }
    Ok(ms.round() as i32)
}

/// The institutions a run goes to. NULL `institutions`: every ACTIVE
/// institution (whose config contains `config_filter`, if given), by schema
/// name. A list: those institutions in the order given, each once; one
/// without a live schema comes back without a tenant (reported SKIPPED).
pub fn targets(
    institutions: Option<Vec<Option<pgrx::Uuid>>>,
    config_filter: Option<pgrx::JsonB>,
) -> TcResult<Vec<Target>> {
    let filter = config_filter.map(|f| f.0);
    if let Some(filter) = &filter {
        if !filter.is_object() {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "config_filter must be a json object, such as '{\"plan\": \"pro\"}'",
            ));
        }
    }
    match institutions {
        None => db::rows(
            "SELECT t.id, t.institution_id, t.schema_name, t.owner_role, t.status, t.version
               FROM tenant.tenant_schemas t
              WHERE t.status OPERATOR(pg_catalog.=) 'ACTIVE'
                AND ($1::jsonb IS NULL OR t.config OPERATOR(pg_catalog.@>) $1::jsonb)
              ORDER BY t.schema_name",
            &[filter.map(pgrx::JsonB).into()],
            |row| {
                let tenant = registry::tenant_of(row)?;
                Ok(Target { institution_id: tenant.institution_id.unwrap_or_default(), tenant: Some(tenant) })
            },
        ),
        Some(list) => {
            if list.iter().any(Option::is_none) {
                return Err(TcError::new(
                    PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    "the institutions array must not contain NULL",
                ));
            }
            let ids: Vec<pgrx::Uuid> = list.into_iter().flatten().collect();
            db::rows(
                "SELECT w.wanted, t.id, t.institution_id, t.schema_name, t.owner_role, t.status, t.version
                   FROM (SELECT u.wanted, pg_catalog.min(u.n) AS n
                           FROM pg_catalog.unnest($1::uuid[]) WITH ORDINALITY AS u(wanted, n) GROUP BY u.wanted) w
                   LEFT JOIN tenant.tenant_schemas t
                          ON t.institution_id OPERATOR(pg_catalog.=) w.wanted
                         AND t.status OPERATOR(pg_catalog.<>) 'DROPPED'
                  ORDER BY w.n",
                &[ids.into()],
                |row| {
                    let wanted = col::<pgrx::Uuid>(row, "wanted")?.map(db::to_uuid).unwrap_or_default();
                    let tenant = match col::<pgrx::Uuid>(row, "id")? {
                        Some(_) => Some(registry::tenant_of(row)?),
                        None => None,
                    };
                    Ok(Target { institution_id: wanted, tenant })
                },
            )
        }
    }
}

/// The `search_path` a statement runs with: the institution's schema, then
/// public (what `set_context` gives the application), then the session's
/// temporary schema last so that it shadows nothing. pg_catalog is not
/// listed, so PostgreSQL searches it first: built-ins mean what a DBA expects.
fn search_path(tenant: &Tenant) -> String {
    format!("{}, public, pg_temp", tenant.schema.quoted())
}

/// Run the job in one institution (or, for a dry run, check that it would
/// parse there). Never fails: an error becomes the ERROR row, with every
/// change the statement made in that institution rolled back.
pub fn run_one(target: &Target, job: &Job, dry_run: bool) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        institution_id: target.institution_id,
        schema_name: target.tenant.as_ref().map(|t| t.schema.as_str().to_string()),
        status: "SKIPPED",
        row_count: None,
        result: None,
        sqlstate: None,
        message: None,
        duration_ms: 0.0,
    };
    let Some(tenant) = &target.tenant else {
        outcome.message = Some(format!("institution {} has no institution schema", target.institution_id));
        return outcome;
    };
    TIMED_OUT.store(false, Ordering::SeqCst);
    let done = subxact::atomically(|| in_institution(tenant, job, dry_run));
    outcome.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match done {
        Ok(Ran::Skipped(why)) => outcome.message = Some(why),
        Ok(Ran::WouldRun) => {
            outcome.status = "WOULD_RUN";
            outcome.message =
                Some(format!("would run as role \"{}\" with search_path {}", tenant.role, search_path(tenant)));
        }
        Ok(Ran::Done { row_count, rows }) => {
            outcome.status = "SUCCESS";
            outcome.row_count = Some(row_count);
            outcome.result = rows;
        }
        Err(error) => {
            outcome.status = "ERROR";
            if TIMED_OUT.swap(false, Ordering::SeqCst) {
                outcome.sqlstate = Some("57014".into());
                outcome.message = Some(format!(
                    "statement timeout: the statement ran longer than {} ms in schema \"{}\"",
                    job.statement_timeout_ms, tenant.schema
                ));
            } else {
                outcome.sqlstate = Some(error.sqlstate());
                outcome.message = Some(error.summary());
            }
        }
    }
    outcome
}

enum Ran {
    Skipped(String),
    WouldRun,
    Done { row_count: i64, rows: Option<Value> },
}

fn in_institution(tenant: &Tenant, job: &Job, dry_run: bool) -> TcResult<Ran> {
    // The registry row is locked (within the lock timeout) so that the
    // institution is not dropped, suspended or migrated under the statement.
    let locked = if dry_run {
        tenant.clone()
    } else {
        db::with_setting("lock_timeout", &format!("{}ms", job.lock_timeout_ms), || {
            registry::lock(Some(db::to_pg_uuid(tenant.id)))
        })?
    };
    if locked.status != Status::Active {
        return Ok(Ran::Skipped(format!(
            "institution {} is {}: statements run in ACTIVE institutions only",
            tenant.institution_id.map(|i| i.to_string()).unwrap_or_default(),
            locked.status.as_str()
        )));
    }
    restricted::as_role(locked.role.as_str(), &search_path(&locked), || {
        // Inside as_role: these settings end with it.
        db::run(
            "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
            &[format!("{}ms", job.lock_timeout_ms).into()],
        )?;
        if dry_run {
            prepare(job)?;
            return Ok(Ran::WouldRun);
        }
        let (row_count, rows) = with_timer(job.statement_timeout_ms, || execute(job))?;
        Ok(Ran::Done { row_count, rows })
    })
}

fn parameter_args(job: &Job) -> Vec<pgrx::datum::DatumWithOid<'static>> {
    job.parameters.iter().map(|p| p.clone().into()).collect()
}

/// Parse and analyse the statement as the tenant would run it (names are
/// resolved in its schema), without running it.
fn prepare(job: &Job) -> TcResult<()> {
    let types = vec![PgOid::BuiltIn(PgBuiltInOids::TEXTOID); job.parameters.len()];
    errors::caught(|| {
        Spi::connect(|client| client.prepare(job.statement.as_str(), &types).map(|_| ())).map_err(spi_error)
    })
}

/// Run the statement; the rows it returns (if it returns rows) as a json array.
fn execute(job: &Job) -> TcResult<(i64, Option<Value>)> {
    let args = parameter_args(job);
    Spi::connect_mut(|client| {
        let table = client.update(job.statement.as_str(), None, &args).map_err(spi_error)?;
        let count = table.len() as i64;
        // SAFETY: SPI_tuptable is the result of the statement just run, valid
        // until this SPI connection ends.
        let rows = unsafe { returned_rows() }?;
        Ok((count, rows))
    })
}

/// The rows in SPI_tuptable as json objects (row_to_json), or None when the
/// statement returned no result set (DML without RETURNING, DDL). The output
/// functions of the columns' types run here, still as the tenant's role.
unsafe fn returned_rows() -> TcResult<Option<Value>> {
    let table = pg_sys::SPI_tuptable;
    if table.is_null() {
        return Ok(None);
    }
    let desc = pg_sys::BlessTupleDesc((*table).tupdesc);
    let mut rows = Vec::with_capacity((*table).numvals as usize);
    for i in 0..(*table).numvals as usize {
        let tuple = *(*table).vals.add(i);
        let record = pg_sys::heap_copy_tuple_as_datum(tuple, desc);
        let json = pg_sys::DirectFunctionCall1Coll(Some(row_to_json), pg_sys::InvalidOid, record);
        let text = String::from_datum(json, false).unwrap_or_default();
        rows.push(serde_json::from_str(&text).map_err(|e| {
            TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("row_to_json gave invalid json: {e}"))
        })?);
    }
    Ok(Some(Value::Array(rows)))
}

fn spi_error(error: SpiError) -> TcError {
    match error {
        SpiError::SpiError(SpiErrorCodes::Transaction) => TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            "the statement must not contain COMMIT, ROLLBACK or other transaction control",
        )
        .hint("tenant.run_in_each_committed commits after each institution for you."),
        other => TcError::from(other),
    }
}

// ---- the per-institution statement timeout ----
//
// statement_timeout is armed once per top-level statement, so setting it
// inside a function has no effect on the statement already running. A timer
// of our own (a user timeout of PostgreSQL's timeout module) raises a query
// cancel when it fires; `run_one` knows from TIMED_OUT that the cancel was
// this institution's timeout, reports it, and goes on, while a cancel from
// anywhere else still stops the whole run.

#[allow(non_camel_case_types)]
type TimeoutId = i32;
/// USER_TIMEOUT in PostgreSQL 15's utils/timeout.h.
const USER_TIMEOUT: TimeoutId = 12;

extern "C-unwind" {
    /// The SQL function row_to_json(record), called directly (pgrx wraps its own binding).
    fn row_to_json(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn RegisterTimeout(id: TimeoutId, handler: Option<unsafe extern "C-unwind" fn()>) -> TimeoutId;
    fn enable_timeout_after(id: TimeoutId, delay_ms: i32);
    fn disable_timeout(id: TimeoutId, keep_indicator: bool);
}

static TIMER: AtomicI32 = AtomicI32::new(-1);
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

/// Runs inside PostgreSQL's SIGALRM handler (which sets the latch itself):
/// only plain flag writes here, nothing that calls into PostgreSQL through
/// pgrx's FFI guard, which is not async-signal-safe.
unsafe extern "C-unwind" fn timer_fired() {
    TIMED_OUT.store(true, Ordering::SeqCst);
    pg_sys::QueryCancelPending = 1;
    pg_sys::InterruptPending = 1;
}

fn timer() -> TimeoutId {
    let id = TIMER.load(Ordering::SeqCst);
    if id >= 0 {
        return id;
    }
    // SAFETY: registering a handler once per backend, as extensions do.
    let id = unsafe { RegisterTimeout(USER_TIMEOUT, Some(timer_fired)) };
    TIMER.store(id, Ordering::SeqCst);
    id
}

fn with_timer<T>(limit_ms: i32, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    if limit_ms <= 0 {
        return work();
    }
    let id = timer();
    // SAFETY: the timer is disarmed whatever the work does (errors are caught).
    unsafe { enable_timeout_after(id, limit_ms) };
    let outcome = errors::caught(work);
    unsafe { disable_timeout(id, false) };
    match outcome {
        // Our cancel: reported as this institution's error (run_one reads
        // TIMED_OUT), under another code so that the subtransaction does not
        // take it for a cancel of the whole run.
        Err(error) if error.code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED && TIMED_OUT.load(Ordering::SeqCst) => {
            Err(TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "statement timeout of the institution"))
        }
        other => {
            if TIMED_OUT.swap(false, Ordering::SeqCst) {
                // It fired after the work had ended (done or failed otherwise):
                // the cancel it requested is ours and must not stop the run.
                unsafe { pg_sys::QueryCancelPending = 0 };
            }
            other
        }
    }
}

// ---- the run as a whole ----

/// `tenant.run_in_each`: every target in turn, in one transaction; the
/// operation log gets one row for the run, with the counts and the failures.
pub fn run_all(op: &mut Operation, job: &Job, targets: &[Target], dry_run: bool) -> TcResult<Vec<Outcome>> {
    describe(op, job, dry_run);
    let outcomes: Vec<Outcome> = targets.iter().map(|target| run_one(target, job, dry_run)).collect();
    summarize(op, &outcomes);
    Ok(outcomes)
}

fn describe(op: &mut Operation, job: &Job, dry_run: bool) {
    op.note("statement", job.statement.as_str());
    // The values may be secrets: the log keeps how many there were.
    op.note("parameters", job.parameters.len());
    op.note("dry_run", dry_run);
    op.note("lock_timeout_ms", job.lock_timeout_ms);
    op.note("statement_timeout_ms", job.statement_timeout_ms);
}

fn summarize(op: &mut Operation, outcomes: &[Outcome]) {
    for status in ["SUCCESS", "ERROR", "SKIPPED", "WOULD_RUN"] {
        op.note(&status.to_ascii_lowercase(), outcomes.iter().filter(|o| o.status == status).count());
    }
    /// An institution a run failed in, as the log's `errors` list holds it.
    #[derive(serde::Serialize)]
    struct Failed<'a> {
        institution_id: String,
        schema_name: &'a Option<String>,
        sqlstate: &'a Option<String>,
    }
    let failures: Vec<Failed> = outcomes
        .iter()
        .filter(|o| o.status == "ERROR")
        .take(100)
        .map(|o| Failed {
            institution_id: o.institution_id.to_string(),
            schema_name: &o.schema_name,
            sqlstate: &o.sqlstate,
        })
        .collect();
    op.note_shape("errors", &failures);
}

/// `tenant.run_in_each_committed` begins here: the run and one PENDING item
/// per target are recorded (and committed by the procedure), so that a run
/// killed half-way can be resumed from what is still PENDING.
pub fn start(job: &Job, targets: &[Target]) -> TcResult<i64> {
    let run_id: i64 = db::scalar(
        "INSERT INTO tenant.fleet_runs (statement, parameters, lock_timeout_ms, statement_timeout_ms, requested_by)
         VALUES ($1, $2, $3, $4, session_user) RETURNING id",
        &[
            job.statement.as_str().into(),
            job.parameters.clone().into(),
            job.lock_timeout_ms.into(),
            job.statement_timeout_ms.into(),
        ],
    )?;
    let ids: Vec<pgrx::Uuid> = targets.iter().map(|t| db::to_pg_uuid(t.institution_id)).collect();
    let schemas: Vec<Option<String>> =
        targets.iter().map(|t| t.tenant.as_ref().map(|t| t.schema.as_str().to_string())).collect();
    db::run(
        "INSERT INTO tenant.fleet_run_items (run_id, position, institution_id, schema_name)
         SELECT $1, u.n, u.institution_id, u.schema_name
           FROM ROWS FROM (pg_catalog.unnest($2::uuid[]), pg_catalog.unnest($3::text[])) WITH ORDINALITY
                AS u(institution_id, schema_name, n)",
        &[run_id.into(), ids.into(), schemas.into()],
    )?;
    Ok(run_id)
}

/// One institution of a committed run. The item row is locked first (SKIP
/// LOCKED): two sessions resuming the same run never run an institution
/// twice, and the statement's effects commit together with its DONE row.
/// None: the item was already done, or is being done by another session.
pub fn step(run_id: Option<i64>, institution_id: Option<pgrx::Uuid>) -> TcResult<Option<Outcome>> {
    let run_id = run_id.ok_or_else(|| TcError::null_argument("run_id"))?;
    let institution_id = institution_id.ok_or_else(|| TcError::null_argument("institution_id"))?;
    let job = run_job(run_id)?;
    let pending: Option<i64> = db::value(
        "SELECT i.position::bigint FROM tenant.fleet_run_items i
          WHERE i.run_id = $1 AND i.institution_id = $2 AND i.status = 'PENDING'
          FOR UPDATE SKIP LOCKED",
        &[run_id.into(), institution_id.into()],
    )?;
    if pending.is_none() {
        return Ok(None);
    }
    let target = targets(Some(vec![Some(institution_id)]), None)?
        .into_iter()
        .next()
        .ok_or_else(|| TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "no target"))?;
    let outcome = run_one(&target, &job, false);
    db::run(
        "UPDATE tenant.fleet_run_items
            SET status = $3, schema_name = $4, row_count = $5, result = $6, sqlstate = $7, message = $8,
                duration_ms = $9, finished_at = pg_catalog.clock_timestamp()
          WHERE run_id = $1 AND institution_id = $2",
        &[
            run_id.into(),
            institution_id.into(),
            outcome.status.into(),
            outcome.schema_name.clone().into(),
            outcome.row_count.into(),
            outcome.result.clone().map(pgrx::JsonB).into(),
            outcome.sqlstate.clone().into(),
            outcome.message.clone().into(),
            outcome.duration_ms.into(),
        ],
    )?;
    Ok(Some(outcome))
}

fn run_job(run_id: i64) -> TcResult<Job> {
    let found = db::rows(
        "SELECT statement, parameters, lock_timeout_ms, statement_timeout_ms FROM tenant.fleet_runs WHERE id = $1",
        &[run_id.into()],
        |row| {
            Ok(Job {
                statement: col(row, "statement")?.unwrap_or_default(),
                parameters: col(row, "parameters")?.unwrap_or_default(),
                lock_timeout_ms: col(row, "lock_timeout_ms")?.unwrap_or(0),
                statement_timeout_ms: col(row, "statement_timeout_ms")?.unwrap_or(0),
            })
        },
    )?;
    found.into_iter().next().ok_or_else(|| {
        TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("no fleet run {run_id} in tenant.fleet_runs"))
            .hint("See tenant.fleet_run_progress for the runs.")
    })
}

/// The end of a committed run (or of its resumption): COMPLETED once no
/// institution is PENDING, and one row in the operation log with the counts.
pub fn finish(op: &mut Operation, run_id: Option<i64>) -> TcResult<String> {
    let run_id = run_id.ok_or_else(|| TcError::null_argument("run_id"))?;
    let job = run_job(run_id)?;
    describe(op, &job, false);
    op.note("run_id", run_id);
    let counts = db::rows(
        "SELECT i.status, pg_catalog.count(*)::bigint AS n FROM tenant.fleet_run_items i
          WHERE i.run_id = $1 GROUP BY i.status",
        &[run_id.into()],
        |row| Ok((col::<String>(row, "status")?.unwrap_or_default(), col::<i64>(row, "n")?.unwrap_or(0))),
    )?;
    let count = |status: &str| counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
    for status in ["SUCCESS", "ERROR", "SKIPPED", "PENDING"] {
        op.note(&status.to_ascii_lowercase(), count(status));
    }
    if count("PENDING") == 0 {
        db::run(
            "UPDATE tenant.fleet_runs SET status = 'COMPLETED', completed_at = pg_catalog.clock_timestamp()
              WHERE id = $1 AND status = 'RUNNING'",
            &[run_id.into()],
        )?;
    }
    Ok(format!(
        "fleet run {run_id}: {} succeeded, {} failed, {} skipped, {} still pending",
        count("SUCCESS"),
        count("ERROR"),
        count("SKIPPED"),
        count("PENDING")
    ))
}
