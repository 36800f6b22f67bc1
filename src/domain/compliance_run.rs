//! A compliance run's stream (SPEC section 4), written once.
//!
//! A run is not a command on existing state: its stream is new, written in
//! one append, and never changes. What must hold is that the stream is
//! well formed: `ComplianceRunStarted` first, results batches of at most
//! [`RESULTS_PER_EVENT`] assets, then `ComplianceRunCompleted` whose counts
//! and scores are exactly the sums of the recorded results.
//! [`RunRecording`] enforces that while the results stream in, one asset at
//! a time, and keeps each batch only as its serialized payload: a run over
//! 10,000 assets holds ~30 MB of JSON text instead of the ~250 MB the same
//! results take as `serde_json::Value` trees, which is why it does not go
//! through cqrs-es's `Aggregate::handle` (ADR 0002).

use cqrs_es::DomainEvent;
use sentryops_events::compliance::{
    AssetResults, ComplianceEvent, EvaluatedAt, ResultStatus, RuleRef, SeverityCounts,
    RESULTS_PER_EVENT,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::compliance::engine;

/// One event of a run, serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct SerializedRunEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
}

impl SerializedRunEvent {
    fn of(event: &ComplianceEvent) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_string(event)?,
        })
    }
}

/// The totals of a recorded run (`ComplianceRunCompleted`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunTotals {
    pub total_assets: u64,
    pub org_score: f64,
    pub passed_count: u64,
    pub failed_count: u64,
    pub not_applicable_count: u64,
    pub severity_failing: SeverityCounts,
}

/// A run being recorded.
#[derive(Debug)]
pub struct RunRecording {
    run_id: Uuid,
    triggered_by_id: Uuid,
    started_at: OffsetDateTime,
    evaluated_at: EvaluatedAt,
    ruleset_hash: String,
    rules: Vec<RuleRef>,
    pending: Vec<AssetResults>,
    batches: Vec<SerializedRunEvent>,
    last_asset: Option<Uuid>,
    scores_sum: f64,
    totals: RunTotals,
}

