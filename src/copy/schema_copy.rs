//! Copies of a whole schema with its data, for backups and restores.
//!
//! The structure comes from the template generators (`template::generate_for_load`),
//! run against the source schema: names inside it bind to the target's own
//! objects, so nothing in the copy depends on the source.
//!
//! The privilege boundary shapes the order. Tenant code (CHECK constraints,
//! domain CHECKs, generated columns, casts of its own types, index
//! expressions, materialized-view queries) must never run as the extension
//! owner. In a whole copy (`copy_schema`) every source table is read in ONE
//! registered snapshot, so the copy is consistent (no child row without its
//! parent) without locking writers, whatever the tables' row-level security
//! says; the sequences are set and, when asked, the rows hashed (without
//! anything a tenant can define) in that snapshot too. Each table's rows
//! then take one of two paths:
//! - direct (`Table::direct`: no column of a type of the schema itself): the
//!   extension owner copies them as they are into the copy's table by
//!   multi-insert (`bulk`). Nothing a tenant wrote is evaluated, so no role
//!   needs switching to.
//! - staged: the extension owner copies them into a bare UNLOGGED staging
//!   table of the very same column types (no constraint, no default, no
//!   index, no trigger, no conversion), then, as the tenant's own role in a
//!   security-restricted operation (`restricted::as_role`), the staging table
//!   is inserted into the real table, so CHECKs, domains, generated columns
//!   and casts run with the tenant's rights only. The rights it needs on the
//!   other side (USAGE on the copy's schema, SELECT on the staging tables,
//!   INSERT on the copy's tables, membership of a backup's role) are granted
//!   just before and revoked right after, in this transaction.
//!
//! `copy_rows` (a template's reference rows) and portable copies stage every table.
//! Foreign keys the source holds validated are not scanned again when no
//! tenant code runs in the copy before them (`trusted_keys`).
//!
//! The copy's objects are owned by their non-superuser owner (the backup's
//! role, or the tenant's role for a restore) before the load, so what
//! PostgreSQL runs as a table's owner afterwards (materialized views created
//! WITH NO DATA then refreshed, keys and indexes, foreign-key validation)
//! runs as that role. Triggers, row-level security and policies come last:
//! the load does not fire triggers.

use crate::copy::bulk::{self, CopySnapshot};
use crate::copy::template;
use crate::copy::trusted_keys::TrustedKeys;
use crate::core::db;
use crate::core::ddl_script;
use crate::core::errors;
use crate::core::errors::TcResult;
use crate::core::name::{RoleName, TenantName};
use crate::core::restricted;
use crate::core::restricted::internal_ddl;
use pgrx::pg_sys;
use pgrx::spi::{quote_literal, quote_qualified_identifier};

/// Settings pinned while rows are turned into text for hashing.
pub const HASH_SETTINGS: &[(&str, &str)] = &[
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
    ("lc_monetary", "C"),
];

/// Generators whose statements run before the data is loaded: the objects
/// the data needs, and who owns and may use them. The others run after.
const BEFORE_LOAD: &[&str] = &[
    "collations",
    "text search",
    "types",
    "range types",
    "domain constraints",
    "sequences",
    "functions",
    "aggregates",
    "tables",
    "defaults",
    "checks",
    "sequence ownership",
    "partitions",
    "views",
    "ownership",
    "grants",
];

/// One table of a copy: rows copied and, when asked, the hash of the source's rows.
#[derive(Debug, Clone)]
pub struct TableCopy {
    pub name: String,
    pub rows: i64,
    pub hash: Option<String>,
}

