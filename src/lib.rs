//! tenant_control: schema-per-tenant multi-tenancy inside PostgreSQL.

use pgrx::prelude::*;

mod api;
mod api_lifecycle_data;
mod backup;
mod copy;
mod db;
mod drift;
mod errors;
mod fleet;
mod integrity;
mod isolation;
mod lifecycle;
mod limits;
mod maintenance;
mod migrate;
mod name;
mod oplog;
mod orphans;
mod pool;
mod quota;
mod registry;
mod restore;
mod restricted;
mod retention;
mod settings;
mod subxact;
mod template;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
    include!("tests_template.rs");
    include!("tests_migrate.rs");
    include!("tests_quota.rs");
    include!("tests_backup.rs");
    include!("tests_integrity.rs");
    include!("tests_monitor.rs");
    include!("tests_lifecycle_data.rs");
    include!("tests_portable.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
