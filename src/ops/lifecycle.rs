//! Create, drop and change the status of institution schemas.

use crate::copy::template_rows;
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::name::{RoleName, TenantName};
use crate::core::restricted::internal_ddl;
use crate::core::settings;
use crate::ops::backup;
use crate::ops::pool;
use crate::registry::oplog::Operation;
use crate::registry::{self, require_live, Status, Tenant};
use pgrx::prelude::*;
use pgrx::spi::quote_qualified_identifier;

pub struct Created {
    pub schema_id: uuid::Uuid,
    pub schema: TenantName,
}

pub fn create(op: &mut Operation, institution_id: Option<pgrx::Uuid>, schema_name: Option<&str>) -> TcResult<Created> {
    let institution = institution_id.map(db::to_uuid).ok_or_else(|| TcError::null_argument("institution_id"))?;
    op.note("institution_id", institution.to_string());
    if let Some(requested) = schema_name {
        op.note("requested_schema_name", requested);
    }
    let schema = match schema_name {
        None => TenantName::default_for(&institution),
        Some(name) => TenantName::parse(Some(name))?,
    };
    let role = schema.role();
    op.note("schema_name", schema.as_str());
    op.note("owner_role", role.as_str());

    require_institution(institution)?;
    // Institution first, name second, in every session: no lock cycles.
    locks::institution(&institution)?;
    locks::schema_name(&schema)?;

    let taken = registry::taken(institution, &schema)?;
    if let Some(existing) = taken.schema_of_institution {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("institution {institution} already has the schema \"{existing}\""),
        ));
    }
    if let Some(owner) = taken.institution_of_schema {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{schema}\" is already registered for institution {}", db::to_uuid(owner)),
        ));
    }
    if taken.schema_exists {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema \"{schema}\" already exists"),
        )
        .hint("Choose another schema name; tenant_control never adopts an existing schema."));
    }
    if taken.role_exists {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, format!("role \"{role}\" already exists"))
            .hint("Choose another schema name; tenant_control never adopts an existing role."));
    }
    // Copies share the template; a migration of the template excludes them.
    locks::template_shared()?;

    let mut built = || -> TcResult<uuid::Uuid> {
        // A spare added since `taken` looked is left for the next create.
        if let Some(claimed) = if taken.spares { pool::claim(institution, &schema)? } else { None } {
            op.note("from_pool", true);
            return Ok(claimed);
        }
        let built = pool::build_schema(op, &schema)?;
        registry::insert(Some(institution), &schema, &built, Status::Active)
    };
    let schema_id = built().map_err(|error| concurrent_duplicate(error, institution, &schema))?;
    op.schema_id = Some(schema_id);
    // Rows of the template's marked tables (tenant.set_template_rows).
    let rows = template_rows::copy_marked(&schema, &role)?;
    if rows > 0 {
        op.note("template_rows", rows);
    }
    Ok(Created { schema_id, schema })
}

/// A session that did not see the other's commit (REPEATABLE READ, or another
/// database sharing the cluster's roles) meets the catalogs' unique indexes.
fn concurrent_duplicate(error: TcError, institution: uuid::Uuid, schema: &TenantName) -> TcError {
    if error.code == PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION {
        TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("institution {institution} or schema \"{schema}\" was created concurrently"),
        )
        .detail(error.message)
    } else {
        error
    }
}

/// With `tenant_control.institutions_table` set, the institution must be in it.
pub fn require_institution(institution: uuid::Uuid) -> TcResult<()> {
    let Some(table) = settings::institutions_table() else {
        return Ok(());
    };
    let column = settings::institutions_id_column();
    let relation = db::rows(
        "SELECT n.nspname::text AS schema, c.relname::text AS name
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = pg_catalog.to_regclass($1)",
        &[table.as_str().into()],
        |row| Ok((db::col::<String>(row, "schema")?, db::col::<String>(row, "name")?)),
    )?;
    let Some((Some(nsp), Some(rel))) = relation.into_iter().next() else {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("institutions table \"{table}\" named by tenant_control.institutions_table does not exist"),
        ));
    };
    let found: bool = db::scalar(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = $1)",
            quote_qualified_identifier(&nsp, &rel),
            pgrx::spi::quote_identifier(&column)
        ),
        &[db::to_pg_uuid(institution).into()],
    )?;
    if found {
        Ok(())
    } else {
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("institution {institution} does not exist in {nsp}.{rel}"),
        ))
    }
}

pub struct Dropped {
    pub backup: Option<TenantName>,
}

