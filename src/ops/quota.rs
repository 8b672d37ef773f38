//! Storage quotas: the limit, the state a tenant's usage puts it in, and the
//! guard that stops a tenant over its limit from growing.
//!
//! A tenant with a limit is OK, in WARNING (usage at or above
//! `tenant_control.quota_warning_percent` of it) or EXCEEDED (at or above the
//! limit; left only below `tenant_control.quota_resume_percent`). Each storage
//! recount settles the state, logs a transition, and keeps a statement-level
//! trigger on every table of a tenant that is not OK. Tenants below their
//! warning level carry no trigger, so enforcement costs them nothing; the
//! trigger re-measures the tenant at most every
//! `tenant_control.quota_recheck_interval` per session, so a tenant is stopped
//! soon after it crosses its limit, and writes again soon after it is back under.

use crate::core::db;
use crate::core::errors;
use crate::core::errors::{TcError, TcResult};
use crate::core::name::TenantName;
use crate::core::restricted;
use crate::core::settings;
use crate::ops::lifecycle;
use crate::registry::oplog::{self, OpKind, Operation};
use crate::registry::{self, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The trigger on every table of a tenant that is not OK. The event trigger
/// `tenant_control_quota_ddl` refuses to let a tenant drop or disable it.
/// The guard is recognised by its function, `GUARD_FUNCTION`, never by this
/// name alone: a trigger a tenant named so is not a guard (and `tc_` names
/// are reserved for the extension in tenant schemas anyway).
pub const GUARD_TRIGGER: &str = "tc_quota_guard";
/// The guard's trigger function; no tenant may execute it, so no tenant can
/// make a trigger that calls it.
pub const GUARD_FUNCTION: &str = "tenant.quota_guard()";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Warning,
    Exceeded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Exceeded => "EXCEEDED",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "WARNING" => State::Warning,
            "EXCEEDED" => State::Exceeded,
            _ => State::Ok,
        }
    }

    /// The state `used` bytes put a tenant in, given the state it was in.
    fn of(used: i64, limit: Option<i64>, previous: State) -> State {
        let levels = (settings::quota_warning_percent(), settings::quota_resume_percent());
        State::at_levels(used, limit, previous, levels)
    }

    /// `of` with the warning and resume levels (percent of the limit) given.
    fn at_levels(used: i64, limit: Option<i64>, previous: State, (warning, resume): (i32, i32)) -> State {
        let Some(limit) = limit else {
            return State::Ok;
        };
        let level = |percent: i32| (i128::from(limit) * i128::from(percent) / 100) as i64;
        if used >= limit || (previous == State::Exceeded && used >= level(resume)) {
            State::Exceeded
        } else if used >= level(warning) {
            State::Warning
        } else {
            State::Ok
        }
    }
}

/// Set (or with NULL, remove) a tenant's storage limit, given as a size such
/// as '5 GB', '750MB' or '1048576', and settle its state at once.
pub fn set(op: &mut Operation, schema_id: Option<pgrx::Uuid>, quota: Option<&str>) -> TcResult<Option<i64>> {
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    registry::require_live(&tenant)?;
    let limit = quota.map(parse).transpose()?;
    op.note("quota", quota);
    op.note("quota_limit", limit);
    db::run(
        "UPDATE tenant.tenant_schemas SET quota_limit = $2, updated_at = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), limit.into()],
    )?;
    op.note("storage_used", recount(&tenant)?);
    Ok(limit)
}

/// Bytes in a size, by PostgreSQL's own rules (pg_size_bytes: kB, MB, GB, TB,
/// PB, 1024-based); zero, negative, unparsable and overflowing sizes are refused.
fn parse(quota: &str) -> TcResult<i64> {
    let invalid = |why: &str| {
        TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid quota \"{quota}\": {why}"))
            .hint("Give a positive size such as '5 GB', '750 MB' or '1048576' (bytes), or NULL for no limit.")
    };
    let bytes = errors::caught(|| db::scalar::<i64>("SELECT pg_catalog.pg_size_bytes($1)", &[quota.into()])).map_err(
        |error| match error.code {
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE => invalid("it is too large"),
            _ => invalid(&error.message),
        },
    )?;
    if bytes <= 0 {
        return Err(invalid("a quota must be larger than zero"));
    }
    Ok(bytes)
}

