//! The bytes a schema's relations occupy, as `pg_total_relation_size` counts
//! them (every fork of each table, materialized view and sequence, of their
//! indexes and of their TOAST tables), found by sizing the files named in the
//! catalogs. `pg_total_relation_size` opens and locks every relation, which
//! loads a relation-cache entry for each: over a fleet (the integrity check
//! visits every tenant once) that costs several times the file look-ups. A
//! file a concurrent rewrite (TRUNCATE, VACUUM FULL) has just replaced counts
//! as empty, as a relation dropped meanwhile does.

use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use pgrx::pg_sys;
use pgrx::prelude::*;

const FILES: &str = include_str!("../../sql/queries/storage_files.sql");

/// What a schema holds, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub tables: i32,
    pub bytes: i64,
}

/// The tables of a schema and the bytes its relations occupy.
pub fn measure(schema: &str) -> TcResult<Usage> {
    let files = db::rows_kept(FILES, &[pg_sys::TEXTOID.into()], &[schema.into()], |row| {
        Ok((
            col::<bool>(row, "is_table")?.unwrap_or_default(),
            col::<pg_sys::Oid>(row, "spcnode")?.unwrap_or(pg_sys::InvalidOid),
            col::<pg_sys::Oid>(row, "relnode")?,
            col::<String>(row, "persistence")?.unwrap_or_default(),
        ))
    })?;
    let mut usage = Usage::default();
    for (is_table, spcnode, relnode, persistence) in files {
        usage.tables += i32::from(is_table);
        if let Some(relnode) = relnode {
            usage.bytes += relation_bytes(spcnode, relnode, &persistence)?;
        }
    }
    Ok(usage)
}

/// The bytes of every fork of one relation (main, free-space map, visibility
/// map, init), each fork's segments in turn, as PostgreSQL's own
/// calculate_relation_size counts them.
fn relation_bytes(spcnode: pg_sys::Oid, relnode: pg_sys::Oid, persistence: &str) -> TcResult<i64> {
    // Temporary relations live in another backend's files: never a tenant's.
    if persistence == "t" {
        return Ok(0);
    }
    let mut bytes = 0;
    for fork in [
        pg_sys::ForkNumber::MAIN_FORKNUM,
        pg_sys::ForkNumber::FSM_FORKNUM,
        pg_sys::ForkNumber::VISIBILITYMAP_FORKNUM,
        pg_sys::ForkNumber::INIT_FORKNUM,
    ] {
        let path = fork_path(spcnode, relnode, fork);
        for segment in 0u32.. {
            let name = if segment == 0 { path.clone() } else { format!("{path}.{segment}") };
            match std::fs::metadata(&name) {
                Ok(found) => bytes += found.len() as i64,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) => {
                    return Err(TcError::new(
                        PgSqlErrorCode::ERRCODE_IO_ERROR,
                        format!("could not stat file \"{name}\": {error}"),
                    ))
                }
            }
        }
    }
    Ok(bytes)
}

/// A fork's path relative to the data directory (a backend's working directory).
fn fork_path(spcnode: pg_sys::Oid, relnode: pg_sys::Oid, fork: pg_sys::ForkNumber::Type) -> String {
    // SAFETY: GetRelationPath formats a palloc'd path from plain values; the
    // globals are set once the backend is connected to its database.
    unsafe {
        let spcnode = if spcnode == pg_sys::InvalidOid { pg_sys::MyDatabaseTableSpace } else { spcnode };
        let path = pg_sys::GetRelationPath(pg_sys::MyDatabaseId, spcnode, relnode, pg_sys::InvalidBackendId, fork);
        let text = std::ffi::CStr::from_ptr(path).to_string_lossy().into_owned();
        pg_sys::pfree(path.cast());
        text
    }
}
