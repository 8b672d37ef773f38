//! Versioned migrations: numbered scripts applied to the template when they
//! are registered, and to each tenant (one tenant per transaction) by the
//! procedure tenant.apply_migrations.
//!
//! A script never runs as the extension's owner. It runs as the role that
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
//! are lent the tables they name alone (see migrate_targets).

use crate::copy::structure::{self, Key};
use crate::copy::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db;
use crate::core::errors;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::restricted;
use crate::core::subxact;
use crate::ops::migrate_targets;
use crate::ops::quota;
use crate::registry::oplog::Operation;
use crate::registry::{self, Status};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiError, SpiErrorCodes};
use std::collections::{BTreeMap, BTreeSet};

pub struct Migration {
    pub version: i32,
    pub script: String,
}

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
    run_scripts(TEMPLATE_SCHEMA, TEMPLATE_ROLE, std::slice::from_ref(&migration)).map_err(|error| {
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
    let size_before = registry::files_and_writes(tenant.schema.as_str())?;
    restricted::internal_ddl(|| {
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
        // rows, the only ways it can change the bytes or the table count.
        if registry::files_and_writes(tenant.schema.as_str())? != size_before {
            quota::recount(&tenant)?;
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
    db::run_explained(&batch.join(";\n"), "while binding the migration's objects to the tenant")
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
    db::rows(
        "SELECT version, script FROM tenant.migrations WHERE version > $1 ORDER BY version",
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

/// What the tenant's role is lent for the length of its scripts.
enum Lending {
    /// Every object of the schema it does not own.
    Everything,
    /// The tables the scripts name (and, so that rows are seen as with
    /// everything lent, the tables under row-level security).
    Tables(BTreeSet<String>),
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
    let guarded = schema != TEMPLATE_SCHEMA && !lent.objects.is_empty();
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
    let granted_before = lent.tables.clone().zip(lent.granted_to_others.clone());
    lent.give_back()?;
    if let Some((tables, before)) = granted_before {
        refuse_new_grants(schema, &tables, &before)?;
    }
    Ok(outcome)
}

/// The privileges the tables and their columns grant to roles other than
/// their owners: "table column grantee privilege grantable".
const GRANTED_TO_OTHERS: &str = r#"
SELECT pg_catalog.format('%s %s %s %s %s', c.relname, 0, x.grantee, x.privilege_type, x.is_grantable) AS entry
  FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) x
 WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND x.grantee OPERATOR(pg_catalog.<>) c.relowner
UNION ALL
SELECT pg_catalog.format('%s %s %s %s %s', c.relname, a.attname, x.grantee, x.privilege_type, x.is_grantable)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid,
       LATERAL pg_catalog.aclexplode(a.attacl) x
 WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND a.attnum OPERATOR(pg_catalog.>) 0
   AND a.attacl IS NOT NULL AND x.grantee OPERATOR(pg_catalog.<>) c.relowner
"#;

fn granted_to_others(tables: &[pg_sys::Oid]) -> TcResult<BTreeSet<String>> {
    let rows = db::rows_kept(GRANTED_TO_OTHERS, &[pg_sys::OIDARRAYOID.into()], &[tables.to_vec().into()], |row| {
        Ok(row.get::<String>(1)?.unwrap_or_default())
    })?;
    Ok(rows.into_iter().collect())
}

/// While it owned a lent table, the tenant's role (through its code that the
/// scripts set off) could grant privileges on it to other roles, and such
/// grants would outlive the lending. The statements that take the
/// named-tables path grant nothing, so the tables must grant no more after
/// the scripts than before.
fn refuse_new_grants(schema: &str, tables: &[pg_sys::Oid], before: &BTreeSet<String>) -> TcResult<()> {
    let after = granted_to_others(tables)?;
    let new: Vec<&str> = after.difference(before).map(String::as_str).collect();
    if new.is_empty() {
        return Ok(());
    }
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("tables of schema {schema} not owned by its role were granted privileges while it was migrated: {}", new.join("; ")),
    )
    .hint("Code of the tenant that ran during the migration granted them; nothing was kept. Run tenant.check_integrity on the tenant."))
}

/// One script, through SPI. SPI refuses transaction control (COMMIT,
/// ROLLBACK, SAVEPOINT, ...) and COPY; they get an error that says so.
fn execute(schema: &str, migration: &Migration) -> TcResult<()> {
    let context = format!("migration {} on schema {schema}", migration.version);
    let ran = errors::caught(|| {
        Spi::connect_mut(|client| client.update(&migration.script, None, &[]).map(|_| ())).map_err(|error| match error {
            SpiError::SpiError(SpiErrorCodes::Transaction) => TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
                format!("migration {} contains a transaction control statement (COMMIT, ROLLBACK, BEGIN, SAVEPOINT, ...)", migration.version),
            )
            .hint("A migration runs inside the transaction that registers it, or that migrates one tenant: remove the statement."),
            SpiError::SpiError(SpiErrorCodes::Copy) => TcError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("migration {} contains COPY, which a migration cannot run", migration.version),
            ),
            other => TcError::from(other),
        })
    });
    ran.map_err(|error| {
        let detail = match &error.detail {
            Some(detail) => format!("{detail}; {context}"),
            None => context,
        };
        error.detail(detail)
    })
}

/// The objects of a schema, whether a role owns them, as ALTER ... OWNER
/// statement heads (fully qualified), with their catalog, oid, owner and
/// name as tenant.check_integrity names them. Indexes, a table's row type
/// and the sequences of its columns follow their table. Run with the catalog
/// search_path. A routine is named by its argument types alone
/// (oidvectortypes): the identity arguments of an ordered-set aggregate,
/// `(integer ORDER BY integer)`, are no syntax ALTER/GRANT ... ROUTINE takes.
const NOT_OWNED: &str = r#"
SELECT o.catalog, o.oid, pg_catalog.format('ALTER %s %s OWNER TO ', o.kind, o.identity) AS head,
       o.owner::pg_catalog.regrole::text AS owner, o.name, o.kind, o.identity, o.rls,
       o.owner = $2::pg_catalog.regrole AS owned
  FROM (
    SELECT 'pg_class' AS catalog, c.oid, c.relowner AS owner, c.relrowsecurity AS rls,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
           pg_catalog.format('%I.%I', $1::text, c.relname) AS identity, c.relname::text AS name
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid)) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 'pg_proc', p.oid, p.proowner, false, 'ROUTINE',
           pg_catalog.format('%I.%I(%s)', $1::text, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),
           pg_catalog.format('%I(%s)', p.proname, tenant.deparse_in($1::text, 'identity arguments', p.oid))
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid))
    UNION ALL
    SELECT 'pg_type', t.oid, t.typowner, false, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           pg_catalog.format('%I.%I', $1::text, t.typname), t.typname::text
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS o(oid))
       AND (t.typtype IN ('e', 'd', 'r')
            OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
  ) o
 ORDER BY o.oid
