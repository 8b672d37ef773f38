//! Settings (GUCs) of the extension, registered when the library loads. The
//! statics are private: the rest of the code reads each setting through its
//! accessor below (the backup retention defaults are read by SQL, with
//! current_setting, in tenant.cleanup_backups).

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Optional `schema.table` of institutions that must exist before a tenant is created.
static INSTITUTIONS_TABLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Column of `INSTITUTIONS_TABLE` holding the institution id.
static INSTITUTIONS_ID_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"id"));
/// How long an operation waits for a lock before it gives up, in milliseconds.
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// Quota levels, in percent of a tenant's limit: a warning from this level on.
static QUOTA_WARNING_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(90);
/// A tenant over its limit may write again once below this level.
static QUOTA_RESUME_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(95);
/// How often (ms) a session re-measures a tenant near or over its limit.
static QUOTA_RECHECK_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Seconds a tenant may stay over its limit before it is SUSPENDED; 0 = never.
static QUOTA_SUSPEND_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(0);

/// The institution of the current transaction, set by tenant.set_context
/// only: SUSET, so no session can claim another institution by SET.
static INSTITUTION_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Seconds after which a tenant's last backup makes it degraded in the health checks; 0 turns the check off.
static HEALTH_BACKUP_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86400);

/// Megabytes a backup must leave free on the data directory's file system.
static BACKUP_RESERVE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
/// Retention defaults for tenant.cleanup_backups (read by the procedure).
static BACKUP_KEEP_LAST: GucSetting<i32> = GucSetting::<i32>::new(0);
static BACKUP_MAX_AGE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Background workers a check of the whole fleet starts beside the calling
/// backend (see integrity::parallel); 0 checks every tenant in the caller.
static INTEGRITY_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Lets DROP EXTENSION tenant_control go ahead while institutions or backups
/// exist (their registry rows, log and catalogue are discarded).
static ALLOW_DROP_WITH_TENANTS: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn register() {
    // Quota settings decide what a tenant may write: a tenant's own session must not change them.
    GucRegistry::define_int_guc(
        c"tenant_control.quota_warning_percent",
        c"Percent of its quota from which a tenant is in the WARNING state.",
        c"Each transition is logged; the tenant's sessions get a WARNING (at most once a minute) while writing.",
        &QUOTA_WARNING_PERCENT,
        1,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_control.quota_resume_percent",
        c"Percent of its quota below which a tenant over its limit may write again.",
        c"The hysteresis margin: a tenant hovering at its limit does not flip between states.",
        &QUOTA_RESUME_PERCENT,
        1,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_control.quota_recheck_interval",
        c"How often a session writing to a tenant near or over its quota re-measures the tenant.",
        c"Bounds how long a tenant can write past its limit between two storage refreshes.",
        &QUOTA_RECHECK_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"tenant_control.quota_suspend_after",
        c"How long a tenant may stay over its quota before a storage refresh SUSPENDS it; 0 never does.",
        c"The suspension is logged as a STATUS_CHANGE; activate the tenant by hand once it is back under its limit.",
        &QUOTA_SUSPEND_AFTER_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"tenant_control.institution_id",
        c"The institution of the current transaction (set by tenant.set_context).",
        c"Read it with tenant.current_institution(); shared-table policies compare rows with it.",
        &INSTITUTION_ID,
        GucContext::Suset,
        GucFlags::default(),
    );
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
    // SUSET: only a superuser may decide to discard the registry.
    GucRegistry::define_bool_guc(
        c"tenant_control.allow_drop_with_tenants",
        c"Let DROP EXTENSION tenant_control discard the registry, the log and the backup catalogue of existing tenants.",
        c"Off: the drop is refused (SQLSTATE 2BP01) while institutions or backups exist. Set it with SET LOCAL in the dropping transaction.",
        &ALLOW_DROP_WITH_TENANTS,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SUSET: a caller of the check must not take more of the server's worker slots than the DBA allows.
    GucRegistry::define_int_guc(
        c"tenant_control.integrity_workers",
        c"Background workers a check of the whole fleet (tenant.check_integrity) starts to share its tenants.",
        c"Each worker checks tenants in a fresh backend of its own, as the extension's owner; the caller checks tenants too and gathers the findings in the usual order. Bounded by max_worker_processes; 0 checks every tenant in the calling backend.",
        &INTEGRITY_WORKERS,
        0,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_control.backup_reserve",
        c"Free space a backup must leave on the data directory's file system.",
        c"A backup whose estimated size plus this reserve exceeds the free space is refused with SQLSTATE 53100 before it starts.",
        &BACKUP_RESERVE_MB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"tenant_control.backup_keep_last",
        c"tenant.cleanup_backups keeps at least this many newest backups per institution (0: no count rule).",
        c"Used when cleanup_backups is called without keep_last.",
        &BACKUP_KEEP_LAST,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_control.backup_max_age",
        c"tenant.cleanup_backups keeps backups younger than this interval (empty: no age rule).",
        c"Used when cleanup_backups is called without max_age, e.g. '30 days'.",
        &BACKUP_MAX_AGE,
        GucContext::Suset,
        GucFlags::default(),
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
        c"tenant_control.health_backup_max_age",
        c"Age of a tenant's last backup beyond which its health is degraded (0: not checked).",
        c"Accepts units: '36h', '2d'. Read by tenant.institution_health and tenant.fleet_health.",
        &HEALTH_BACKUP_MAX_AGE_S,
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

pub fn backup_reserve_bytes() -> i64 {
    i64::from(BACKUP_RESERVE_MB.get()) * 1024 * 1024
}

pub fn integrity_workers() -> i32 {
    INTEGRITY_WORKERS.get()
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}

pub fn quota_warning_percent() -> i32 {
    QUOTA_WARNING_PERCENT.get()
}

pub fn quota_resume_percent() -> i32 {
    QUOTA_RESUME_PERCENT.get()
}

pub fn quota_recheck_ms() -> i32 {
    QUOTA_RECHECK_MS.get()
}

pub fn quota_suspend_after_s() -> i32 {
    QUOTA_SUSPEND_AFTER_S.get()
}

pub fn institution_id() -> Option<String> {
    INSTITUTION_ID.get().map(|value| value.to_string_lossy().trim().to_string()).filter(|value| !value.is_empty())
}

pub fn allow_drop_with_tenants() -> bool {
    ALLOW_DROP_WITH_TENANTS.get()
}

pub fn health_backup_max_age_s() -> i32 {
    HEALTH_BACKUP_MAX_AGE_S.get()
}
