//! Settings (GUCs) of the extension, registered when the library loads.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Optional `schema.table` of institutions that must exist before a tenant is created.
pub static INSTITUTIONS_TABLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Column of `INSTITUTIONS_TABLE` holding the institution id.
pub static INSTITUTIONS_ID_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"id"));
/// How long an operation waits for a lock before it gives up, in milliseconds.
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// Seconds after which a tenant's last backup makes it degraded in the health checks; 0 turns the check off.
pub static BACKUP_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86400);

/// Set by the extension around its own DDL on tenant schemas, so that the
/// event trigger watching the template does not count it as a template change.
pub static INTERNAL_DDL: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn register() {
    // SUSET: which table is trusted as the list of institutions is a superuser decision.
    GucRegistry::define_string_guc(
        c"tenant_control.institutions_table",
        c"Table of institutions checked by create_institution_schema.",
        c"When set (e.g. public.institutions), a tenant can only be created for an institution id present in it. Empty: no check.",
        &INSTITUTIONS_TABLE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_control.institutions_id_column",
        c"Column of tenant_control.institutions_table holding the institution id.",
        c"Defaults to id.",
        &INSTITUTIONS_ID_COLUMN,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_control.internal_ddl",
        c"Internal: set while tenant_control runs DDL on tenant schemas.",
        c"Not for users: DDL run with it on is not seen as a change of the template.",
        &INTERNAL_DDL,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"tenant_control.lock_timeout",
        c"Milliseconds an operation waits for a lock on a tenant before failing with SQLSTATE 55P03.",
        c"Keeps DDL on a busy tenant from queueing the tenant's own traffic behind it.",
        &LOCK_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"tenant_control.backup_max_age",
        c"Age of a tenant's last backup beyond which its health is degraded (0: not checked).",
        c"Accepts units: '36h', '2d'. Read by tenant.institution_health and tenant.fleet_health.",
        &BACKUP_MAX_AGE_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
}

pub fn institutions_table() -> Option<String> {
    INSTITUTIONS_TABLE.get().map(|value| value.to_string_lossy().trim().to_string()).filter(|value| !value.is_empty())
}

pub fn institutions_id_column() -> String {
    INSTITUTIONS_ID_COLUMN.get().map(|value| value.to_string_lossy().into_owned()).unwrap_or_else(|| "id".into())
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}
