//! Retention with archive (issue 16): rules per template table, applied to
//! every institution in batches by `CALL tenant.apply_retention()`.
//!
//! A rule (`tenant.retention_rules`) names a table of the template, its date
//! column and how long rows are kept; an institution's registry `config` may
//! override `keep` and `archive` per table. Old rows are deleted, and with
//! `archive` moved first into `<table>_archive` in the institution's own
//! schema: a table the extension creates (recorded in
//! `tenant.retention_archives`), owned by the tenant's role like its data,
//! reachable by no other institution and copied by backups with the schema.
//!
//! The rows are deleted and archived as the tenant's role inside a
//! security-restricted operation (`restricted::as_role`): the tenant's
//! triggers, rules, policies and domain CHECKs act with its rights only.

use crate::core::db::{self, col};
use crate::core::errors::{TcError, TcResult};
use crate::core::name::MAX_IDENTIFIER_BYTES;
use crate::core::restricted;
use crate::core::subxact;
use crate::registry::oplog::{self, Operation};
use crate::registry::{self, Status, Tenant};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::Value;

/// Appended to a table's name to name its archive.
pub const ARCHIVE_SUFFIX: &str = "_archive";

/// The archive table of `table`: `<table>_archive`. The one place the name
/// is derived; it must fit in PostgreSQL's 63 bytes (never truncated).
pub fn archive_table_name(table: &str) -> TcResult<String> {
    let archive = format!("{table}{ARCHIVE_SUFFIX}");
    if archive.len() > MAX_IDENTIFIER_BYTES {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
            format!("the archive table of \"{table}\" would be named \"{archive}\", which is longer than 63 bytes"),
        )
        .hint(format!(
            "Archiving needs table names of at most {} bytes; use archive => false.",
            MAX_IDENTIFIER_BYTES - ARCHIVE_SUFFIX.len()
        )));
    }
    Ok(archive)
}

/// The archive tables the extension created in a tenant's schema (for the
/// integrity check: they are not in the template, and are not drift).
pub fn archive_tables(schema_id: uuid::Uuid) -> TcResult<Vec<String>> {
    // A kept plan: the check asks once per tenant.
    db::rows_kept(
        "SELECT archive_table FROM tenant.retention_archives WHERE schema_id OPERATOR(pg_catalog.=) $1 ORDER BY 1",
        &[pgrx::pg_sys::UUIDOID.into()],
        &[db::to_pg_uuid(schema_id).into()],
        |row| Ok(col::<String>(row, "archive_table")?.unwrap_or_default()),
    )
}

/// `tenant.set_retention`: set, replace or (with a NULL `keep`) remove the
/// rule of a template table.
pub fn set_rule(
    table: Option<&str>,
    date_column: Option<&str>,
    keep: Option<Interval>,
    archive: Option<bool>,
) -> TcResult<String> {
    let table = table.ok_or_else(|| TcError::null_argument("table_name"))?;
    let Some(keep) = keep else {
        let removed: i64 = db::scalar(
            "WITH gone AS (DELETE FROM tenant.retention_rules WHERE table_name = $1 RETURNING 1) SELECT count(*) FROM gone",
            &[table.into()],
        )?;
        return Ok(if removed > 0 {
            format!("retention rule of \"{table}\" removed")
        } else {
            format!("\"{table}\" had no retention rule")
        });
    };
    let date_column = date_column.ok_or_else(|| TcError::null_argument("date_column"))?;
    let archive = archive.ok_or_else(|| TcError::null_argument("archive"))?;
    let positive: bool = db::scalar("SELECT $1::interval > interval '0'", &[keep.into()])?;
    if !positive {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("keep must be a positive interval for the retention rule of \"{table}\""),
        )
        .hint("To remove the rule, pass keep => NULL."));
    }
    let relation = template_table(table)?;
    if archive {
        let archive_name = archive_table_name(table)?;
        if template_relation(&archive_name)?.is_some() {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
                format!(
                    "the template already has a relation \"{archive_name}\", the name of the archive of \"{table}\""
                ),
            )
            .hint("Rename the template's relation with a migration, or use archive => false."));
        }
    }
    require_date_column(relation, table, date_column)?;
    db::run(
        "INSERT INTO tenant.retention_rules AS r (table_name, date_column, keep, archive)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (table_name) DO UPDATE
            SET date_column = excluded.date_column, keep = excluded.keep, archive = excluded.archive,
                set_at = pg_catalog.now(), set_by = session_user",
        &[table.into(), date_column.into(), keep.into(), archive.into()],
    )?;
    let keep_text: String = db::scalar("SELECT $1::interval::text", &[keep.into()])?;
    Ok(if archive {
        format!(
            "rows of \"{table}\" older than {keep_text} (by \"{date_column}\") move to \"{}\"",
            archive_table_name(table)?
        )
    } else {
        format!("rows of \"{table}\" older than {keep_text} (by \"{date_column}\") are deleted")
    })
}

