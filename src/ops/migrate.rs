//! Versioned migrations: numbered scripts applied to the template when they
//! are registered, and to each tenant (each atomically, in a subtransaction
//! of its own; committed in batches) by the procedure tenant.apply_migrations.
//!
//! A script that could run tenant code never runs as the extension's owner.
//! It runs as the role that
//! stands for the tenant in the schema it changes (`tenant_template_owner` in
//! the template when it is registered, `<schema>_owner` in each tenant), in a
//! security-restricted operation, with `search_path = <schema>` (pg_catalog
//! is then searched first, implicitly): a built-in wins over a tenant's function of the same signature, and
//! whatever tenant code still runs (a better-matching overload, a trigger the
//! tenant put on a table) runs with the tenant's own rights. For the length
//! of the script (inside the same transaction) that role is lent the
//! ownership of the schema's objects it does not own and USAGE, CREATE on
//! the schema; both are taken back before the transaction ends. In a
//! tenant, scripts made only of `ALTER TABLE t` / `CREATE INDEX ... ON t`
//! are lent the tables they name alone (see migrate_targets). Scripts that
//! only add plain columns run no code at all: in a tenant they run as the
//! extension's owner and nothing is lent (see migrate_plain).

use crate::copy::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db;
use crate::core::ddl_script;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::restricted;
use crate::core::subxact;
use crate::ops::migrate_lend::{Lending, Lent};
use crate::ops::migrate_plain::{self, Path};
pub use crate::ops::migrate_script::{execute, Migration};
use crate::ops::migrate_targets;
use crate::ops::quota;
use crate::registry::oplog::Operation;
use crate::registry::{self, Status};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::collections::{BTreeMap, BTreeSet};

/// Register the next migration and apply it to the template.
pub fn register(
    op: &mut Operation,
    version: Option<i32>,
    script: Option<&str>,
    description: Option<&str>,
) -> TcResult<i32> {
    let version = version.ok_or_else(|| TcError::null_argument("version"))?;
    let script = script.ok_or_else(|| TcError::null_argument("script"))?;
    if script.trim().is_empty() {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the migration script is empty"));
    }
    let description = description.ok_or_else(|| TcError::null_argument("description"))?;
    op.note("version", version);
    op.note("description", description);
    require_superuser("registering a migration")?;
    // Exclusive against the copies create_institution_schema takes (shared).
    locks::template_exclusive()?;
    let next = template::version()? + 1;
    if version != next {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("migration {version} cannot be registered: the next migration is {next}"),
        ));
    }
    let migration = Migration { version, script: script.to_string() };
    let outside_before = outside_template()?;
    let migrations = std::slice::from_ref(&migration);
    let ran = match migrate_plain::path(TEMPLATE_SCHEMA, migrations)? {
        // As in the tenants (see migrate_plain): nothing lent.
        Path::Plain { .. } => migrate_plain::run(TEMPLATE_SCHEMA, migrations).map(|()| Rebind::NotNeeded),
        Path::General => run_scripts(TEMPLATE_SCHEMA, TEMPLATE_ROLE, migrations),
    };
    ran.map_err(|error| {
        if error.code == PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE {
            error.hint(format!(
                "A migration runs as {TEMPLATE_ROLE} with search_path {TEMPLATE_SCHEMA}: it may create and change \
                 the template's objects only. Nothing was registered."
            ))
        } else {
            error
        }
    })?;
    refuse_changes_outside(version, &outside_before)?;
    template::note_change("MIGRATION")?;
    db::run(
        "INSERT INTO tenant.migrations (version, description, script) VALUES ($1, $2, $3)",
        &[version.into(), description.into(), script.into()],
    )?;
    Ok(version)
}

pub struct Migrated {
    pub schema: String,
    pub from: i32,
    pub to: i32,
}