/// Why a recording was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunRecordingError {
    #[error("assets must be recorded once each, in ascending id order")]
    OutOfOrder,
    #[error("the results do not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl RunRecording {
    /// Starts recording run `run_id`, which evaluates the log up to
    /// `evaluated_at` with `rules` at `started_at`.
    pub fn start(
        run_id: Uuid,
        triggered_by_id: Uuid,
        started_at: OffsetDateTime,
        evaluated_at: EvaluatedAt,
        ruleset_hash: String,
        rules: Vec<RuleRef>,
    ) -> Self {
        Self {
            run_id,
            triggered_by_id,
            started_at,
            evaluated_at,
            ruleset_hash,
            rules,
            pending: Vec::with_capacity(RESULTS_PER_EVENT),
            batches: Vec::new(),
            last_asset: None,
            scores_sum: 0.0,
            totals: RunTotals {
                total_assets: 0,
                org_score: 100.0,
                passed_count: 0,
                failed_count: 0,
                not_applicable_count: 0,
                severity_failing: SeverityCounts::default(),
            },
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Records one asset's results. Assets come in ascending id order, each
    /// once, so a re-evaluation can compare with the log in one pass.
    pub fn record(&mut self, asset: AssetResults) -> Result<(), RunRecordingError> {
        if self.last_asset.is_some_and(|last| last >= asset.asset_id) {
            return Err(RunRecordingError::OutOfOrder);
        }
        self.last_asset = Some(asset.asset_id);
        let totals = &mut self.totals;
        for result in &asset.results {
            match result.status {
                ResultStatus::Pass => totals.passed_count += 1,
                ResultStatus::Fail => {
                    totals.failed_count += 1;
                    totals.severity_failing.add(result.severity);
                }
                ResultStatus::NotApplicable => totals.not_applicable_count += 1,
            }
        }
        totals.total_assets += 1;
        self.scores_sum += asset.score;
        self.pending.push(asset);
        if self.pending.len() == RESULTS_PER_EVENT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunRecordingError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let event = ComplianceEvent::ComplianceResultsRecorded {
            batch: u32::try_from(self.batches.len() + 1).unwrap_or(u32::MAX),
            assets: std::mem::take(&mut self.pending),
        };
        self.batches.push(SerializedRunEvent::of(&event)?);
        Ok(())
    }

    /// The run's events, ready for one append, and its totals.
    pub fn finish(
        mut self,
        finished_at: OffsetDateTime,
    ) -> Result<(Vec<SerializedRunEvent>, RunTotals), RunRecordingError> {
        self.flush()?;
        let mut totals = self.totals;
        totals.org_score = engine::round2(engine::org_score(self.scores_sum, totals.total_assets));
        let started = ComplianceEvent::ComplianceRunStarted {
            run_id: self.run_id,
            triggered_by_id: self.triggered_by_id,
            started_at: self.started_at,
            evaluated_at: self.evaluated_at,
            ruleset_hash: self.ruleset_hash,
            rules: self.rules,
            total_assets: totals.total_assets,
        };
        let completed = ComplianceEvent::ComplianceRunCompleted {
            finished_at,
            total_assets: totals.total_assets,
            org_score: totals.org_score,
            passed_count: totals.passed_count,
            failed_count: totals.failed_count,
            not_applicable_count: totals.not_applicable_count,
            severity_failing: totals.severity_failing,
        };
        let mut events = Vec::with_capacity(self.batches.len() + 2);
        events.push(SerializedRunEvent::of(&started)?);
        events.extend(self.batches);
        events.push(SerializedRunEvent::of(&completed)?);
        Ok((events, totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentryops_events::compliance::{RuleResult, Severity};
    use serde_json::Value;

    fn asset(n: u128, score: f64, statuses: &[(ResultStatus, Severity)]) -> AssetResults {
        AssetResults {
            asset_id: Uuid::from_u128(n),
            asset_name: format!("asset-{n}"),
            score,
            results: statuses
                .iter()
                .map(|(status, severity)| RuleResult {
                    rule_id: "rule".into(),
                    status: *status,
                    severity: *severity,
                    evidence: Value::Null,
                })
                .collect(),
        }
    }

    fn recording() -> RunRecording {
        RunRecording::start(
            Uuid::from_u128(7),
            Uuid::from_u128(8),
            OffsetDateTime::UNIX_EPOCH,
            EvaluatedAt {
                transaction_id: 10,
                position: 99,
            },
            "hash".into(),
            Vec::new(),
        )
    }

    fn decode(event: &SerializedRunEvent) -> ComplianceEvent {
        sentryops_events::decode(&event.event_type, &event.event_version, &event.payload)
            .expect("a recorded event decodes")
    }

    #[test]
    fn given_results_when_finished_then_started_batches_and_totals_that_add_up() {
        use ResultStatus::{Fail, NotApplicable, Pass};
        let mut run = recording();
        let count = RESULTS_PER_EVENT + 1;
        for n in 0..count {
            let statuses: &[(ResultStatus, Severity)] = if n == 0 {
                &[
                    (Fail, Severity::Critical),
                    (Fail, Severity::Low),
                    (NotApplicable, Severity::High),
                ]
            } else {
                &[(Pass, Severity::High), (NotApplicable, Severity::Low)]
            };
            let score = if n == 0 { 0.0 } else { 100.0 };
            run.record(asset(n as u128, score, statuses))
                .expect("in order");
        }
        let (events, totals) = run.finish(OffsetDateTime::UNIX_EPOCH).expect("finishes");
        assert_eq!(events.len(), 4, "started, two batches, completed");
        let ComplianceEvent::ComplianceRunStarted {
            total_assets,
            evaluated_at,
            ..
        } = decode(&events[0])
        else {
            panic!("the stream opens with ComplianceRunStarted");
        };
        assert_eq!(total_assets, count as u64);
        assert_eq!(evaluated_at.position, 99);
        let ComplianceEvent::ComplianceResultsRecorded { batch, assets } = decode(&events[1])
        else {
            panic!("results follow");
        };
        assert_eq!((batch, assets.len()), (1, RESULTS_PER_EVENT));
        let ComplianceEvent::ComplianceResultsRecorded { batch, assets } = decode(&events[2])
        else {
            panic!("results follow");
        };
        assert_eq!((batch, assets.len()), (2, 1));
        assert_eq!(
            decode(&events[3]),
            ComplianceEvent::ComplianceRunCompleted {
                finished_at: OffsetDateTime::UNIX_EPOCH,
                total_assets: count as u64,
                // (0 + 200 × 100) / 201
                org_score: 99.5,
                passed_count: RESULTS_PER_EVENT as u64,
                failed_count: 2,
                not_applicable_count: count as u64,
                severity_failing: SeverityCounts {
                    critical: 1,
                    high: 0,
                    medium: 0,
                    low: 1
                },
            }
        );
        assert_eq!(totals.failed_count, 2);
    }

    #[test]
    fn given_no_assets_when_finished_then_the_org_score_is_100() {
        let (events, totals) = recording()
            .finish(OffsetDateTime::UNIX_EPOCH)
            .expect("finishes");
        assert_eq!(events.len(), 2, "started and completed, no empty batch");
        assert_eq!((totals.total_assets, totals.org_score), (0, 100.0));
    }

    #[test]
    fn given_an_asset_when_it_or_an_earlier_one_is_recorded_again_then_refused() {
        let mut run = recording();
        run.record(asset(5, 100.0, &[])).expect("first");
        assert!(matches!(
            run.record(asset(5, 100.0, &[])),
            Err(RunRecordingError::OutOfOrder)
        ));
        assert!(matches!(
            run.record(asset(4, 100.0, &[])),
            Err(RunRecordingError::OutOfOrder)
        ));
        run.record(asset(6, 100.0, &[]))
            .expect("later ids are fine");
    }
}

/// A run as its stream tells it, event by event: the fold that `sentryops
/// replay compliance-run` shows (a run has no command state to decide
/// on, so no aggregate; this is its one reading).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct RunState {
    pub run_id: Option<Uuid>,
    pub triggered_by_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    pub ruleset_hash: Option<String>,
    pub rule_count: usize,
    pub total_assets: u64,
    /// Assets whose results are recorded so far, in how many batches.
    pub assets_recorded: u64,
    pub batches: u32,
    pub completed: Option<RunCompletion>,
}

/// The totals of a completed run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunCompletion {
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub org_score: f64,
    pub passed_count: u64,
    pub failed_count: u64,
    pub not_applicable_count: u64,
    pub severity_failing: SeverityCounts,
}

impl RunState {
    /// Folds one event of the run's stream.
    pub fn apply(&mut self, event: ComplianceEvent) {
        match event {
            ComplianceEvent::ComplianceRunStarted {
                run_id,
                triggered_by_id,
                started_at,
                ruleset_hash,
                rules,
                total_assets,
                ..
            } => {
                self.run_id = Some(run_id);
                self.triggered_by_id = Some(triggered_by_id);
                self.started_at = Some(started_at);
                self.ruleset_hash = Some(ruleset_hash);
                self.rule_count = rules.len();
                self.total_assets = total_assets;
            }
            ComplianceEvent::ComplianceResultsRecorded { assets, .. } => {
                self.assets_recorded += assets.len() as u64;
                self.batches += 1;
            }
            ComplianceEvent::ComplianceRunCompleted {
                finished_at,
                total_assets,
                org_score,
                passed_count,
                failed_count,
                not_applicable_count,
                severity_failing,
            } => {
                self.total_assets = total_assets;
                self.completed = Some(RunCompletion {
                    finished_at,
                    org_score,
                    passed_count,
                    failed_count,
                    not_applicable_count,
                    severity_failing,
                });
            }
        }
    }
}
