//! `#[pg_test]` unit tests, one module per concern. Each test runs in one superuser
//! transaction that is rolled back (roles, concurrency, crashes and pg_cron are tested over
//! real connections in pgrx-tests/). pgrx runs them from SQL schema `tests`, so every file
//! holds a `#[pg_schema] mod tests`; helpers shared between files are `pub(crate)` and
//! re-exported here.

mod backup;
mod backup_load;
mod fidelity;
mod fleet;
mod integrity;
mod lifecycle;
mod lifecycle_data;
mod migrate;
mod monitor;
mod portable;
mod quota;
mod template;
mod template_cycles;
mod template_kinds;
mod template_order;
mod template_partitions;
mod template_rows;

pub(crate) use backup::tests::{rich_tenant, take_backup};
pub(crate) use integrity::tests::*;
pub(crate) use lifecycle::tests::*;
pub(crate) use quota::tests::*;
pub(crate) use template::tests::*;