/// Copy `source` (whose tenant role is `source_role`) into the new schema
/// `target` with role `target_role`. `prelude` creates the schema and role.
/// Function `search_path` settings name `target`: a copy built under a
/// temporary name is rebound when it is renamed (`lifecycle::rename_schema`),
/// so that while it is built nothing in it reaches a schema of the final name
/// (the live tenant's, or none at all for a dropped one). `loader` is the tenant's live role, as
/// which the rows are loaded. With `hash`, the copy statement also hashes
/// each source table in its snapshot.
pub fn copy_schema(
    source: &TenantName,
    source_role: &RoleName,
    target: &TenantName,
    target_role: &RoleName,
    prelude: &[String],
    loader: &RoleName,
    hash: bool,
) -> TcResult<Vec<TableCopy>> {
    template::refuse_unsupported_in(source.as_str(), "the", "nothing was copied")?;
    let tables = tables(source, target)?;
    let staged: Vec<Table> = tables.iter().filter(|t| !t.direct()).cloned().collect();
    let views = populated_views(source)?;
    // The source's validated foreign keys hold in the copy only if nothing
    // changes its rows before the keys are added: no tenant code may run in
    // between (a staged load's CHECKs and domains, a materialized view's
    // query: either may call a function that writes). See trusted_keys.rs.
    let keys = if staged.is_empty() && views.is_empty() { TrustedKeys::of(source)? } else { TrustedKeys::none() };
    let statements = keys.unscanned(template::generate_for_load(source.as_str(), source_role.as_str())?);
    let (before, after) = split(&statements, target, target_role);
    let creation = prelude.iter().cloned().chain(before).chain(staging_tables(source, target, &staged));
    ddl(target, creation.collect(), "while creating the copy's tables")?;
    let copied = bulk_copy(source, target, &tables, hash, sequences(source, target)?)?;
    fill(target, target_role, loader, &staged, &views, after)?;
    keys.mark_validated(target)?;
    Ok(copied)
}

/// Step 1 of a whole copy, in one snapshot: the rows of each source table
/// into the copy's own table when its columns take the source's values as
/// they are (`Table::direct`: nothing to evaluate, so no role to load them
/// as; see `bulk`), else into its staging table (loaded by `fill` as the
/// tenant's role). Then, in the same snapshot, each table's row count and,
/// with `hash`, the hash of its rows; and the positions of `sequences`.
fn bulk_copy(
    source: &TenantName,
    target: &TenantName,
    tables: &[Table],
    hash: bool,
    sequences: Vec<(String, String)>,
) -> TcResult<Vec<TableCopy>> {
    let mut staged = 0;
    let mut into = Vec::new();
    for table in tables {
        into.push(match table.direct() {
            true => quote_qualified_identifier(target.as_str(), &table.name),
            false => staging(target, staged),
        });
        staged += usize::from(!table.direct());
    }
    let into: Vec<pg_sys::Oid> = db::scalar(
        "SELECT COALESCE(pg_catalog.array_agg(u.name::regclass::oid ORDER BY u.n), '{}')
           FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(name, n)",
        &[into.into()],
    )?;
    let mut results = Vec::new();
    for table in tables.iter().filter(|_| hash) {
        results.push(summary(&quote_qualified_identifier(source.as_str(), &table.name), Some(row_hash(table.oid)?)));
    }
    results.extend(sequences.iter().map(|(from, into)| set_sequence(from, into)));
    let statement = format!("SELECT pg_catalog.jsonb_build_array({})", results.join(", "));

    let snapshot = CopySnapshot::take();
    let counts: Vec<i64> = tables.iter().zip(into).map(|(t, into)| bulk::copy_table(t.oid, into, &snapshot)).collect();
    // SAFETY: makes the rows just written visible to the statements that follow.
    unsafe { pg_sys::CommandCounterIncrement() };
    let answer = if results.is_empty() { Ok(Vec::new()) } else { summaries_in(&statement, &snapshot) };
    snapshot.release();
    let hashes = answer?.into_iter().take(if hash { tables.len() } else { 0 });
    let hashes = hashes.map(|summary| summary.get(1).and_then(|v| v.as_str()).map(str::to_string));
    let hashes: Vec<Option<String>> = hashes.chain(std::iter::repeat(None)).take(tables.len()).collect();
    Ok(tables
        .iter()
        .zip(counts)
        .zip(hashes)
        .map(|((table, rows), hash)| TableCopy { name: table.name.clone(), rows, hash })
        .collect())
}

/// The expression that sets the sequence `into` to the position of `from`.
fn set_sequence(from: &str, into: &str) -> String {
    format!(
        "(SELECT pg_catalog.jsonb_build_array(pg_catalog.setval({}::regclass, q.last_value, q.is_called)) FROM {from} q)",
        quote_literal(into)
    )
}

