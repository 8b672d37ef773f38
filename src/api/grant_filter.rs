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

use crate::core::catalog::cells;
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
    // SAFETY: InternalGrant.objects is a List of OIDs (NIL when empty).
    unsafe { cells((*grant).objects) }.iter().any(|cell| unsafe { namespace_of(cell.oid_value) } == template)
}

/// Whether a GRANT or REVOKE statement surely names no object of
/// `tenant_template`, told from its parse tree alone: each object named with
/// a schema names another schema, and for the names without one the
/// template is not on the `search_path` they were resolved with (the event
/// trigger runs as the statement's caller, with its settings). `false` means
/// "may": the collected command is then read (`touches_template`), which
/// costs a set-returning call and a catalog look-up per object, about a
/// tenth of a GRANT. Only the kinds `touches_template` judges can be "may".
///
/// # Safety
/// `parsetree` is the event trigger's parse tree (or null).
pub(crate) unsafe fn surely_not_template(parsetree: *mut pg_sys::Node) -> bool {
    use pg_sys::ObjectType::*;
    if parsetree.is_null() || !unsafe { pgrx::is_a(parsetree, pg_sys::NodeTag::T_GrantStmt) } {
        return false;
    }
    let statement = parsetree as *mut pg_sys::GrantStmt;
    let kind = unsafe { (*statement).objtype };
    if !matches!(
        kind,
        OBJECT_TABLE
            | OBJECT_SEQUENCE
            | OBJECT_FUNCTION
            | OBJECT_PROCEDURE
            | OBJECT_ROUTINE
            | OBJECT_TYPE
            | OBJECT_DOMAIN
    ) {
        return true;
    }
    // SAFETY: a catalog look-up by name.
    let template = unsafe { pg_sys::get_namespace_oid(c"tenant_template".as_ptr(), true) };
    if template == pg_sys::InvalidOid {
        return true;
    }
    let objects = unsafe { cells((*statement).objects) };
    let not_template =
        |schema: *const std::ffi::c_char| unsafe { std::ffi::CStr::from_ptr(schema) } != c"tenant_template";
    match unsafe { (*statement).targtype } {
        // ALL ... IN SCHEMA: a list of schema names.
        pg_sys::GrantTargetType::ACL_TARGET_ALL_IN_SCHEMA => objects
            .iter()
            .all(|cell| unsafe { string_value(cell.ptr_value as *mut pg_sys::Node) }.is_some_and(not_template)),
        pg_sys::GrantTargetType::ACL_TARGET_OBJECT => {
            // SAFETY: the search path as the statement's names were resolved with.
            let on_path = unsafe { pg_sys::list_member_oid(pg_sys::fetch_search_path(true), template) };
            objects.iter().all(|cell| match unsafe { explicit_schema(kind, cell.ptr_value as *mut pg_sys::Node) } {
                Named::Schema(schema) => not_template(schema),
                Named::Unqualified => !on_path,
                Named::Unknown => false,
            })
        }
        _ => false,
    }
}

/// How an object of a GRANT statement is named.
enum Named {
    Schema(*const std::ffi::c_char),
    Unqualified,
    Unknown,
}

/// The schema an object of a GRANT statement is named with: a RangeVar for
/// relations, a name list (in an ObjectWithArgs for routines) for the rest.
unsafe fn explicit_schema(kind: pg_sys::ObjectType::Type, object: *mut pg_sys::Node) -> Named {
    use pg_sys::ObjectType::*;
    if object.is_null() {
        return Named::Unknown;
    }
    unsafe {
        let names = match kind {
            OBJECT_TABLE | OBJECT_SEQUENCE if pgrx::is_a(object, pg_sys::NodeTag::T_RangeVar) => {
                let schema = (*(object as *mut pg_sys::RangeVar)).schemaname;
                return if schema.is_null() { Named::Unqualified } else { Named::Schema(schema) };
            }
            OBJECT_FUNCTION | OBJECT_PROCEDURE | OBJECT_ROUTINE
                if pgrx::is_a(object, pg_sys::NodeTag::T_ObjectWithArgs) =>
            {
                (*(object as *mut pg_sys::ObjectWithArgs)).objname
            }
            OBJECT_TYPE | OBJECT_DOMAIN if pgrx::is_a(object, pg_sys::NodeTag::T_List) => object as *mut pg_sys::List,
            _ => return Named::Unknown,
        };
        // name, schema.name or catalog.schema.name
        let parts = cells(names);
        match parts.len() {
            1 => Named::Unqualified,
            2 | 3 => string_value(parts[parts.len() - 2].ptr_value as *mut pg_sys::Node)
                .map_or(Named::Unknown, Named::Schema),
            _ => Named::Unknown,
        }
    }
}

unsafe fn string_value(node: *mut pg_sys::Node) -> Option<*const std::ffi::c_char> {
    (!node.is_null() && unsafe { pgrx::is_a(node, pg_sys::NodeTag::T_String) })
        .then(|| unsafe { (*(node as *mut pg_sys::String)).sval as *const std::ffi::c_char })
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
