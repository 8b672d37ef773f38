//! Versioned migrations: numbered scripts applied to the template when they
//! are registered, and to each tenant (one tenant per transaction) by the
//! procedure tenant.apply_migrations.
//!
//! A script never runs as the extension's owner. It runs as the role that
//! stands for the tenant in the schema it changes (`tenant_template_owner` in
//! the template when it is registered, `<schema>_owner` in each tenant), in a
//! security-restricted operation, with `search_path = pg_catalog, <schema>`:
//! a built-in wins over a tenant's function of the same signature, and
//! whatever tenant code still runs (a better-matching overload, a trigger the
//! tenant put on a table) runs with the tenant's own rights. For the length
//! of the script (inside the same transaction) that role is lent the
//! ownership of the schema's objects it does not own and USAGE, CREATE on
//! the schema; both are taken back before the transaction ends.

use crate::db;
use crate::errors::{TcError, TcResult};
use crate::lifecycle;
use crate::oplog::Operation;
use crate::registry::{self, Status};
use crate::restricted;
use crate::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiError, SpiErrorCodes};
use std::collections::BTreeSet;

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
    template::lock_exclusive()?;
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
                "A migration runs as {TEMPLATE_ROLE} with search_path pg_catalog, {TEMPLATE_SCHEMA}: it may create and change \
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
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    // Spare schemas of the warm pool are migrated like institutions' schemas.
    if tenant.status == Status::Dropped {
        return lifecycle::require_live(&tenant).map(|_| unreachable!());
    }
    let from = tenant.version;
    let pending = pending_since(from)?;
    let to = pending.last().map_or(from, |m| m.version);
    op.note("from_version", from);
    op.note("target_version", to);
    lifecycle::internal_ddl(|| {
        run_scripts(tenant.schema.as_str(), tenant.role.as_str(), &pending)?;
        // What a migration adds gets the privileges and owners the template gives it.
        if !pending.is_empty() {
            template::grant_like_template(&tenant.schema, &tenant.role)?;
        }
        Ok(())
    })?;
    op.note("to_version", to);
    if to != from {
        registry::set_version(&tenant, to)?;
        registry::refresh_counters(&tenant)?;
    }
    Ok(Migrated { schema: tenant.schema.as_str().to_string(), from, to })
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

/// Run migration scripts in `schema` as `role` (see the module comment). A
/// failure leaves the lent ownership and privileges to the rollback of the
/// caller's (sub)transaction, which undoes the scripts too.
fn run_scripts(schema: &str, role: &str, migrations: &[Migration]) -> TcResult<()> {
    if migrations.is_empty() {
        return Ok(());
    }
    as_schema_role(schema, role, || migrations.iter().try_for_each(|migration| execute(schema, migration)))
}

/// Run `work` (DDL and data changes in `schema`) as `role`, the role that
/// stands for the tenant there, in a security-restricted operation with
/// `search_path = pg_catalog, <schema>`, lent what it needs (see the module
/// comment) for the length of the work. Used by migrations and by the
/// integrity check's repairs.
pub fn as_schema_role<T>(schema: &str, role: &str, work: impl FnOnce() -> TcResult<T>) -> TcResult<T> {
    let lent = Lent::lend(schema, role)?;
    let path = format!("pg_catalog, {}", quote_identifier(schema));
    let outcome = restricted::as_role(role, &path, work)?;
    lent.give_back()?;
    Ok(outcome)
}

/// One script, through SPI. SPI refuses transaction control (COMMIT,
/// ROLLBACK, SAVEPOINT, ...) and COPY; they get an error that says so.
fn execute(schema: &str, migration: &Migration) -> TcResult<()> {
    let context = format!("migration {} on schema {schema}", migration.version);
    let ran = db::caught(|| {
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

/// The objects of a schema that are not owned by a role, as ALTER ... OWNER
/// statement heads (fully qualified), with their catalog, oid and owner.
/// Indexes, a table's row type and the sequences of its columns follow
/// their table. Run with the catalog search_path.
const NOT_OWNED: &str = r#"
SELECT o.catalog, o.oid, pg_catalog.format('ALTER %s %s OWNER TO ', o.kind, o.identity) AS head,
       o.owner::pg_catalog.regrole::text AS owner
  FROM (
    SELECT 'pg_class' AS catalog, c.oid, c.relowner AS owner,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
           pg_catalog.format('%I.%I', $1::text, c.relname) AS identity
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 'pg_proc', p.oid, p.proowner, 'ROUTINE',
           pg_catalog.format('%I.%I(%s)', $1::text, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc'))
    UNION ALL
    SELECT 'pg_type', t.oid, t.typowner, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           pg_catalog.format('%I.%I', $1::text, t.typname)
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_type'))
       AND (t.typtype IN ('e', 'd', 'r')
            OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
  ) o
 WHERE o.owner <> $2::pg_catalog.regrole
 ORDER BY o.oid
"#;

/// What a migration's role was lent for the length of its scripts.
struct Lent {
    schema: String,
    role: String,
    /// (catalog, oid) -> the owner to give the object back to.
    owners: Vec<((String, pg_sys::Oid), String)>,
    /// Schema privileges the role did not hold.
    privileges: Vec<&'static str>,
}

impl Lent {
    fn lend(schema: &str, role: &str) -> TcResult<Lent> {
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
        let mut owners = Vec::new();
        for (key, head, owner) in not_owned(schema, role)? {
            db::run(&format!("{head}{role_q}"), &[])?;
            owners.push((key, owner));
        }
        Ok(Lent { schema: schema.to_string(), role: role.to_string(), owners, privileges })
    }

    /// Objects are found again by oid: a script may have renamed them.
    fn give_back(self) -> TcResult<()> {
        let (schema_q, role_q) = (quote_identifier(&self.schema), quote_identifier(&self.role));
        let now_owned_by_role = template::catalog_read(|| {
            db::rows(
                &NOT_OWNED.replace("o.owner <> $2", "o.owner = $2"),
                &[self.schema.as_str().into(), role_q.as_str().into()],
                |row| {
                    Ok((
                        (
                            db::col::<String>(row, "catalog")?.unwrap_or_default(),
                            db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default(),
                        ),
                        db::col::<String>(row, "head")?.unwrap_or_default(),
                    ))
                },
            )
        })?;
        for (key, head) in now_owned_by_role {
            if let Some((_, owner)) = self.owners.iter().find(|(lent, _)| *lent == key) {
                db::run(&format!("{head}{owner}"), &[])?;
            }
        }
        for privilege in self.privileges {
            db::run(&format!("REVOKE {privilege} ON SCHEMA {schema_q} FROM {role_q}"), &[])?;
        }
        Ok(())
    }
}

type NotOwned = ((String, pg_sys::Oid), String, String);

fn not_owned(schema: &str, role: &str) -> TcResult<Vec<NotOwned>> {
    template::catalog_read(|| {
        db::rows(NOT_OWNED, &[schema.into(), quote_identifier(role).as_str().into()], |row| {
            Ok((
                (
                    db::col::<String>(row, "catalog")?.unwrap_or_default(),
                    db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default(),
                ),
                db::col::<String>(row, "head")?.unwrap_or_default(),
                db::col::<String>(row, "owner")?.unwrap_or_default(),
            ))
        })
    })
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
   AND i.schema IS DISTINCT FROM $2::text
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
