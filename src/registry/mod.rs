//! The registry of tenant schemas, `tenant.tenant_schemas`.

pub mod oplog;
pub mod storage;

use crate::core::catalog;
use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::name::{RoleName, TenantName};
use pgrx::pg_sys;
use pgrx::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
    Maintenance,
    Dropped,
    /// A ready-made copy of the template waiting in the warm pool.
    Spare,
    /// Moved to another server (`tenant.move_institution`): the schema here
    /// is kept, locked out, until dropped.
    Moved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Suspended => "SUSPENDED",
            Status::Maintenance => "MAINTENANCE",
            Status::Dropped => "DROPPED",
            Status::Spare => "SPARE",
            Status::Moved => "MOVED",
        }
    }

    /// Parse a status given by a caller; case does not matter.
    pub fn parse(text: Option<&str>) -> TcResult<Self> {
        let text = text.ok_or_else(|| TcError::null_argument("new_status"))?;
        match text.trim().to_ascii_uppercase().as_str() {
            "ACTIVE" => Ok(Status::Active),
            "SUSPENDED" => Ok(Status::Suspended),
            "MAINTENANCE" => Ok(Status::Maintenance),
            "DROPPED" => Ok(Status::Dropped),
            "SPARE" => Ok(Status::Spare),
            "MOVED" => Ok(Status::Moved),
            _ => Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown tenant status \"{text}\""),
            )
            .hint("Use ACTIVE, SUSPENDED or MAINTENANCE.")),
        }
    }

    /// A tenant role may use its schema only while the tenant is ACTIVE.
    pub fn grants_access(self) -> bool {
        self == Status::Active
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: uuid::Uuid,
    pub institution_id: Option<uuid::Uuid>,
    pub schema: TenantName,
    pub role: RoleName,
    pub status: Status,
    pub version: i32,
}

/// Lock the tenant's registry row for the rest of the transaction, so that
/// operations on one tenant run one at a time (and wait at most lock_timeout).
/// NO KEY UPDATE: the operation log's foreign key check (KEY SHARE) on this row
/// must not wait, or a failed operation could not record its failure.
pub fn lock(schema_id: Option<pgrx::Uuid>) -> TcResult<Tenant> {
    lock_in_mode(schema_id, "NO KEY UPDATE")
}

/// Lock the row only against deletion: operations that read the tenant
/// (backups) run side by side, and with those that change it.
pub fn lock_key_share(schema_id: Option<pgrx::Uuid>) -> TcResult<Tenant> {
    lock_in_mode(schema_id, "KEY SHARE")
}

fn lock_in_mode(schema_id: Option<pgrx::Uuid>, mode: &str) -> TcResult<Tenant> {
    let schema_id = schema_id.ok_or_else(|| TcError::null_argument("schema_id"))?;
    // Kept plans: a fleet migration locks every tenant in turn.
    let sql = if mode == "KEY SHARE" { LOCK_KEY_SHARE } else { LOCK_NO_KEY_UPDATE };
    let found = db::rows_kept(sql, &[pgrx::pg_sys::UUIDOID.into()], &[schema_id.into()], tenant_of)?;
    found.into_iter().next().ok_or_else(|| TcError::unknown_tenant(schema_id))
}

const LOCK_NO_KEY_UPDATE: &str = "SELECT id, institution_id, schema_name, owner_role, status, version
   FROM tenant.tenant_schemas WHERE id = $1 FOR NO KEY UPDATE";
const LOCK_KEY_SHARE: &str = "SELECT id, institution_id, schema_name, owner_role, status, version
   FROM tenant.tenant_schemas WHERE id = $1 FOR KEY SHARE";

/// A registry row read with its columns id, institution_id, schema_name,
/// owner_role, status and version.
pub fn tenant_of(row: &pgrx::spi::SpiHeapTupleData) -> TcResult<Tenant> {
    let missing = || TcError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "registry row has NULL columns");
    Ok(Tenant {
        id: db::to_uuid(col(row, "id")?.ok_or_else(missing)?),
        institution_id: col(row, "institution_id")?.map(db::to_uuid),
        schema: TenantName::from_registry(col(row, "schema_name")?.ok_or_else(missing)?),
        role: RoleName::from_registry(col(row, "owner_role")?.ok_or_else(missing)?),
        status: Status::parse(col::<String>(row, "status")?.as_deref())?,
        version: col(row, "version")?.ok_or_else(missing)?,
    })
}

/// A registry row, as far as the operation log and the audit trail need it.
pub struct Registered {
    /// None for a spare (it belongs to no institution yet).
    pub institution_id: Option<uuid::Uuid>,
}

