//! `tenant.ddl_event_dispatch()`: the one event trigger function behind the
//! extension's ddl_command_end and sql_drop triggers.
//!
//! Until 0.2.0 three PL/pgSQL event trigger functions ran on every DDL
//! command and GRANT/REVOKE in the database (quota guard, reserved names,
//! template change notes), each paying a PL/pgSQL call and its own queries
//! over the collected commands: 1.09x the cost of a CREATE/DROP TABLE and
//! 1.27x a GRANT. This function reads the collected commands once, in C, and
//! calls the PL/pgSQL checks (now ordinary functions taking the event and the
//! tag) only for commands that may concern them:
//! - the extension's own work: nothing (every check skipped it already);
//! - GRANT/REVOKE: the template note, when the grant names a template object;
//! - sql_drop: the template note when something of tenant_template went, the
//!   quota guard when a `tc_quota_guard` trigger went;
//! - other DDL: all three checks when an object is in tenant_template, in a
//!   registered tenant schema (asked of `ops::schema_cache`, which keeps the
//!   registry's answers per backend), has no schema of its own (triggers,
//!   policies, rules), or is an extension. A `CREATE TABLE` that names its
//!   schema is judged by that name, without reading the collected commands.
//!
//! It is not SECURITY DEFINER: a SECURITY DEFINER call opens a GUC nest
//! level and switches `search_path` and back on every command in the
//! database (about a third of a GRANT's added cost, issue 13). It runs as
//! whoever ran the DDL, reads only PostgreSQL's own memory and catalog
//! caches, runs no SQL and calls nothing by name, and switches to the
//! function's owner with `search_path` pinned (what a SECURITY DEFINER call
//! does, `restricted::as_owner`) only to read the registry or run the checks.

use crate::core::catalog;
use crate::core::errors::{OrRaise, TcError, TcResult};
use crate::core::restricted;
use crate::ops::schema_cache;
use pgrx::prelude::*;
use std::ffi::CStr;

const TEMPLATE: &str = "tenant_template";

#[no_mangle]
pub extern "C" fn pg_finfo_tc_ddl_event_dispatch() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// # Safety
/// Called by PostgreSQL as an event trigger function, with `fcinfo` valid.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_ddl_event_dispatch(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL passes EventTriggerData as the context of an event
    // trigger call; anything else is refused by is_a.
    let context = unsafe { (*fcinfo).context };
    if !unsafe { pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) } {
        TcError::new(PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, "not called by an event trigger")
            .raise();
    }
    // The checks all let the extension's own work through: asked first, it is
    // a read of backend memory.
    if restricted::internal_work_active() && !restricted::in_restricted_operation() {
        return pg_sys::Datum::from(0);
    }
    let data = context as *mut pg_sys::EventTriggerData;
    // SAFETY: event and tag are set by PostgreSQL for the whole call; the
    // function's oid by fmgr.
    let (event, tag, function) = unsafe {
        (
            CStr::from_ptr((*data).event),
            CStr::from_ptr(pg_sys::GetCommandTagName((*data).tag)),
            (*(*fcinfo).flinfo).fn_oid,
        )
    };
    let checks = if event == c"sql_drop" {
        unsafe { after_drop() }
    } else if tag == c"GRANT" || tag == c"REVOKE" {
        // SAFETY: the parse tree of the command, set by PostgreSQL.
        if unsafe { crate::api::grant_filter::surely_not_template((*data).parsetree) } {
            return pg_sys::Datum::from(0);
        }
        unsafe { after_grant() }
    } else {
        // SAFETY: the parse tree of the command, set by PostgreSQL.
        unsafe { after_ddl(function, (*data).parsetree) }.or_raise()
    };
    let list = checks.list();
    if list.is_empty() {
        return pg_sys::Datum::from(0);
    }
    let (event, tag) = (event.to_string_lossy().into_owned(), tag.to_string_lossy().into_owned());
    restricted::as_owner(owner(function), || {
        for check in list {
            crate::core::db::run(
                &format!("SELECT tenant.{check}($1, $2)"),
                &[event.clone().into(), tag.clone().into()],
            )?;
        }
        Ok(())
    })
    .or_raise();
    pg_sys::Datum::from(0)
}

/// The owner of this function: whom a SECURITY DEFINER declaration would run
/// it as (the extension's owner).
fn owner(function: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: a catalog cache look-up of the function being called (it exists).
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, function.into());
        if tuple.is_null() {
            TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION, "tenant.ddl_event_dispatch() was not found")
                .raise();
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_proc>(tuple)).proowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

/// Which PL/pgSQL checks a command needs, run in the order their separate
/// event triggers used to fire (by name: quota, reserved names, template).
#[derive(Default)]
struct Checks {
    quota: bool,
    reserved_names: bool,
    template: bool,
}

impl Checks {
    fn all() -> Checks {
        Checks { quota: true, reserved_names: true, template: true }
    }