/// The oid of an ordinary table of the template, or 42P01 / 42809.
fn template_table(table: &str) -> TcResult<pg_sys::Oid> {
    match template_relation(table)? {
        None => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table \"{table}\" does not exist in the template schema tenant_template"),
        )
        .hint("Retention rules name tables of the template; every institution has its copy.")),
        Some((oid, kind)) if kind == "r" => Ok(oid),
        Some(_) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("\"{table}\" in tenant_template is not an ordinary table"),
        )
        .detail("Retention applies to ordinary tables only (not views, partitioned or foreign tables).")),
    }
}

fn template_relation(name: &str) -> TcResult<Option<(pg_sys::Oid, String)>> {
    let found = db::rows(
        "SELECT c.oid, c.relkind::text AS kind FROM pg_catalog.pg_class c
          WHERE c.relnamespace OPERATOR(pg_catalog.=) 'tenant_template'::pg_catalog.regnamespace
            AND c.relname OPERATOR(pg_catalog.=) $1",
        &[name.into()],
        |row| Ok((col::<pg_sys::Oid>(row, "oid")?, col::<String>(row, "kind")?)),
    )?;
    Ok(found.into_iter().next().and_then(|(oid, kind)| Some((oid?, kind?))))
}

/// The date column must exist and be a date, timestamp or timestamptz (or a
/// domain over one).
fn require_date_column(relation: pg_sys::Oid, table: &str, column: &str) -> TcResult<()> {
    let base_type = db::value::<String>(
        "WITH RECURSIVE t(oid, base, typtype) AS (
             SELECT y.oid, y.typbasetype, y.typtype FROM pg_catalog.pg_type y
              WHERE y.oid = (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = $1 AND a.attname OPERATOR(pg_catalog.=) $2
                                AND a.attnum > 0 AND NOT a.attisdropped)
             UNION ALL
             SELECT y.oid, y.typbasetype, y.typtype FROM t JOIN pg_catalog.pg_type y ON y.oid = t.base
              WHERE t.typtype = 'd')
         SELECT t.oid::pg_catalog.regtype::text FROM t WHERE t.typtype OPERATOR(pg_catalog.<>) 'd'",
        &[relation.into(), column.into()],
    )?;
    match base_type.as_deref() {
        None => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{column}\" does not exist in table \"{table}\" of the template"),
        )),
        Some("date" | "timestamp without time zone" | "timestamp with time zone") => Ok(()),
        Some(other) => Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("column \"{column}\" of \"{table}\" is of type {other}, not a date or timestamp"),
        )
        .hint("The date column must be of type date, timestamp or timestamptz.")),
    }
}

/// What one batch did.
pub struct Batch {
    /// Rows deleted from the table (and, with archive, inserted into its archive).
    pub removed: i64,
    /// The archive table, when the rows were archived.
    pub archive_table: Option<String>,
    /// Rows dated before this were taken.
    pub cutoff: Option<TimestampWithTimeZone>,
    /// Why nothing was done for this institution and table, if so.
    pub skipped: Option<String>,
}

impl Batch {
    fn skipped(why: impl Into<String>) -> Self {
        Batch { removed: 0, archive_table: None, cutoff: None, skipped: Some(why.into()) }
    }
}

/// The rule in force for one institution: the template rule with the
/// institution's override applied.
struct Effective {
    date_column: String,
    keep: String,
    archive: bool,
}

