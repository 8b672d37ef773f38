//! Validated identifiers: the only way the extension builds DDL.
//!
//! A `TenantName` has passed the naming rules, so it and every name derived
//! from it (the tenant role) fit in PostgreSQL's 63-byte limit without
//! truncation, and quoting them is a formality rather than a defence.

use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::fmt;

/// PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Appended to the schema name to name the tenant's role.
pub const ROLE_SUFFIX: &str = "_owner";
/// The longest schema name whose derived names all still fit.
pub const MAX_SCHEMA_NAME_BYTES: usize = MAX_IDENTIFIER_BYTES - ROLE_SUFFIX.len();
/// Prefix of the default schema name, followed by the institution id.
pub const DEFAULT_PREFIX: &str = "inst_";
/// Prefix reserved for the extension's own schemas (backups and the like).
pub const RESERVED_PREFIX: &str = "tc_";

const RESERVED_NAMES: &[&str] = &["public", "information_schema", "tenant", "tenant_template"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(candidate: Option<&str>) -> TcResult<Self> {
        let name = candidate.ok_or_else(|| TcError::null_argument("schema_name"))?;
        let invalid = |why: &str| {
            TcError::new(PgSqlErrorCode::ERRCODE_INVALID_NAME, format!("invalid schema name \"{name}\": {why}"))
                .hint("Use lowercase ASCII letters, digits and underscores, starting with a letter.")
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !name.as_bytes()[0].is_ascii_lowercase() {
            return Err(invalid("it must start with a lowercase letter"));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
            return Err(invalid(&format!("character {bad:?} is not allowed")));
        }
        if name.len() > MAX_SCHEMA_NAME_BYTES {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
                format!("schema name \"{name}\" is {} bytes long; the limit is {MAX_SCHEMA_NAME_BYTES}", name.len()),
            )
            .detail(format!(
                "The tenant role \"{name}{ROLE_SUFFIX}\" must also fit in {MAX_IDENTIFIER_BYTES} bytes."
            )));
        }
        if name.starts_with("pg_") || name.starts_with(RESERVED_PREFIX) || RESERVED_NAMES.contains(&name) {
            return Err(TcError::new(
                PgSqlErrorCode::ERRCODE_RESERVED_NAME,
                format!("schema name \"{name}\" is reserved"),
            )
            .detail(format!(
                "Names starting with pg_ or {RESERVED_PREFIX} and the names {} are reserved.",
                RESERVED_NAMES.join(", ")
            )));
        }
        Ok(TenantName(name.to_string()))
    }

    /// The default schema name of an institution: `inst_` + its id with underscores.
    pub fn default_for(institution_id: &uuid::Uuid) -> Self {
        let name = format!("{DEFAULT_PREFIX}{}", institution_id.hyphenated()).replace('-', "_");
        TenantName::parse(Some(&name)).expect("the default schema name always satisfies the rules")
    }

    /// The schema a dropped tenant is detached into: `tc_backup_` + 32 hex
    /// digits, unique even within one second; its role fits in 63 bytes too.
    pub fn backup(id: &uuid::Uuid) -> Self {
        TenantName(format!("{RESERVED_PREFIX}backup_{}", id.simple()))
    }

    /// The schema a restore builds its copy in before swapping it in:
    /// `tc_restore_` + 32 hex digits.
    pub fn restoring(id: &uuid::Uuid) -> Self {
        TenantName(format!("{RESERVED_PREFIX}restore_{}", id.simple()))
    }

    /// A spare schema of the warm pool: `tc_spare_` + 16 hex digits.
    pub fn spare(id: &uuid::Uuid) -> Self {
        TenantName(format!("{RESERVED_PREFIX}spare_{}", &id.simple().to_string()[..16]))
    }

    /// A schema set aside by the integrity check: `tc_quarantine_` + 16 hex digits.
    pub fn quarantine(id: &uuid::Uuid) -> Self {
        TenantName(format!("{RESERVED_PREFIX}quarantine_{}", &id.simple().to_string()[..16]))
    }

    /// Names stored in the registry passed `parse` and a CHECK constraint.
    pub fn from_registry(name: String) -> Self {
        TenantName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn quoted(&self) -> String {
        quote_identifier(&self.0)
    }

    /// The tenant's NOLOGIN role, derived so that it always fits in 63 bytes.
    pub fn role(&self) -> RoleName {
        RoleName(format!("{}{ROLE_SUFFIX}", self.0))
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role name taken from a `TenantName` or read back from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    /// Names stored in the registry were validated when they were written.
    pub fn from_registry(name: String) -> Self {
        RoleName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn quoted(&self) -> String {
        quote_identifier(&self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pure logic, tested without a server.
#[cfg(test)]
mod unit_tests {
    use super::*;

    fn refused(name: Option<&str>) -> String {
        TenantName::parse(name).expect_err("refused").sqlstate()
    }

    #[test]
    fn valid_names_pass_and_name_their_role() {
        let name = TenantName::parse(Some("acme_2")).unwrap();
        assert_eq!(name.as_str(), "acme_2");
        assert_eq!(name.role().as_str(), "acme_2_owner");
        let longest = "a".repeat(MAX_SCHEMA_NAME_BYTES);
        assert_eq!(TenantName::parse(Some(&longest)).unwrap().role().as_str().len(), MAX_IDENTIFIER_BYTES);
    }

    #[test]
    fn bad_names_are_refused_with_their_sqlstate() {
        assert_eq!(refused(None), "22004");
        for name in ["", "Acme", "1acme", "_acme", "ac-me", "acme u", "acmé", "x\"; DROP TABLE t; --"] {
            assert_eq!(refused(Some(name)), "42602", "{name}");
        }
        for name in ["pg_acme", "tc_acme", "public", "tenant", "tenant_template", "information_schema"] {
            assert_eq!(refused(Some(name)), "42939", "{name}");
        }
        assert_eq!(refused(Some(&"a".repeat(MAX_SCHEMA_NAME_BYTES + 1))), "42622");
    }

    #[test]
    fn derived_names_fit_and_stay_out_of_the_tenants_namespace() {
        let id = uuid::Uuid::parse_str("0b7c6a3e-52f4-4d43-9f7e-6c1d2b9a1001").unwrap();
        assert_eq!(TenantName::default_for(&id).as_str(), "inst_0b7c6a3e_52f4_4d43_9f7e_6c1d2b9a1001");
        for derived in [TenantName::backup(&id), TenantName::spare(&id), TenantName::quarantine(&id)] {
            assert!(derived.role().as_str().len() <= MAX_IDENTIFIER_BYTES, "{derived}");
            // A tenant can never be given one of these names.
            assert_eq!(refused(Some(derived.as_str())), "42939", "{derived}");
        }
    }
}
