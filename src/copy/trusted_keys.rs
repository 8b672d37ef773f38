//! Foreign keys of a copy, created without the validation scan.
//!
//! Adding a foreign key to a loaded table checks every row against the
//! referenced table: one anti-join per key, the largest part of a copy after
//! the rows and the indexes. A copy (backup, restore, drill) need not repeat
//! it for a key the source holds validated (`convalidated`):
//! - every row of the copy comes from one snapshot of the source
//!   (`bulk::CopySnapshot`), the referencing rows and the referenced rows
//!   alike, and in any snapshot a validated key holds: each change that
//!   committed was checked by the key's triggers, and the rows present when
//!   the key was added were checked then;
//! - the copy is not reachable by any other session before it commits (a
//!   backup's schema has no member role and no USAGE; a restore's is built
//!   under a temporary name in this uncommitted transaction), and when keys
//!   are trusted no tenant code runs in this one before they are added: every
//!   table is copied as it is (`bulk`), and there is no materialized view to
//!   refresh (`schema_copy::copy_schema` trusts no key otherwise, since a
//!   staged table's CHECKs and domains, or a view's query, may call a
//!   function that writes into the copy). Nothing changes the copy's rows
//!   between the load and the keys.
//!
//! So the key is added NOT VALID (no scan) and then marked validated the way
//! `ALTER TABLE ... VALIDATE CONSTRAINT` marks it once its scan passed: one
//! catalog update of `pg_constraint.convalidated`, whose relcache
//! invalidation PostgreSQL sends for the key's table. A key NOT VALID in the
//! source stays NOT VALID. A key on a partitioned table is validated as
//! before (PostgreSQL 15 refuses NOT VALID there). Rows that break a key in
//! the source only because a superuser disabled its triggers
//! (`session_replication_role = replica`) are copied as they are, as they
//! are in the source; `tenant.check_integrity` reports them.

use crate::copy::catalog::{Part, Statement};
use crate::core::db;
use crate::core::errors::TcResult;
use crate::core::name::TenantName;
use pgrx::pg_sys;
use pgrx::spi::quote_identifier;

/// The generator whose statements add the foreign keys (template.rs).
const FOREIGN_KEYS: &str = "remaining foreign keys";

/// pg_constraint's fixed OID (catalog/pg_constraint.h), which pgrx does not export.
const CONSTRAINT_RELATION: pg_sys::Oid = pg_sys::Oid::from_u32(2606);

/// The validated foreign keys of a source schema: (table, constraint).
pub struct TrustedKeys(Vec<(String, String)>);

impl TrustedKeys {
    pub fn of(source: &TenantName) -> TcResult<Self> {
        let keys = db::rows(
            "SELECT t.relname::text, c.conname::text
               FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
              WHERE t.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid))
                AND c.contype = 'f' AND c.conparentid = 0 AND c.convalidated AND t.relkind = 'r'",
            &[source.as_str().into()],
            |row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default())),
        )?;
        Ok(TrustedKeys(keys))
    }

    /// No key trusted: every key is validated as PostgreSQL adds it.
    pub fn none() -> Self {
        TrustedKeys(Vec::new())
    }

    /// The statements with every trusted key added NOT VALID.
    pub fn unscanned<K: AsRef<str>>(&self, mut statements: Vec<(K, Statement)>) -> Vec<(K, Statement)> {
        for (kind, statement) in statements.iter_mut() {
            if kind.as_ref() == FOREIGN_KEYS && self.0.iter().any(|key| adds(statement, key)) {
                statement.push(Part::Text(" NOT VALID".to_string()));
            }
        }
        statements
    }

    /// Mark the trusted keys of `target` validated, once they exist.
    pub fn mark_validated(&self, target: &TenantName) -> TcResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let (tables, names): (Vec<String>, Vec<String>) = self.0.iter().cloned().unzip();
        let keys: Vec<pg_sys::Oid> = db::rows(
            "SELECT c.oid FROM pg_catalog.pg_constraint c
               JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
               JOIN ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS k(tab, con)
                 ON k.tab = t.relname AND k.con = c.conname
              WHERE n.nspname = $1 AND c.contype = 'f' AND NOT c.convalidated",
            &[target.as_str().into(), tables.into(), names.into()],
            |row| Ok(row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)),
        )?;
        keys.into_iter().for_each(mark_validated);
        // SAFETY: makes the updated rows visible to the statements that follow.
        unsafe { pg_sys::CommandCounterIncrement() };
        Ok(())
    }
}

/// Whether `statement` adds the key `(table, constraint)`: the generator
/// writes `ALTER TABLE <table> ADD CONSTRAINT <constraint> <definition>`.
fn adds(statement: &Statement, (table, constraint): &(String, String)) -> bool {
    let prefix = format!("ALTER TABLE {} ADD CONSTRAINT {} ", quote_identifier(table), quote_identifier(constraint));
    matches!(statement.first(), Some(Part::Text(text)) if text.starts_with(&prefix) && !text.ends_with(" NOT VALID"))
}

/// What ALTER TABLE ... VALIDATE CONSTRAINT does after its scan
/// (ATExecValidateConstraint): a copy of the key's catalog row with
/// `convalidated` set, updated in the catalog, which queues the relcache
/// invalidation of the key's table.
fn mark_validated(key: pg_sys::Oid) {
    // SAFETY: the syscache copy and the modified row are ours to free; the
    // arrays have one entry per column of pg_constraint; the catalog is opened
    // with the lock ALTER TABLE takes on it, kept until the transaction ends.
    unsafe {
        let tuple = pg_sys::SearchSysCacheCopy(
            pg_sys::SysCacheIdentifier::CONSTROID as i32,
            pg_sys::Datum::from(key.to_u32()),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        if tuple.is_null() {
            pgrx::error!("cache lookup failed for constraint {}", key.to_u32());
        }
        let catalog = pg_sys::table_open(CONSTRAINT_RELATION, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let columns = (*(*catalog).rd_att).natts as usize;
        let column = pg_sys::get_attnum(CONSTRAINT_RELATION, c"convalidated".as_ptr()) as usize;
        let mut values = vec![pg_sys::Datum::from(0); columns];
        let mut nulls = vec![false; columns];
        let mut replace = vec![false; columns];
        values[column - 1] = pg_sys::Datum::from(true);
        replace[column - 1] = true;
        let changed = pg_sys::heap_modify_tuple(
            tuple,
            (*catalog).rd_att,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
            replace.as_mut_ptr(),
        );
        pg_sys::CatalogTupleUpdate(catalog, &mut (*changed).t_self, changed);
        pg_sys::table_close(catalog, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        pg_sys::heap_freetuple(changed);
        pg_sys::heap_freetuple(tuple);
    }
}
