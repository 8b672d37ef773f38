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

/// The size of a full segment file (RELSEG_SIZE blocks).
const SEGMENT_BYTES: u64 = pg_sys::RELSEG_SIZE as u64 * pg_sys::BLCKSZ as u64;

/// What a schema holds, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub tables: i32,
    pub bytes: i64,
}

/// The tables of a schema and the bytes its relations occupy.
pub fn measure(schema: &str) -> TcResult<Usage> {
    let files = db::rows_kept(FILES, &[pg_sys::TEXTOID.into()], &[schema.into()], |row| {
        Ok((col::<bool>(row, "is_table")?.unwrap_or_default(), Files::of_row(row, "")?))
    })?;
    let mut usage = Usage::default();
    for (is_table, files) in files {
        usage.tables += i32::from(is_table);
        usage.bytes += files.bytes()?;
    }
    Ok(usage)
}

/// The files of one relation, as the catalogs name them.
#[derive(Debug, Clone, Copy)]
pub struct Files {
    /// pg_class.reltablespace (0: the database's).
    pub spcnode: pg_sys::Oid,
    /// pg_relation_filenode(); None for relations without storage.
    pub relnode: Option<pg_sys::Oid>,
    /// pg_class.relpersistence.
    pub persistence: u8,
}

impl Files {
    pub fn of_row(row: &pgrx::spi::SpiHeapTupleData, prefix: &str) -> TcResult<Files> {
        let persistence: String = col(row, &format!("{prefix}persistence"))?.unwrap_or_default();
        Ok(Files {
            spcnode: col(row, &format!("{prefix}spcnode"))?.unwrap_or(pg_sys::InvalidOid),
            relnode: col(row, &format!("{prefix}relnode"))?,
            persistence: persistence.bytes().next().unwrap_or(b'p'),
        })
    }

    /// The bytes of every fork (main, free-space map, visibility map, and
    /// init, which only unlogged relations have).
    pub fn bytes(&self) -> TcResult<i64> {
        let mut forks = vec![
            pg_sys::ForkNumber::MAIN_FORKNUM,
            pg_sys::ForkNumber::FSM_FORKNUM,
            pg_sys::ForkNumber::VISIBILITYMAP_FORKNUM,
        ];
        if self.persistence == b'u' {
            forks.push(pg_sys::ForkNumber::INIT_FORKNUM);
        }
        forks.into_iter().map(|fork| self.fork_bytes(fork)).sum()
    }

    /// Whether the relation has no rows: a heap keeps every row, live or
    /// dead, on the pages of its main fork. None when that cannot be told
    /// (no storage of its own: a partitioned table).
    pub fn surely_empty(&self) -> TcResult<Option<bool>> {
        if self.relnode.is_none() || self.persistence == b't' {
            return Ok(None);
        }
        Ok(Some(self.fork_bytes(pg_sys::ForkNumber::MAIN_FORKNUM)? == 0))
    }

    /// One fork's segments in turn, as PostgreSQL's own
    /// calculate_relation_size counts them; a missing file counts as empty.
    /// A segment after one that is not full holds no bytes (a truncation
    /// empties the segments it drops before unlinking them): not looked up.
    fn fork_bytes(&self, fork: pg_sys::ForkNumber::Type) -> TcResult<i64> {
        // Temporary relations live in another backend's files: never a tenant's.
        let Some(relnode) = self.relnode.filter(|_| self.persistence != b't') else { return Ok(0) };
        let path = fork_path(self.spcnode, relnode, fork);
        let mut bytes = 0;
        for segment in 0u32.. {
            let name = if segment == 0 { path.clone() } else { format!("{path}.{segment}") };
            match std::fs::metadata(&name) {
                Ok(found) => {
                    bytes += found.len() as i64;
                    if found.len() < SEGMENT_BYTES {
                        break;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) => {
                    return Err(TcError::new(
                        PgSqlErrorCode::ERRCODE_IO_ERROR,
                        format!("could not stat file \"{name}\": {error}"),
                    ))
                }
            }
        }
        Ok(bytes)
    }
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
