//! What the integrity check reports: one finding per object, with its severity,
//! and the repair attempts of `fix => true`.

use crate::core::errors::TcResult;
use crate::core::restricted;
use crate::core::subxact;
use crate::registry::Tenant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub schema_id: Option<uuid::Uuid>,
    pub schema_name: Option<String>,
    pub check: &'static str,
    pub severity: Severity,
    pub object: String,
    pub detail: String,
    pub fixed: bool,
}

impl Finding {
    pub fn about(tenant: &Tenant, check: &'static str, severity: Severity, object: impl Into<String>) -> Self {
        Finding {
            schema_id: Some(tenant.id),
            schema_name: Some(tenant.schema.as_str().to_string()),
            check,
            severity,
            object: object.into(),
            detail: String::new(),
            fixed: false,
        }
    }

    pub fn fleet(
        check: &'static str,
        severity: Severity,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Finding {
            schema_id: None,
            schema_name: None,
            check,
            severity,
            object: object.into(),
            detail: detail.into(),
            fixed: false,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// What the operation log keeps of a finding.
    pub fn summary(&self) -> FindingSummary<'_> {
        FindingSummary {
            schema: self.schema_name.as_deref(),
            check: self.check,
            severity: self.severity.as_str(),
            object: &self.object,
            fixed: self.fixed,
        }
    }
}

/// A finding as the operation log's `findings` list holds it.
#[derive(serde::Serialize)]
pub struct FindingSummary<'a> {
    pub schema: Option<&'a str>,
    pub check: &'static str,
    pub severity: &'static str,
    pub object: &'a str,
    pub fixed: bool,
}

/// Run a repair in its own subtransaction; a failed repair is reported, not raised.
pub fn attempt(mut finding: Finding, repair: impl FnOnce() -> TcResult<String>) -> Finding {
    match subxact::atomically(|| restricted::internal_ddl(repair)) {
        Ok(done) => {
            finding.fixed = true;
            finding.detail = format!("{}; fixed: {done}", finding.detail);
        }
        Err(error) => finding.detail = format!("{}; not fixed: {}", finding.detail, error.summary()),
    }
    finding
}