/// The statements of a copy rendered for `target`, in two batches: what
/// runs before the data is loaded, and what runs after.
pub fn split<K: AsRef<str>>(
    statements: &[(K, template::Statement)],
    target: &TenantName,
    target_role: &RoleName,
) -> (Vec<String>, Vec<String>) {
    let render = |(kind, statement): &(K, template::Statement)| {
        let sql = template::render(statement, target.as_str(), target_role.as_str());
        // A materialized view is filled later, by its owner (see `refresh`).
        match (kind.as_ref(), sql.strip_suffix(" WITH DATA")) {
            ("views", Some(head)) => format!("{head} WITH NO DATA"),
            _ => sql,
        }
    };
    let (before, after): (Vec<_>, Vec<_>) =
        statements.iter().partition(|(kind, _)| BEFORE_LOAD.contains(&kind.as_ref()));
    (before.into_iter().map(render).collect(), after.into_iter().map(render).collect())
}

/// Run a batch of the extension's own DDL with the copy's schema on the search_path.
pub fn ddl(target: &TenantName, batch: Vec<String>, context: &str) -> TcResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    internal_ddl(|| {
        db::with_settings(&[("search_path", &target.quoted()), ("check_function_bodies", "off")], || {
            ddl_script::run(&batch.join(";\n"), context)
        })
    })
}

/// Once the staging tables hold the rows: load them as `loader`, fill the
/// materialized views `views`, then build what comes `after` (keys,
/// indexes, triggers, policies).
pub fn fill(
    target: &TenantName,
    target_role: &RoleName,
    loader: &RoleName,
    tables: &[Table],
    views: &[String],
    after: Vec<String>,
) -> TcResult<()> {
    // The tenant's code finds its own objects through its search_path: the
    // roles it runs as (the loader, and the owner building indexes and
    // refreshing views) may look into the copy's schema until it is built.
    let roles = if target_role == loader {
        target_role.quoted()
    } else {
        format!("{}, {}", target_role.quoted(), loader.quoted())
    };
    let usage = |statement: String| internal_ddl(|| db::run_explained(&statement, "while granting the copy's schema"));
    usage(format!("GRANT USAGE ON SCHEMA {} TO {roles}", target.quoted()))?;
    load(target, target_role, loader, tables)?;
    refresh(target, views)?;
    ddl(target, after, "while building the copy's keys, indexes and triggers")?;
    usage(format!("REVOKE USAGE ON SCHEMA {} FROM {roles}", target.quoted()))
}

/// Copy the rows of the tables `names` of `source` into the same tables of
/// the existing schema `target` (the template's reference rows into a new
/// tenant), as a whole copy moves them: staged by the extension's owner,
/// loaded as `role` in a security-restricted operation. The sequences of
/// those tables' columns continue from the source's.
pub fn copy_rows(
    source: &TenantName,
    target: &TenantName,
    role: &RoleName,
    names: &[String],
) -> TcResult<Vec<TableCopy>> {
    let tables: Vec<Table> = tables(source, target)?.into_iter().filter(|t| names.contains(&t.name)).collect();
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let staged: Vec<String> = staging_tables(source, target, &tables).collect();
    internal_ddl(|| db::run_explained(&staged.join(";\n"), "while staging the template's rows"))?;
    let oids: Vec<pg_sys::Oid> = tables.iter().map(|t| t.oid).collect();
    let sequences = db::rows(
        "SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', $1::text, c.relname), a.attname) AS source,
                pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', $2::text, c.relname), a.attname) AS target
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE c.oid = ANY ($3::oid[])
            AND pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', $1::text, c.relname), a.attname) IS NOT NULL",
        &[source.as_str().into(), target.as_str().into(), oids.into()],
        |row| Ok((db::col::<String>(row, "source")?.unwrap_or_default(), db::col::<String>(row, "target")?.unwrap_or_default())),
    )?;
    let copied = raw_copy(source, target, &tables, false, sequences)?;
    load(target, role, role, &tables)?;
    Ok(copied)
}

/// A table of the source: its name, the columns a copy inserts (not the
/// generated ones), what it selects for them, and its oid.
#[derive(Clone)]
pub struct Table {
    pub name: String,
    columns: Option<String>,
    values: Option<String>,
    /// Whether a column (generated ones included) is of a type of the schema itself.
    own_types: bool,
    pub oid: pg_sys::Oid,
}

impl Table {
    /// Whether the copy's table takes the source's values as they are: no
    /// column, generated or not, of a type of the schema itself (the copy has
    /// its own such type: values go through their text form into it, which
    /// may run a domain's CHECKs, or are generated again).
    pub fn direct(&self) -> bool {
        !self.own_types
    }

