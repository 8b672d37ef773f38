//! tenant.check_integrity: the registry against the catalogs, every tenant
//! against the template (drift.rs), every foreign key against the data
//! (orphans.rs), the counters against reality, and the database's leftovers
//! (fleet.rs); with `fix`, the repairs that cannot lose data. Each tenant is
//! read in a subtransaction that is rolled back, so that a check of
//! thousands of tenants never holds more than one tenant's locks.

pub mod drift;
pub mod findings;
pub mod fleet;
pub mod orphans;
pub mod parallel;
pub mod plans;
pub mod worker;

use crate::copy::structure::{self, INDEX_PROBES};
use crate::copy::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::locks;
use crate::core::subxact;
use crate::registry::oplog::Operation;
use crate::registry::storage::{self, Usage};
use crate::registry::{self, Status, Tenant};
use drift::Reference;
pub use findings::{attempt, Finding, Severity};
use pgrx::spi::quote_identifier;

/// A registry row with the counters the check compares.
pub struct Registered {
    tenant: Tenant,
    table_count: i32,
    storage_used: i64,
}

/// `shareable`: the caller's transaction sees only committed data, so that
/// background workers may share a check of the fleet (see parallel.rs).
pub fn check(op: &mut Operation, schema_id: Option<pgrx::Uuid>, fix: bool, shareable: bool) -> TcResult<Vec<Finding>> {
    op.note("fix", fix);
    let mut reference = Reference {
        version: template::version()?,
        structure: structure::read(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?,
        statements: None,
    };
    let tenants = registered(schema_id)?;
    let _plans = plans::Plans::prepare()?;
    if let Some(id) = schema_id {
        let found = tenants.first().ok_or_else(|| TcError::unknown_tenant(db::to_uuid(id)))?;
        op.note("schema_name", found.tenant.schema.as_str());
        if found.tenant.status == Status::Dropped {
            registry::require_live(&found.tenant)?;
        }
    }
    // The settings of the catalog queries, set once for all the tenants.
    let (mut findings, by_workers) =
        db::with_settings(&INDEX_PROBES, || Ok(check_tenants(&mut reference, &tenants, fix, shareable)))?;
    op.note("checked_by_workers", by_workers);
    if schema_id.is_none() {
        findings.extend(fleet::fleet_checks(&reference, fix)?);
    }
    op.note("tenants_checked", tenants.iter().filter(|r| r.tenant.status != Status::Dropped).count());
    op.note("template_version", reference.version);
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        op.note(
            &format!("{}s", severity.as_str().to_lowercase()),
            findings.iter().filter(|f| f.severity == severity).count(),
        );
    }
    op.note("fixed", findings.iter().filter(|f| f.fixed).count());
    op.note_shape("findings", &findings.iter().take(200).map(Finding::summary).collect::<Vec<_>>());
    Ok(findings)
}

/// The findings, and how many tenants background workers checked.
fn check_tenants(
    reference: &mut Reference,
    tenants: &[Registered],
    fix: bool,
    shareable: bool,
) -> (Vec<Finding>, usize) {
    let live: Vec<&Registered> = tenants.iter().filter(|r| r.tenant.status != Status::Dropped).collect();
    let mut found: Vec<Option<Vec<Finding>>> = vec![None; live.len()];
    // Each tenant leaves a few hundred kilobytes of catalog cache entries
    // behind: released every so many tenants (see db::release_catalog_caches).
    let mut checked = 0u32;
    let mut check_here = |reference: &mut Reference, registered: &Registered| {
        checked += 1;
        if checked.is_multiple_of(db::TENANTS_PER_CACHE_RELEASE) {
            db::release_catalog_caches();
        }
        check_one(reference, registered, fix)
    };
    let ids: Vec<uuid::Uuid> = live.iter().map(|r| r.tenant.id).collect();
    let mut by_worker = Vec::new();
    // Shared with background workers when the fleet is large enough (see parallel.rs).
    if let Some(mut gather) = parallel::start(&ids, reference.version, shareable) {
        loop {
            let running = gather.receive(&mut found);
            if let Some(index) = gather.claim() {
                found[index] = Some(check_here(reference, live[index]));
            } else if running {
                gather.wait();
            } else {
                break;
            }
        }
        by_worker = std::mem::take(&mut gather.by_worker);
        if !by_worker.contains(&true) {
            pgrx::notice!(
                "the {} integrity workers checked no tenant (they could not connect or failed: see the server log); the calling backend checked every tenant",
                gather.started
            );
        }
        gather.finish();
    }
    let by_workers = by_worker.iter().filter(|&&checked| checked).count();
    let mut findings = Vec::new();
    for (index, registered) in live.into_iter().enumerate() {
        let mut found = match found[index].take() {
            // What no worker reported on (none started, one failed) is checked here.
            None => check_here(reference, registered),
            // Workers only read: what they found repairable is repaired here.
            Some(read) if by_worker.get(index) == Some(&true) => {
                or_failed(registered, repaired(reference, registered, fix, read))
            }
            Some(read) => read,
        };
        findings.append(&mut found);
    }
    (findings, by_workers)
}