/// The registry row `schema_id` as a query run now would see it, read through
/// the primary key without a query (every operation's log row asks, and a
/// create's schema resets the backend's plans). None when there is none: a
/// failed operation may have rolled back the very row it named.
pub fn registered(schema_id: uuid::Uuid) -> Option<Registered> {
    let key = pgrx::IntoDatum::into_datum(db::to_pg_uuid(schema_id)).expect("a uuid is a datum");
    let mut found = None;
    catalog::with_query_snapshot(|snapshot| {
        catalog::scan_index(
            snapshot,
            c"tenant_schemas",
            c"tenant_schemas_pkey",
            Some(catalog::IndexKey { value: key, equal: pg_sys::F_UUID_EQ }),
            |row| {
                found = Some(Registered { institution_id: row.get::<pgrx::Uuid>(c"institution_id").map(db::to_uuid) });
                false
            },
        )
    });
    found
}

/// Register a schema; a SPARE one belongs to no institution yet.
pub fn insert(
    institution_id: Option<uuid::Uuid>,
    schema: &TenantName,
    built: &Built,
    status: Status,
) -> TcResult<uuid::Uuid> {
    let id: pgrx::Uuid = db::scalar(
        "INSERT INTO tenant.tenant_schemas (institution_id, schema_name, owner_role, version, table_count, status)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            institution_id.map(db::to_pg_uuid).into(),
            schema.as_str().into(),
            schema.role().as_str().into(),
            built.version.into(),
            built.tables.into(),
            status.as_str().into(),
        ],
    )?;
    Ok(db::to_uuid(id))
}

pub fn set_status(tenant: &Tenant, status: Status) -> TcResult<()> {
    db::run(
        "UPDATE tenant.tenant_schemas SET status = $2, updated_at = pg_catalog.now() WHERE id = $1",
        &[db::to_pg_uuid(tenant.id).into(), status.as_str().into()],
    )
}

pub fn set_version(tenant: &Tenant, version: i32) -> TcResult<()> {
    db::run_kept(
        "UPDATE tenant.tenant_schemas SET version = $2, updated_at = pg_catalog.now() WHERE id = $1",
        &[pgrx::pg_sys::UUIDOID.into(), pgrx::pg_sys::INT4OID.into()],
        &[db::to_pg_uuid(tenant.id).into(), version.into()],
    )
}

/// What already stands in the way of a new tenant.
pub struct Taken {
    pub schema_of_institution: Option<String>,
    pub institution_of_schema: Option<pgrx::Uuid>,
    pub schema_exists: bool,
    pub role_exists: bool,
    /// Whether the warm pool holds a spare schema (of any version): without
    /// one, a create need not look for one to claim (a new connection would
    /// plan that look-up, and open tenant.migrations, for nothing).
    pub spares: bool,
}

/// Read from the catalog caches and the registry's indexes, without SQL: a
/// create runs it first, and a claim's schema rename resets the backend's
/// plans, so as a query it was parsed and planned afresh on every claim.
/// The registry is read as a query of this moment would read it (the
/// transaction's snapshot); the schema and role as the catalogs stand, so a
/// schema or role committed by another session since the caller's snapshot
/// was taken is seen here rather than at the CREATE.
pub fn taken(institution_id: uuid::Uuid, schema: &TenantName) -> TcResult<Taken> {
    let live = |row: &catalog::Row| row.get::<String>(c"status").as_deref() != Some(Status::Dropped.as_str());
    let mut taken = Taken {
        schema_of_institution: None,
        institution_of_schema: None,
        schema_exists: name_in_catalog(schema.as_str(), |name| unsafe { pg_sys::get_namespace_oid(name, true) }),
        role_exists: name_in_catalog(schema.role().as_str(), |name| unsafe { pg_sys::get_role_oid(name, true) }),
        spares: false,
    };
    let institution = pgrx::IntoDatum::into_datum(db::to_pg_uuid(institution_id)).expect("a uuid is a datum");
    let name = pgrx::IntoDatum::into_datum(schema.as_str()).expect("a name is a datum");
    let scanned = catalog::with_query_snapshot(|snapshot| {
        catalog::scan_index(
            snapshot,
            c"tenant_schemas",
            c"tenant_schemas_institution_live",
            Some(catalog::IndexKey { value: institution, equal: pg_sys::F_UUID_EQ }),
            |row| {
                taken.schema_of_institution = live(row).then(|| row.get::<String>(c"schema_name")).flatten();
                taken.schema_of_institution.is_none()
            },
        )?;
        catalog::scan_index(
            snapshot,
            c"tenant_schemas",
            c"tenant_schemas_schema_name_live",
            Some(catalog::IndexKey { value: name, equal: pg_sys::F_TEXTEQ }),
            |row| {
                taken.institution_of_schema = live(row).then(|| row.get::<pgrx::Uuid>(c"institution_id")).flatten();
                taken.institution_of_schema.is_none()
            },
        )?;
        // The partial index holds the spares (of every version) and nothing else.
        catalog::scan_index(snapshot, c"tenant_schemas", c"tenant_schemas_spares", None, |row| {
            taken.spares = row.get::<String>(c"status").as_deref() == Some(Status::Spare.as_str());
            !taken.spares
        })
    });
    scanned.map(|_| taken).ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "the registry tenant.tenant_schemas or its indexes are missing",
        )
    })
}

