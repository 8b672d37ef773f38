//! The extension's own DDL scripts (a copy's statements, a restore's, the
//! grants and bindings it adds), run as sub-commands of the extension's
//! statement when no event trigger would look at them.
//!
//! Run through SPI, each statement of a script is a complete query:
//! PostgreSQL opens event-trigger processing for it, collects the command
//! and calls the database's ddl_command_end triggers. The extension's own
//! triggers let its work through at once (`restricted::internal_work_active`),
//! but the round costs all the same: 0.6-0.9 ms of the 31-35 ms a create from
//! the benchmark's template spends on its statements (docs/benchmarks.md,
//! "Template speed, eighth round"). When the extension's triggers are the
//! only ones in the database, a script's statements run as PostgreSQL runs
//! the parts of a `CREATE SCHEMA ... CREATE TABLE ...`: as sub-commands, which
//! fire no event trigger, each parsed, analysed and planned right after the
//! one before it ran, as SPI does. Everything an event trigger could notice
//! still goes through SPI as before: any other event trigger in the database
//! (a DBA's DDL log, a replication tool) sees every statement; so do the
//! extension's own checks for work inside a security-restricted operation
//! (code a tenant wrote), and for DROP SCHEMA and DROP EXTENSION. A script
//! with a query in it goes through SPI too.

use crate::core::catalog;
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::restricted;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Run a script of the extension's own DDL, inside `restricted::internal_ddl`;
/// an error names `context` (see `db::run_explained`).
pub fn run(sql: &str, context: &str) -> TcResult<()> {
    db::explained(sql, context, || {
        let text = CString::new(sql).map_err(|_| {
            TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "a script of the extension holds a NUL character")
        })?;
        // SAFETY: parsing, planning and running statements inside the
        // transaction, in a memory context of the script's own that is
        // current while they run and deleted afterwards (see `Scratch`).
        let ran = unsafe {
            let _scratch = Scratch::enter();
            quiet_statements(&text).map(|statements| run_as_subcommands(&text, statements)).is_some()
        };
        if ran {
            Ok(())
        } else {
            db::run(sql, &[])
        }
    })
}

/// The script's statements when they may run as sub-commands: the
/// extension's own work outside any security-restricted operation, in a
/// database whose enabled event triggers are all the extension's, and
/// statements none of those triggers looks at. None otherwise.
///
/// # Safety
/// Inside a transaction; the list lives in the current memory context.
unsafe fn quiet_statements(text: &CStr) -> Option<*mut pg_sys::List> {
    if !restricted::internal_work_active() || restricted::in_restricted_operation() || !only_own_event_triggers() {
        return None;
    }
    let statements = unsafe { pg_sys::pg_parse_query(text.as_ptr()) };
    let quiet = unsafe { catalog::cells(statements) }.iter().all(|cell| {
        let statement = unsafe { (*(cell.ptr_value as *mut pg_sys::RawStmt)).stmt };
        // SAFETY: a node of the parse tree just made.
        let (tag, query) = unsafe { (pg_sys::CreateCommandTag(statement), is_query(statement)) };
        // The drop guard's event trigger fires on these two.
        !query && tag != pg_sys::CommandTag::CMDTAG_DROP_SCHEMA && tag != pg_sys::CommandTag::CMDTAG_DROP_EXTENSION
    });
    quiet.then_some(statements)
}

/// Whether a raw statement is a query (planned and run by the executor)
/// rather than a utility statement.
unsafe fn is_query(statement: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    matches!(
        unsafe { (*statement).type_ },
        T_SelectStmt | T_InsertStmt | T_UpdateStmt | T_DeleteStmt | T_MergeStmt | T_PLAssignStmt
    )
}

/// Run parsed utility statements one by one as sub-commands, as SPI runs a
/// script: analysed and planned after the statement before them ran, with
/// a fresh snapshot when they need one, and a command-counter step after each.
/// Commands are not collected for an event trigger of an enclosing command.
///
/// # Safety
/// `statements` is a list of RawStmt parsed from `text`; inside a transaction.
unsafe fn run_as_subcommands(text: &CStr, statements: *mut pg_sys::List) {
    let _uncollected = unsafe { Uncollected::start() };
    for cell in unsafe { catalog::cells(statements) } {
        unsafe {
            let raw = cell.ptr_value as *mut pg_sys::RawStmt;
            let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
                raw,
                text.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            );
            let planned = pg_sys::pg_plan_queries(
                queries,
                text.as_ptr(),
                pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
                std::ptr::null_mut(),
            );
            for cell in catalog::cells(planned) {
                let statement = cell.ptr_value as *mut pg_sys::PlannedStmt;
                let snapshot = pg_sys::PlannedStmtRequiresSnapshot(statement);
                if snapshot {
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
                pg_sys::ProcessUtility(
                    statement,
                    text.as_ptr(),
                    false,
                    pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    pg_sys::None_Receiver,
                    std::ptr::null_mut(),
                );
                if snapshot {
                    pg_sys::PopActiveSnapshot();
                }
                pg_sys::CommandCounterIncrement();
            }
        }
    }
}