/// One tenant's findings: checked in a subtransaction that is rolled back,
/// so that the locks taken on its relations are released; a failed check is
/// a finding too.
pub fn check_one(reference: &mut Reference, registered: &Registered, fix: bool) -> Vec<Finding> {
    let checked = subxact::rolled_back(|| check_tenant(reference, registered, false))
        .and_then(|read| repaired(reference, registered, fix, read));
    or_failed(registered, checked)
}

fn or_failed(registered: &Registered, checked: TcResult<Vec<Finding>>) -> Vec<Finding> {
    let tenant = &registered.tenant;
    checked.unwrap_or_else(|error| {
        vec![Finding::about(tenant, "check_failed", Severity::Error, tenant.schema.as_str())
            .detail(format!("the check of this schema failed: {}", error.summary()))]
    })
}

/// With `fix`, a tenant the check found something repairable in is checked
/// again and repaired, in a subtransaction that is kept.
fn repaired(
    reference: &mut Reference,
    registered: &Registered,
    fix: bool,
    read: Vec<Finding>,
) -> TcResult<Vec<Finding>> {
    if fix && read.iter().any(|f| REPAIRABLE.contains(&f.check)) {
        subxact::atomically(|| check_tenant(reference, registered, true))
    } else {
        Ok(read)
    }
}

/// The checks a fix may repair.
const REPAIRABLE: &[&str] = &[
    "schema_missing",
    "role_missing",
    "schema_privileges",
    "missing_object",
    "changed_object",
    "row_level_security",
    "table_count",
    "storage_used",
];

pub fn registered(schema_id: Option<pgrx::Uuid>) -> TcResult<Vec<Registered>> {
    db::rows(
        "SELECT id, institution_id, schema_name, owner_role, status, version, table_count, storage_used
           FROM tenant.tenant_schemas WHERE ($1::uuid IS NULL AND status <> 'DROPPED') OR id = $1 ORDER BY schema_name",
        &[schema_id.into()],
        |row| {
            Ok(Registered {
                tenant: registry::tenant_of(row)?,
                table_count: col(row, "table_count")?.unwrap_or_default(),
                storage_used: col(row, "storage_used")?.unwrap_or_default(),
            })
        },
    )
}

