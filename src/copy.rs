//! Copies of a whole schema with its data, for backups and restores.
//!
//! The structure comes from the template generators (`template::generate_for_load`),
//! run against the source schema: names inside it bind to the target's own
//! objects, so nothing in the copy depends on the source. Tables are created
//! bare, loaded, and only then get their keys, indexes, foreign keys and
//! triggers (loading first is much faster, and the source's triggers must not
//! fire on the load). The data is copied by ONE statement whose data-modifying
//! CTEs fill every table: one statement sees one snapshot, so the copy is
//! consistent (no child row without its parent) without locking writers or
//! touching the caller's isolation level.

use crate::db;
use crate::errors::{TcError, TcResult};
use crate::lifecycle::internal_ddl;
use crate::name::{RoleName, TenantName};
use crate::template;
use pgrx::pg_sys;
use pgrx::prelude::*;
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

/// One table of a copy: rows copied and, when asked, the hash of the source's rows.
#[derive(Debug, Clone)]
pub struct TableCopy {
    pub name: String,
    pub rows: i64,
    pub hash: Option<String>,
}

/// Copy `source` (whose tenant role is `source_role`) into the new schema
/// `target` with role `target_role`. `prelude` creates the schema and role.
/// `final_name` is the name the copy will have once renamed (what function
/// `search_path` settings name). With `hash`, the copy statement also hashes
/// each source table in its snapshot.
pub fn copy_schema(
    source: &TenantName,
    source_role: &RoleName,
    target: &TenantName,
    target_role: &RoleName,
    final_name: &TenantName,
    prelude: &[String],
    hash: bool,
) -> TcResult<Vec<TableCopy>> {
    if let Some(object) = template::unsupported_in(source.as_str())? {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("tenant_control cannot copy the {object} faithfully"),
        )
        .hint("Remove or replace it; nothing was copied."));
    }
    let (before_load, after_load) = template::generate_for_load(source.as_str(), source_role.as_str())?;
    let render = |statements: &[template::Statement]| {
        statements.iter().map(|s| template::render(s, final_name.as_str(), target_role.as_str())).collect::<Vec<_>>()
    };
    let ddl = |batch: Vec<String>, context: &str| {
        internal_ddl(|| {
            db::with_settings(&[("search_path", &target.quoted()), ("check_function_bodies", "off")], || {
                db::run_explained(&batch.join(";\n"), context)
            })
        })
    };
    ddl(prelude.iter().cloned().chain(render(&before_load)).collect(), "while creating the copy's tables")?;
    let copied = load(source, target, hash)?;
    if !after_load.is_empty() {
        ddl(render(&after_load), "while building the copy's keys, indexes and triggers")?;
    }
    Ok(copied)
}

/// A table of the source: its name, the columns a copy inserts (not the
/// generated ones), what it selects for them, and its oid.
struct Table {
    name: String,
    columns: Option<String>,
    values: Option<String>,
    oid: pg_sys::Oid,
}

/// The tables of `schema`. A column whose type belongs to the schema (an
/// enum, a domain, a composite, or an array of one) has the copy's own type
/// in `target`: its values go through their text form.
fn tables(schema: &TenantName, target: &TenantName) -> TcResult<Vec<Table>> {
    db::rows(
        "SELECT c.relname::text AS name, c.oid,
                pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                    FILTER (WHERE a.attgenerated = '') AS columns,
                pg_catalog.string_agg(CASE
                    WHEN t.typnamespace = c.relnamespace
                        THEN pg_catalog.format('%I::text::%I.%I', a.attname, $2::text, t.typname)
                    WHEN e.typnamespace = c.relnamespace
                        THEN pg_catalog.format('%I::text::%I.%I[]', a.attname, $2::text, e.typname)
                    ELSE pg_catalog.quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
                    FILTER (WHERE a.attgenerated = '') AS values
           FROM pg_catalog.pg_class c
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
          WHERE c.oid IN (SELECT tenant.schema_objects($1, 'pg_catalog.pg_class')) AND c.relkind = 'r'
          GROUP BY c.oid, c.relname ORDER BY c.oid",
        &[schema.as_str().into(), target.as_str().into()],
        |row| {
            Ok(Table {
                name: db::col::<String>(row, "name")?.unwrap_or_default(),
                columns: db::col::<String>(row, "columns")?,
                values: db::col::<String>(row, "values")?,
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
          WHERE s.oid IN (SELECT tenant.schema_objects($1, 'pg_catalog.pg_class')) AND s.relkind = 'S'
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
    Ok(if hashable { "pg_catalog.hash_record_extended(r.*, 0)" } else { "pg_catalog.hashtextextended(r::text, 0)" })
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
        db::caught(|| db::scalar(statement, &[])).map_err(|e| e.detail(context.to_string()))
    })?;
    Ok(answer.0.as_array().cloned().unwrap_or_default())
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

fn load(source: &TenantName, target: &TenantName, hash: bool) -> TcResult<Vec<TableCopy>> {
    let tables = tables(source, target)?;
    let mut ctes = Vec::new();
    let mut results = Vec::new();
    for (n, table) in tables.iter().enumerate() {
        let from = quote_qualified_identifier(source.as_str(), &table.name);
        let into = quote_qualified_identifier(target.as_str(), &table.name);
        ctes.push(match (&table.columns, &table.values) {
            (Some(columns), Some(values)) => format!(
                "c{n} AS (INSERT INTO {into} ({columns}) OVERRIDING SYSTEM VALUE SELECT {values} FROM ONLY {from})"
            ),
            _ => format!("c{n} AS (INSERT INTO {into} SELECT FROM ONLY {from})"),
        });
        let expression = if hash { Some(row_hash(table.oid)?) } else { None };
        results.push(summary(&from, expression));
    }
    for (from, into) in sequences(source, target)? {
        results.push(format!(
            "(SELECT pg_catalog.jsonb_build_array(pg_catalog.setval({}::regclass, q.last_value, q.is_called)) FROM {from} q)",
            quote_literal(&into)
        ));
    }
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let statement = format!(
        "{}SELECT pg_catalog.jsonb_build_array({})",
        if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) },
        results.join(", ")
    );
    let answer = summaries(&statement, "while copying the data")?;
    Ok(table_copies(&tables, answer))
}
