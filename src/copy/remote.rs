//! The transport of a copy from another database: dblink, from contrib.
//!
//! Why dblink rather than postgres_fdw: a copy needs ONE snapshot of the
//! source across many statements (the registry row, the structure, the
//! hashes, every table, the sequences). dblink keeps a named connection whose
//! transaction we open ourselves (`BEGIN ISOLATION LEVEL REPEATABLE READ`)
//! and run any statement in, including the source's own functions; it
//! accepts a connection string or the name of a foreign server (a
//! postgres_fdw `CREATE SERVER` with its user mapping). postgres_fdw would
//! need a foreign table per source table, created and dropped for each copy.
//!
//! dblink is an optional dependency: `tenant.copy_institution_from` looks for
//! it when called and refuses (0A000) when it is not installed, so that the
//! extension installs and upgrades without it.
//!
//! Rows arrive as text and are converted by the input functions of the
//! staging tables' column types: built-in (or superuser-installed) types
//! only; the tenant's own types stay text until the load, which runs as the
//! tenant's role (`schema_copy::fill`).

use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::core::subxact;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};

/// An open dblink connection to the source, in a REPEATABLE READ transaction.
pub struct Remote {
    /// The connection's name, local to this backend.
    name: String,
    /// The schema dblink is installed in, quoted.
    dblink: String,
}

/// The schema the dblink extension lives in, or a clear refusal.
fn dblink_schema() -> TcResult<String> {
    let schema = db::value::<String>(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
          WHERE e.extname OPERATOR(pg_catalog.=) 'dblink'",
        &[],
    )?;
    schema.map(|s| quote_identifier(&s)).ok_or_else(|| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "tenant.copy_institution_from needs the dblink extension in this database",
        )
        .detail("dblink (from PostgreSQL's contrib) carries the copy from the source database.")
        .hint("CREATE EXTENSION dblink; then call tenant.copy_institution_from again.")
    })
}

/// Open a connection to `source` (a connection string or a foreign server's
/// name), run `work` in one REPEATABLE READ transaction of it, and close it
/// whatever happens. The source's transaction commits only when `work`
/// succeeds (its operation log row with it).
pub fn with_source<T>(source: &str, work: impl FnOnce(&Remote) -> TcResult<T>) -> TcResult<T> {
    let remote = Remote { name: format!("tc_copy_{}", uuid::Uuid::new_v4().simple()), dblink: dblink_schema()? };
    let connect = format!("SELECT {}.dblink_connect($1, $2)", remote.dblink);
    subxact::atomically(|| db::run(&connect, &[remote.name.as_str().into(), source.into()])).map_err(|error| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            "could not connect to the source database",
        )
        .detail(error.summary())
        .hint("Pass a libpq connection string or the name of a foreign server with a user mapping for you.")
    })?;
    // dblink's named connections outlive a rolled-back subtransaction: the
    // work runs in one, and the connection is closed after it either way,
    // a cancel included (closing it rolls back what did not commit there).
    let disconnect = format!("SELECT {}.dblink_disconnect($1)", remote.dblink);
    subxact::atomically_then(
        || {
            remote.exec("SET search_path = pg_catalog, pg_temp")?;
            // Named in the source's pg_stat_activity, for its DBA.
            remote.exec("SET application_name = 'tenant_control copy'")?;
            remote.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")?;
            let result = work(&remote)?;
            remote.exec("COMMIT")?;
            Ok(result)
        },
        || db::run(&disconnect, &[remote.name.as_str().into()]),
    )
}

impl Remote {
    /// Run a statement on the source for its effect.
    pub fn exec(&self, statement: &str) -> TcResult<()> {
        db::run(&format!("SELECT {}.dblink_exec($1, $2)", self.dblink), &[self.name.as_str().into(), statement.into()])
    }

    /// A query on the source as a local `FROM` item: `columns` is its column
    /// definition list (`name type, ...`), the local types its text values are
    /// read as.
    pub fn query_item(&self, query: &str, columns: &str) -> String {
        format!("{}.dblink({}, {}) AS r({columns})", self.dblink, quote_literal(&self.name), quote_literal(query))
    }

    /// Run a query on the source and map its rows (all columns as text).
    pub fn rows<T>(
        &self,
        query: &str,
        columns: &[&str],
        map: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> TcResult<T>,
    ) -> TcResult<Vec<T>> {
        let definitions =
            columns.iter().map(|c| format!("{} pg_catalog.text", quote_identifier(c))).collect::<Vec<_>>().join(", ");
        let local = format!("SELECT * FROM {}", self.query_item(query, &definitions));
        db::rows(&local, &[], map)
    }
}
