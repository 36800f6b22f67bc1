//! Running the rules over the CMDB and re-verifying a recorded run.
//!
//! Both fold the CMDB from the log at a cut ([`super::snapshot`]) and
//! evaluate it at a fixed clock, so an untouched log and rule set give
//! byte-identical results. A run streams: each asset is evaluated as its
//! events are folded and its results are serialized into the run's batch
//! events at once; verification compares per-asset digests, then details
//! only the assets that differ.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::TryStreamExt;
use sentryops_events::compliance::{
    AssetResults, ComplianceEvent, EvaluatedAt, ResultStatus, RuleResult, SeverityCounts,
    COMPLIANCE_RUN,
};
use sentryops_events::EventMetadata;
use sentryops_projections::store;
use sentryops_projections::LogPosition;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::{evaluate_asset, is_evaluated, org_score, round2};
use super::{snapshot, RuleSet};
use crate::domain::compliance_run::{RunRecording, RunTotals};
use crate::domain::Commands;

/// How long a run waits for transactions begun before it to end.
const CUT_PATIENCE: Duration = Duration::from_secs(5);

/// A recorded run.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    pub run_id: Uuid,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
    pub evaluated_at: EvaluatedAt,
    pub triggered_by_id: Uuid,
    pub ruleset_hash: String,
    pub totals: RunTotals,
    /// The position of the run's last event.
    pub position: Option<LogPosition>,
}

/// The clock of a run: now, to the millisecond (what every store keeps).
fn run_clock() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(u32::from(now.millisecond()) * 1_000_000)
        .unwrap_or(now)
}

/// Evaluates every rule on every evaluated asset as of a settled cut of the
/// log, and records the run in one append.
pub async fn run(
    pool: &PgPool,
    commands: &Commands,
    rules: &RuleSet,
    triggered_by_id: Uuid,
    metadata: EventMetadata,
) -> anyhow::Result<RecordedRun> {
    let run_id = Uuid::new_v4();
    let started_at = run_clock();
    let evaluated_at = snapshot::settled_cut(pool, CUT_PATIENCE).await?;
    let ruleset_hash = rules.hash();
    let mut recording = RunRecording::start(
        run_id,
        triggered_by_id,
        started_at,
        evaluated_at,
        ruleset_hash.clone(),
        rules
            .rules()
            .iter()
            .map(|rule| rule.info().reference())
            .collect(),
    );
    snapshot::fold_cmdb(pool, evaluated_at, |asset, owner| {
        if is_evaluated(asset.lifecycle_state) {
            recording.record(evaluate_asset(rules, asset, owner, started_at))?;
        }
        Ok(())
    })
    .await?;
    let finished_at = run_clock();
    let (events, totals) = recording.finish(finished_at)?;
    let position = commands
        .record_compliance_run(run_id, events, metadata)
        .await
        .map_err(|error| anyhow::Error::new(error).context("appending the run failed"))?;
    Ok(RecordedRun {
        run_id,
        started_at,
        finished_at,
        evaluated_at,
        triggered_by_id,
        ruleset_hash,
        totals,
        position,
    })
}

/// One result (or one asset) that differs between the log and now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    pub asset_id: Uuid,
    pub asset_name: String,
    /// `None` when the whole asset differs (evaluated then, not now, or
    /// the other way round).
    pub rule_id: Option<String>,
    pub recorded: Option<Value>,
    pub now: Option<Value>,
}

/// What `verify` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub run_id: Uuid,
    pub matches: bool,
    pub ruleset_changed: bool,
    pub recorded_ruleset_hash: String,
    pub current_ruleset_hash: String,
    /// Rules added, removed or changed since the run, by id.
    pub rules_changed: Vec<String>,
    pub event_position: i64,
    pub assets_evaluated: u64,
    /// Assets whose results differ (evaluated only once, or with other
    /// results); `differences` lists them rule by rule.
    pub assets_differing: u64,
    /// The run's recorded totals and the re-evaluation's, when they differ
    /// (the numbers `/score` and `/drift` show).
    pub totals: Option<TotalsDifference>,
    /// The first [`MAX_DIFFERENCES`] differences.
    pub differences: Vec<Difference>,
}

/// A run's totals, as `ComplianceRunCompleted` records them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub total_assets: u64,
    pub org_score: f64,
    pub passed_count: u64,
    pub failed_count: u64,
    pub not_applicable_count: u64,
    pub severity_failing: SeverityCounts,
    #[serde(skip)]
    scores_sum: f64,
}