/// Detach the schema into a backup schema no tenant can reach (instant, and
/// faithful: sequences, keys and defaults keep pointing inside it), and keep
/// the registry row as DROPPED.
pub fn drop(op: &mut Operation, schema_id: Option<pgrx::Uuid>) -> TcResult<Dropped> {
    // Running backups read the schema: wait for them (at most lock_timeout).
    if let Some(id) = schema_id {
        locks::tenant_data(db::to_uuid(id), false)?;
    }
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    op.note("institution_id", tenant.institution_id.map(|id| id.to_string()));
    require_live(&tenant)?;

    let detached = internal_ddl(|| detach(op, &tenant, "DROP", true))?;
    // The backup is the tenant's own storage: hash it now, so that every
    // later verification proves it unchanged.
    if let Some((backup_id, backup)) = &detached {
        let rows = backup::seal(*backup_id, backup)?;
        op.note("row_count", rows);
        op.note("verified", true);
    }
    let backup = detached.map(|(_, backup)| backup);

    db::run(
        "UPDATE tenant.tenant_schemas
            SET status = 'DROPPED', table_count = 0, storage_used = 0, updated_at = pg_catalog.now(),
                last_backup = CASE WHEN $2 THEN pg_catalog.now() ELSE last_backup END
          WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), backup.is_some().into()],
    )?;
    backup::account(tenant.id, false)?;
    Ok(Dropped { backup })
}

/// Rename the schema into a backup (`reason` DROP, or RESTORE for the schema
/// a restore replaces). Renames take no table locks.
///
/// `with_role` (a drop): the tenant's role becomes the backup's role, with
/// no members (see below), so the tenant's former members reach nothing of
/// the backup. Without `with_role` the backup stays owned by the tenant's
/// role, which loses its USAGE on it.
pub fn detach(
    op: &mut Operation,
    tenant: &Tenant,
    reason: &str,
    with_role: bool,
) -> TcResult<Option<(uuid::Uuid, TenantName)>> {
    let started = std::time::Instant::now();
    let backup_id = uuid::Uuid::new_v4();
    let backup = TenantName::backup(&backup_id);
    let schema_exists = registry::schema_exists(tenant.schema.as_str())?;
    let size = if schema_exists { registry::refresh_counters(tenant)?.bytes } else { 0 };
    if schema_exists {
        db::run(&format!("REVOKE ALL ON SCHEMA {} FROM {}", tenant.schema.quoted(), tenant.role.quoted()), &[])?;
        rename_schema(&tenant.schema, &backup)?;
    }
    let heir = if with_role && registry::role_exists(&tenant.role)? { Some(backup.role()) } else { None };
    // Roles belong to the whole cluster. One only this database uses is
    // renamed after the backup and stripped of its members: it keeps what it
    // owns without a lock on any table, so the drop neither waits for nor
    // blocks the tenant's sessions. One another database still uses (a copy
    // of this one) stays as it is there: a fresh role takes over its objects
    // here (ALTER ... OWNER takes each table's lock, within lock_timeout).
    let shared = match &heir {
        Some(heir) => {
            let shared = registry::used_in_other_database(&tenant.role)?;
            if shared {
                hand_over(&tenant.role, heir, schema_exists.then_some(&backup))?;
            } else {
                rename_role(&tenant.role, heir)?;
            }
            op.note("backup_role", heir.as_str());
            op.note("role", if shared { "kept: another database of the cluster uses it" } else { "renamed" });
            shared
        }
        None => false,
    };
    let detached = if schema_exists {
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        backup::register(backup_id, tenant, &backup, heir.as_ref().unwrap_or(&tenant.role), reason, size, elapsed)?;
        op.note("backup_schema", backup.as_str());
        op.note("backup_id", backup_id.to_string());
        op.note("size_bytes", size);
        Some((backup_id, backup))
    } else {
        op.note("backup_schema", serde_json::Value::Null);
        op.note("note", "the schema was already missing; nothing to back up");
        None
    };
    if shared {
        // Nothing of this database is left to the shared role.
        db::run(&format!("DROP OWNED BY {}", tenant.role.quoted()), &[])?;
    }
    if let Some(heir) = &heir {
        drop_if_idle(heir)?;
    }
    Ok(detached)
}

/// Rename the tenant's role to `heir` and take every membership of it away
/// (its LOGIN members, tenant_control_app, institution admins): nobody can
/// act as the backup's role.
fn rename_role(role: &RoleName, heir: &RoleName) -> TcResult<()> {
    let members: Vec<String> = db::rows(
        "SELECT pg_catalog.quote_ident(m.rolname) FROM pg_catalog.pg_auth_members a
           JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) a.member
          WHERE a.roleid OPERATOR(pg_catalog.=) $1::regrole",
        &[role.as_str().into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )?;
    if !members.is_empty() {
        db::run(&format!("REVOKE {} FROM {}", role.quoted(), members.join(", ")), &[])?;
    }
    db::run(&format!("ALTER ROLE {} RENAME TO {}", role.quoted(), heir.quoted()), &[])
}