/// Recount the tenant's storage and put it in the state its usage calls
/// for; returns the bytes. A transition is logged as a QUOTA_CHECK
/// operation; one that fails (a table locked by DDL) is logged as FAILED and
/// tried again by the next recount.
pub fn recount(tenant: &Tenant) -> TcResult<i64> {
    let counted = registry::refresh_counters(tenant)?;
    let (used, limit, previous) = (counted.bytes, counted.quota_limit, State::parse(&counted.quota_state));
    let next = State::of(used, limit, previous);
    if next != previous {
        let description =
            format!("quota state of schema \"{}\": {} -> {}", tenant.schema, previous.as_str(), next.as_str());
        let (_, outcome) = oplog::record(OpKind::QuotaCheck, Some(tenant.id), description, |op| {
            op.note("schema_name", tenant.schema.as_str());
            op.note("from", previous.as_str());
            op.note("to", next.as_str());
            op.note("storage_used", used);
            op.note("quota_limit", limit);
            guard(tenant, next != State::Ok)?;
            db::run(
                "UPDATE tenant.tenant_schemas
                    SET quota_state = $2, quota_state_since = pg_catalog.now(), updated_at = pg_catalog.now()
                  WHERE id = $1",
                &[db::to_pg_uuid(tenant.id).into(), next.as_str().into()],
            )
        });
        if outcome.is_err() {
            return Ok(used);
        }
    } else if next != State::Ok {
        // Tables created since the last recount get their guard too.
        guard(tenant, true)?;
    }
    if next == State::Exceeded {
        suspend_if_overdue(tenant)?;
    }
    Ok(used)
}

/// Put the guard on every table of the tenant (`on`), or take it off. A
/// disabled guard is replaced, and so is a trigger that bears the guard's
/// name without calling the guard's function.
fn guard(tenant: &Tenant, on: bool) -> TcResult<()> {
    guard_schema(&tenant.schema, on)
}

fn guard_schema(schema: &TenantName, on: bool) -> TcResult<()> {
    let tables = db::rows(
        "SELECT c.relname::text AS name, g.tgname IS NOT NULL AS named
           FROM pg_catalog.pg_class c
           LEFT JOIN pg_catalog.pg_trigger g ON g.tgrelid OPERATOR(pg_catalog.=) c.oid
                                            AND g.tgname OPERATOR(pg_catalog.=) $2
          WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind IN ('r', 'p')
            AND CASE WHEN $3
                     THEN g.tgname IS NULL OR g.tgenabled OPERATOR(pg_catalog.<>) 'O'
                          OR g.tgfoid OPERATOR(pg_catalog.<>) $4::pg_catalog.regprocedure
                     ELSE g.tgname IS NOT NULL END
          ORDER BY c.relname",
        &[schema.as_str().into(), GUARD_TRIGGER.into(), on.into(), GUARD_FUNCTION.into()],
        |row| {
            Ok((db::col::<String>(row, "name")?.unwrap_or_default(), db::col::<bool>(row, "named")?.unwrap_or(false)))
        },
    )?;
    restricted::internal_ddl(|| {
        for (table, named) in &tables {
            let table = format!("{}.{}", schema.quoted(), quote_identifier(table));
            if *named {
                db::run(&format!("DROP TRIGGER {GUARD_TRIGGER} ON {table}"), &[])?;
            }
            if on {
                db::run(
                    &format!(
                        "CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE ON {table}
                         FOR EACH STATEMENT EXECUTE FUNCTION tenant.quota_guard()"
                    ),
                    &[],
                )?;
            }
        }
        Ok(())
    })
}

/// With `tenant_control.quota_suspend_after` set, an ACTIVE tenant that has
/// been over its limit for longer is SUSPENDED (and logged as such).
fn suspend_if_overdue(tenant: &Tenant) -> TcResult<()> {
    let grace = settings::quota_suspend_after_s();
    if grace == 0 || tenant.status != Status::Active {
        return Ok(());
    }
    let overdue: bool = db::scalar(
        "SELECT quota_state_since <= pg_catalog.now() - pg_catalog.make_interval(secs => $2)
           FROM tenant.tenant_schemas WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), f64::from(grace).into()],
    )?;
    if overdue {
        let reason = format!("over its storage quota for more than {grace} s (tenant_control.quota_suspend_after)");
        let description = format!("suspend schema \"{}\": {reason}", tenant.schema);
        let schema_id = Some(db::to_pg_uuid(tenant.id));
        // Logged either way; a suspension that failed is tried again by the next recount.
        let _ = oplog::record(OpKind::StatusChange, Some(tenant.id), description, |op| {
            lifecycle::set_status(op, schema_id, Some("SUSPENDED"), Some(&reason))
        });
    }
    Ok(())
}

