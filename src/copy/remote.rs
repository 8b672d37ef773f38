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
use std::cell::RefCell;

/// An open dblink connection to the source, in a REPEATABLE READ transaction.
pub struct Remote {
    /// The connection's name, local to this backend.
    name: String,
    /// The schema dblink is installed in, quoted.
    dblink: String,
    /// What the connection was opened with, for the connections beside it.
    source: String,
    /// Connections beside this one, in its snapshot, each running one query
    /// in the background (`in_background`); closed with it.
    beside: RefCell<Vec<String>>,
}

/// A query running on the source on a connection of its own.
pub struct Background {
    name: String,
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
    let remote = Remote {
        name: format!("tc_copy_{}", uuid::Uuid::new_v4().simple()),
        dblink: dblink_schema()?,
        source: source.to_string(),
        beside: RefCell::new(Vec::new()),
    };
    remote.connect(&remote.name)?;
    // dblink's named connections outlive a rolled-back subtransaction: the
    // work runs in one, and the connections are closed after it either way,
    // a cancel included (closing them rolls back what did not commit there).
    subxact::atomically_then(
        || {
            remote.begin()?;
            let result = work(&remote)?;
            // The queries beside it wrote their part of the source's log.
            for name in remote.beside.borrow().iter() {
                remote.on(name).exec("COMMIT")?;
            }
            remote.exec("COMMIT")?;
            Ok(result)
        },
        || remote.close(),
    )
}

impl Remote {
    /// Open the connection `name` to the source.
    fn connect(&self, name: &str) -> TcResult<()> {
        let connect = format!("SELECT {}.dblink_connect($1, $2)", self.dblink);
        subxact::atomically(|| db::run(&connect, &[name.into(), self.source.as_str().into()])).map_err(|error| {
            TcError::new(
                PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                "could not connect to the source database",
            )
            .detail(error.summary())
            .hint("Pass a libpq connection string or the name of a foreign server with a user mapping for you.")
        })
    }

    /// The same source through the connection `name`.
    fn on(&self, name: &str) -> Remote {
        Remote {
            name: name.to_string(),
            dblink: self.dblink.clone(),
            source: self.source.clone(),
            beside: RefCell::new(Vec::new()),
        }
    }

    /// Open the copy's REPEATABLE READ transaction on this connection.
    fn begin(&self) -> TcResult<()> {
        self.exec("SET search_path = pg_catalog, pg_temp")?;
        // Named in the source's pg_stat_activity, for its DBA.
        self.exec("SET application_name = 'tenant_control copy'")?;
        self.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
    }

    /// Close this connection and those beside it; a query still running
    /// beside it is cancelled first.
    fn close(&self) -> TcResult<()> {
        for name in self.beside.borrow().iter() {
            db::run(
                &format!(
                    "SELECT {0}.dblink_cancel_query($1), {0}.dblink_disconnect($1)
                      WHERE $1 OPERATOR(pg_catalog.=) ANY ({0}.dblink_get_connections())",
                    self.dblink
                ),
                &[name.as_str().into()],
            )?;
        }
        db::run(&format!("SELECT {}.dblink_disconnect($1)", self.dblink), &[self.name.as_str().into()])
    }

    /// Start `query` on another connection to the source, in this one's
    /// snapshot (exported here, imported there), and return at once: the
    /// source works on it while this session goes on. Its transaction
    /// commits with this one's.
    pub fn in_background(&self, query: &str) -> TcResult<Background> {
        let snapshot = self
            .rows("SELECT pg_catalog.pg_export_snapshot()", &["snapshot"], |row| db::col::<String>(row, "snapshot"))?
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        let name = format!("{}_{}", self.name, self.beside.borrow().len() + 1);
        self.connect(&name)?;
        self.beside.borrow_mut().push(name.clone());
        let beside = self.on(&name);
        beside.begin()?;
        beside.exec(&format!("SET TRANSACTION SNAPSHOT {}", quote_literal(&snapshot)))?;
        db::run(&format!("SELECT {}.dblink_send_query($1, $2)", self.dblink), &[name.as_str().into(), query.into()])?;
        Ok(Background { name })
    }

    /// The rows of a query started with `in_background` (all columns as
    /// text), waiting for them if the source is not done yet.
    pub fn collect<T>(
        &self,
        query: &Background,
        columns: &[&str],
        map: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> TcResult<T>,
    ) -> TcResult<Vec<T>> {
        let local = format!(
            "SELECT * FROM {}.dblink_get_result({}) AS r({})",
            self.dblink,
            quote_literal(&query.name),
            text_columns(columns)
        );
        let rows = db::rows(&local, &[], map)?;
        // The empty result that ends the query frees the connection for its COMMIT.
        db::run(&local.replace("SELECT *", "SELECT pg_catalog.count(*)"), &[])?;
        Ok(rows)
    }

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
        let local = format!("SELECT * FROM {}", self.query_item(query, &text_columns(columns)));
        db::rows(&local, &[], map)
    }
}

/// A column definition list of text columns.
fn text_columns(columns: &[&str]) -> String {
    columns.iter().map(|c| format!("{} pg_catalog.text", quote_identifier(c))).collect::<Vec<_>>().join(", ")
}
