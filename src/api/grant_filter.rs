//! `tenant.grant_touches_template(pg_ddl_command)`: whether a GRANT or REVOKE
//! names an object of `tenant_template`.
//!
//! GRANT and REVOKE give an event trigger no schema (pg_event_trigger_ddl_commands
//! shows schema_name NULL), so until 0.2.0 the template's event trigger
//! recomputed a hash of all the template's privileges on every GRANT and
//! REVOKE in the database: 5-8x the cost of the GRANT itself. The command
//! itself lists the objects it granted on (InternalGrant, expanded from
//! `ALL TABLES IN SCHEMA` too): reading their schemas answers the question
//! with a few cache look-ups. Written against the C calling convention
//! because pgrx has no SQL type for pg_ddl_command.

use pgrx::prelude::*;

#[no_mangle]
pub extern "C" fn pg_finfo_tc_grant_touches_template() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// # Safety
/// Called by PostgreSQL with one non-NULL pg_ddl_command argument (the SQL
/// declaration is STRICT), which is a pointer to a CollectedCommand that
/// lives until the event trigger returns.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_grant_touches_template(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let command = unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0) }.cast_mut_ptr::<pg_sys::CollectedCommand>();
    pg_sys::Datum::from(unsafe { touches_template(command) })
}

/// Only GRANT/REVOKE commands are judged; any other command is "no" (the
/// event trigger decides those from their schema).
pub(crate) unsafe fn touches_template(command: *const pg_sys::CollectedCommand) -> bool {
    if command.is_null() || unsafe { (*command).type_ } != pg_sys::CollectedCommandType::SCT_Grant {
        return false;
    }
    let grant = unsafe { (*command).d.grant.istmt };
    // SAFETY: a catalog look-up by name.
    let template = unsafe { pg_sys::get_namespace_oid(c"tenant_template".as_ptr(), true) };
    if grant.is_null() || template == pg_sys::InvalidOid {
        return false;
    }
    use pg_sys::ObjectType::*;
    // The template's privileges (tenant.template_privileges) are those of its
    // relations and their columns, functions and procedures, and types.
    let namespace_of: unsafe fn(pg_sys::Oid) -> pg_sys::Oid = match unsafe { (*grant).objtype } {
        OBJECT_TABLE | OBJECT_SEQUENCE => rel_namespace,
        OBJECT_FUNCTION | OBJECT_PROCEDURE | OBJECT_ROUTINE => func_namespace,
        OBJECT_TYPE | OBJECT_DOMAIN => type_namespace,
        _ => return false,
    };
    let objects = unsafe { (*grant).objects };
    if objects.is_null() {
        return false;
    }
    // SAFETY: InternalGrant.objects is a List of OIDs of `length` cells.
    let cells = unsafe { std::slice::from_raw_parts((*objects).elements, (*objects).length as usize) };
    cells.iter().any(|cell| unsafe { namespace_of(cell.oid_value) } == template)
}

unsafe fn rel_namespace(relation: pg_sys::Oid) -> pg_sys::Oid {
    unsafe { pg_sys::get_rel_namespace(relation) }
}

unsafe fn func_namespace(function: pg_sys::Oid) -> pg_sys::Oid {
    unsafe { pg_sys::get_func_namespace(function) }
}

unsafe fn type_namespace(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::TYPEOID as i32, type_oid.into());
        if tuple.is_null() {
            return pg_sys::InvalidOid;
        }
        let namespace = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_type>(tuple)).typnamespace;
        pg_sys::ReleaseSysCache(tuple);
        namespace
    }
}
