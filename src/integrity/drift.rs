//! Drift against the template. A schema's structure is read as (kind,
//! parent, name, definition) rows; the deparsing functions are applied with
//! that schema alone on the search_path (`tenant.deparse_in`), so they leave
//! the schema's own names unqualified, while the query itself runs with
//! `search_path = pg_catalog, pg_temp` (no tenant operator or function can
//! bind in it): the template and a faithful copy give the very same rows, and
//! any difference is drift, named object by object. Missing objects are
//! recreated from the template's own statements.

use crate::copy::structure::{self, Key, KINDS};
use crate::copy::template::{self, Statement, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db::{self};
use crate::core::errors::TcResult;
use crate::core::restricted;
use crate::core::subxact;
use crate::integrity::findings::{Finding, Severity};
use crate::ops::migrate;
use crate::registry::Tenant;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::collections::{BTreeMap, HashMap};

/// What the template looks like, read once per check.
pub struct Reference {
    pub version: i32,
    pub structure: BTreeMap<Key, String>,
    /// The statements a copy is made of, generated only when a fix needs them.
    pub statements: Option<Vec<(&'static str, Statement)>>,
}

impl Reference {
    fn statements(&mut self) -> TcResult<&[(&'static str, Statement)]> {
        if self.statements.is_none() {
            self.statements = Some(template::generate(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?);
        }
        Ok(self.statements.as_deref().unwrap_or_default())
    }
}

fn object_name((kind, parent, name): &Key) -> String {
    if parent.is_empty() || *kind == "row-level security" {
        name.clone()
    } else {
        format!("{parent}.{name}")
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    if text.len() <= MAX {
        text.to_string()
    } else {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    }
}

/// One difference between a tenant and the template.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    Missing(Key, String),
    Extra(Key),
    Changed(Key, String, String),
}

pub fn drift(reference: &BTreeMap<Key, String>, actual: &BTreeMap<Key, String>) -> Vec<Drift> {
    let mut drifts = Vec::new();
    for (key, wanted) in reference {
        match actual.get(key) {
            None => drifts.push(Drift::Missing(key.clone(), wanted.clone())),
            Some(found) if found != wanted => drifts.push(Drift::Changed(key.clone(), wanted.clone(), found.clone())),
            Some(_) => {}
        }
    }
    drifts.extend(actual.keys().filter(|key| !reference.contains_key(*key)).map(|key| Drift::Extra(key.clone())));
    drifts
}

/// A tenant's structure (structure::read keeps its plan for the backend).
fn read_tenant(tenant: &Tenant) -> TcResult<BTreeMap<Key, String>> {
    structure::read(tenant.schema.as_str(), tenant.role.as_str())
}

pub fn structure_findings(reference: &mut Reference, tenant: &Tenant, fix: bool) -> TcResult<Vec<Finding>> {
    let actual = read_tenant(tenant)?;
    // Retention's archive tables belong to the tenant's schema by design, not by drift.
    let archives = crate::ops::retention::archive_tables(tenant.id)?;
    let drifts: Vec<Drift> = drift(&reference.structure, &actual)
        .into_iter()
        .filter(
            |d| !matches!(d, Drift::Extra((_, parent, name)) if archives.contains(name) || archives.contains(parent)),
        )
        .collect();
    if drifts.is_empty() {
        return Ok(Vec::new());
    }
    let repairs = if fix { repair(reference, tenant, &drifts)? } else { HashMap::new() };
    // A repair is proved by reading the schema again.
    let remaining = if fix { drift(&reference.structure, &read_tenant(tenant)?) } else { drifts.clone() };
    let missing_tables: Vec<&String> = drifts
        .iter()
        .filter_map(|d| match d {
            Drift::Missing((kind, _, name), _) if *kind == "table" => Some(name),
            _ => None,
        })
        .collect();
    let mut findings = Vec::new();
    for drift in &drifts {
        let key = match drift {
            Drift::Missing(key, _) | Drift::Extra(key) | Drift::Changed(key, _, _) => key,
        };
        let (kind, parent, _) = key;
        // A missing table's own parts are not listed one by one.
        if matches!(drift, Drift::Missing(..)) && *kind != "table" && missing_tables.contains(&parent) {
            continue;
        }
        let object = format!("{kind} {}", object_name(key));
        let mut finding = match drift {
            Drift::Missing(..) if *kind == "table" => Finding::about(tenant, "missing_object", Severity::Error, object.clone())
                .detail(format!("{object} is in the template but not in the schema (nor its columns, keys, indexes, triggers and policies)")),
            Drift::Missing(..) => Finding::about(tenant, "missing_object", Severity::Error, object.clone())
                .detail(format!("{object} is in the template but not in the schema")),
            Drift::Extra(..) => Finding::about(tenant, "extra_object", Severity::Warning, object.clone())
                .detail(format!("{object} is not in the template (left in place)")),
            Drift::Changed(_, wanted, found) if *kind == "row-level security" => {
                Finding::about(tenant, "row_level_security", Severity::Error, object_name(key))
                    .detail(format!("row-level security on {} is {found}; the template has {wanted}", object_name(key)))
            }
            Drift::Changed(_, wanted, found) => Finding::about(tenant, "changed_object", Severity::Error, object.clone())
                .detail(format!("{object} differs from the template: template \"{}\", schema \"{}\"", shorten(wanted), shorten(found))),
        };
        if let Some(outcome) = repairs.get(key) {
            let still = remaining.iter().any(|r| same_key(r, key) || (*kind == "table" && child_of(r, &key.2)));
            finding.fixed = !still && outcome.is_ok();
            match outcome {
                Ok(done) if finding.fixed => finding.detail = format!("{}; fixed: {done}", finding.detail),
                Ok(_) => {
                    finding.detail =
                        format!("{}; not fixed: the repair ran but the schema still differs", finding.detail)
                }
                Err(error) => finding.detail = format!("{}; not fixed: {error}", finding.detail),
            }
        }
        findings.push(finding);
    }
    Ok(findings)
}

fn same_key(drift: &Drift, key: &Key) -> bool {
    matches!(drift, Drift::Missing(k, _) | Drift::Extra(k) | Drift::Changed(k, _, _) if k == key)
}

fn child_of(drift: &Drift, table: &str) -> bool {
    matches!(drift, Drift::Missing((_, parent, _), _) if parent == table)
}

/// Recreate what is missing and re-apply the template's row-level security
/// and sequence ownership, in dependency order; extra and changed objects
/// are left alone (they may hold data). Returns what each repair did.
fn repair(
    reference: &mut Reference,
    tenant: &Tenant,
    drifts: &[Drift],
) -> TcResult<HashMap<Key, Result<String, String>>> {
    let mut planned: Vec<(Key, Vec<String>)> = Vec::new();
    for drift in drifts {
        let statements = match drift {
            Drift::Missing(key, wanted) => creation(reference, tenant, key, wanted)?,
            Drift::Changed(key, wanted, _) if key.0 == "row-level security" || key.0 == "sequence owner" => {
                creation(reference, tenant, key, wanted)?
            }
            _ => continue,
        };
        let key = match drift {
            Drift::Missing(key, _) | Drift::Changed(key, _, _) | Drift::Extra(key) => key.clone(),
        };
        planned.push((key, statements));
    }
    planned.sort_by_key(|((kind, _, _), _)| KINDS.iter().position(|k| k == kind).unwrap_or(KINDS.len()));
    let mut outcomes = HashMap::new();
    for (key, statements) in planned {
        let outcome = if statements.is_empty() {
            Err("the template holds no statement that creates it".to_string())
        } else {
            // As the tenant's role (see migrate::as_schema_role): building an
            // index, validating a check or filling a materialized view
            // evaluates code a tenant may have written.
            subxact::atomically(|| {
                restricted::internal_ddl(|| {
                    migrate::as_schema_role(
                        tenant.schema.as_str(),
                        tenant.role.as_str(),
                        || {
                            db::with_setting("check_function_bodies", "off", || {
                                statements.iter().try_for_each(|statement| run_unless_present(statement))
                            })
                        },
                        || Ok(()),
                    )
                })
            })
            .map(|_| format!("recreated from the template ({})", shorten(&statements.join("; "))))
            .map_err(|error| error.summary())
        };
        outcomes.insert(key, outcome);
    }
    if outcomes.values().any(Result::is_ok) {
        restricted::internal_ddl(|| template::grant_like_template(&tenant.schema, &tenant.role))?;
    }
    Ok(outcomes)
}

/// Objects recreated with their table (a primary key, an inline foreign key)
/// already exist when their own repair comes.
fn run_unless_present(statement: &str) -> TcResult<()> {
    match subxact::atomically(|| db::run(statement, &[])) {
        Err(error)
            if matches!(
                error.code,
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT
                    | PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE
                    | PgSqlErrorCode::ERRCODE_DUPLICATE_FUNCTION
                    | PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION
            ) && error.message.contains("already") =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The statements that give a tenant the template's version of one object,
/// run with `search_path` set to the tenant.
fn creation(reference: &mut Reference, tenant: &Tenant, key: &Key, wanted: &str) -> TcResult<Vec<String>> {
    let (kind, parent, name) = key;
    let (table, object) = (quote_identifier(parent), quote_identifier(name));
    let from_template =
        |reference: &mut Reference, prefixes: &[String], contains: Option<String>| -> TcResult<Vec<Statement>> {
            Ok(reference
                .statements()?
                .iter()
                .filter(|(_, statement)| {
                    let text = template::render(statement, "", "");
                    prefixes.iter().any(|p| text.starts_with(p.as_str()))
                        && contains.as_ref().is_none_or(|c| text.contains(c.as_str()))
                })
                .map(|(_, statement)| statement.clone())
                .collect())
        };
    let templated = match *kind {
        "table" => from_template(
            reference,
            &[format!("CREATE TABLE {object} ("), format!("CREATE UNLOGGED TABLE {object} (")],
            None,
        )?,
        "sequence" => from_template(
            reference,
            &[format!("CREATE SEQUENCE {object} "), format!("CREATE UNLOGGED SEQUENCE {object} ")],
            None,
        )?,
        "view" => from_template(reference, &[format!("CREATE VIEW {object} ")], None)?,
        "materialized view" => from_template(reference, &[format!("CREATE MATERIALIZED VIEW {object} ")], None)?,
        "index" => from_template(
            reference,
            &[format!("CREATE INDEX {object} ON {table} "), format!("CREATE UNIQUE INDEX {object} ON {table} ")],
            None,
        )?,
        "trigger" => from_template(
            reference,
            &[format!("CREATE TRIGGER {object} "), format!("CREATE CONSTRAINT TRIGGER {object} ")],
            Some(format!(" ON {table} ")),
        )?,
        "policy" => from_template(reference, &[format!("CREATE POLICY {object} ON {table} ")], None)?,
        "type" => {
            from_template(reference, &[format!("CREATE TYPE {object} "), format!("CREATE DOMAIN {object} ")], None)?
        }
        "aggregate" => {
            let proname = quote_identifier(name.split('(').next().unwrap_or_default());
            from_template(reference, &[format!("CREATE AGGREGATE {proname}(")], None)?
        }
        "rule" => {
            // The rule, then its state when the template's is not the default (ENABLE REPLICA, DISABLE).
            // (pg_get_ruledef breaks the line after the table when the rule has a WHERE.)
            let creates = [format!("CREATE RULE {object} AS")];
            let mut rule = from_template(reference, &creates, Some(format!(" TO {table} ")))?;
            rule.extend(from_template(reference, &creates, Some(format!(" TO {table}\n")))?);
            rule.extend(from_template(reference, &[format!("ALTER TABLE {table} ")], Some(format!(" RULE {object}")))?);
            rule
        }
        "statistics object" => from_template(
            reference,
            &[format!("CREATE STATISTICS {object} "), format!("ALTER STATISTICS {object} SET STATISTICS ")],
            None,
        )?,
        "collation" => from_template(reference, &[format!("CREATE COLLATION {object} (")], None)?,
        "text search dictionary" => {
            from_template(reference, &[format!("CREATE TEXT SEARCH DICTIONARY {object} (")], None)?
        }
        "text search configuration" => from_template(
            reference,
            &[
                format!("CREATE TEXT SEARCH CONFIGURATION {object} ("),
                format!("ALTER TEXT SEARCH CONFIGURATION {object} ADD MAPPING "),
            ],
            None,
        )?,
        "function" | "procedure" => {
            let proname = quote_identifier(name.split('(').next().unwrap_or_default());
            template::without_placeholders(from_template(
                reference,
                &[
                    format!("CREATE FUNCTION {proname}("),
                    format!("CREATE OR REPLACE FUNCTION {proname}("),
                    format!("CREATE PROCEDURE {proname}("),
                ],
                None,
            )?)
        }
        "constraint" => return Ok(vec![format!("ALTER TABLE {table} ADD CONSTRAINT {object} {wanted}")]),
        "column" => return Ok(vec![format!("ALTER TABLE {table} ADD COLUMN {object} {wanted}")]),
        "sequence owner" => return Ok(vec![format!("ALTER SEQUENCE {object} OWNED BY {wanted}")]),
        "row-level security" => {
            let enable = if wanted.starts_with("ENABLE") { "ENABLE" } else { "DISABLE" };
            let force = if wanted.contains("FORCE") { "FORCE" } else { "NO FORCE" };
            return Ok(vec![
                format!("ALTER TABLE {table} {enable} ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} {force} ROW LEVEL SECURITY"),
            ]);
        }
        _ => Vec::new(),
    };
    Ok(templated
        .iter()
        .map(|statement| template::render(statement, tenant.schema.as_str(), tenant.role.as_str()))
        .collect())
}