/// Runs with INDEX_PROBES (set by check) and the check's pinned search_path.
fn check_tenant(reference: &mut Reference, registered: &Registered, fix: bool) -> TcResult<Vec<Finding>> {
    let tenant =
        if fix { registry::lock(Some(db::to_pg_uuid(registered.tenant.id)))? } else { registered.tenant.clone() };
    if tenant.status == Status::Dropped {
        return Ok(Vec::new());
    }
    let mut findings = Vec::new();
    let (schema_exists, role_exists) =
        plans::rows(plans::Query::Presence, &[tenant.schema.as_str().into(), tenant.role.as_str().into()], |row| {
            Ok((
                col::<bool>(row, "schema_exists")?.unwrap_or_default(),
                col::<bool>(row, "role_exists")?.unwrap_or_default(),
            ))
        })?
        .into_iter()
        .next()
        .unwrap_or_default();
    if !schema_exists {
        let mut finding =
            Finding::about(&tenant, "schema_missing", Severity::Error, tenant.schema.as_str()).detail(format!(
                "the registry lists schema \"{}\" ({}), but it does not exist",
                tenant.schema,
                tenant.status.as_str()
            ));
        if fix {
            finding = attempt(finding, || recreate_schema(&tenant));
        }
        findings.push(finding);
        return Ok(findings);
    }
    if !role_exists {
        let mut finding = Finding::about(&tenant, "role_missing", Severity::Error, tenant.role.as_str())
            .detail(format!("the tenant role \"{}\" does not exist", tenant.role));
        if fix {
            finding = attempt(finding, || recreate_role(&tenant));
        }
        findings.push(finding);
    } else {
        findings.extend(schema_privileges(&tenant, fix)?);
    }

    let same_version = tenant.version == reference.version;
    if tenant.version < reference.version {
        findings.push(Finding::about(&tenant, "version_behind", Severity::Warning, tenant.schema.as_str()).detail(
            format!(
                "behind the template (version {} of {}): run tenant.apply_migrations(); its structure is compared once it is at the template's version",
                tenant.version, reference.version
            ),
        ));
    } else if tenant.version > reference.version {
        findings.push(Finding::about(&tenant, "version_ahead", Severity::Error, tenant.schema.as_str()).detail(
            format!("the registry says version {}, above the template's version {}", tenant.version, reference.version),
        ));
    } else {
        findings.extend(drift::structure_findings(reference, &tenant, fix)?);
    }
    for (object, other) in plans::rows(plans::Query::CrossTenant, &[tenant.schema.as_str().into()], |row| {
        Ok((col::<String>(row, "object")?.unwrap_or_default(), col::<String>(row, "other")?.unwrap_or_default()))
    })? {
        findings.push(
            Finding::about(&tenant, "cross_tenant_reference", Severity::Error, object.clone())
                .detail(format!("{object} refers to schema \"{other}\", which belongs to another tenant")),
        );
    }
    findings.extend(run_as_owner(&tenant)?);
    // The template's keys are checked against the data only where the tenant lost one.
    let lost_keys = findings.iter().any(|f| f.check == "missing_object" && f.object.starts_with("constraint "));
    findings.extend(orphans::orphaned_rows(&tenant, same_version && lost_keys)?);
    findings.extend(counters(&tenant, registered, fix)?);
    Ok(findings)
}

/// Tenant code that maintenance would run with another role's rights.
fn run_as_owner(tenant: &Tenant) -> TcResult<Vec<Finding>> {
    let found =
        plans::rows(plans::Query::RunAsOwner, &[tenant.schema.as_str().into(), tenant.role.as_str().into()], |row| {
            Ok((
                col::<String>(row, "object")?.unwrap_or_default(),
                col::<String>(row, "code")?.unwrap_or_default(),
                col::<String>(row, "owner")?.unwrap_or_default(),
            ))
        })?;
    Ok(found
        .into_iter()
        .map(|(object, code, owner)| {
            Finding::about(tenant, "tenant_code_run_as_owner", Severity::Error, object.clone()).detail(format!(
                "{object} calls {code}, which the tenant's role \"{}\" owns and can replace; ANALYZE (autovacuum's \
                 too), REINDEX and REFRESH MATERIALIZED VIEW run it as \"{owner}\", the owner of the table (not fixed: \
                 give the function to the table's owner, or the table to the tenant's role, in the template and the tenants)",
                tenant.role
            ))
        })
        .collect())
}