/// One batch of `tenant.apply_retention` for one institution and table: at
/// most `batch_size` rows dated before `started_at - keep` are removed.
pub fn batch(
    schema_id: Option<pgrx::Uuid>,
    table: Option<&str>,
    started_at: Option<TimestampWithTimeZone>,
    batch_size: Option<i32>,
) -> TcResult<Batch> {
    let table = table.ok_or_else(|| TcError::null_argument("table_name"))?;
    let started_at = started_at.ok_or_else(|| TcError::null_argument("started_at"))?;
    let batch_size = batch_size.ok_or_else(|| TcError::null_argument("batch_size"))?;
    if batch_size < 1 {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "batch_size must be at least 1"));
    }
    oplog::with_lock_timeout(|| {
        // Serialized with the tenant's other operations (a migration changing the table).
        let tenant = registry::lock(schema_id)?;
        if matches!(tenant.status, Status::Dropped | Status::Spare) {
            return Ok(Batch::skipped(format!("the institution schema is {}", tenant.status.as_str())));
        }
        if tenant.status != Status::Active {
            // Its role has no USAGE on its schema; retention resumes when it is ACTIVE again.
            return Ok(Batch::skipped(format!("the institution is {}", tenant.status.as_str())));
        }
        let Some(rule) = effective_rule(&tenant, table)? else {
            return Ok(Batch::skipped("the institution's config turns this rule off"));
        };
        let cutoff: TimestampWithTimeZone =
            db::scalar("SELECT $1::timestamptz - $2::interval", &[started_at.into(), rule.keep.as_str().into()])?;
        restricted::internal_ddl(|| {
            let archive_table = if rule.archive { Some(ensure_archive(&tenant, table)?) } else { None };
            let removed = remove_rows(&tenant, table, &rule.date_column, archive_table.as_deref(), cutoff, batch_size)?;
            Ok(Batch { removed, archive_table, cutoff: Some(cutoff), skipped: None })
        })
    })
}

/// An institution's `config->'retention'->'<table>'`: a key left out keeps
/// the template rule's value; `"keep": null` turns retention off there.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionOverride {
    #[serde(default, deserialize_with = "present")]
    keep: Option<Option<String>>,
    archive: Option<bool>,
}

/// A key that is there, even as null (`Some(None)`), unlike one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(value).map(Some)
}

/// The template rule of `table` with `config->'retention'->table` of the
/// institution applied: `{"keep": "<interval>" | null, "archive": bool}`,
/// or `null` to turn the rule off. None: no retention for this institution.
fn effective_rule(tenant: &Tenant, table: &str) -> TcResult<Option<Effective>> {
    let found = db::rows(
        "SELECT r.date_column, r.keep::text AS keep, r.archive,
                t.config OPERATOR(pg_catalog.->) 'retention' OPERATOR(pg_catalog.->) r.table_name AS override
           FROM tenant.retention_rules r, tenant.tenant_schemas t
          WHERE r.table_name = $1 AND t.id = $2",
        &[table.into(), db::to_pg_uuid(tenant.id).into()],
        |row| {
            Ok((
                Effective {
                    date_column: col::<String>(row, "date_column")?.unwrap_or_default(),
                    keep: col::<String>(row, "keep")?.unwrap_or_default(),
                    archive: col::<bool>(row, "archive")?.unwrap_or(false),
                },
                col::<pgrx::JsonB>(row, "override")?.map(|json| json.0),
            ))
        },
    )?;
    let Some((mut rule, overridden)) = found.into_iter().next() else {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table \"{table}\" has no retention rule"),
        )
        .hint("Set one with tenant.set_retention."));
    };
    let bad_override = |why: &str| {
        TcError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid retention override for \"{table}\" in the config of institution schema \"{}\": {why}", tenant.schema),
        )
        .hint(format!(
            "config->'retention'->'{table}' must be null or an object with \"keep\" (an interval, or null for no retention) and \"archive\" (true or false)."
        ))
    };
    let shape = match overridden {
        None => return Ok(Some(rule)),
        Some(Value::Null) => return Ok(None),
        Some(value) => serde_json::from_value::<RetentionOverride>(value).map_err(|e| bad_override(&e.to_string()))?,
    };
    match shape.keep {
        None => {}
        Some(None) => return Ok(None),
        Some(Some(keep)) => rule.keep = positive_interval(&keep).map_err(|why| bad_override(&why))?,
    }
    if let Some(archive) = shape.archive {
        rule.archive = archive;
    }
    Ok(Some(rule))
}

