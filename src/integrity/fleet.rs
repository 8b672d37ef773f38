//! The checks that concern the database rather than one tenant: schemas
//! that look like tenants' but are not registered, backups without a
//! catalogue entry and the reverse, tenant-style roles without a tenant; and
//! their repairs (register a lost spare, quarantine the rest).

use crate::copy::structure;
use crate::copy::template::TEMPLATE_ROLE;
use crate::core::db::{self, col};
use crate::core::errors::TcResult;
use crate::core::name::TenantName;
use crate::integrity::drift::{drift, Reference};
use crate::integrity::findings::{attempt, Finding, Severity};
use crate::registry::{self, Status};
use pgrx::spi::quote_identifier;

/// Schemas that look like tenants but are neither registered nor catalogued
/// backups: the extension's naming scheme, or owned by or granted to a
/// tenant-style role. Quarantined schemas are left alone. The unexplained
/// schemas are found first (normally none): testing every schema's owner and
/// grantees against the roles would cost schemas x roles, quadratic in the
/// fleet (27 s at 10,000 institutions).
const UNREGISTERED: &str = r#"
WITH unexplained AS MATERIALIZED (
    SELECT n.nspname, n.nspowner, n.nspacl FROM pg_catalog.pg_namespace n
     WHERE n.nspname NOT IN ('tenant', 'tenant_template', 'public', 'information_schema')
       AND NOT pg_catalog.starts_with(n.nspname::text, 'pg_')
       AND NOT pg_catalog.starts_with(n.nspname::text, 'tc_quarantine_')
       AND NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname AND t.status <> 'DROPPED')
       AND NOT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_schema = n.nspname)
)
SELECT u.nspname::text AS schema_name, pg_catalog.starts_with(u.nspname::text, 'tc_backup_') AS backup,
       pg_catalog.pg_get_userbyid(u.nspowner)::text AS owner
  FROM unexplained u
 WHERE pg_catalog.starts_with(u.nspname::text, 'tc_spare_') OR pg_catalog.starts_with(u.nspname::text, 'tc_backup_')
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE (r.oid = u.nspowner OR r.oid IN (SELECT x.grantee FROM pg_catalog.aclexplode(u.nspacl) x))
                  AND r.rolname LIKE '%\_owner' AND r.rolname <> $1::text AND NOT pg_catalog.starts_with(r.rolname::text, 'pg_'))
 ORDER BY 1
"#;

/// Tenant-style roles that nothing in this database explains and that hold
/// nothing in another database (roles are shared by the whole cluster).
const ORPHAN_ROLES: &str = r#"
SELECT r.rolname::text FROM pg_catalog.pg_roles r
 WHERE r.rolname LIKE '%\_owner' AND r.rolname <> $1::text AND NOT pg_catalog.starts_with(r.rolname::text, 'pg_')
   AND NOT EXISTS (SELECT 1 FROM tenant.tenant_schemas t WHERE t.owner_role = r.rolname AND t.status <> 'DROPPED')
   AND NOT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_schema || '_owner' = r.rolname)
   AND NOT EXISTS (SELECT 1 FROM tenant.schema_backups b WHERE b.backup_role = r.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname || '_owner' = r.rolname)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend s
                    WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = r.oid
                      AND s.dbid <> (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
 ORDER BY 1
"#;

pub fn fleet_checks(reference: &Reference, fix: bool) -> TcResult<Vec<Finding>> {
    let mut findings = Vec::new();
    let unregistered = db::rows(UNREGISTERED, &[TEMPLATE_ROLE.into()], |row| {
        Ok((
            col::<String>(row, "schema_name")?.unwrap_or_default(),
            col::<bool>(row, "backup")?.unwrap_or_default(),
            col::<String>(row, "owner")?.unwrap_or_default(),
        ))
    })?;
    for (schema, backup, owner) in unregistered {
        let (check, detail) = if backup {
            ("orphan_backup_schema", format!("backup schema \"{schema}\" has no entry in tenant.schema_backups"))
        } else {
            (
                "unregistered_schema",
                format!(
                    "schema \"{schema}\" (owner {owner}) looks like a tenant's but is not in tenant.tenant_schemas"
                ),
            )
        };
        let mut finding = Finding::fleet(check, Severity::Error, schema.clone(), detail);
        finding.schema_name = Some(schema.clone());
        if fix {
            let spare = is_faithful_spare(reference, &schema)?;
            finding =
                attempt(
                    finding,
                    || if spare { register_spare(&schema, reference.version) } else { quarantine(&schema) },
                );
        }
        findings.push(finding);
    }
    for backup in db::rows(
        "SELECT b.backup_schema FROM tenant.schema_backups b
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = b.backup_schema) ORDER BY 1",
        &[],
        |row| Ok(col::<String>(row, "backup_schema")?.unwrap_or_default()),
    )? {
        findings.push(Finding::fleet(
            "backup_schema_missing",
            Severity::Warning,
            backup.clone(),
            format!("tenant.schema_backups lists backup schema \"{backup}\", which does not exist (not repaired: the entry is history)"),
        ));
    }
    for role in
        db::rows(ORPHAN_ROLES, &[TEMPLATE_ROLE.into()], |row| Ok(col::<String>(row, "rolname")?.unwrap_or_default()))?
    {
        findings.push(Finding::fleet(
            "orphan_role",
            Severity::Warning,
            role.clone(),
            format!(
                "role \"{role}\" is named like a tenant role but belongs to no tenant, backup or schema here and holds nothing in another database (not repaired: DROP ROLE it if it is unused)"
            ),
        ));
    }
    Ok(findings)
}