/// Bring one tenant to the template's version: all its pending migrations
/// apply, or none does.
pub fn migrate(op: &mut Operation, schema_id: Option<pgrx::Uuid>) -> TcResult<Migrated> {
    release_caches_now_and_then();
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    // Spare schemas of the warm pool are migrated like institutions' schemas.
    if tenant.status == Status::Dropped {
        return registry::require_live(&tenant).map(|_| unreachable!());
    }
    let from = tenant.version;
    let pending = pending_since(from)?;
    let to = pending.last().map_or(from, |m| m.version);
    op.note("from_version", from);
    op.note("target_version", to);
    // Scripts that only add plain columns run no code of the tenant's: they
    // run as the extension's owner, lend nothing and create no object (see
    // migrate_plain).
    let path = migrate_plain::path(tenant.schema.as_str(), &pending)?;
    let plain = path != Path::General;
    if plain {
        op.note("plain_columns", true);
    }
    let size_before = match path {
        Path::Plain { sizes_kept: true } => None,
        _ => Some(registry::files_and_writes(tenant.schema.as_str())?),
    };
    restricted::internal_ddl(|| {
        if plain {
            return migrate_plain::run(tenant.schema.as_str(), &pending);
        }
        let rebind = run_scripts(tenant.schema.as_str(), tenant.role.as_str(), &pending)?;
        // What a migration adds gets the privileges and owners the template gives it.
        if !pending.is_empty() && rebind == Rebind::Needed {
            rebind_to_tenant(tenant.schema.as_str(), tenant.role.as_str())?;
            template::grant_like_template(&tenant.schema, &tenant.role)?;
        }
        Ok(())
    })?;
    op.note("to_version", to);
    if to != from {
        registry::set_version(&tenant, to)?;
        // Measuring every relation's bytes costs more than a one-column
        // ALTER: the tenant is recounted (and its quota state settled) only
        // when the migration created, dropped or rewrote a relation or wrote
        // rows, the only ways it can change the bytes or the table count
        // (plain columns added to tables that have a TOAST table do none).
        if let Some(before) = size_before {
            if registry::files_and_writes(tenant.schema.as_str())? != before {
                quota::recount(&tenant)?;
            }
        }
    }
    Ok(Migrated { schema: tenant.schema.as_str().to_string(), from, to })
}

/// A migration is written for the template: a function setting
/// `search_path` to it, a policy or a grant for its role, run in a tenant,
/// still name the template and its role. Rebind them to the tenant's own
/// schema and role, as a copy of the template would have them.
fn rebind_to_tenant(schema: &str, role: &str) -> TcResult<()> {
    let statements = template::catalog_read(|| {
        db::rows(
            include_str!("../../sql/queries/migration_rebind.sql"),
            &[schema.into(), TEMPLATE_SCHEMA.into(), TEMPLATE_ROLE.into()],
            |row| template::parts_of(row.get::<pgrx::JsonB>(1)?.map_or(serde_json::Value::Null, |j| j.0)),
        )
    })?;
    if statements.is_empty() {
        return Ok(());
    }
    let batch = statements.iter().map(|s| template::render(s, schema, role)).collect::<Vec<_>>();
    ddl_script::run(&batch.join(";\n"), "while binding the migration's objects to the tenant")
}

/// tenant.apply_migrations migrates the whole fleet in one backend: every
/// hundredth tenant, the catalog caches the tenants before it filled are
/// released (see db::release_catalog_caches).
fn release_caches_now_and_then() {
    thread_local! {
        static MIGRATED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let migrated = MIGRATED.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    });
    if migrated.is_multiple_of(db::TENANTS_PER_CACHE_RELEASE) {
        db::release_catalog_caches();
    }
}

fn pending_since(version: i32) -> TcResult<Vec<Migration>> {
    db::rows_kept(
        "SELECT version, script FROM tenant.migrations WHERE version > $1 ORDER BY version",
        &[pg_sys::INT4OID.into()],
        &[version.into()],
        |row| {
            Ok(Migration {
                version: db::col::<i32>(row, "version")?.unwrap_or_default(),
                script: db::col::<String>(row, "script")?.unwrap_or_default(),
            })
        },
    )
}

/// Whether a tenant's new objects must be rebound and granted like the
/// template's after its scripts ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rebind {
    Needed,
    /// The scripts only altered tables named in them (see migrate_targets)
    /// and the schema holds the very objects it held before: they can have
    /// created no function setting, policy or grant naming the template,
    /// and nothing lacks the template's privileges.
    NotNeeded,
}