/// An interval given as text, checked in a subtransaction (a bad one must
/// not abort the run), as PostgreSQL's canonical text.
fn positive_interval(text: &str) -> Result<String, String> {
    let parsed = subxact::atomically(|| {
        db::rows("SELECT $1::interval::text AS keep, $1::interval > interval '0' AS positive", &[text.into()], |row| {
            Ok((col::<String>(row, "keep")?.unwrap_or_default(), col::<bool>(row, "positive")?.unwrap_or(false)))
        })
    });
    match parsed.map(|rows| rows.into_iter().next()) {
        Ok(Some((keep, true))) => Ok(keep),
        Ok(_) => Err(format!("\"keep\" must be a positive interval, not \"{text}\"")),
        Err(error) => Err(format!("\"keep\": {}", error.message)),
    }
}

/// The archive of `table` in the tenant's schema: created (owned by the
/// tenant's role, with the table's columns) the first time, given the columns
/// the table gained since. A table of that name the extension did not create
/// is never written into.
fn ensure_archive(tenant: &Tenant, table: &str) -> TcResult<String> {
    let archive = archive_table_name(table)?;
    let (recorded, exists): (bool, bool) = db::rows(
        "SELECT EXISTS (SELECT 1 FROM tenant.retention_archives a WHERE a.schema_id = $1 AND a.archive_table = $3) AS recorded,
                pg_catalog.to_regclass(pg_catalog.quote_ident($2) || '.' || pg_catalog.quote_ident($3)) IS NOT NULL AS present",
        &[db::to_pg_uuid(tenant.id).into(), tenant.schema.as_str().into(), archive.as_str().into()],
        |row| Ok((col::<bool>(row, "recorded")?.unwrap_or(false), col::<bool>(row, "present")?.unwrap_or(false))),
    )?
    .into_iter()
    .next()
    .unwrap_or((false, false));
    let (source, target) = (qualified(tenant, table), qualified(tenant, &archive));
    if exists && !recorded {
        return Err(TcError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!("table {target} exists but was not created by tenant_control"),
        )
        .detail(format!("Rows of {source} are archived only into an archive table the extension created."))
        .hint("Rename or drop that table; until then retention of this table is not applied to this institution."));
    }
    if !exists {
        // LIKE without INCLUDING: the columns, their types and NOT NULL; no
        // defaults, generated expressions, CHECKs, indexes or triggers.
        db::run(&format!("CREATE TABLE {target} (LIKE {source})"), &[])?;
        db::run(&format!("ALTER TABLE {target} OWNER TO {}", tenant.role.quoted()), &[])?;
        db::run(
            &format!(
                "COMMENT ON TABLE {target} IS {}",
                pgrx::spi::quote_literal(format!("Rows of {table} archived by tenant_control retention."))
            ),
            &[],
        )?;
        db::run(
            "INSERT INTO tenant.retention_archives (schema_id, table_name, archive_table) VALUES ($1, $2, $3)
             ON CONFLICT (schema_id, archive_table) DO NOTHING",
            &[db::to_pg_uuid(tenant.id).into(), table.into(), archive.as_str().into()],
        )?;
    }
    let additions: Vec<String> = db::rows(
        "SELECT pg_catalog.format('ADD COLUMN %I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)) AS addition
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute b
                             WHERE b.attrelid = pg_catalog.to_regclass($2) AND b.attname OPERATOR(pg_catalog.=) a.attname
                               AND b.attnum > 0 AND NOT b.attisdropped)
          ORDER BY a.attnum",
        &[source.as_str().into(), target.as_str().into()],
        |row| Ok(col::<String>(row, "addition")?.unwrap_or_default()),
    )?;
    if !additions.is_empty() {
        db::run(&format!("ALTER TABLE {target} {}", additions.join(", ")), &[])?;
    }
    Ok(archive)
}