/// A backup role that owns nothing and serves no backup (the schema was
/// already missing) is not kept.
fn drop_if_idle(heir: &RoleName) -> TcResult<()> {
    let idle: bool = db::scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend d
                             WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::regclass
                               AND d.refobjid OPERATOR(pg_catalog.=) $1::regrole
                               AND d.deptype OPERATOR(pg_catalog.=) 'o')
            AND NOT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_role OPERATOR(pg_catalog.=) $1::regrole)",
        &[heir.as_str().into()],
    )?;
    if idle {
        db::run(&format!("DROP OWNED BY {}", heir.quoted()), &[])?;
        db::run(&format!("DROP ROLE {}", heir.quoted()), &[])?;
    }
    Ok(())
}

/// Give the new role `owner` what `role` had in this database: ownership of
/// everything, its grants and policy memberships in the backup `schema`,
/// and its place in the catalogue of backups (a schema an in-place restore
/// replaced is owned by the tenant's role). The role itself keeps its
/// privileges until DROP OWNED removes them.
fn hand_over(role: &RoleName, owner: &RoleName, schema: Option<&TenantName>) -> TcResult<()> {
    db::run(&format!("CREATE ROLE {} NOLOGIN", owner.quoted()), &[])?;
    if let Some(schema) = schema {
        let statements: Vec<String> =
            db::rows(HAND_OVER, &[schema.as_str().into(), role.as_str().into(), owner.as_str().into()], |row| {
                Ok(row.get::<String>(1)?.unwrap_or_default())
            })?;
        for statement in statements {
            db::run(&statement, &[])?;
        }
    }
    db::run(&format!("REASSIGN OWNED BY {} TO {}", role.quoted(), owner.quoted()), &[])?;
    db::run(
        "UPDATE tenant.schema_backups SET backup_role = $2::text::regrole WHERE backup_role = $1::text::regrole",
        &[role.as_str().into(), owner.as_str().into()],
    )
}

/// Statements that give role $3 the privileges role $2 was granted on the
/// objects of schema $1, and its place in the policies there (routines named
/// by their argument types: ROUTINE takes no ordered-set aggregate's ORDER BY).
const HAND_OVER: &str = "
SELECT pg_catalog.format('GRANT %s ON %s %s TO %I%s', x.privilege_type, o.kind, o.name, $3::text,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM (SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
               pg_catalog.format('%I.%I', $1::text, c.relname) AS name, c.relacl AS acl
          FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) $1::regnamespace AND c.relacl IS NOT NULL
        UNION ALL
        SELECT 'ROUTINE', pg_catalog.format('%I.%I(%s)', $1::text, p.proname, pg_catalog.oidvectortypes(p.proargtypes)), p.proacl
          FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) $1::regnamespace AND p.proacl IS NOT NULL
        UNION ALL
        SELECT 'TYPE', pg_catalog.format('%I.%I', $1::text, t.typname), t.typacl
          FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) $1::regnamespace AND t.typacl IS NOT NULL) o,
       LATERAL pg_catalog.aclexplode(o.acl) x
 WHERE x.grantee OPERATOR(pg_catalog.=) $2::regrole
UNION ALL
SELECT pg_catalog.format('GRANT %s (%I) ON TABLE %I.%I TO %I%s', x.privilege_type, a.attname, $1::text, c.relname, $3::text,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attacl IS NOT NULL,
       LATERAL pg_catalog.aclexplode(a.attacl) x
 WHERE c.relnamespace OPERATOR(pg_catalog.=) $1::regnamespace AND x.grantee OPERATOR(pg_catalog.=) $2::regrole
UNION ALL
SELECT pg_catalog.format('ALTER POLICY %I ON %I.%I TO %s', p.polname, $1::text, c.relname,
       (SELECT pg_catalog.string_agg(CASE WHEN r.oid OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                          WHEN r.oid OPERATOR(pg_catalog.=) $2::regrole THEN pg_catalog.quote_ident($3::text)
                                          ELSE pg_catalog.quote_ident(a.rolname) END, ', ')
          FROM pg_catalog.unnest(p.polroles) AS r(oid) LEFT JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) r.oid))
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
 WHERE c.relnamespace OPERATOR(pg_catalog.=) $1::regnamespace AND $2::regrole OPERATOR(pg_catalog.=) ANY (p.polroles)";

