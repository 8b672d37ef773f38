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
//!   registered tenant schema (one registry look-up), has no schema of its
//!   own (triggers, policies, rules), or is an extension.

use crate::core::errors::{OrRaise, TcError, TcResult};
use crate::core::restricted;
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
    // SAFETY: event and tag are set by PostgreSQL for the whole call.
    let (event, tag) = unsafe {
        (
            CStr::from_ptr((*data).event).to_string_lossy().into_owned(),
            CStr::from_ptr(pg_sys::GetCommandTagName((*data).tag)).to_string_lossy().into_owned(),
        )
    };
    let checks = if event == "sql_drop" {
        unsafe { after_drop() }
    } else if tag == "GRANT" || tag == "REVOKE" {
        unsafe { after_grant() }
    } else {
        unsafe { after_ddl() }.or_raise()
    };
    for check in checks.list() {
        crate::core::db::run(&format!("SELECT tenant.{check}($1, $2)"), &[event.clone().into(), tag.clone().into()])
            .or_raise();
    }
    pg_sys::Datum::from(0)
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
unsafe fn after_ddl() -> TcResult<Checks> {
    let mut schemas: Vec<String> = Vec::new();
    let mut everything = false;
    unsafe {
        event_rows(c"pg_event_trigger_ddl_commands", |row| {
            let (kind, schema, identity) = (row.text(5), row.text(6), row.text(7));
            match schema {
                Some(schema) if schema == TEMPLATE => everything = true,
                Some(schema) => schemas.push(schema),
                // Triggers, policies and rules: their table's schema counts.
                None => {
                    everything |= matches!(kind.as_deref(), Some("trigger" | "policy" | "rule" | "extension"))
                        || (kind.as_deref() == Some("schema") && identity.as_deref() == Some(TEMPLATE))
                }
            }
        })
    };
    if everything || (!schemas.is_empty() && any_tenant_schema(schemas)?) {
        return Ok(Checks::all());
    }
    Ok(Checks::default())
}

/// One registry look-up (its plan kept in the backend: any DDL pays it).
fn any_tenant_schema(schemas: Vec<String>) -> TcResult<bool> {
    let found = crate::core::db::rows_kept(
        "SELECT 1 FROM tenant.tenant_schemas t
          WHERE t.schema_name OPERATOR(pg_catalog.=) ANY ($1)
            AND t.status OPERATOR(pg_catalog.<>) 'DROPPED' LIMIT 1",
        &[pg_sys::TEXTARRAYOID.into()],
        &[schemas.into()],
        |_| Ok(()),
    )?;
    Ok(!found.is_empty())
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