/// What a statement that makes `schema` grow must pass: refused with 53400
/// when the tenant is over its limit, a WARNING (at most once a minute) when
/// it is near it. Called by the guard trigger and the DDL event trigger.
pub fn check_growth(schema: &str) -> TcResult<()> {
    // The extension's own work on a tenant (a migration's data changes, a
    // restore) is not the tenant growing: it must not fail half-way. The
    // mark lives in backend memory; no setting can fake it.
    if restricted::internal_work_active() {
        return Ok(());
    }
    let Some(seen) = recently_seen(schema)? else {
        return Ok(());
    };
    match State::of(seen.used, Some(seen.limit), seen.state) {
        State::Exceeded => {
            let usage = usage_text(seen.used, seen.limit);
            Err(TcError::new(
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!("institution {} is over its storage quota: schema \"{schema}\" uses {usage}", seen.institution),
            )
            .detail(format!(
                "INSERT, UPDATE, COPY FROM, CREATE and ALTER are refused until it uses less than {}% of its quota; \
                 SELECT, DELETE and TRUNCATE still work.",
                settings::quota_resume_percent()
            ))
            .hint("Delete or truncate data (deleted rows keep their space until VACUUM), or raise the quota with tenant.set_quota."))
        }
        State::Warning => {
            warn_near_limit(seen.institution, schema, seen.used, seen.limit);
            Ok(())
        }
        State::Ok => Ok(()),
    }
}

/// What DDL in a tenant near or over its quota must pass (the DDL event
/// trigger calls this): `check_growth`, except for DDL run by a superuser.
/// pg_restore recreates an over-quota tenant's keys, indexes, foreign keys
/// and guards as a superuser after its rows: refusing them would leave the
/// restored tenant without them. A tenant's role is never a superuser, so
/// tenants gain nothing; the superuser is the session's role after SET ROLE
/// (a superuser acting as a tenant is checked), and tenant code run in a
/// security-restricted operation never counts as the superuser's.
///
/// DDL that passes in a tenant near its quota gets the tables it created
/// guarded at once: a table created in WARNING must not grow unguarded until
/// the next recount.
pub fn check_ddl_growth(schema: &str) -> TcResult<()> {
    if ddl_by_superuser() {
        return Ok(());
    }
    check_growth(schema)?;
    // Only a registered tenant that is not OK (the name comes from the registry).
    if recently_seen(schema)?.is_some_and(|seen| seen.state != State::Ok) {
        guard_schema(&TenantName::from_registry(schema.to_string()), true)?;
    }
    Ok(())
}

fn ddl_by_superuser() -> bool {
    // SAFETY: reads this backend's user ids. The outer user is the session's
    // role as SET ROLE left it, whatever SECURITY DEFINER function (such as
    // the event trigger itself) runs now.
    let outer_is_superuser = unsafe { pg_sys::superuser_arg(pg_sys::GetOuterUserId()) };
    outer_is_superuser && !restricted::in_restricted_operation()
}

/// "9.3 MB of its 10 MB quota (93.0%)", sizes as pg_size_pretty writes them.
/// Built here rather than by a query: the guard warns on hot paths.
fn usage_text(used: i64, limit: i64) -> String {
    format!("{} of its {} quota ({:.1}%)", pretty(used), pretty(limit), used as f64 * 100.0 / limit as f64)
}

pub(crate) fn pretty(bytes: i64) -> String {
    let mut size = bytes as f64;
    let mut units = ["bytes", "kB", "MB", "GB", "TB", "PB"].into_iter();
    let mut unit = units.next().unwrap_or_default();
    while size.abs() >= 10.0 * 1024.0 {
        match units.next() {
            Some(next) => {
                size /= 1024.0;
                unit = next;
            }
            None => break,
        }
    }
    format!("{} {unit}", size.round())
}

