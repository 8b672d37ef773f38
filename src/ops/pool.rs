//! The warm pool: spare, fully built copies of the template, so that signing
//! up an institution is a rename instead of a round of DDL.

use crate::copy::template;
use crate::core::catalog;
use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::locks;
use crate::core::name::TenantName;
use crate::core::restricted;
use crate::core::restricted::internal_ddl;
use crate::registry::oplog::Operation;
use crate::registry::Built;
use crate::registry::{self, Status};
use pgrx::pg_sys;

/// Build one spare schema at the template's current version.
pub fn add_spare(op: &mut Operation) -> TcResult<uuid::Uuid> {
    let spare = TenantName::spare(&uuid::Uuid::new_v4());
    op.note("schema_name", spare.as_str());
    locks::template_shared()?;
    let built = build_schema(op, &spare)?;
    let id = registry::insert(None, &spare, &built, Status::Spare)?;
    op.schema_id = Some(id);
    Ok(id)
}

/// Hand a spare at the template's current version to an institution: the
/// schema and its role are renamed, and functions' search_path settings that
/// named the spare now name the institution's schema.
/// The caller holds the template lock (shared).
pub fn claim(institution: uuid::Uuid, schema: &TenantName) -> TcResult<Option<uuid::Uuid>> {
    // Kept plans here and below: planning cost more than running (issue 13's claim figure).
    let spare = db::rows_kept(
        "SELECT id, schema_name FROM tenant.tenant_schemas
          WHERE status = 'SPARE' AND version = (SELECT COALESCE(max(version), 0) FROM tenant.migrations)
          ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        &[],
        &[],
        |row| Ok((db::col::<pgrx::Uuid>(row, "id")?, db::col::<String>(row, "schema_name")?)),
    )?;
    let Some((Some(id), Some(spare_name))) = spare.into_iter().next() else { return Ok(None) };
    let spare = TenantName::from_registry(spare_name);
    // Read before the rename: the oid of the schema does not change.
    let rebind = has_function_settings(&spare);
    restricted::internal_ddl(|| {
        db::run(&format!("ALTER SCHEMA {} RENAME TO {}", spare.quoted(), schema.quoted()), &[])?;
        db::run(&format!("ALTER ROLE {} RENAME TO {}", spare.role().quoted(), schema.role().quoted()), &[])?;
        if !rebind {
            return Ok(());
        }
        // Read and run with the catalog search_path: every name is qualified
        // (a spare holds only the template's objects, but nothing here
        // depends on that).
        template::catalog_read(|| {
            let rebinds = db::rows_kept(
                "SELECT pg_catalog.jsonb_build_array(pg_catalog.format('ALTER %s %I.%I(%s)',
                            CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, $2::text, p.proname,
                            pg_catalog.pg_get_function_identity_arguments(p.oid)))
                        OPERATOR(pg_catalog.||) tenant.setting_parts(setting, $1)
                   FROM pg_catalog.pg_proc p, pg_catalog.unnest(p.proconfig) setting
                  WHERE p.oid OPERATOR(pg_catalog.=) ANY (SELECT so.oid FROM tenant.schema_objects($2, 'pg_catalog.pg_proc') AS so(oid))
                    AND pg_catalog.starts_with(setting, 'search_path=')",
                &[pgrx::pg_sys::TEXTOID.into(), pgrx::pg_sys::TEXTOID.into()],
                &[spare.as_str().into(), schema.as_str().into()],
                |row| Ok(row.get::<pgrx::JsonB>(1)?.map(|parts| parts.0).unwrap_or_default()),
            )?;
            for parts in rebinds {
                db::run(&template::render(&template::parts_of(parts)?, schema.as_str(), ""), &[])?;
            }
            Ok(())
        })
    })?;
    db::run(
        "UPDATE tenant.tenant_schemas
            SET institution_id = $2, schema_name = $3, owner_role = $4, status = 'ACTIVE',
                created_at = pg_catalog.now(), updated_at = pg_catalog.now()
          WHERE id = $1",
        &[id.into(), db::to_pg_uuid(institution).into(), schema.as_str().into(), schema.role().as_str().into()],
    )?;
    Ok(Some(db::to_uuid(id)))
}

/// Create the schema and its role and fill the schema with a copy of the
/// template; returns the template version copied.
pub fn build_schema(op: &mut Operation, schema: &TenantName) -> TcResult<Built> {
    let role = schema.role();
    let prelude = [
        format!("CREATE ROLE {} NOLOGIN", role.quoted()),
        format!("CREATE SCHEMA {}", schema.quoted()),
        format!("GRANT USAGE, CREATE ON SCHEMA {} TO {}", schema.quoted(), role.quoted()),
    ];
    let copied = internal_ddl(|| template::copy_into(schema, &role, &prelude))?;
    op.note_shape("template", &copied.stats());
    op.note("version", copied.version);
    Ok(Built { version: copied.version, tables: copied.tables })
}

/// Whether any function of the schema has settings (`proconfig`), read from
/// the catalog caches: pg_depend by its index on the schema, then each
/// function by oid. Without one, a claim has no search_path to rebind and
/// skips the rebinding query, which the renames leave to be planned afresh
/// on every claim (a schema rename resets the backend's cached plans).
/// True when the schema cannot be found: the query then decides.
fn has_function_settings(schema: &TenantName) -> bool {
    let Ok(name) = std::ffi::CString::new(schema.as_str()) else { return true };
    // pg_depend and its index on (refclassid, refobjid, refobjsubid), by
    // their fixed oids (pgrx binds neither), and its columns' numbers.
    let (depend, index, classid, objid, refclassid, refobjid) = (2608u32, 2674u32, 1, 2, 4, 5);
    // SAFETY: catalog reads by index and catalog cache inside a transaction;
    // the function's cache entry is released before the next row.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(name.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return true;
        }
        let mut found = false;
        let keys = [(refclassid, pg_sys::NamespaceRelationId), (refobjid, namespace)];
        catalog::scan_by_oids(depend.into(), index.into(), &keys, |row, descriptor| {
            if catalog::oid_column(row, descriptor, classid) != Some(pg_sys::ProcedureRelationId) {
                return true;
            }
            let Some(function) = catalog::oid_column(row, descriptor, objid) else { return true };
            let entry = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, function.into());
            if entry.is_null() {
                found = true;
                return false;
            }
            let mut null = true;
            pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                entry,
                pg_sys::Anum_pg_proc_proconfig as pg_sys::AttrNumber,
                &mut null,
            );
            pg_sys::ReleaseSysCache(entry);
            found = !null;
            !found
        });
        found
    }
}