    fn list(&self) -> Vec<&'static str> {
        [
            (self.quota, "quota_ddl_guard"),
            (self.reserved_names, "reserved_names_guard"),
            (self.template, "note_template_change"),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect()
    }
}

/// GRANT/REVOKE grow nothing and name nothing new: only the template's
/// privileges can change.
unsafe fn after_grant() -> Checks {
    let mut template = false;
    unsafe {
        event_rows(c"pg_event_trigger_ddl_commands", |row| {
            let command = row.datum(9).map(|d| d.cast_mut_ptr::<pg_sys::CollectedCommand>());
            template |= command.is_some_and(|c| crate::api::grant_filter::touches_template(c));
        })
    };
    Checks { template, ..Checks::default() }
}

/// A dropped object of the template, or a dropped quota guard trigger (whose
/// name is all that is left of it).
unsafe fn after_drop() -> Checks {
    let mut checks = Checks::default();
    unsafe {
        event_rows(c"pg_event_trigger_dropped_objects", |row| {
            let (kind, schema, identity) = (row.text(7), row.text(8), row.text(10));
            checks.template |= schema.as_deref() == Some(TEMPLATE)
                || (kind.as_deref() == Some("schema") && identity.as_deref() == Some(TEMPLATE));
            checks.quota |= kind.as_deref() == Some("trigger")
                && row.boolean(4)
                && identity.as_deref().is_some_and(|i| i.starts_with("tc_quota_guard on "));
        })
    };
    checks
}

/// Other DDL: the schemas the commands touched decide.
unsafe fn after_ddl(function: pg_sys::Oid, parsetree: *mut pg_sys::Node) -> TcResult<Checks> {
    // SAFETY: the command's parse tree, and the collected commands, inside the event trigger call.
    let (schemas, everything) = match unsafe { named_table_schema(parsetree) } {
        Some(schema) => {
            let template = schema == TEMPLATE;
            (vec![schema], template)
        }
        None => unsafe { commands_schemas() },
    };
    if everything
        || (!schemas.is_empty()
            && schema_cache::any_tenant_schema(&schemas, |unknown| {
                restricted::as_owner(owner(function), || live_tenant_schemas(unknown))
            })?)
    {
        return Ok(Checks::all());
    }
    Ok(Checks::default())
}

/// The schema a `CREATE TABLE` names for its table, when it names one. All
/// that command makes (the table, its indexes, constraints and sequences)
/// goes there, and its TOAST table into pg_toast: the schemas the collected
/// commands would give, without `pg_event_trigger_ddl_commands()`, which
/// works out every object's full identity (about half of what the trigger
/// added to a CREATE TABLE). A table named without a schema is left to the
/// collected commands: the search_path the command resolved it with may
/// have been changed since by a function it ran (a partition bound's).
///
/// # Safety
/// `parsetree` is the command's parse tree, as PostgreSQL hands it over.
unsafe fn named_table_schema(parsetree: *mut pg_sys::Node) -> Option<String> {
    if !unsafe { pgrx::is_a(parsetree, pg_sys::NodeTag::T_CreateStmt) } {
        return None;
    }
    // SAFETY: a CreateStmt, with the RangeVar of its table.
    let relation = unsafe { (*(parsetree as *mut pg_sys::CreateStmt)).relation };
    let schema = unsafe { relation.as_ref()?.schemaname };
    (!schema.is_null()).then(|| unsafe { CStr::from_ptr(schema) }.to_string_lossy().into_owned())
}

/// The schemas of the collected commands' objects, and whether one of them
/// must be checked whatever its schema.
///
/// # Safety
/// Only inside a ddl_command_end event trigger call.
unsafe fn commands_schemas() -> (Vec<String>, bool) {
    let mut schemas: Vec<String> = Vec::new();
    let mut everything = false;
    unsafe {
        event_rows(c"pg_event_trigger_ddl_commands", |row| {
            let (kind, schema, identity) = (row.text(5), row.text(6), row.text(7));
            // Triggers, policies and rules: their table's schema counts.
            let schema = match (schema, kind.as_deref()) {
                (None, Some("trigger" | "policy" | "rule")) => table_schema(row.oid(1), row.oid(2)).map(Some),
                (schema, _) => Some(schema),
            };
            match schema {
                // A trigger, policy or rule whose table was not found: checked.
                None => everything = true,
                Some(Some(schema)) if schema == TEMPLATE => everything = true,
                Some(Some(schema)) if !schemas.contains(&schema) => schemas.push(schema),
                Some(Some(_)) => {}
                Some(None) => {
                    everything |= kind.as_deref() == Some("extension")
                        || (kind.as_deref() == Some("schema") && identity.as_deref() == Some(TEMPLATE))
                }
            }
        })
    };
    (schemas, everything)
}