/// Delete up to `limit` rows dated before `cutoff` (and archive them), as the
/// tenant's role in a security-restricted operation. Rows with a NULL date
/// are kept.
fn remove_rows(
    tenant: &Tenant,
    table: &str,
    date_column: &str,
    archive: Option<&str>,
    cutoff: TimestampWithTimeZone,
    limit: i32,
) -> TcResult<i64> {
    let source = qualified(tenant, table);
    let doomed = format!(
        "DELETE FROM {source} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
             SELECT d.ctid FROM {source} d WHERE d.{} OPERATOR(pg_catalog.<) $1 LIMIT $2))",
        quote_identifier(date_column)
    );
    let statement = match archive {
        None => format!("WITH gone AS ({doomed} RETURNING 1) SELECT pg_catalog.count(*) FROM gone"),
        Some(archive) => {
            let columns = column_list(&source)?;
            format!(
                "WITH gone AS ({doomed} RETURNING {columns}),
                      kept AS (INSERT INTO {} ({columns}) SELECT {columns} FROM gone RETURNING 1)
                 SELECT pg_catalog.count(*) FROM kept",
                qualified(tenant, archive)
            )
        }
    };
    restricted::as_role(tenant.role.as_str(), "pg_catalog, pg_temp", || {
        db::scalar::<i64>(&statement, &[cutoff.into(), limit.into()])
    })
}

/// The table's columns, quoted, in order.
fn column_list(table: &str) -> TcResult<String> {
    let columns = db::rows(
        "SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[table.into()],
        |row| Ok(quote_identifier(col::<String>(row, "name")?.unwrap_or_default())),
    )?;
    if columns.is_empty() {
        return Err(TcError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("table {table} does not exist")));
    }
    Ok(columns.join(", "))
}

fn qualified(tenant: &Tenant, table: &str) -> String {
    format!("{}.{}", tenant.schema.quoted(), quote_identifier(table))
}

/// The RETENTION row of the operation log for one institution and table,
/// written by `tenant.apply_retention` once it is done with them: what it
/// did (`details`), and the error that stopped it, if one did.
pub fn note(
    schema_id: Option<pgrx::Uuid>,
    table: Option<&str>,
    details: Option<pgrx::JsonB>,
    sqlstate: Option<&str>,
    message: Option<&str>,
) -> TcResult<()> {
    let table = table.ok_or_else(|| TcError::null_argument("table_name"))?;
    let schema_id = schema_id.ok_or_else(|| TcError::null_argument("schema_id"))?;
    let details = match details.map(|json| json.0) {
        Some(Value::Object(fields)) => fields,
        _ => {
            return Err(TcError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "details must be a json object"))
        }
    };
    let failure = match sqlstate {
        None => None,
        Some(code) if code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) => {
            Some(TcError::new(crate::core::errors::code_of(code), message.unwrap_or("(no message)")))
        }
        Some(code) => {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid SQLSTATE \"{code}\""),
            ))
        }
    };
    let schema =
        db::value::<String>("SELECT schema_name FROM tenant.tenant_schemas WHERE id = $1", &[schema_id.into()])?
            .unwrap_or_else(|| "?".into());
    let description = format!("retention of table \"{table}\" in schema \"{schema}\"");
    let (_, _) =
        oplog::record(oplog::OpKind::Retention, Some(db::to_uuid(schema_id)), description, |op: &mut Operation| {
            op.note("schema_name", schema.as_str());
            op.note("table_name", table);
            for (key, value) in details {
                op.note(&key, value);
            }
            match failure {
                Some(error) => Err(error),
                None => Ok(()),
            }
        });
    Ok(())
}

/// Pure logic, tested without a server.
#[cfg(test)]
mod unit_tests {
    use super::RetentionOverride;

    fn shape(json: &str) -> Result<RetentionOverride, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn an_override_tells_a_missing_keep_from_a_null_one() {
        let kept = shape(r#"{"archive": false}"#).unwrap();
        assert_eq!((kept.keep, kept.archive), (None, Some(false)));
        let off = shape(r#"{"keep": null}"#).unwrap();
        assert_eq!(off.keep, Some(None));
        let longer = shape(r#"{"keep": "2 years", "archive": true}"#).unwrap();
        assert_eq!((longer.keep, longer.archive), (Some(Some("2 years".to_string())), Some(true)));
    }

    #[test]
    fn an_override_of_the_wrong_shape_is_refused() {
        assert!(shape(r#"{"keep": "1 day", "purge": true}"#).unwrap_err().contains("unknown field `purge`"));
        assert!(shape(r#"{"keep": 5}"#).is_err());
        assert!(shape(r#"{"archive": "yes"}"#).is_err());
        assert!(shape(r#""1 year""#).is_err());
    }
}