    /// The columns a copy inserts, quoted and comma-separated (None: no column).
    pub fn column_list(&self) -> Option<String> {
        self.columns.clone()
    }
}

/// The tables of `schema`. A column whose type belongs to the schema (an
/// enum, a domain, a composite, or an array of one) has the copy's own type
/// in `target`: its values go through their text form.
pub fn tables(schema: &TenantName, target: &TenantName) -> TcResult<Vec<Table>> {
    db::rows(
        "SELECT c.relname::text AS name, c.oid,
                pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                    FILTER (WHERE a.attgenerated = '') AS columns,
                pg_catalog.string_agg(CASE
                    WHEN t.typnamespace = c.relnamespace
                        THEN pg_catalog.format('%I::pg_catalog.text::%I.%I', a.attname, $2::text, t.typname)
                    WHEN e.typnamespace = c.relnamespace
                        THEN pg_catalog.format('%I::pg_catalog.text::%I.%I[]', a.attname, $2::text, e.typname)
                    ELSE pg_catalog.quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
                    FILTER (WHERE a.attgenerated = '') AS values,
                COALESCE(pg_catalog.bool_or(t.typnamespace = c.relnamespace OR e.typnamespace = c.relnamespace), false)
                    AS own_types
           FROM pg_catalog.pg_class c
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
          WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind = 'r'
          GROUP BY c.oid, c.relname ORDER BY c.oid",
        &[schema.as_str().into(), target.as_str().into()],
        |row| {
            Ok(Table {
                name: db::col::<String>(row, "name")?.unwrap_or_default(),
                columns: db::col::<String>(row, "columns")?,
                values: db::col::<String>(row, "values")?,
                own_types: db::col::<bool>(row, "own_types")?.unwrap_or(true),
                oid: db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or(pg_sys::InvalidOid),
            })
        },
    )
}

/// Every sequence of `source` with the sequence of `target` that takes its
/// position: the same name, or for an identity column the column's sequence.
fn sequences(source: &TenantName, target: &TenantName) -> TcResult<Vec<(String, String)>> {
    db::rows(
        "SELECT pg_catalog.format('%I.%I', $1::text, s.relname) AS source,
                COALESCE((SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', $2::text, t.relname), a.attname)
                            FROM pg_catalog.pg_depend d
                            JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
                            JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'i'
                             AND d.refclassid = 'pg_catalog.pg_class'::regclass),
                         pg_catalog.format('%I.%I', $2::text, s.relname)) AS target
           FROM pg_catalog.pg_class s
          WHERE s.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND s.relkind = 'S'
          ORDER BY s.oid",
        &[source.as_str().into(), target.as_str().into()],
        |row| Ok((db::col::<String>(row, "source")?.unwrap_or_default(), db::col::<String>(row, "target")?.unwrap_or_default())),
    )
}

/// The hash of one row of a table, as a SQL expression over the alias `r`:
/// the types' own binary hash functions when every column is of a built-in
/// type that has one (fast, and independent of session settings), else a
/// hash of the row's text form (under `HASH_SETTINGS`). Types of the schema
/// itself take the text form: an enum hashes by its labels' OIDs, which
/// differ between a tenant and its backup.
///
/// The text form is `record_out`, called by name: it calls the columns'
/// own output functions, which no tenant can define (base types need a
/// superuser). `r::text` would go through a cast a tenant can create from
/// its table's row type to text; `record_out` gives the very same string
/// the built-in conversion gave, so hashes recorded by 0.1.0 still match.
pub fn row_hash(table: pg_sys::Oid) -> TcResult<&'static str> {
    let types: Vec<pg_sys::Oid> = db::rows(
        "SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
        &[table.into()],
        |row| Ok(row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)),
    )?;
    // SAFETY: the same type cache lookup hash_record makes for each column.
    let hashable = types.iter().all(|&typ| unsafe {
        if typ.to_u32() >= pg_sys::FirstNormalObjectId {
            return false;
        }
        let entry = pg_sys::lookup_type_cache(typ, pg_sys::TYPECACHE_HASH_EXTENDED_PROC as i32);
        !entry.is_null() && (*entry).hash_extended_proc != pg_sys::InvalidOid
    });
    Ok(if hashable {
        "pg_catalog.hash_record_extended(r.*, 0)"
    } else {
        "pg_catalog.hashtextextended(pg_catalog.textin(pg_catalog.record_out(r)), 0)"
    })
}

