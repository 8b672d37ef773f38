//! tenant.check_integrity: the registry against the catalogs, every tenant
//! against the template (drift.rs), every foreign key against the data
//! (orphans.rs), the counters against reality, and the database's leftovers
//! (fleet.rs); with `fix`, the repairs that cannot lose data. Each tenant is
//! read in a subtransaction that is rolled back, so that a check of
//! thousands of tenants never holds more than one tenant's locks.

use crate::db::{self, col};
use crate::drift::{self, Reference};
use crate::errors::{TcError, TcResult};
use crate::fleet;
use crate::lifecycle;
use crate::oplog::Operation;
use crate::orphans::{self, FOREIGN_KEYS};
use crate::registry::{self, Status, Tenant};
use crate::subxact;
use crate::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, OwnedPreparedStatement, SpiHeapTupleData};
use std::collections::HashMap;

/// Objects of schema $1 that depend on an object of another tenant's schema
/// (registered, spare, backup or quarantined), or functions whose settings or
/// body name one.
const CROSS_TENANT: &str = r#"
WITH rels AS MATERIALIZED (
    SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid)
), mine AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, r.oid FROM rels r
    UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid)
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS o(oid)
    UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT w.oid FROM pg_catalog.pg_rewrite w WHERE w.ev_class = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT a.oid FROM pg_catalog.pg_attrdef a WHERE a.adrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.tgrelid = r.oid) x
    UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, x.oid FROM rels r,
                     LATERAL (SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid = r.oid) x
)
SELECT DISTINCT x.object, x.other FROM (
    -- A view is named rather than its _RETURN rule.
    SELECT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                THEN (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, w.ev_class, 0)
                        FROM pg_catalog.pg_rewrite w WHERE w.oid = d.objid)
                ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END AS object, n.nspname::text AS other
      FROM mine, LATERAL (SELECT d.* FROM pg_catalog.pg_depend d WHERE d.classid = mine.classid AND d.objid = mine.oid) d
      JOIN LATERAL (SELECT CASE d.refclassid
                           WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT p.pronamespace FROM pg_catalog.pg_proc p WHERE p.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT t.typnamespace FROM pg_catalog.pg_type t WHERE t.oid = d.refobjid)
                           WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN d.refobjid END AS nsp) r ON true
      JOIN pg_catalog.pg_namespace n ON n.oid = r.nsp
     WHERE n.nspname <> $1::text AND (pg_catalog.starts_with(n.nspname::text, 'tc_') OR EXISTS (
               SELECT 1 FROM tenant.tenant_schemas t WHERE t.schema_name = n.nspname AND t.status <> 'DROPPED'))
    UNION ALL
    -- Names followed by a dot in a body, and the schemas of a search_path setting, looked up in the registry.
    SELECT pg_catalog.format('function %I(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)), t.schema_name
      FROM pg_catalog.pg_proc p,
           LATERAL (SELECT m.name[1] AS name FROM pg_catalog.regexp_matches(pg_catalog.lower(p.prosrc), '([a-z_][a-z0-9_$]*)\.', 'g') AS m(name)
                    UNION
                    SELECT pg_catalog.btrim(e.name, ' "') FROM pg_catalog.unnest(p.proconfig) AS c(setting),
                           pg_catalog.regexp_split_to_table(pg_catalog.substr(c.setting, 13), ',') AS e(name)
                     WHERE pg_catalog.starts_with(c.setting, 'search_path=')) w
      JOIN tenant.tenant_schemas t ON t.schema_name = w.name AND t.status <> 'DROPPED' AND t.schema_name <> $1::text
     WHERE p.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_proc'))
) x ORDER BY 1, 2
"#;

/// Relations of schema $1 not owned by its tenant's role ($2) whose indexes,
/// statistics objects or materialized-view query call a function or operator
/// that role owns: ANALYZE (autovacuum's too), REINDEX and REFRESH run those
/// as the relation's owner, and the tenant can replace what it owns.
const RUN_AS_OWNER: &str = r#"
WITH rels AS MATERIALIZED (
    SELECT c.oid, c.relowner FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT tenant.schema_objects($1::text, 'pg_catalog.pg_class')) AND c.relkind IN ('r', 'p', 'm')
       AND c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text)
), evaluated AS (
    SELECT r.oid AS rel, 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, i.indexrelid AS objid
      FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT r.oid, 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, x.oid
      FROM rels r JOIN pg_catalog.pg_statistic_ext x ON x.stxrelid = r.oid
    UNION ALL
    SELECT r.oid, 'pg_catalog.pg_rewrite'::pg_catalog.regclass, w.oid
      FROM rels r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
)
SELECT DISTINCT pg_catalog.pg_describe_object(e.classid, e.objid, 0) AS object,
       pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0) AS code,
       pg_catalog.pg_get_userbyid((SELECT r.relowner FROM rels r WHERE r.oid = e.rel))::text AS owner
  FROM evaluated e JOIN pg_catalog.pg_depend d ON d.classid = e.classid AND d.objid = e.objid
 WHERE (d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = d.refobjid)
            = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text))
    OR (d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
        AND (SELECT o.oprowner FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid)
            = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2::text))
 ORDER BY 1, 2