fn schema_privileges(tenant: &Tenant, fix: bool) -> TcResult<Vec<Finding>> {
    let granted = plans::rows(plans::Query::Privileges, &[tenant.schema.as_str().into()], |row| {
        Ok((col::<String>(row, "grantee")?.unwrap_or_default(), col::<String>(row, "privileges")?.unwrap_or_default()))
    })?;
    let expected = if tenant.status.grants_access() || tenant.status == Status::Spare { "CREATE, USAGE" } else { "" };
    let mut findings = Vec::new();
    let own =
        granted.iter().find(|(grantee, _)| grantee == tenant.role.as_str()).map(|(_, p)| p.as_str()).unwrap_or("");
    if own != expected {
        let mut finding =
            Finding::about(tenant, "schema_privileges", Severity::Error, tenant.schema.as_str()).detail(format!(
                "the tenant role \"{}\" holds [{own}] on its schema; a {} tenant's role holds [{expected}]",
                tenant.role,
                tenant.status.as_str()
            ));
        if fix {
            finding = attempt(finding, || {
                let (schema, role) = (tenant.schema.quoted(), tenant.role.quoted());
                db::run(&format!("REVOKE ALL ON SCHEMA {schema} FROM {role}"), &[])?;
                if !expected.is_empty() {
                    db::run(&format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"), &[])?;
                }
                Ok(format!("the role now holds [{expected}]"))
            });
        }
        findings.push(finding);
    }
    for (grantee, privileges) in granted.iter().filter(|(grantee, _)| grantee != tenant.role.as_str()) {
        let mut finding = Finding::about(tenant, "schema_privileges", Severity::Error, tenant.schema.as_str()).detail(
            format!("schema \"{}\" grants [{privileges}] to {grantee}, which is not its tenant", tenant.schema),
        );
        if fix {
            let target = if grantee == "PUBLIC" { "PUBLIC".to_string() } else { quote_identifier(grantee) };
            finding = attempt(finding, || {
                db::run(&format!("REVOKE ALL ON SCHEMA {} FROM {target}", tenant.schema.quoted()), &[])?;
                Ok(format!("revoked from {grantee}"))
            });
        }
        findings.push(finding);
    }
    Ok(findings)
}

fn counters(tenant: &Tenant, registered: &Registered, fix: bool) -> TcResult<Vec<Finding>> {
    // Sized from the files, without opening the tenant's relations (see registry::storage).
    let Usage { tables, bytes } = storage::measure(tenant.schema.as_str())?;
    let mut findings = Vec::new();
    if tables != registered.table_count {
        findings.push(
            Finding::about(tenant, "table_count", Severity::Warning, tenant.schema.as_str())
                .detail(format!("the registry counts {} table(s); the schema has {tables}", registered.table_count)),
        );
    }
    // Storage moves with every write: only a stale figure (off by more than a tenth) is reported.
    if (bytes - registered.storage_used).abs() * 10 > bytes.max(1) {
        findings.push(Finding::about(tenant, "storage_used", Severity::Info, tenant.schema.as_str()).detail(format!(
            "the registry says {} bytes; the schema's relations use {bytes} bytes",
            registered.storage_used
        )));
    }
    if fix && !findings.is_empty() {
        let refreshed = subxact::atomically(|| registry::refresh_counters(tenant));
        for finding in &mut findings {
            match &refreshed {
                Ok(_) => {
                    finding.fixed = true;
                    finding.detail = format!("{}; fixed: recounted", finding.detail);
                }
                Err(error) => finding.detail = format!("{}; not fixed: {}", finding.detail, error.summary()),
            }
        }
    }
    Ok(findings)
}

/// An empty copy of the template in place of a vanished schema, locked
/// away (MAINTENANCE) until a DBA restores the tenant's data.
fn recreate_schema(tenant: &Tenant) -> TcResult<String> {
    let mut prelude = Vec::new();
    if !registry::role_exists(&tenant.role)? {
        prelude.push(format!("CREATE ROLE {} NOLOGIN", tenant.role.quoted()));
    }
    prelude.push(format!("CREATE SCHEMA {}", tenant.schema.quoted()));
    if tenant.status == Status::Spare {
        prelude.push(format!("GRANT USAGE, CREATE ON SCHEMA {} TO {}", tenant.schema.quoted(), tenant.role.quoted()));
    }
    locks::template_shared()?;
    let copied = template::copy_into(&tenant.schema, &tenant.role, &prelude)?;
    registry::set_version(tenant, copied.version)?;
    registry::refresh_counters(tenant)?;
    if tenant.status == Status::Spare {
        return Ok(format!("recreated as an empty copy of the template at version {}", copied.version));
    }
    registry::set_status(tenant, Status::Maintenance)?;
    Ok(format!(
        "recreated empty from the template at version {} and set to MAINTENANCE: restore the tenant's data from a backup \
         (tenant.schema_backups), then call tenant.activate_institution",
        copied.version
    ))
}

fn recreate_role(tenant: &Tenant) -> TcResult<String> {
    let (schema, role) = (tenant.schema.quoted(), tenant.role.quoted());
    db::run(&format!("CREATE ROLE {role} NOLOGIN"), &[])?;
    if tenant.status.grants_access() || tenant.status == Status::Spare {
        db::run(&format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"), &[])?;
    }
    template::grant_like_template(&tenant.schema, &tenant.role)?;
    Ok(format!("role {role} recreated with the template's privileges"))
}
