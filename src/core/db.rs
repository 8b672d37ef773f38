//! Thin SPI helpers. Every statement goes through `connect_mut`: a statement
//! run read-write takes a fresh snapshot, so a check made right after taking
//! a lock sees what the previous lock holder committed.

use crate::core::errors::caught;
use crate::core::errors::{TcError, TcResult};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiHeapTupleData};

/// Run a statement for its effect.
pub fn run(sql: &str, args: &[DatumWithOid]) -> TcResult<()> {
    Ok(Spi::connect_mut(|client| client.update(sql, None, args).map(|_| ()))?)
}

/// Run a statement and map every row it returns.
pub fn rows<T>(
    sql: &str,
    args: &[DatumWithOid],
    mut map: impl FnMut(&SpiHeapTupleData) -> TcResult<T>,
) -> TcResult<Vec<T>> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, None, args).map_err(|e| spi_failure(e, sql))?;
        table.map(|row| map(&row)).collect()
    })
}

thread_local! {
    /// Plans of `rows_kept` statements, by statement text, for the life of the backend.
    static KEPT: std::cell::RefCell<std::collections::HashMap<&'static str, std::rc::Rc<OwnedPreparedStatement>>> =
        Default::default();
}

/// Like `rows`, for a statement run on every request (`set_context`): its
/// plan is prepared once per backend (`types`: the parameters' types) and
/// kept. PostgreSQL's plan cache re-plans it when a table, function or
/// search_path it depends on changes, so a kept plan never runs stale.
pub fn rows_kept<T>(
    sql: &'static str,
    types: &[PgOid],
    args: &[DatumWithOid],
    mut map: impl FnMut(&SpiHeapTupleData) -> TcResult<T>,
) -> TcResult<Vec<T>> {
    Spi::connect_mut(|client| {
        let plan = kept_plan(&KEPT, sql, || client.prepare_mut(sql, types))?;
        let table = client.update(&*plan, None, args).map_err(|e| spi_failure(e, sql))?;
        table.map(|row| map(&row)).collect()
    })
}

thread_local! {
    /// Plans of `rows_kept_read` statements (prepared read-only).
    static KEPT_READS: std::cell::RefCell<std::collections::HashMap<&'static str, std::rc::Rc<OwnedPreparedStatement>>> =
        Default::default();
}

/// `rows_kept` for a read that must leave the transaction read-only:
/// pgrx's read-write client gives the transaction an id before every
/// statement, after which COMMIT writes a commit record and waits for its
/// flush (set_context's registry read in an application's read-only
/// transaction). The statement still reads with a snapshot taken now, as a
/// read-write statement would (in READ COMMITTED a new one).
pub fn rows_kept_read<T>(
    sql: &'static str,
    types: &[PgOid],
    args: &[DatumWithOid],
    mut map: impl FnMut(&SpiHeapTupleData) -> TcResult<T>,
) -> TcResult<Vec<T>> {
    Spi::connect(|client| {
        let plan = kept_plan(&KEPT_READS, sql, || client.prepare(sql, types))?;
        // SAFETY: popped below; on an error the transaction's abort resets the
        // snapshot stack, as it does for SPI's own.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
        let rows = client
            .select(&*plan, None, args)
            .map_err(|e| spi_failure(e, sql))
            .and_then(|table| table.map(|row| map(&row)).collect::<TcResult<Vec<T>>>());
        // SAFETY: the snapshot pushed above is still the active one.
        unsafe { pg_sys::PopActiveSnapshot() };
        rows
    })
}

type KeptPlans = std::thread::LocalKey<
    std::cell::RefCell<std::collections::HashMap<&'static str, std::rc::Rc<OwnedPreparedStatement>>>,
>;

/// The kept plan of `sql`, prepared by `prepare` the first time. It is taken
/// out of the map while it runs: the statement may call a function that runs
/// another kept statement.
fn kept_plan<'conn>(
    plans: &'static KeptPlans,
    sql: &'static str,
    prepare: impl FnOnce() -> pgrx::spi::SpiResult<pgrx::spi::PreparedStatement<'conn>>,
) -> TcResult<std::rc::Rc<OwnedPreparedStatement>> {
    if let Some(plan) = plans.with(|kept| kept.borrow().get(sql).cloned()) {
        return Ok(plan);
    }
    let plan = std::rc::Rc::new(prepare().map_err(|e| spi_failure(e, sql))?.keep());
    plans.with(|kept| kept.borrow_mut().insert(sql, plan.clone()));
    Ok(plan)
}

/// `run` with a kept plan (see `rows_kept`), for statements every operation runs.
pub fn run_kept(sql: &'static str, types: &[PgOid], args: &[DatumWithOid]) -> TcResult<()> {
    rows_kept(sql, types, args, |_| Ok(())).map(|_| ())
}

/// Run a statement; a PostgreSQL error it raises comes back as a `TcError`
/// that names the statement (see `caught`).
pub fn run_explained(sql: &str, context: &str) -> TcResult<()> {
    explained(sql, context, || run(sql, &[]))
}