"#;

/// What each role other than the owner holds on schema $1.
const PRIVILEGES: &str = r#"
SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee)::text END AS grantee,
       pg_catalog.string_agg(x.privilege_type, ', ' ORDER BY x.privilege_type) AS privileges
  FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) x
 WHERE n.nspname = $1 AND x.grantee <> n.nspowner
 GROUP BY x.grantee ORDER BY 1
"#;

/// The tables of schema $1 and the bytes of its relations, as refresh_storage counts them.
const COUNTERS: &str = r#"
SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p'))::integer AS tables,
       COALESCE(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint AS bytes
  FROM pg_catalog.pg_class c
 WHERE c.oid IN (SELECT tenant.schema_objects($1, 'pg_catalog.pg_class')) AND c.relkind IN ('r', 'p', 'm', 'S')
"#;

/// The per-tenant catalog queries that do not depend on search_path, with
/// their argument types: planned once per check, not once per tenant.
const PLANNED: &[(&str, &[PgBuiltInOids])] = &[
    (CROSS_TENANT, &[PgBuiltInOids::TEXTOID]),
    (FOREIGN_KEYS, &[PgBuiltInOids::TEXTOID, PgBuiltInOids::TEXTOID, PgBuiltInOids::BOOLOID]),
    (PRIVILEGES, &[PgBuiltInOids::TEXTOID]),
    (COUNTERS, &[PgBuiltInOids::TEXTOID]),
];

thread_local! {
    /// The plans of PLANNED while a check runs (see Plans).
    static PLANS: std::cell::RefCell<HashMap<usize, OwnedPreparedStatement>> = std::cell::RefCell::new(HashMap::new());
}

/// Holds the kept plans of PLANNED for one check and frees them when the
/// check ends, however it ends. (The function's search_path is pinned, so
/// the plans stay valid from one tenant to the next.)
struct Plans;

impl Plans {
    fn prepare() -> TcResult<Plans> {
        for (sql, types) in PLANNED {
            let types: Vec<PgOid> = types.iter().map(|t| PgOid::BuiltIn(*t)).collect();
            let plan = Spi::connect(|client| client.prepare(*sql, &types).map(|plan| plan.keep()))?;
            PLANS.with(|plans| plans.borrow_mut().insert(sql.as_ptr() as usize, plan));
        }
        Ok(Plans)
    }
}

impl Drop for Plans {
    fn drop(&mut self) {
        PLANS.with(|plans| plans.borrow_mut().clear());
    }
}

/// db::rows for a query of PLANNED, with its kept plan when a check holds one.
pub fn planned_rows<T>(
    sql: &'static str,
    args: &[DatumWithOid],
    mut map: impl FnMut(&SpiHeapTupleData) -> TcResult<T>,
) -> TcResult<Vec<T>> {
    let ran = PLANS.with(|plans| {
        let plans = plans.borrow();
        plans.get(&(sql.as_ptr() as usize)).map(|plan| {
            Spi::connect_mut(|client| {
                let table = client.update(plan, None, args)?;
                table.map(|row| map(&row)).collect::<TcResult<Vec<T>>>()
            })
        })
    });
    match ran {
        Some(rows) => rows,
        None => db::rows(sql, args, map),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub schema_id: Option<uuid::Uuid>,
    pub schema_name: Option<String>,
    pub check: &'static str,
    pub severity: Severity,
    pub object: String,
    pub detail: String,
    pub fixed: bool,
}

impl Finding {
    pub fn about(tenant: &Tenant, check: &'static str, severity: Severity, object: impl Into<String>) -> Self {
        Finding {
            schema_id: Some(tenant.id),
            schema_name: Some(tenant.schema.as_str().to_string()),
            check,
            severity,
            object: object.into(),
            detail: String::new(),
            fixed: false,
        }
    }

    pub fn fleet(
        check: &'static str,
        severity: Severity,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Finding {
            schema_id: None,
            schema_name: None,
            check,
            severity,
            object: object.into(),
            detail: detail.into(),
            fixed: false,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": self.schema_name, "check": self.check, "severity": self.severity.as_str(),
            "object": self.object, "fixed": self.fixed,
        })
    }
}

/// A registry row with the counters the check compares.
struct Registered {
    tenant: Tenant,
    table_count: i32,
    storage_used: i64,
}

pub fn check(op: &mut Operation, schema_id: Option<pgrx::Uuid>, fix: bool) -> TcResult<Vec<Finding>> {
    op.note("fix", fix);
    let mut reference = Reference {
        version: template::version()?,
        structure: drift::structure(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?,
        statements: None,
    };
    let tenants = registered(schema_id)?;
    let _plans = Plans::prepare()?;
    if let Some(id) = schema_id {
        let found = tenants.first().ok_or_else(|| TcError::unknown_tenant(db::to_uuid(id)))?;
        op.note("schema_name", found.tenant.schema.as_str());
        if found.tenant.status == Status::Dropped {
            lifecycle::require_live(&found.tenant)?;
        }
    }
    let mut findings = Vec::new();
    for registered in tenants.iter().filter(|r| r.tenant.status != Status::Dropped) {
        let tenant = &registered.tenant;
        match check_releasing_locks(&mut reference, registered, fix) {
            Ok(mut found) => findings.append(&mut found),
            Err(error) => findings.push(
                Finding::about(tenant, "check_failed", Severity::Error, tenant.schema.as_str())
                    .detail(format!("the check of this schema failed: {}", error.summary())),
            ),
        }
    }
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
    op.note("findings", findings.iter().take(200).map(Finding::to_json).collect::<Vec<_>>());
    Ok(findings)
}

/// Check one tenant in a subtransaction that is rolled back, so that the
/// locks taken on its relations are released; repair it (in a subtransaction
/// that is kept) only if the check found something a fix can repair.
fn check_releasing_locks(reference: &mut Reference, registered: &Registered, fix: bool) -> TcResult<Vec<Finding>> {
    let findings = subxact::rolled_back(|| check_tenant(reference, registered, false))?;
    if fix && findings.iter().any(|f| REPAIRABLE.contains(&f.check)) {
        subxact::atomically(|| check_tenant(reference, registered, true))
    } else {
        Ok(findings)
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

fn registered(schema_id: Option<pgrx::Uuid>) -> TcResult<Vec<Registered>> {
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

/// The catalog queries start from a handful of oids (found through
/// pg_depend) and must probe the catalogs' indexes from there: a hash or
/// merge join would scan catalogs that grow with every tenant. The nested
/// loops' estimates then look expensive enough to start JIT compilation,
/// which costs far more than these queries: no JIT.
/// Kept plans are generic from the first tenant on (they are alike).
pub const INDEX_PROBES: [(&str, &str); 4] = [
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("jit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

fn check_tenant(reference: &mut Reference, registered: &Registered, fix: bool) -> TcResult<Vec<Finding>> {
    db::with_settings(&INDEX_PROBES, || check_tenant_probing(reference, registered, fix))
}

fn check_tenant_probing(reference: &mut Reference, registered: &Registered, fix: bool) -> TcResult<Vec<Finding>> {
    let tenant =
        if fix { registry::lock(Some(db::to_pg_uuid(registered.tenant.id)))? } else { registered.tenant.clone() };
    if tenant.status == Status::Dropped {
        return Ok(Vec::new());
    }
    let mut findings = Vec::new();
    if !registry::schema_exists(tenant.schema.as_str())? {
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
    if !registry::role_exists(&tenant.role)? {
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
    for (object, other) in planned_rows(CROSS_TENANT, &[tenant.schema.as_str().into()], |row| {
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
    let found = template::catalog_read(|| {
        db::rows(RUN_AS_OWNER, &[tenant.schema.as_str().into(), tenant.role.as_str().into()], |row| {
            Ok((
                col::<String>(row, "object")?.unwrap_or_default(),
                col::<String>(row, "code")?.unwrap_or_default(),
                col::<String>(row, "owner")?.unwrap_or_default(),
            ))
        })
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

/// Run a repair in its own subtransaction; a failed repair is reported, not raised.
pub fn attempt(mut finding: Finding, repair: impl FnOnce() -> TcResult<String>) -> Finding {
    match subxact::atomically(|| lifecycle::internal_ddl(repair)) {
        Ok(done) => {
            finding.fixed = true;
            finding.detail = format!("{}; fixed: {done}", finding.detail);
        }
        Err(error) => finding.detail = format!("{}; not fixed: {}", finding.detail, error.summary()),
    }
    finding
}

fn schema_privileges(tenant: &Tenant, fix: bool) -> TcResult<Vec<Finding>> {
    let granted = planned_rows(PRIVILEGES, &[tenant.schema.as_str().into()], |row| {
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
    let (tables, bytes) = planned_rows(COUNTERS, &[tenant.schema.as_str().into()], |row| {
        Ok((col::<i32>(row, "tables")?.unwrap_or_default(), col::<i64>(row, "bytes")?.unwrap_or_default()))
    })?
    .into_iter()
    .next()
    .unwrap_or_default();
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
        prelude.push(format!("GRANT {} TO tenant_control_app", tenant.role.quoted()));
    }
    prelude.push(format!("CREATE SCHEMA {}", tenant.schema.quoted()));
    if tenant.status == Status::Spare {
        prelude.push(format!("GRANT USAGE, CREATE ON SCHEMA {} TO {}", tenant.schema.quoted(), tenant.role.quoted()));
    }
    template::lock_shared()?;
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
    db::run(&format!("GRANT {role} TO tenant_control_app"), &[])?;
    if tenant.status.grants_access() || tenant.status == Status::Spare {
        db::run(&format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"), &[])?;
    }
    template::grant_like_template(&tenant.schema, &tenant.role)?;
    Ok(format!("role {role} recreated with the template's privileges"))
}