impl Totals {
    fn add(&mut self, asset: &AssetResults) {
        self.total_assets += 1;
        self.scores_sum += asset.score;
        for result in &asset.results {
            match result.status {
                ResultStatus::Pass => self.passed_count += 1,
                ResultStatus::Fail => {
                    self.failed_count += 1;
                    self.severity_failing.add(result.severity);
                }
                ResultStatus::NotApplicable => self.not_applicable_count += 1,
            }
        }
    }

    /// The totals with the org score computed as a run records it.
    fn finish(mut self) -> Self {
        self.org_score = round2(org_score(self.scores_sum, self.total_assets));
        self.scores_sum = 0.0;
        self
    }

    fn recorded(completed: &ComplianceEvent) -> anyhow::Result<Self> {
        match completed.clone() {
            ComplianceEvent::ComplianceRunCompleted {
                total_assets,
                org_score,
                passed_count,
                failed_count,
                not_applicable_count,
                severity_failing,
                ..
            } => Ok(Totals {
                total_assets,
                org_score,
                passed_count,
                failed_count,
                not_applicable_count,
                severity_failing,
                scores_sum: 0.0,
            }),
            _ => anyhow::bail!("the run's last event is not ComplianceRunCompleted"),
        }
    }
}

/// Recorded and recomputed totals that differ.
#[derive(Debug, Clone, Serialize)]
pub struct TotalsDifference {
    pub recorded: Totals,
    pub now: Totals,
}

/// Differences listed in full; the rest are counted.
pub const MAX_DIFFERENCES: usize = 500;

/// The SHA-256 of an asset's results as serialized JSON.
fn digest_of(results: &AssetResults) -> anyhow::Result<[u8; 32]> {
    Ok(Sha256::digest(serde_json::to_vec(results)?).into())
}

