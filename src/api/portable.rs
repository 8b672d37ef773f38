//! The SQL surface of portable institutions (issue 14): a copy from another
//! database or server, and the two functions the source answers it with.

use crate::core::db;
use crate::core::errors::OrRaise;
use crate::ops::portable::{self, Request};
use crate::ops::portable_source;
use crate::registry::oplog::{self, OpKind};
use pgrx::prelude::*;

/// Copy an institution from another database or server running tenant_control.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn copy_institution_from(
    source: Option<&str>,
    institution_id: Option<pgrx::Uuid>,
    schema_name: default!(Option<&str>, "NULL"),
    in_place: default!(bool, false),
    migrate: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(message, String),
        name!(schema_id, Option<pgrx::Uuid>),
        name!(sqlstate, Option<String>),
    ),
> {
    let institution = institution_id.map(db::to_uuid);
    let description = format!(
        "copy institution {} from another database{}",
        institution.map(|id| id.to_string()).unwrap_or_else(|| "NULL".into()),
        if in_place { " in place" } else { "" }
    );
    let (_, outcome) = oplog::record(OpKind::Restore, None, description, |op| {
        let source = source.ok_or_else(|| crate::core::errors::TcError::null_argument("source"))?;
        let institution = institution.ok_or_else(|| crate::core::errors::TcError::null_argument("institution_id"))?;
        portable::copy_from(op, &Request { source, institution, schema_name, in_place, migrate })
    });
    TableIterator::once(match outcome {
        Ok(done) => (
            "SUCCESS".into(),
            match (&done.replaced, done.drill) {
                (_, Some(drill)) => format!(
                    "copied {} rows into drill schema \"{}\" (backup {drill}), which no tenant role can read; \
                     remove it with tenant.remove_backup",
                    done.rows, done.schema
                ),
                (Some(kept), None) => format!(
                    "copied {} rows in place of schema \"{}\"; the schema it replaced is kept as backup \"{kept}\"",
                    done.rows, done.schema
                ),
                (None, None) => format!("copied {} rows into new schema \"{}\"", done.rows, done.schema),
            },
            Some(db::to_pg_uuid(done.schema_id)),
            None,
        ),
        Err(error) => ("ERROR".into(), error.summary(), None, Some(error.sqlstate())),
    })
}

/// The statements that rebuild an institution's schema (or one of its
/// backups) elsewhere, with slots for the schema's and the role's names.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn institution_structure(
    schema_id: Option<pgrx::Uuid>,
    backup_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> TableIterator<'static, (name!(kind, String), name!(statement, pgrx::JsonB))> {
    let statements = crate::core::errors::caught(|| portable_source::structure(schema_id, backup_id)).or_raise();
    TableIterator::new(statements.into_iter().map(|(kind, statement)| (kind, pgrx::JsonB(statement))))
}

/// Row count and content hash of every table of an institution's schema (or
/// of one of its backups) in the caller's snapshot; logged as a BACKUP read.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn institution_manifest(
    schema_id: Option<pgrx::Uuid>,
    backup_id: default!(Option<pgrx::Uuid>, "NULL"),
    copied_to: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(table_name, String), name!(row_count, i64), name!(content_hash, Option<String>))> {
    let description = format!(
        "read institution schema {} for a copy",
        schema_id.map(|id| db::to_uuid(id).to_string()).unwrap_or_else(|| "NULL".into())
    );
    let (_, outcome) = oplog::record(OpKind::Backup, None, description, |op| {
        portable_source::manifest(op, schema_id, backup_id, copied_to)
    });
    let tables = outcome.or_raise();
    TableIterator::new(tables.into_iter().map(|t| (t.name, t.rows, t.hash)))
}
