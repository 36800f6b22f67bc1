//! The compliance engine (SPEC section 4): rules as pure functions over an
//! asset snapshot and its owner, a rule set of the 16 built-in rules plus
//! declarative rules from files, runs recorded as events, and the
//! re-verification of a past run from the log.
//!
//! Rules never read the database or the clock: a run folds the CMDB from
//! the log up to a recorded position ([`snapshot`]) and evaluates it at its
//! recorded start time, so the same log and rule set always give the same
//! results, which is what `verify` checks.

pub mod builtin;
pub mod declarative;
pub mod engine;
pub mod run;
pub mod snapshot;
pub mod values;

use std::collections::BTreeMap;
use std::sync::Arc;

use sentryops_events::cmdb::{AssetType, Environment, LifecycleState};
use sentryops_events::compliance::{ResultStatus, RuleRef, Severity};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// An asset as a rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetSnapshot {
    pub id: Uuid,
    pub short_code: String,
    pub name: String,
    pub asset_type: AssetType,
    pub lifecycle_state: LifecycleState,
    pub environment: Environment,
    pub location: Option<String>,
    pub owner_id: Option<Uuid>,
    pub attributes: Map<String, Value>,
    /// Names of the attached tags, sorted.
    pub tags: Vec<String>,
}

/// The owner of an asset, as a rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerSnapshot {
    pub mfa_enabled: bool,
    pub active: bool,
}

/// What one evaluation looks at: the asset, its owner (`None` without an
/// owner, or when the owner id names no user) and the run's clock.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub asset: &'a AssetSnapshot,
    pub owner: Option<&'a OwnerSnapshot>,
    pub now: OffsetDateTime,
}

/// A rule's verdict with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ResultStatus,
    /// `{attribute?, observed, expected, reason}`.
    pub evidence: Value,
}

impl Outcome {
    /// A verdict with evidence: what was read (`attribute`, `None` when the
    /// rule reads no attribute), what it held, what was expected and why.
    pub fn new(
        status: ResultStatus,
        attribute: Option<&str>,
        observed: Value,
        expected: &str,
        reason: impl Into<String>,
    ) -> Self {
        let mut evidence = json!({
            "observed": observed,
            "expected": expected,
            "reason": reason.into(),
        });
        if let (Some(attribute), Some(object)) = (attribute, evidence.as_object_mut()) {
            object.insert("attribute".into(), Value::from(attribute));
        }
        Outcome { status, evidence }
    }
}

/// What the rules listing shows about a rule, and what a run records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub framework: String,
    pub control: String,
    pub severity: Severity,
    pub description: String,
    pub remediation: String,
    /// The control family (encryption, endpoint, identity, logging and
    /// backup, network, patching) or a declarative rule's own.
    pub family: String,
    /// `builtin`, or the file a declarative rule came from (shown by its
    /// name only: the API does not reveal the server's paths).
    #[serde(serialize_with = "file_name_only")]
    pub source: String,
    /// The rule's logic in words precise enough to tell two thresholds
    /// apart; hashed into [`RuleInfo::digest`].
    pub definition: String,
}

impl RuleInfo {
    /// SHA-256 (hex) over everything that decides the rule's results: a
    /// changed threshold or severity changes it, a reworded description
    /// does not.
    pub fn digest(&self) -> String {
        let canonical = json!({
            "id": self.id,
            "severity": self.severity,
            "framework": self.framework,
            "control": self.control,
            "definition": self.definition,
        });
        hex(&Sha256::digest(canonical.to_string().as_bytes()))
    }

    /// The rule as a run records it.
    pub fn reference(&self) -> RuleRef {
        RuleRef {
            id: self.id.clone(),
            title: self.title.clone(),
            framework: self.framework.clone(),
            control: self.control.clone(),
            severity: self.severity,
            digest: self.digest(),
        }
    }
}

fn file_name_only<S: serde::Serializer>(source: &str, serializer: S) -> Result<S::Ok, S::Error> {
    let name = std::path::Path::new(source)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(source);
    serializer.serialize_str(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A compliance rule: a pure function of its [`Subject`].
pub trait Rule: Send + Sync + std::fmt::Debug {
    fn info(&self) -> &RuleInfo;
    fn evaluate(&self, subject: &Subject<'_>) -> Outcome;
}

/// The rules in force: the built-in ones plus those of `rules_dir`. Any
/// invalid file is an error naming its file, line and reason.
pub fn load_rules(rules_dir: Option<&std::path::Path>) -> anyhow::Result<RuleSet> {
    let extra = match rules_dir {
        Some(dir) => declarative::load_dir(dir)
            .map_err(|error| anyhow::anyhow!("invalid compliance rule: {error}"))?,
        None => Vec::new(),
    };
    let rules = RuleSet::new(extra)?;
    tracing::info!(
        rules = rules.rules().len(),
        ruleset_hash = %rules.hash(),
        "compliance rules loaded"
    );
    Ok(rules)
}

/// The rules in force: the built-in ones, then the declarative ones, each
/// id once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Arc<Vec<Box<dyn Rule>>>,
}

impl RuleSet {
    /// The built-in rules plus `extra`; an id used twice is an error.
    pub fn new(extra: Vec<Box<dyn Rule>>) -> anyhow::Result<Self> {
        let mut rules = builtin::rules();
        rules.extend(extra);
        let mut seen = BTreeMap::new();
        for rule in &rules {
            let info = rule.info();
            if let Some(earlier) = seen.insert(info.id.clone(), info.source.clone()) {
                anyhow::bail!(
                    "{}: rule id {:?} is already defined by {earlier}",
                    info.source,
                    info.id
                );
            }
        }
        Ok(Self {
            rules: Arc::new(rules),
        })
    }

    /// The built-in rules alone.
    pub fn builtin() -> Self {
        Self {
            rules: Arc::new(builtin::rules()),
        }
    }

    /// Every rule, built-in first.
    pub fn rules(&self) -> &[Box<dyn Rule>] {
        &self.rules
    }

    /// SHA-256 (hex) over the rules' digests in id order: the rule-set
    /// version a run records.
    pub fn hash(&self) -> String {
        let mut digests: Vec<(String, String)> = self
            .rules
            .iter()
            .map(|rule| (rule.info().id.clone(), rule.info().digest()))
            .collect();
        digests.sort();
        let mut hasher = Sha256::new();
        for (id, digest) in digests {
            hasher.update(id.as_bytes());
            hasher.update([0]);
            hasher.update(digest.as_bytes());
            hasher.update([0]);
        }
        hex(&hasher.finalize())
    }
}