/// Re-evaluates run `run_id` from the log at its cut and clock with
/// `rules`; `None` when there is no such (completed) run.
pub async fn verify(
    pool: &PgPool,
    rules: &RuleSet,
    run_id: Uuid,
) -> anyhow::Result<Option<Verification>> {
    let run_key = run_id.to_string();
    let header: Vec<ComplianceEvent> = store::read_stream_of_types::<ComplianceEvent>(
        pool,
        &run_key,
        &["ComplianceRunStarted", "ComplianceRunCompleted"],
    )
    .map_ok(|recorded| recorded.event)
    .try_collect()
    .await?;
    let [started, completed] = header.as_slice() else {
        return Ok(None);
    };
    let ComplianceEvent::ComplianceRunStarted {
        started_at,
        evaluated_at,
        ruleset_hash,
        rules: recorded_rules,
        ..
    } = started.clone()
    else {
        return Ok(None);
    };

    // The recorded results, one batch at a time, kept as digests.
    let mut recorded: HashMap<Uuid, ([u8; 32], String)> = HashMap::new();
    let mut duplicates = 0u64;
    let mut batches = store::read_stream_of_types::<ComplianceEvent>(
        pool,
        &run_key,
        &["ComplianceResultsRecorded"],
    );
    while let Some(batch) = batches.try_next().await? {
        if let ComplianceEvent::ComplianceResultsRecorded { assets, .. } = batch.event {
            for asset in assets {
                let digest = digest_of(&asset)?;
                if recorded
                    .insert(asset.asset_id, (digest, asset.asset_name))
                    .is_some()
                {
                    // An asset recorded twice: the log is not what a run writes.
                    duplicates += 1;
                }
            }
        }
    }
    drop(batches);

    // The same cut and clock, today's rules.
    let mut differing: Vec<AssetResults> = Vec::new();
    let mut assets_differing = duplicates;
    let mut assets_evaluated = 0u64;
    let mut fresh_totals = Totals::default();
    snapshot::fold_cmdb(pool, evaluated_at, |asset, owner| {
        if !is_evaluated(asset.lifecycle_state) {
            return Ok(());
        }
        assets_evaluated += 1;
        let fresh = evaluate_asset(rules, asset, owner, started_at);
        fresh_totals.add(&fresh);
        let same = recorded
            .remove(&fresh.asset_id)
            .is_some_and(|(digest, _)| digest_of(&fresh).is_ok_and(|now| now == digest));
        if !same {
            assets_differing += 1;
            if differing.len() < MAX_DIFFERENCES {
                differing.push(fresh);
            }
        }
        Ok(())
    })
    .await?;

    let mut differences = Vec::new();
    let wanted: Vec<String> = differing
        .iter()
        .map(|asset| asset.asset_id.to_string())
        .collect();
    let recorded_details: Vec<(Json<AssetResults>,)> = sqlx::query_as(
        "select asset from events, \
              jsonb_array_elements(events.payload->'ComplianceResultsRecorded'->'assets') as asset \
         where aggregate_type = $1 and aggregate_id = $2 \
           and event_type = 'ComplianceResultsRecorded' and asset->>'asset_id' = any($3)",
    )
    .bind(COMPLIANCE_RUN)
    .bind(&run_key)
    .bind(&wanted)
    .fetch_all(pool)
    .await?;
    let mut recorded_details: HashMap<Uuid, AssetResults> = recorded_details
        .into_iter()
        .map(|(Json(asset),)| (asset.asset_id, asset))
        .collect();
    for fresh in differing {
        match recorded_details.remove(&fresh.asset_id) {
            Some(then) => differences.extend(rule_differences(&then, &fresh)),
            None => differences.push(Difference {
                asset_id: fresh.asset_id,
                asset_name: fresh.asset_name.clone(),
                rule_id: None,
                recorded: None,
                now: Some(json!({"score": fresh.score, "evaluated": true})),
            }),
        }
    }
    // Evaluated by the run, not by the re-evaluation.
    let mut vanished: Vec<(Uuid, String)> = recorded
        .into_iter()
        .map(|(id, (_, name))| (id, name))
        .collect();
    vanished.sort();
    assets_differing += vanished.len() as u64;
    for (asset_id, asset_name) in vanished {
        if differences.len() >= MAX_DIFFERENCES {
            break;
        }
        differences.push(Difference {
            asset_id,
            asset_name,
            rule_id: None,
            recorded: Some(json!({"evaluated": true})),
            now: None,
        });
    }
    differences.truncate(MAX_DIFFERENCES);

    let recorded_totals = Totals::recorded(completed)?;
    let now_totals = fresh_totals.finish();
    let totals = (recorded_totals != now_totals).then_some(TotalsDifference {
        recorded: recorded_totals,
        now: now_totals,
    });

    let current: BTreeMap<String, String> = rules
        .rules()
        .iter()
        .map(|rule| (rule.info().id.clone(), rule.info().digest()))
        .collect();
    let then: BTreeMap<String, String> = recorded_rules
        .into_iter()
        .map(|rule| (rule.id, rule.digest))
        .collect();
    let mut rules_changed: Vec<String> = current
        .keys()
        .chain(then.keys())
        .filter(|id| current.get(*id) != then.get(*id))
        .cloned()
        .collect();
    rules_changed.sort();
    rules_changed.dedup();
    let current_ruleset_hash = rules.hash();
    Ok(Some(Verification {
        run_id,
        matches: assets_differing == 0 && totals.is_none(),
        ruleset_changed: current_ruleset_hash != ruleset_hash,
        recorded_ruleset_hash: ruleset_hash,
        current_ruleset_hash,
        rules_changed,
        event_position: evaluated_at.position,
        assets_evaluated,
        assets_differing,
        totals,
        differences,
    }))
}

/// The per-rule differences of one asset evaluated both times.
fn rule_differences(then: &AssetResults, now: &AssetResults) -> Vec<Difference> {
    let view = |result: &RuleResult| json!({"status": result.status, "severity": result.severity, "evidence": result.evidence});
    let then_by_rule: BTreeMap<&str, &RuleResult> = then
        .results
        .iter()
        .map(|r| (r.rule_id.as_str(), r))
        .collect();
    let now_by_rule: BTreeMap<&str, &RuleResult> = now
        .results
        .iter()
        .map(|r| (r.rule_id.as_str(), r))
        .collect();
    let mut ids: Vec<&str> = then_by_rule
        .keys()
        .chain(now_by_rule.keys())
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut differences: Vec<Difference> = ids
        .into_iter()
        .filter_map(|id| {
            let (before, after) = (then_by_rule.get(id), now_by_rule.get(id));
            if before == after {
                return None;
            }
            Some(Difference {
                asset_id: now.asset_id,
                asset_name: now.asset_name.clone(),
                rule_id: Some(id.to_string()),
                recorded: before.map(|result| view(result)),
                now: after.map(|result| view(result)),
            })
        })
        .collect();
    if differences.is_empty() {
        // Same results, yet different digests: the name or score changed.
        differences.push(Difference {
            asset_id: now.asset_id,
            asset_name: now.asset_name.clone(),
            rule_id: None,
            recorded: Some(json!({"asset_name": then.asset_name, "score": then.score})),
            now: Some(json!({"asset_name": now.asset_name, "score": now.score})),
        });
    }
    differences
}