"#;

/// One object of NOT_OWNED.
struct Owned {
    key: (String, pg_sys::Oid),
    head: String,
    owner: String,
    name: String,
    kind: String,
    identity: String,
    /// A table under row-level security.
    rls: bool,
}

/// The objects of a schema (not) owned by a role.
fn not_owned(schema: &str, role: &str, owned_by_role: bool) -> TcResult<Vec<Owned>> {
    let (owned, not_owned) = owned_and_not(schema, role)?;
    Ok(if owned_by_role { owned } else { not_owned })
}

/// The objects of a schema owned by a role, and the others.
fn owned_and_not(schema: &str, role: &str) -> TcResult<(Vec<Owned>, Vec<Owned>)> {
    let rows = template::catalog_read(|| {
        db::rows_kept(
            NOT_OWNED,
            &[pg_sys::TEXTOID.into(); 2],
            &[schema.into(), quote_identifier(role).as_str().into()],
            |row| {
                let owned = db::col::<bool>(row, "owned")?.unwrap_or_default();
                Ok((
                    owned,
                    Owned {
                        key: (
                            db::col::<String>(row, "catalog")?.unwrap_or_default(),
                            db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default(),
                        ),
                        head: db::col::<String>(row, "head")?.unwrap_or_default(),
                        owner: db::col::<String>(row, "owner")?.unwrap_or_default(),
                        name: db::col::<String>(row, "name")?.unwrap_or_default(),
                        kind: db::col::<String>(row, "kind")?.unwrap_or_default(),
                        identity: db::col::<String>(row, "identity")?.unwrap_or_default(),
                        rls: db::col::<bool>(row, "rls")?.unwrap_or_default(),
                    },
                ))
            },
        )
    })?;
    let (owned, not): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(owned, _)| *owned);
    Ok((owned.into_iter().map(|(_, o)| o).collect(), not.into_iter().map(|(_, o)| o).collect()))
}

