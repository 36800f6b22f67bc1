//! Events of the compliance engine (SPEC section 4): one stream per run.
//!
//! A run is recorded in one atomic append: `ComplianceRunStarted` (the
//! event-log position it evaluated, the rule set's hash and each rule as it
//! was then), `ComplianceResultsRecorded` batches of at most
//! [`RESULTS_PER_EVENT`] assets (so a run over 10,000 assets writes events
//! of a few hundred KiB, far below PostgreSQL's limits), and
//! `ComplianceRunCompleted` with the counts and scores. The log alone
//! therefore reproduces scores, drift, newly-failing and the report.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The aggregate type string of compliance runs.
pub const COMPLIANCE_RUN: &str = "compliance_run";

/// Assets per `ComplianceResultsRecorded` event.
pub const RESULTS_PER_EVENT: usize = 200;

/// How much a failing rule matters (API.md "Compliance": weights low 1,
/// medium 2, high 5, critical 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The scoring weight.
    pub fn weight(self) -> u32 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 5,
            Severity::Critical => 10,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|known| known.as_str() == value)
    }
}

/// A rule's verdict on one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Pass,
    Fail,
    /// The rule does not apply, or the attribute it reads is missing or
    /// cannot be interpreted: never a failure, and left out of the score.
    NotApplicable,
}

impl ResultStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Pass => "pass",
            ResultStatus::Fail => "fail",
            ResultStatus::NotApplicable => "not_applicable",
        }
    }
}

/// Failing results per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

impl SeverityCounts {
    /// Counts one more of `severity`.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
        }
    }
}

/// A rule as it was when a run evaluated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub id: String,
    pub title: String,
    pub framework: String,
    pub control: String,
    pub severity: Severity,
    /// SHA-256 (hex) of the rule's canonical definition: a changed
    /// threshold changes it.
    pub digest: String,
}

/// The end of the log prefix a run evaluated: every event at or before
/// `(transaction_id, position)` in the global order of DESIGN D3, and no
/// other. Only settled transactions are in it, so it never grows later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluatedAt {
    pub transaction_id: i64,
    pub position: i64,
}

/// One rule's verdict on one asset, with what was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub rule_id: String,
    pub status: ResultStatus,
    pub severity: Severity,
    /// `{attribute?, observed, expected, reason}`.
    pub evidence: Value,
}

/// Every rule's verdict on one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetResults {
    pub asset_id: Uuid,
    pub asset_name: String,
    /// 0–100, two decimals.
    pub score: f64,
    pub results: Vec<RuleResult>,
}

/// Everything that happens to a compliance run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
pub enum ComplianceEvent {
    /// A run evaluated the CMDB as of `evaluated_at` with the rules listed.
    ComplianceRunStarted {
        run_id: Uuid,
        triggered_by_id: Uuid,
        /// The run's clock: date rules measure ages from here, so a
        /// re-evaluation later gives the same answers.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        evaluated_at: EvaluatedAt,
        ruleset_hash: String,
        rules: Vec<RuleRef>,
        total_assets: u64,
    },
    /// Results for up to [`RESULTS_PER_EVENT`] assets.
    ComplianceResultsRecorded {
        batch: u32,
        assets: Vec<AssetResults>,
    },
    /// The run's totals.
    ComplianceRunCompleted {
        #[serde(with = "time::serde::rfc3339")]
        finished_at: OffsetDateTime,
        total_assets: u64,
        /// Mean of the asset scores, two decimals; 100 with no assets.
        org_score: f64,
        passed_count: u64,
        failed_count: u64,
        not_applicable_count: u64,
        severity_failing: SeverityCounts,
    },
}

impl DomainEvent for ComplianceEvent {
    fn event_type(&self) -> String {
        match self {
            ComplianceEvent::ComplianceRunStarted { .. } => "ComplianceRunStarted",
            ComplianceEvent::ComplianceResultsRecorded { .. } => "ComplianceResultsRecorded",
            ComplianceEvent::ComplianceRunCompleted { .. } => "ComplianceRunCompleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(COMPLIANCE_RUN, &self.event_type())
    }
}

impl crate::decode::LogEvent for ComplianceEvent {
    const AGGREGATE_TYPE: &'static str = COMPLIANCE_RUN;
}