/// The schema of the table a trigger, policy or rule belongs to, what
/// `tenant.table_schema_of` answers for the checks, read from the object's
/// catalog by its oid (none of the three has a catalog cache by oid): these
/// objects have no schema of their own. None when it cannot be told.
unsafe fn table_schema(classid: Option<pg_sys::Oid>, objid: Option<pg_sys::Oid>) -> Option<String> {
    // pg_trigger.tgrelid, pg_policy.polrelid, pg_rewrite.ev_class: each the
    // catalog, its index on oid, and the column naming the table.
    let (table_catalog, index, column) = match classid.map(u32::from)? {
        2620 => (2620u32, pg_sys::TriggerOidIndexId, 2),
        3256 => (3256, 3257, 3),
        2618 => (2618, 2692, 3),
        _ => return None,
    };
    let objid = objid?;
    let mut table = None;
    unsafe {
        // SAFETY: an index scan of a system catalog on its oid column.
        catalog::scan_by_oids(table_catalog.into(), index.into(), &[(1, objid)], |row, descriptor| {
            table = catalog::oid_column(row, descriptor, column);
            false
        });
        let name = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(table?));
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Which of `schemas` the registry has as live tenant schemas (its plan kept
/// in the backend). Run as the owner: the registry is not readable by all.
fn live_tenant_schemas(schemas: &[String]) -> TcResult<Vec<String>> {
    crate::core::db::rows_kept_read(
        "SELECT t.schema_name FROM tenant.tenant_schemas t
          WHERE t.schema_name OPERATOR(pg_catalog.=) ANY ($1)
            AND t.status OPERATOR(pg_catalog.<>) 'DROPPED'",
        &[pg_sys::TEXTARRAYOID.into()],
        &[schemas.to_vec().into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )
}

/// One row of a set-returning event trigger function's result.
struct Row {
    slot: *mut pg_sys::TupleTableSlot,
}

impl Row {
    fn datum(&self, column: i32) -> Option<pg_sys::Datum> {
        let mut null = false;
        // SAFETY: the slot holds a row of the function's result type.
        let value = unsafe { pg_sys::slot_getattr(self.slot, column, &mut null) };
        (!null).then_some(value)
    }

    fn text(&self, column: i32) -> Option<String> {
        // SAFETY: the column is of type text.
        self.datum(column).and_then(|d| unsafe { String::from_datum(d, false) })
    }

    fn oid(&self, column: i32) -> Option<pg_sys::Oid> {
        self.datum(column).map(|d| pg_sys::Oid::from(d.value() as u32))
    }

    fn boolean(&self, column: i32) -> bool {
        self.datum(column).is_some_and(|d| d.value() != 0)
    }
}

thread_local! {
    /// The oids of the two built-in functions, found once per backend:
    /// fmgr_internal_function compares the name with every built-in in turn
    /// (about a tenth of a GRANT's time when asked on every command).
    static BUILTINS: std::cell::RefCell<Vec<(&'static CStr, pg_sys::Oid)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn builtin(function: &'static CStr) -> pg_sys::Oid {
    if let Some(oid) = BUILTINS.with(|found| found.borrow().iter().find(|(name, _)| *name == function).map(|f| f.1)) {
        return oid;
    }
    // SAFETY: a look-up in the table of built-in functions.
    let oid = unsafe { pg_sys::fmgr_internal_function(function.as_ptr()) };
    BUILTINS.with(|found| found.borrow_mut().push((function, oid)));
    oid
}

/// Call `pg_event_trigger_ddl_commands()` or `pg_event_trigger_dropped_objects()`
/// directly (no SPI, no query) and hand each row to `each`.
///
/// # Safety
/// Only inside an event trigger call; `function` names one of the two.
unsafe fn event_rows(function: &'static CStr, mut each: impl FnMut(&Row)) {
    unsafe {
        let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(builtin(function), &mut flinfo);
        let econtext = pg_sys::CreateStandaloneExprContext();
        let mut rsinfo: pg_sys::ReturnSetInfo = std::mem::zeroed();
        rsinfo.type_ = pg_sys::NodeTag::T_ReturnSetInfo;
        rsinfo.econtext = econtext;
        rsinfo.allowedModes = pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32;
        rsinfo.returnMode = pg_sys::SetFunctionReturnMode::SFRM_ValuePerCall;
        let fcinfo =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()) as pg_sys::FunctionCallInfo;
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).resultinfo = &mut rsinfo as *mut pg_sys::ReturnSetInfo as *mut pg_sys::Node;
        (*fcinfo).nargs = 0;
        let call = flinfo.fn_addr.expect("a built-in function has an address");
        call(fcinfo);
        if !rsinfo.setResult.is_null() {
            let slot = pg_sys::MakeSingleTupleTableSlot(rsinfo.setDesc, &pg_sys::TTSOpsMinimalTuple);
            while pg_sys::tuplestore_gettupleslot(rsinfo.setResult, true, false, slot) {
                each(&Row { slot });
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::tuplestore_end(rsinfo.setResult);
        }
        pg_sys::FreeExprContext(econtext, true);
        pg_sys::pfree(fcinfo.cast());
    }
}