/// Whether `name` is in a catalog, by `look_up` (an oid look-up by name that
/// returns InvalidOid when missing).
fn name_in_catalog(name: &str, look_up: impl FnOnce(*const std::ffi::c_char) -> pg_sys::Oid) -> bool {
    // Validated names hold no NUL; one that did could name nothing.
    std::ffi::CString::new(name).is_ok_and(|name| look_up(name.as_ptr()) != pg_sys::InvalidOid)
}

pub fn schema_exists(name: &str) -> TcResult<bool> {
    db::scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", &[name.into()])
}

pub fn role_exists(role: &RoleName) -> TcResult<bool> {
    db::scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", &[role.as_str().into()])
}

/// A recount: the bytes, and the quota facts of the same registry row (what
/// the quota state is settled from, without reading the row again).
pub struct Counted {
    pub bytes: i64,
    pub quota_limit: Option<i64>,
    pub quota_state: String,
}

/// Count the schema's tables and bytes (storage::measure) and store both in the registry.
pub fn refresh_counters(tenant: &Tenant) -> TcResult<Counted> {
    let usage = storage::measure(tenant.schema.as_str())?;
    let counted = db::rows(
        "UPDATE tenant.tenant_schemas SET table_count = $1, storage_used = $2 WHERE id = $3
         RETURNING storage_used AS bytes, quota_limit, quota_state",
        &[usage.tables.into(), usage.bytes.into(), db::to_pg_uuid(tenant.id).into()],
        |row| {
            Ok(Counted {
                bytes: col(row, "bytes")?.unwrap_or(0),
                quota_limit: col(row, "quota_limit")?,
                quota_state: col(row, "quota_state")?.unwrap_or_default(),
            })
        },
    )?;
    counted.into_iter().next().ok_or_else(|| TcError::unknown_tenant(tenant.id))
}

/// What a schema's size depends on, read from the catalogs alone (no
/// relation is opened, unlike a recount of the bytes): the files of its
/// relations, their indexes and TOAST tables (oid and relfilenode), and the
/// rows this transaction wrote to them. While both stay the same, so do the
/// bytes and the table count. $1 is the schema's name.
const FILES_AND_WRITES: &str = "
WITH rels AS MATERIALIZED (
    SELECT o.oid, c.reltoastrelid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS o(oid)
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) o.oid
), files AS (
    SELECT r.oid FROM rels r
    UNION ALL SELECT r.reltoastrelid FROM rels r WHERE r.reltoastrelid OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT i.indexrelid FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) r.oid
    UNION ALL SELECT i.indexrelid FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) r.reltoastrelid
)
SELECT COALESCE(pg_catalog.string_agg(c.oid::text || ':' || c.relfilenode::text, ',' ORDER BY c.oid), '')
       || '/' || COALESCE(pg_catalog.sum(pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid)
                                         OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(c.oid)
                                         OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid)), 0)::text
  FROM files f JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) f.oid";

pub fn files_and_writes(schema: &str) -> TcResult<String> {
    // A kept plan: read twice per tenant by a fleet migration.
    let found = db::rows_kept(FILES_AND_WRITES, &[pgrx::pg_sys::TEXTOID.into()], &[schema.into()], |row| {
        Ok(row.get::<String>(1)?.unwrap_or_default())
    })?;
    Ok(found.into_iter().next().unwrap_or_default())
}

/// The bytes a schema's relations occupy now, without touching the registry.
pub fn measure_bytes(schema: &str) -> TcResult<i64> {
    Ok(storage::measure(schema)?.bytes)
}

/// What a freshly built schema holds, for its registry row.
pub struct Built {
    pub version: i32,
    pub tables: i32,
}

/// Operations act on institutions' schemas only: not on DROPPED ones, nor on
/// spare schemas of the warm pool.
pub fn require_live(tenant: &Tenant) -> TcResult<()> {
    if matches!(tenant.status, Status::Dropped | Status::Spare) {
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("institution schema \"{}\" ({}) is {}", tenant.schema, tenant.id, tenant.status.as_str()),
        ))
    } else {
        Ok(())
    }
}

/// Whether anything in another database of the cluster (or a shared
/// object) depends on `role`: then it serves a tenant there and must stay.
pub fn used_in_other_database(role: &RoleName) -> TcResult<bool> {
    db::scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend d
                         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::regclass
                           AND d.refobjid OPERATOR(pg_catalog.=) $1::regrole
                           AND d.dbid OPERATOR(pg_catalog.<>) (SELECT b.oid FROM pg_catalog.pg_database b
                                                                WHERE b.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()))",
        &[role.as_str().into()],
    )
}