/// The default privileges the current user has in the template (ALTER
/// DEFAULT PRIVILEGES, as the extension sets them for tables and sequences),
/// granted on an object given to it after it was created.
const DEFAULT_PRIVILEGES: &str = r#"
SELECT pg_catalog.format('GRANT %s ON %s TO %s%s', x.privilege_type, $2::text,
                         CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) x
 WHERE d.defaclrole = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
   AND d.defaclnamespace IN (0, $3::pg_catalog.regnamespace) AND d.defaclobjtype = $1::"char"
   AND x.grantee <> d.defaclrole
"#;

fn apply_default_privileges(object: &Owned) -> TcResult<()> {
    let target = &object.identity;
    let (objtype, on) = match object.kind.as_str() {
        "SEQUENCE" => ("S", format!("SEQUENCE {target}")),
        "ROUTINE" => ("f", format!("ROUTINE {target}")),
        "TYPE" | "DOMAIN" => ("T", format!("TYPE {target}")),
        _ => ("r", format!("TABLE {target}")),
    };
    let grants = template::catalog_read(|| {
        db::rows(
            DEFAULT_PRIVILEGES,
            &[objtype.into(), on.as_str().into(), quote_identifier(TEMPLATE_SCHEMA).as_str().into()],
            |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
        )
    })?;
    grants.iter().try_for_each(|grant| db::run(grant, &[]))
}

/// The template's structure, the same for every tenant a fleet migration
/// checks (kept until the template changes).
fn template_structure() -> TcResult<BTreeMap<Key, String>> {
    thread_local! {
        static KEPT: template::TemplateCell<BTreeMap<Key, String>> = const { std::cell::RefCell::new(None) };
    }
    template::per_template(&KEPT, || structure::read(TEMPLATE_SCHEMA, TEMPLATE_ROLE))
}

/// The names of what the template's role owns in the template (kept until
/// the template changes).
fn template_role_owns() -> TcResult<BTreeSet<String>> {
    thread_local! {
        static KEPT: template::TemplateCell<BTreeSet<String>> = const { std::cell::RefCell::new(None) };
    }
    template::per_template(&KEPT, || {
        Ok(not_owned(TEMPLATE_SCHEMA, TEMPLATE_ROLE, true)?.into_iter().map(|o| o.name).collect())
    })
}

/// One privilege an object (or a column of it: `column` > 0) grants a role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RoleGrant {
    /// Catalog and oid.
    object: (String, u32),
    column: i16,
    privilege: String,
    grantable: bool,
}

/// The privileges the objects grant the role ($4), from their ACLs.
const ROLE_GRANTS: &str = r#"
SELECT o.catalog, o.oid, o.attnum, x.privilege_type AS privilege, x.is_grantable AS grantable
  FROM (SELECT 'pg_class' AS catalog, c.oid, 0::pg_catalog.int2 AS attnum, c.relacl AS acl
          FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
        UNION ALL
        SELECT 'pg_class', a.attrelid, a.attnum, a.attacl FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND a.attnum OPERATOR(pg_catalog.>) 0
           AND NOT a.attisdropped AND a.attacl IS NOT NULL
        UNION ALL
        SELECT 'pg_proc', p.oid, 0::pg_catalog.int2, p.proacl FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.oid[])
        UNION ALL
        SELECT 'pg_type', t.oid, 0::pg_catalog.int2, t.typacl FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.oid[])) o,
       LATERAL pg_catalog.aclexplode(o.acl) x
 WHERE x.grantee OPERATOR(pg_catalog.=) $4::pg_catalog.regrole
"#;

fn role_grants<'a>(objects: impl IntoIterator<Item = &'a Owned>, role: &str) -> TcResult<BTreeSet<RoleGrant>> {
    let mut oids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for object in objects {
        oids.entry(object.key.0.as_str()).or_default().push(object.key.1.to_u32().to_string());
    }
    if oids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let array = |catalog: &str| format!("{{{}}}", oids.get(catalog).map(|o| o.join(",")).unwrap_or_default());
    let rows = template::catalog_read(|| {
        db::rows_kept(
            ROLE_GRANTS,
            &[pg_sys::TEXTOID.into(); 4],
            &[
                array("pg_class").as_str().into(),
                array("pg_proc").as_str().into(),
                array("pg_type").as_str().into(),
                quote_identifier(role).as_str().into(),
            ],
            |row| {
                Ok(RoleGrant {
                    object: (
                        db::col::<String>(row, "catalog")?.unwrap_or_default(),
                        db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default().to_u32(),
                    ),
                    column: db::col::<i16>(row, "attnum")?.unwrap_or_default(),
                    privilege: db::col::<String>(row, "privilege")?.unwrap_or_default(),
                    grantable: db::col::<bool>(row, "grantable")?.unwrap_or_default(),
                })
            },
        )
    })?;
    Ok(rows.into_iter().collect())
}