/// Run migration scripts in `schema` as `role` (see the module comment). A
/// failure leaves the lent ownership and privileges to the rollback of the
/// caller's (sub)transaction, which undoes the scripts too.
fn run_scripts(schema: &str, role: &str, migrations: &[Migration]) -> TcResult<Rebind> {
    if migrations.is_empty() {
        return Ok(Rebind::NotNeeded);
    }
    let scripts = || migrations.iter().try_for_each(|migration| execute(schema, migration));
    if schema == TEMPLATE_SCHEMA {
        as_schema_role(schema, role, scripts, || Ok(()))?;
        return Ok(Rebind::Needed);
    }
    let before = bound_to_tenant_code(schema)?;
    // Function bodies were checked when the script ran on the template. In a
    // tenant, a function whose SET search_path names the template (rebound
    // right after, see rebind_to_tenant) would be checked with that path,
    // where the tenant's role may look up nothing.
    // Whether the scripts themselves failed (rather than a check after them).
    let scripts_failed = std::cell::Cell::new(false);
    let run = |lending: Lending| {
        let scripts = || scripts().inspect_err(|_| scripts_failed.set(true));
        db::with_setting("check_function_bodies", "off", || {
            lent_to_schema_role(schema, role, lending, scripts, || refuse_new_bindings(schema, migrations, &before))
        })
    };
    if let Some(tables) = migrate_targets::tables_altered(migrations.iter().map(|m| m.script.as_str())) {
        let objects = schema_objects(schema)?;
        // A statement that needed more than the named tables fails with
        // 42501: its work is rolled back and all of it runs again with
        // everything lent. A refusal by the checks after the scripts stands.
        match subxact::atomically(|| run(Lending::Tables(tables))) {
            Ok(()) if schema_objects(schema)? == objects => return Ok(Rebind::NotNeeded),
            Ok(()) => return Ok(Rebind::Needed),
            Err(error) if error.code == PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE && scripts_failed.get() => {}
            Err(error) => return Err(error),
        }
    }
    run(Lending::Everything)?;
    Ok(Rebind::Needed)
}

/// The objects that live in a schema (tables, sequences, views, routines,
/// types, ...: everything with a namespace dependency), as one string to
/// compare before and after a migration's scripts.
fn schema_objects(schema: &str) -> TcResult<String> {
    let found = db::rows_kept(
        "SELECT COALESCE(pg_catalog.string_agg(d.classid::text || ':' || d.objid::text, ',' ORDER BY d.classid, d.objid), '')
           FROM pg_catalog.pg_depend d
          WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
            AND d.refobjid OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace($1) AND d.refobjsubid OPERATOR(pg_catalog.=) 0",
        &[pg_sys::TEXTOID.into()],
        &[schema.into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )?;
    Ok(found.into_iter().next().unwrap_or_default())
}

/// What depends on a function or operator of schema $1 that the template
/// ($2) does not have (one the tenant created): "<object> uses <function>".
const BOUND_TO_TENANT_CODE: &str = r#"
WITH tenant_code AS (
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc t
                        WHERE t.oid IN (SELECT o.oid FROM tenant.schema_objects($2::text, 'pg_catalog.pg_proc') AS o(oid)) AND t.proname = p.proname
                          AND tenant.deparse_in($2::text, 'identity arguments', t.oid)
                              = tenant.deparse_in($1::text, 'identity arguments', p.oid))
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_operator o
     WHERE o.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_operator') AS o(oid))
)
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) || ' uses '
       || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0) AS binding
  FROM tenant_code c JOIN pg_catalog.pg_depend d ON d.refclassid = c.classid AND d.refobjid = c.oid
"#;

fn bound_to_tenant_code(schema: &str) -> TcResult<BTreeSet<String>> {
    let rows = template::catalog_read(|| {
        db::rows_kept(
            BOUND_TO_TENANT_CODE,
            &[pg_sys::TEXTOID.into(); 2],
            &[schema.into(), TEMPLATE_SCHEMA.into()],
            |row| Ok(db::col::<String>(row, "binding")?.unwrap_or_default()),
        )
    })?;
    Ok(rows.into_iter().collect())
}

/// A migration is written for the template: what it creates must use the
/// template's functions and operators and the built-ins. Where a tenant's
/// own overload matched better (a `lower(varchar)` for a varchar column), an
/// index, default or check would call the tenant's code from then on,
/// whoever writes the table or builds the index: the tenant's migration is
/// refused instead.
fn refuse_new_bindings(schema: &str, migrations: &[Migration], before: &BTreeSet<String>) -> TcResult<()> {
    let after = bound_to_tenant_code(schema)?;
    let new: Vec<&str> = after.difference(before).map(String::as_str).collect();
    if new.is_empty() {
        return Ok(());
    }
    let versions = migrations.iter().map(|m| m.version.to_string()).collect::<Vec<_>>().join(", ");
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("migration {versions} on schema {schema} would bind the template's objects to the tenant's own code: {}", new.join("; ")),
    )
    .hint("A function or operator the tenant created matches a call in the migration better than the built-in or the template's: \
           drop or rename it in the tenant's schema, or cast the arguments in the migration, then migrate again."))
}