/// A tenant's quota as a session last saw it: registry facts and measured bytes.
#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    institution: uuid::Uuid,
    limit: i64,
    state: State,
    used: i64,
}

thread_local! {
    /// Per session: each guarded tenant as last seen (None: no tenant or no limit).
    static SEEN: RefCell<HashMap<String, Option<Seen>>> = RefCell::new(HashMap::new());
    /// Per session: when each tenant was last warned about.
    static WARNED: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// The tenant's limit, state and bytes, read and measured at most
/// `tenant_control.quota_recheck_interval` ago: a guarded tenant's writes
/// cost a look-up in this session's memory, not a query, between two checks.
fn recently_seen(schema: &str) -> TcResult<Option<Seen>> {
    let fresh_for = Duration::from_millis(settings::quota_recheck_ms().max(0) as u64);
    let cached = SEEN.with(|seen| seen.borrow().get(schema).copied());
    if let Some(Some(seen)) = cached {
        if seen.at.elapsed() < fresh_for {
            return Ok(Some(seen));
        }
    }
    let found = db::rows(
        "SELECT institution_id, quota_limit, quota_state FROM tenant.tenant_schemas
          WHERE schema_name = $1 AND status <> ALL (ARRAY['DROPPED', 'SPARE'])",
        &[schema.into()],
        |row| {
            Ok((
                db::col::<pgrx::Uuid>(row, "institution_id")?.map(db::to_uuid),
                db::col::<i64>(row, "quota_limit")?,
                State::parse(&db::col::<String>(row, "quota_state")?.unwrap_or_default()),
            ))
        },
    )?;
    let seen = match found.into_iter().next() {
        Some((Some(institution), Some(limit), state)) => {
            Some(Seen { at: Instant::now(), institution, limit, state, used: registry::measure_bytes(schema)? })
        }
        _ => None,
    };
    SEEN.with(|cache| cache.borrow_mut().insert(schema.to_string(), seen));
    Ok(seen)
}

/// How often a session is told that a tenant is near its quota: every
/// write would flood the client and the server log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Warn the session that the tenant is near its quota, at most once a minute
/// per tenant (set_context and the guard share the rhythm).
pub fn warn_near_limit(institution: uuid::Uuid, schema: &str, used: i64, limit: i64) {
    let due = WARNED.with(|warned| {
        let mut warned = warned.borrow_mut();
        let due = warned.get(schema).is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            warned.insert(schema.to_string(), Instant::now());
        }
        due
    });
    if due {
        pgrx::warning!(
            "institution {institution} is near its storage quota: schema \"{schema}\" uses {}",
            usage_text(used, limit)
        );
    }
}

/// Pure logic, tested without a server.
#[cfg(test)]
mod unit_tests {
    use super::{pretty, State};

    const LEVELS: (i32, i32) = (90, 95);

    #[test]
    fn states_follow_the_levels_with_hysteresis() {
        let state = |used, previous| State::at_levels(used, Some(1000), previous, LEVELS);
        assert_eq!(state(899, State::Ok), State::Ok);
        assert_eq!(state(900, State::Ok), State::Warning);
        assert_eq!(state(1000, State::Warning), State::Exceeded);
        // Over the limit, a tenant writes again only below the resume level.
        assert_eq!(state(960, State::Exceeded), State::Exceeded);
        assert_eq!(state(949, State::Exceeded), State::Warning);
        assert_eq!(state(100, State::Exceeded), State::Ok);
        // Coming from below, the resume level means nothing: only the limit does.
        assert_eq!(state(960, State::Warning), State::Warning);
    }

    #[test]
    fn no_limit_is_always_ok_and_huge_limits_do_not_overflow() {
        assert_eq!(State::at_levels(i64::MAX, None, State::Exceeded, LEVELS), State::Ok);
        assert_eq!(State::at_levels(i64::MAX - 1, Some(i64::MAX), State::Ok, LEVELS), State::Warning);
    }

    #[test]
    fn sizes_read_like_pg_size_pretty() {
        for (bytes, expected) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (10 * 1024 * 1024, "10 MB"),
            (5 * 1024 * 1024 * 1024, "5120 MB"),
            (-20480, "-20 kB"),
        ] {
            assert_eq!(pretty(bytes), expected, "{bytes}");
        }
    }
}