/// An aggregate of a table's rows: count and, with `hash`, the sum of row hashes.
pub fn summary(table: &str, hash_expression: Option<&str>) -> String {
    match hash_expression {
        Some(expression) => format!(
            "(SELECT pg_catalog.jsonb_build_array(pg_catalog.count(*), COALESCE(pg_catalog.sum({expression}), 0)::text) FROM ONLY {table} r)"
        ),
        None => format!("(SELECT pg_catalog.jsonb_build_array(pg_catalog.count(*), NULL) FROM ONLY {table} r)"),
    }
}

/// The one statement that copies every table and sequence position.
/// Row count and content hash of every table of a schema, in one snapshot.
pub fn count_and_hash(schema: &TenantName) -> TcResult<Vec<TableCopy>> {
    let tables = tables(schema, schema)?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut results = Vec::new();
    for table in &tables {
        results.push(summary(&quote_qualified_identifier(schema.as_str(), &table.name), Some(row_hash(table.oid)?)));
    }
    let statement = format!("SELECT pg_catalog.jsonb_build_array({})", results.join(", "));
    let answer = summaries(&statement, "while hashing the tables")?;
    Ok(table_copies(&tables, answer))
}

/// Run a statement returning a jsonb array of [count, hash] pairs, with the
/// settings that text forms depend on pinned.
fn summaries(statement: &str, context: &str) -> TcResult<Vec<serde_json::Value>> {
    let answer: pgrx::JsonB = db::with_settings(HASH_SETTINGS, || {
        errors::caught(|| db::scalar(statement, &[])).map_err(|e| e.detail(context.to_string()))
    })?;
    Ok(answer.0.as_array().cloned().unwrap_or_default())
}

/// `summaries`, run in the copy's snapshot.
fn summaries_in(statement: &str, snapshot: &CopySnapshot) -> TcResult<Vec<serde_json::Value>> {
    let answer = db::with_settings(HASH_SETTINGS, || {
        errors::caught(|| bulk::json_in_snapshot(statement, snapshot))
            .map_err(|e| e.detail("while hashing the copied tables".to_string()))
    })?;
    Ok(answer.as_array().cloned().unwrap_or_default())
}

/// Pair each table with its [count, hash] summary.
fn table_copies(tables: &[Table], answer: Vec<serde_json::Value>) -> Vec<TableCopy> {
    tables
        .iter()
        .zip(answer)
        .map(|(table, summary)| TableCopy {
            name: table.name.clone(),
            rows: summary.get(0).and_then(|v| v.as_i64()).unwrap_or(0),
            hash: summary.get(1).and_then(|v| v.as_str()).map(str::to_string),
        })
        .collect()
}

/// The staging table of the `n`th table of a copy, in the target schema.
pub fn staging(target: &TenantName, n: usize) -> String {
    quote_qualified_identifier(target.as_str(), &format!("tc_load_{n}"))
}

/// Bare staging tables with the source tables' columns and types, dropped
/// once the rows are loaded.
fn staging_tables<'a>(
    source: &'a TenantName,
    target: &'a TenantName,
    tables: &'a [Table],
) -> impl Iterator<Item = String> + 'a {
    tables.iter().enumerate().map(move |(n, table)| {
        format!(
            "CREATE UNLOGGED TABLE {} AS SELECT * FROM ONLY {} WITH NO DATA",
            staging(target, n),
            quote_qualified_identifier(source.as_str(), &table.name)
        )
    })
}

/// For `copy_rows`: every source table into its staging table and the
/// positions of `sequences` (source, target), in one statement. The columns
/// keep their types: no cast, no constraint, nothing of the tenant's runs.
fn raw_copy(
    source: &TenantName,
    target: &TenantName,
    tables: &[Table],
    hash: bool,
    sequences: Vec<(String, String)>,
) -> TcResult<Vec<TableCopy>> {
    let mut ctes = Vec::new();
    let mut results = Vec::new();
    for (n, table) in tables.iter().enumerate() {
        let from = quote_qualified_identifier(source.as_str(), &table.name);
        ctes.push(format!("c{n} AS (INSERT INTO {} SELECT * FROM ONLY {from})", staging(target, n)));
        let expression = if hash { Some(row_hash(table.oid)?) } else { None };
        results.push(summary(&from, expression));
    }
    results.extend(sequences.iter().map(|(from, into)| set_sequence(from, into)));
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let statement = format!(
        "{}SELECT pg_catalog.jsonb_build_array({})",
        if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) },
        results.join(", ")
    );
    let answer = summaries(&statement, "while copying the data")?;
    Ok(table_copies(tables, answer))
}