/// Run `work` (DDL and data changes in `schema`) as `role`, the role that
/// stands for the tenant there, in a security-restricted operation with
/// `search_path = <schema>` (pg_catalog first, implicitly), lent what it
/// needs (see the module comment) for the length of the work. Used by
/// migrations and by the integrity check's repairs.
///
/// While a tenant's role holds the ownership of objects it does not own,
/// code the tenant wrote and the work calls (its trigger on a table the work
/// updates, its overload the work binds) runs as that role and could change
/// them: add a trigger or an expression index to a superuser's table, or
/// replace the body of a superuser's function. So in a tenant's schema the
/// lent objects must come out of the work either as they went in or as the
/// template has them; anything else refuses the work (42501).
/// `verify` runs (as the extension's owner) right after the work.
pub fn as_schema_role<T>(
    schema: &str,
    role: &str,
    work: impl FnOnce() -> TcResult<T>,
    verify: impl FnOnce() -> TcResult<()>,
) -> TcResult<T> {
    lent_to_schema_role(schema, role, Lending::Everything, work, verify)
}

/// as_schema_role, lending what `lending` says. When only tables are lent,
/// only they (with their columns, keys, indexes, triggers, policies and
/// rules) are compared: the role can change nothing else it does not own.
fn lent_to_schema_role<T>(
    schema: &str,
    role: &str,
    lending: Lending,
    work: impl FnOnce() -> TcResult<T>,
    verify: impl FnOnce() -> TcResult<()>,
) -> TcResult<T> {
    let lent = Lent::lend(schema, role, &lending)?;
    let guarded = schema != TEMPLATE_SCHEMA && lent.lends_anything();
    let before = if guarded { lent.structure()? } else { BTreeMap::new() };
    // The schema alone: PostgreSQL then searches pg_catalog before it (a
    // built-in wins over a function of the same signature), and unqualified
    // CREATE statements create in the schema (with pg_catalog named first,
    // they would try pg_catalog).
    let outcome = restricted::as_role(role, &quote_identifier(schema), work)?;
    verify()?;
    if guarded {
        lent.refuse_tampering(&before)?;
    }
    lent.give_back()?;
    Ok(outcome)
}

/// What the template's role owns, is granted or has set outside the
/// template: the objects it owns or is named in the privileges of (other
/// than the template's), its default privileges and its settings. Compared
/// before and after a migration is registered.
const OUTSIDE_TEMPLATE: &str = r#"
SELECT pg_catalog.format('%s %s', i.type, i.identity) AS object
  FROM pg_catalog.pg_shdepend s, LATERAL pg_catalog.pg_identify_object(s.classid, s.objid, s.objsubid) i
 WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = $1::pg_catalog.regrole
   AND s.dbid IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
   -- A policy (which names roles) has no schema of its own: its table's counts.
   AND COALESCE(i.schema, (SELECT n.nspname::text FROM pg_catalog.pg_policy p
                             JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
                             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                            WHERE s.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND p.oid = s.objid))
       IS DISTINCT FROM $2::text
   AND NOT (s.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND i.identity = pg_catalog.quote_ident($2::text))
UNION ALL
SELECT pg_catalog.format('default privileges of %s in %s', $1::text, COALESCE(a.defaclnamespace::pg_catalog.regnamespace::text, 'every schema'))
  FROM pg_catalog.pg_default_acl a WHERE a.defaclrole = $1::pg_catalog.regrole
UNION ALL
SELECT pg_catalog.format('settings of role %s', $1::text)
  FROM pg_catalog.pg_db_role_setting r WHERE r.setrole = $1::pg_catalog.regrole
"#;

fn outside_template() -> TcResult<BTreeSet<String>> {
    let rows = template::catalog_read(|| {
        db::rows(OUTSIDE_TEMPLATE, &[TEMPLATE_ROLE.into(), TEMPLATE_SCHEMA.into()], |row| {
            Ok(db::col::<String>(row, "object")?.unwrap_or_default())
        })
    })?;
    Ok(rows.into_iter().collect())
}

/// A migration may change the template only. Running as the template's role
/// already stops most of the rest (42501); this catches what that role may
/// do outside the template all the same (create in a schema where PUBLIC
/// may, set its own defaults).
fn refuse_changes_outside(version: i32, before: &BTreeSet<String>) -> TcResult<()> {
    let after = outside_template()?;
    let new: Vec<&String> = after.difference(before).collect();
    if new.is_empty() {
        return Ok(());
    }
    let list = new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("migration {version} creates or changes objects outside {TEMPLATE_SCHEMA}: {list}"),
    )
    .hint("A migration may create and change the template's objects only. Nothing was registered."))
}

fn require_superuser(what: &str) -> TcResult<()> {
    let superuser: bool = db::scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user", &[])?;
    if superuser {
        Ok(())
    } else {
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{what} requires a superuser session"),
        )
        .detail("A migration script runs with the rights of the extension's owner."))
    }
}