/// Rename a schema; functions whose `SET search_path` named it by its old
/// name follow it (a detached tenant's backup, a restored copy moving in).
pub fn rename_schema(old: &TenantName, renamed: &TenantName) -> TcResult<()> {
    db::run(&format!("ALTER SCHEMA {} RENAME TO {}", old.quoted(), renamed.quoted()), &[])?;
    rebind_search_paths(old, renamed)
}

fn rebind_search_paths(old: &TenantName, renamed: &TenantName) -> TcResult<()> {
    let statements: Vec<String> = db::rows(
        "SELECT pg_catalog.format('ALTER %s %I.%I(%s) SET search_path = %s',
                CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, $2::text, p.proname,
                pg_catalog.pg_get_function_identity_arguments(p.oid),
                (SELECT pg_catalog.string_agg(CASE WHEN pg_catalog.btrim(e.element, ' \"') = $1 THEN pg_catalog.quote_ident($2)
                                                   ELSE pg_catalog.btrim(e.element) END, ', ' ORDER BY e.n)
                   FROM pg_catalog.regexp_split_to_table(pg_catalog.substr(s.setting, 13), ',') WITH ORDINALITY AS e(element, n)))
           FROM pg_catalog.pg_proc p, pg_catalog.unnest(p.proconfig) AS s(setting)
          WHERE p.oid IN (SELECT so.oid FROM tenant.schema_objects($2, 'pg_catalog.pg_proc') AS so(oid))
            AND pg_catalog.starts_with(s.setting, 'search_path=')
            AND EXISTS (SELECT 1 FROM pg_catalog.regexp_split_to_table(pg_catalog.substr(s.setting, 13), ',') AS e(element)
                         WHERE pg_catalog.btrim(e.element, ' \"') = $1)",
        &[old.as_str().into(), renamed.as_str().into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )?;
    for statement in statements {
        db::run(&statement, &[])?;
    }
    Ok(())
}

pub struct StatusChanged {
    pub from: Status,
    pub to: Status,
}

/// During a move's cut-over (FROZEN, ACTIVATING) the status here is the
/// move's: reopening the institution by hand could make it writable on two
/// servers. The move's resolver changes the step before the status.
fn refuse_during_cut_over(tenant: &Tenant) -> TcResult<()> {
    let location = db::value::<String>(
        "SELECT m.location FROM tenant.institution_moves m WHERE m.schema_id = $1 AND m.step IN ('FROZEN', 'ACTIVATING')",
        &[db::to_pg_uuid(tenant.id).into()],
    )?;
    match location {
        None => Ok(()),
        Some(location) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("institution schema \"{}\" is in the cut-over of its move to {location}", tenant.schema),
        )
        .hint("The move sets its status: run tenant.move_institution again, or tenant.resolve_moves() if that call is gone.")),
    }
}

pub fn set_status(
    op: &mut Operation,
    schema_id: Option<pgrx::Uuid>,
    new_status: Option<&str>,
    reason: Option<&str>,
) -> TcResult<StatusChanged> {
    let target = Status::parse(new_status)?;
    if matches!(target, Status::Dropped | Status::Spare | Status::Moved) {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("status {} cannot be set by hand", target.as_str()),
        )
        .hint("Use ACTIVE, SUSPENDED or MAINTENANCE; tenant.drop_institution_schema drops a tenant."));
    }
    let tenant = registry::lock(schema_id)?;
    op.note("schema_name", tenant.schema.as_str());
    op.note("institution_id", tenant.institution_id.map(|id| id.to_string()));
    op.note("from", tenant.status.as_str());
    op.note("to", target.as_str());
    if let Some(reason) = reason {
        op.note("reason", reason);
    }
    require_live(&tenant)?;
    if tenant.status == Status::Moved {
        // Opening the copy left behind would make the institution writable on two servers.
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("institution schema \"{}\" ({}) has moved to another server", tenant.schema, tenant.id),
        )
        .hint("tenant.locate_institution(...) tells where; drop this copy with tenant.drop_institution_schema."));
    }
    if tenant.status != target {
        refuse_during_cut_over(&tenant)?;
        let (schema, role) = (tenant.schema.quoted(), tenant.role.quoted());
        let statement = if target.grants_access() {
            format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
        } else {
            format!("REVOKE ALL ON SCHEMA {schema} FROM {role}")
        };
        internal_ddl(|| db::run(&statement, &[]))?;
        registry::set_status(&tenant, target)?;
    }
    Ok(StatusChanged { from: tenant.status, to: target })
}