/// GRANT statements that give the role (`role_q`, quoted) the `lost`
/// privileges again on the objects (under their names in `objects`): one
/// statement per kind of object, privileges and grant option (granting takes
/// locks, and event triggers fire once per statement), one per column grant.
fn grant_statements(lost: &[&RoleGrant], objects: &[&Owned], role_q: &str) -> TcResult<Vec<String>> {
    let mut privileges: BTreeMap<(&(String, u32), i16, bool), Vec<&str>> = BTreeMap::new();
    for grant in lost {
        privileges.entry((&grant.object, grant.column, grant.grantable)).or_default().push(&grant.privilege);
    }
    let mut tables: BTreeMap<(&str, String, bool), Vec<&str>> = BTreeMap::new();
    let mut statements = Vec::new();
    for ((key, column, grantable), privileges) in privileges {
        let Some(object) = objects.iter().find(|o| o.key.0 == key.0 && o.key.1.to_u32() == key.1) else { continue };
        let on = match object.kind.as_str() {
            "SEQUENCE" => "SEQUENCE",
            "ROUTINE" => "ROUTINE",
            "TYPE" => "TYPE",
            "DOMAIN" => "DOMAIN",
            _ => "TABLE",
        };
        if column > 0 {
            let Some(name) = db::value::<String>(
                "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum = $2 AND NOT attisdropped",
                &[pg_sys::Oid::from(key.1).into(), column.into()],
            )?
            else {
                continue;
            };
            let name = quote_identifier(&name);
            let list = privileges.iter().map(|p| format!("{p} ({name})")).collect::<Vec<_>>().join(", ");
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            statements.push(format!("GRANT {list} ON TABLE {} TO {role_q}{option}", object.identity));
        } else {
            tables.entry((on, privileges.join(", "), grantable)).or_default().push(&object.identity);
        }
    }
    for ((on, privileges, grantable), targets) in tables {
        let option = if grantable { " WITH GRANT OPTION" } else { "" };
        statements.push(format!("GRANT {privileges} ON {on} {} TO {role_q}{option}", targets.join(", ")));
    }
    Ok(statements)
}

/// What a migration's role was lent for the length of its scripts.
struct Lent {
    schema: String,
    role: String,
    /// The objects lent, with the owners to give them back to.
    objects: Vec<Owned>,
    /// What the lent objects granted the role before: lending folds the
    /// grants naming the role into the owner's, and giving back does not
    /// unfold them.
    grants: BTreeSet<RoleGrant>,
    /// What the role owned before: anything else it owns afterwards is new.
    owned_before: Vec<(String, pg_sys::Oid)>,
    /// Schema privileges the role did not hold.
    privileges: Vec<&'static str>,
    /// When only tables were lent: their oids (the structure compared).
    tables: Option<Vec<pg_sys::Oid>>,
    /// When only tables were lent: what they granted other roles before.
    granted_to_others: Option<BTreeSet<String>>,
}

impl Lent {
    fn lend(schema: &str, role: &str, lending: &Lending) -> TcResult<Lent> {
        let (schema_q, role_q) = (quote_identifier(schema), quote_identifier(role));
        let mut privileges = Vec::new();
        for privilege in ["USAGE", "CREATE"] {
            let held: bool = db::scalar(
                "SELECT pg_catalog.has_schema_privilege($1::pg_catalog.regrole, $2::pg_catalog.regnamespace, $3)",
                &[role_q.as_str().into(), schema_q.as_str().into(), privilege.into()],
            )?;
            if !held {
                db::run(&format!("GRANT {privilege} ON SCHEMA {schema_q} TO {role_q}"), &[])?;
                privileges.push(privilege);
            }
        }
        let (owned, mut objects) = owned_and_not(schema, role)?;
        let owned_before = owned.into_iter().map(|o| o.key).collect();
        let tables = match lending {
            Lending::Everything => None,
            Lending::Tables(names) => {
                objects.retain(|o| o.key.0 == "pg_class" && (o.rls || names.contains(&o.name)));
                Some(objects.iter().map(|o| o.key.1).collect())
            }
        };
        let granted_to_others = tables.as_deref().map(granted_to_others).transpose()?;
        let grants = role_grants(&objects, role)?;
        // One batch: one round through SPI for all of them.
        let lend = objects.iter().map(|object| format!("{}{role_q}", object.head)).collect::<Vec<_>>();
        if !lend.is_empty() {
            db::run(&lend.join(";\n"), &[])?;
        }
        Ok(Lent {
            schema: schema.to_string(),
            role: role.to_string(),
            objects,
            grants,
            owned_before,
            privileges,
            tables,
            granted_to_others,
        })
    }