/// Run `work`, which runs `sql`; an error it raises names `context` (and
/// quotes a short `sql`) in its detail.
pub fn explained<T>(sql: &str, context: &str, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    caught(work).map_err(|error| {
        // Short statements are worth quoting; a long script is not.
        let context = if sql.len() <= 300 { format!("{context}: {sql}") } else { context.to_string() };
        let detail = match &error.detail {
            Some(detail) => format!("{detail}; {context}"),
            None => context,
        };
        error.detail(detail)
    })
}

/// The first column of the first row, if there is a row and the value is not NULL.
pub fn value<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> TcResult<Option<T>> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
    .map_err(|e| spi_failure(e, sql))
}

/// Like `value`, for queries that always return a non-NULL value.
pub fn scalar<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> TcResult<T> {
    value(sql, args)?
        .ok_or_else(|| TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("query returned no value: {sql}")))
}

/// Run `work` with settings changed for the transaction, then put the
/// previous values back. (On an error the enclosing subtransaction's
/// rollback restores them.) The settings are read and set through the GUC
/// functions `current_setting` and `set_config(name, value, true)` call,
/// without a query: a create makes several of these switches, and in a new
/// connection each query would first be parsed and planned with cold caches.
pub fn with_settings<T>(settings: &[(&str, &str)], work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    let previous = settings
        .iter()
        .map(|(name, value)| {
            let before = current_setting(name)?;
            set_local_as_caller(name, value)?;
            Ok(before)
        })
        .collect::<TcResult<Vec<String>>>()?;
    let outcome = work()?;
    for ((name, _), before) in settings.iter().zip(&previous).rev() {
        set_local_as_caller(name, before)?;
    }
    Ok(outcome)
}

/// A setting changed with the rights of the current user, its error (an
/// invalid value) caught as a TcError.
fn set_local_as_caller(name: &str, value: &str) -> TcResult<()> {
    // SAFETY: a plain query of the current user's attributes.
    let superuser = unsafe { pg_sys::superuser() };
    caught(|| set_local(name, value, superuser))
}

fn guc_name(text: &str) -> TcResult<std::ffi::CString> {
    std::ffi::CString::new(text).map_err(|_| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("setting text contains a NUL byte: {text:?}"),
        )
    })
}

/// `pg_catalog.current_setting(name)`.
fn current_setting(name: &str) -> TcResult<String> {
    let name = guc_name(name)?;
    caught(|| {
        // SAFETY: a NUL-terminated name; missing_ok false raises an ERROR
        // (caught) for an unknown setting, so the result is never NULL.
        let value = unsafe { pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), false) };
        // SAFETY: a palloc'd NUL-terminated string.
        Ok(unsafe { std::ffi::CStr::from_ptr(value) }.to_string_lossy().into_owned())
    })
}

/// `SET LOCAL name = value` through PostgreSQL's own GUC machinery (what
/// `set_config(name, value, true)` does), without a round trip through SPI.
/// `superuser_setting`: the setting is one only a superuser may change (the
/// caller is then the extension's owner). An invalid value raises an ERROR.
pub fn set_local(name: &str, value: &str, superuser_setting: bool) -> TcResult<()> {
    let (name, value) = (guc_name(name)?, guc_name(value)?);
    let context = if superuser_setting { pg_sys::GucContext::PGC_SUSET } else { pg_sys::GucContext::PGC_USERSET };
    // SAFETY: NUL-terminated strings; a transaction-local setting.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
    Ok(())
}

/// `with_settings` for a single setting.
pub fn with_setting<T>(name: &str, value: &str, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    with_settings(&[(name, value)], work)
}

fn spi_failure(error: pgrx::spi::SpiError, sql: &str) -> TcError {
    let statement: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    TcError::from(error).detail(format!("statement: {statement}"))
}

/// Read a column of a row, treating a wrong type as an internal error.
pub fn col<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData, name: &str) -> TcResult<Option<T>> {
    Ok(row.get_by_name::<T, _>(name)?)
}

/// Convert between the pgrx and uuid crate representations.
pub fn to_uuid(id: pgrx::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id)
}

pub fn to_pg_uuid(id: uuid::Uuid) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*id.as_bytes())
}

/// Tenants visited between two calls of `release_catalog_caches`.
pub const TENANTS_PER_CACHE_RELEASE: u32 = 100;

/// Drop every catalog and relation cache entry no one holds, as PostgreSQL
/// does when a backend falls behind on invalidation messages; entries are
/// read again from the catalogs when next needed. PostgreSQL never shrinks
/// these caches while a backend lives: work that visits thousands of tenants
/// in one backend (the integrity check, a fleet migration) calls this
/// between tenants, so that the caches hold one batch of tenants rather than
/// all of them (a few hundred kilobytes each).
pub fn release_catalog_caches() {
    // SAFETY: the call PostgreSQL itself makes on an invalidation-queue
    // overflow, at any point where it accepts invalidations (every lock it
    // takes): relations still open are rebuilt rather than freed, and kept
    // plans are marked for replanning. Callers hold no pointer into the caches.
    unsafe { pg_sys::InvalidateSystemCaches() }
}