/// A spare of the warm pool that lost its registry row: named like one, with
/// its role, and the same as the template object for object.
fn is_faithful_spare(reference: &Reference, schema: &str) -> TcResult<bool> {
    let role = format!("{schema}_owner");
    if !schema.starts_with("tc_spare_")
        || !db::scalar::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[role.as_str().into()],
        )?
    {
        return Ok(false);
    }
    Ok(drift(&reference.structure, &structure::read(schema, &role)?).is_empty())
}

fn register_spare(schema: &str, version: i32) -> TcResult<String> {
    let name = TenantName::from_registry(schema.to_string());
    let id = registry::insert(None, &name, &registry::Built { version, tables: 0 }, Status::Spare)?;
    registry::refresh_counters(&registry::lock(Some(db::to_pg_uuid(id)))?)?;
    Ok(format!(
        "registered as a SPARE of the warm pool at version {version} (id {id}): it is a faithful copy of the template"
    ))
}

/// Set an unregistered schema aside: renamed to tc_quarantine_..., owned by
/// the extension's owner, reachable by nobody (its role renamed with it).
/// Nothing in it is dropped.
fn quarantine(schema: &str) -> TcResult<String> {
    let target = TenantName::quarantine(&uuid::Uuid::new_v4());
    let quoted = quote_identifier(schema);
    let grantees = db::rows(
        "SELECT DISTINCT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END AS grantee
           FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) x WHERE n.nspname = $1",
        &[schema.into()],
        |row| Ok(col::<String>(row, "grantee")?.unwrap_or_default()),
    )?;
    if !grantees.is_empty() {
        db::run(&format!("REVOKE ALL ON SCHEMA {quoted} FROM {}", grantees.join(", ")), &[])?;
    }
    db::run(&format!("ALTER SCHEMA {quoted} OWNER TO CURRENT_USER"), &[])?;
    db::run(&format!("ALTER SCHEMA {quoted} RENAME TO {}", target.quoted()), &[])?;
    let role = format!("{schema}_owner");
    let mut done = format!("quarantined as schema \"{target}\", reachable by no tenant role; nothing was dropped");
    if db::scalar::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[role.as_str().into()],
    )? {
        let renamed = target.role();
        if db::scalar::<bool>(
            "SELECT pg_catalog.pg_has_role('tenant_control_app', $1, 'MEMBER')",
            &[role.as_str().into()],
        )? {
            db::run(&format!("REVOKE {} FROM tenant_control_app", quote_identifier(&role)), &[])?;
        }
        db::run(&format!("ALTER ROLE {} RENAME TO {}", quote_identifier(&role), renamed.quoted()), &[])?;
        done = format!("{done}; its role \"{role}\" is now \"{renamed}\"");
    }
    Ok(done)
}
