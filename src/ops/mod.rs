//! Operations on tenants, built on the registry and the copies: lifecycle, warm pool, migrations,
//! quotas, context, backups and restores, maintenance.

pub mod backup;
pub mod context;
pub mod context_cache;
pub mod context_role;
pub mod fleet_report;
pub mod fleet_run;
pub mod last_access;
pub mod lifecycle;
pub mod limits;
pub mod maintenance;
pub mod migrate;
pub mod migrate_grants;
pub mod migrate_lend;
pub mod migrate_plain;
pub mod migrate_script;
pub mod migrate_targets;
pub mod pool;
pub mod portable;
pub mod portable_source;
pub mod quota;
pub mod reference;
pub mod registry_follow;
pub mod restore;
pub mod retention;
pub mod schema_cache;
pub mod shared_move;