/// The C functions of the extension's event triggers (`sql/finalize.sql`):
/// the DDL dispatch and the drop guard.
const OWN_EVENT_FUNCTIONS: [&CStr; 2] = [c"tc_ddl_event_dispatch", c"tc_refuse_drop_with_tenants"];

/// Whether every enabled event trigger of this database runs one of the
/// extension's own C functions. pg_event_trigger holds a few rows and has
/// no index on the function: it is read whole.
fn only_own_event_triggers() -> bool {
    let mut own = true;
    let (enabled, function) = (
        pg_sys::Anum_pg_event_trigger_evtenabled as pg_sys::AttrNumber,
        pg_sys::Anum_pg_event_trigger_evtfoid as pg_sys::AttrNumber,
    );
    // SAFETY: a catalog read inside a transaction; the row is not kept.
    unsafe {
        catalog::scan_by_oids(pg_sys::EventTriggerRelationId, pg_sys::InvalidOid, &[], |row, descriptor| {
            let mut null = true;
            let state = pg_sys::heap_getattr(row, enabled as i32, descriptor, &mut null);
            if !null && state.value() as u8 == pg_sys::TRIGGER_DISABLED {
                return true;
            }
            own = catalog::oid_column(row, descriptor, function).is_some_and(|f| is_own_function(f));
            own
        });
    }
    own
}

/// Whether `function` is a C function of this library named in
/// `OWN_EVENT_FUNCTIONS`.
///
/// # Safety
/// Inside a transaction.
unsafe fn is_own_function(function: pg_sys::Oid) -> bool {
    // pg_language's fixed oid for C.
    const C_LANGUAGE: pg_sys::Oid = pg_sys::Oid::from_u32(13);
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, function.into());
        if tuple.is_null() {
            return false;
        }
        let text_column = |column: u32| {
            let mut null = true;
            let value = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                tuple,
                column as pg_sys::AttrNumber,
                &mut null,
            );
            (!null).then(|| CStr::from_ptr(pg_sys::text_to_cstring(value.cast_mut_ptr())).to_owned())
        };
        let own = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_proc>(tuple)).prolang == C_LANGUAGE
            && text_column(pg_sys::Anum_pg_proc_prosrc)
                .is_some_and(|name| OWN_EVENT_FUNCTIONS.contains(&name.as_c_str()))
            && text_column(pg_sys::Anum_pg_proc_probin)
                .is_some_and(|library| library.to_bytes().ends_with(b"tenant_control"));
        pg_sys::ReleaseSysCache(tuple);
        own
    }
}

/// A memory context for one script: current while it runs, deleted (and the
/// previous one current again) when it ends, whether or not by an error.
struct Scratch {
    context: pg_sys::MemoryContext,
    previous: pg_sys::MemoryContext,
}

impl Scratch {
    unsafe fn enter() -> Scratch {
        unsafe {
            let previous = pg_sys::CurrentMemoryContext;
            let context = pg_sys::AllocSetContextCreateExtended(
                previous,
                c"tenant_control script".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            pg_sys::CurrentMemoryContext = context;
            Scratch { context, previous }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the context was made by `enter` and nothing outlives the script in it.
        unsafe {
            pg_sys::CurrentMemoryContext = self.previous;
            pg_sys::MemoryContextDelete(self.context);
        }
    }
}

/// Keeps the script's commands out of the command list of an enclosing DDL
/// command's event triggers, as PostgreSQL's ALTER TABLE does for its inner
/// work; undone however the script ends. Without an enclosing command both
/// calls do nothing.
struct Uncollected;

impl Uncollected {
    unsafe fn start() -> Uncollected {
        unsafe { pg_sys::EventTriggerInhibitCommandCollection() };
        Uncollected
    }
}

impl Drop for Uncollected {
    fn drop(&mut self) {
        // SAFETY: undoes `start`.
        unsafe { pg_sys::EventTriggerUndoInhibitCommandCollection() };
    }
}