/// Step 2: the staging tables into the copy's tables, as `loader` (the
/// tenant's role) in a security-restricted operation. What it needs on the
/// copy's side is granted for this step only: SELECT on the staging tables,
/// INSERT where it lacks it, and membership of the copy's role when that is
/// not `loader` itself (a backup's role, which may hold grants the tenant's
/// functions need there). USAGE on the schema is granted by the caller.
fn load(target: &TenantName, target_role: &RoleName, loader: &RoleName, tables: &[Table]) -> TcResult<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let into = |table: &Table| quote_qualified_identifier(target.as_str(), &table.name);
    let lacking: Vec<String> = db::rows(
        "SELECT t.name FROM pg_catalog.unnest($1::text[]) AS t(name)
          WHERE NOT pg_catalog.has_table_privilege($2, t.name::regclass, 'INSERT')",
        &[tables.iter().map(into).collect::<Vec<_>>().into(), loader.as_str().into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )?;
    let staged: Vec<String> = (0..tables.len()).map(|n| staging(target, n)).collect();
    let member = target_role != loader;
    let mut grants = vec![format!("GRANT SELECT ON TABLE {} TO {}", staged.join(", "), loader.quoted())];
    if !lacking.is_empty() {
        grants.push(format!("GRANT INSERT ON TABLE {} TO {}", lacking.join(", "), loader.quoted()));
    }
    if member {
        grants.push(format!("GRANT {} TO {}", target_role.quoted(), loader.quoted()));
    }
    internal_ddl(|| db::run_explained(&grants.join(";\n"), "while granting the loading role its rights"))?;

    let search_path = format!("pg_catalog, {}", target.quoted());
    internal_ddl(|| {
        restricted::as_role(loader.as_str(), &search_path, || {
            for (table, from) in tables.iter().zip(&staged) {
                let statement = match (&table.columns, &table.values) {
                    (Some(columns), Some(values)) => format!(
                        "INSERT INTO {} ({columns}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {from}",
                        into(table)
                    ),
                    _ => format!("INSERT INTO {} SELECT FROM {from}", into(table)),
                };
                db::run_explained(&statement, &format!("while loading table \"{}\" as role \"{loader}\"", table.name))?;
            }
            Ok(())
        })
    })?;

    let mut revokes = vec![format!("DROP TABLE {}", staged.join(", "))];
    if !lacking.is_empty() {
        revokes.push(format!("REVOKE INSERT ON TABLE {} FROM {}", lacking.join(", "), loader.quoted()));
    }
    if member {
        revokes.push(format!("REVOKE {} FROM {}", target_role.quoted(), loader.quoted()));
    }
    internal_ddl(|| db::run_explained(&revokes.join(";\n"), "while revoking the loading role's rights"))
}

/// The materialized views `source` holds populated: a copy creates them
/// WITH NO DATA and refreshes them once loaded and owned (`refresh`).
pub fn populated_views(source: &TenantName) -> TcResult<Vec<String>> {
    db::rows(
        "SELECT c.relname::text FROM pg_catalog.pg_class c
          WHERE c.oid IN (SELECT so.oid FROM tenant.schema_objects($1, 'pg_catalog.pg_class') AS so(oid)) AND c.relkind = 'm' AND c.relispopulated
          ORDER BY c.oid",
        &[source.as_str().into()],
        |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
    )
}

/// REFRESH runs the view's query as the view's owner in a
/// security-restricted operation.
fn refresh(target: &TenantName, views: &[String]) -> TcResult<()> {
    for view in views {
        let statement = format!("REFRESH MATERIALIZED VIEW {}", quote_qualified_identifier(target.as_str(), view));
        internal_ddl(|| db::run_explained(&statement, "while filling the copy's materialized views"))?;
    }
    Ok(())
}