    /// The structure compared before and after the work: the schema's, or
    /// the lent tables' alone.
    fn structure(&self) -> TcResult<BTreeMap<Key, String>> {
        match &self.tables {
            None => structure::read(&self.schema, &self.role),
            Some(tables) => structure::read_tables(&self.schema, &self.role, tables),
        }
    }

    /// Objects are found again by oid: a script may have renamed them.
    /// What the work created gets the owner it had before migrations ran as
    /// the tenant's role: in the template, the extension's owner (the role
    /// that runs the migration's statements as superuser did), with the
    /// default privileges it has in the template; in a tenant, the owner the
    /// template gives it (grant_like_template then copies the privileges).
    /// So a function a migration creates is never the tenant's to replace
    /// while an index of the superuser's table calls it (ANALYZE runs such
    /// expressions as the table's owner).
    fn give_back(self) -> TcResult<()> {
        let (schema_q, role_q) = (quote_identifier(&self.schema), quote_identifier(&self.role));
        let template_role_owns: BTreeSet<String> =
            if self.schema == TEMPLATE_SCHEMA { BTreeSet::new() } else { template_role_owns()? };
        let owned_now = not_owned(&self.schema, &self.role, true)?;
        let mut back = Vec::new();
        for now in &owned_now {
            if let Some(lent) = self.objects.iter().find(|lent| lent.key == now.key) {
                back.push(format!("{}{}", now.head, lent.owner));
            } else if !self.owned_before.contains(&now.key)
                && (self.schema == TEMPLATE_SCHEMA || !template_role_owns.contains(&now.name))
            {
                db::run(&format!("{}CURRENT_USER", now.head), &[])?;
                if self.schema == TEMPLATE_SCHEMA {
                    apply_default_privileges(now)?;
                }
            }
        }
        if !back.is_empty() {
            db::run(&back.join(";\n"), &[])?;
        }
        // The lent objects, under the names the work left them with.
        let lent_now: Vec<&Owned> =
            owned_now.iter().filter(|now| self.objects.iter().any(|lent| lent.key == now.key)).collect();
        let after = role_grants(lent_now.iter().copied(), &self.role)?;
        let lost: Vec<&RoleGrant> = self.grants.difference(&after).collect();
        for statement in grant_statements(&lost, &lent_now, &role_q)? {
            db::run(&statement, &[])?;
        }
        for privilege in self.privileges {
            db::run(&format!("REVOKE {privilege} ON SCHEMA {schema_q} FROM {role_q}"), &[])?;
        }
        Ok(())
    }

    /// The lent objects (and their columns, keys, indexes, triggers,
    /// policies, rules) that the work left different both from what they
    /// were and from the template.
    fn refuse_tampering(&self, before: &BTreeMap<Key, String>) -> TcResult<()> {
        let after = self.structure()?;
        let template = template_structure()?;
        let names: BTreeSet<&str> = self.objects.iter().map(|o| o.name.as_str()).collect();
        let keys: BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
        let tampered: Vec<String> = keys
            .into_iter()
            .filter(|(_, parent, name)| names.contains(parent.as_str()) || names.contains(name.as_str()))
            .filter(|key| after.get(*key) != before.get(*key) && after.get(*key) != template.get(*key))
            .map(
                |(kind, parent, name)| {
                    if parent.is_empty() {
                        format!("{kind} {name}")
                    } else {
                        format!("{kind} {parent}.{name}")
                    }
                },
            )
            .collect();
        if tampered.is_empty() {
            return Ok(());
        }
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "objects of schema {} not owned by its role were changed unlike the template while it was migrated: {}",
                self.schema,
                tampered.join(", ")
            ),
        )
        .hint("Code of the tenant that ran during the migration (a trigger, an overload) changed them; nothing was kept. \
               Run tenant.check_integrity on the tenant."))
    }
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
