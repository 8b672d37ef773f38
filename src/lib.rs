//! tenant_control: schema-per-tenant multi-tenancy inside PostgreSQL.

// pgrx spells a function's result columns out in its signature
// (TableIterator<(name!(status, String), ...)>): that is the SQL surface, not complexity.
#![allow(clippy::type_complexity)]

use pgrx::prelude::*;

mod api;
mod copy;
mod core;
mod integrity;
mod ops;
mod registry;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    core::settings::register();
    core::audit::register();
    ops::context_cache::register();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
