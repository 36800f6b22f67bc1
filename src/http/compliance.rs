//! The compliance endpoints (API.md "Compliance"): rules, runs, score,
//! drift, newly-failing, per-asset results, the report, and the
//! re-verification of a run from the log.
//!
//! Runs are recorded as events ([`crate::compliance::run`]); every read
//! here comes from the `compliance` projection, which only shows completed
//! runs.

use axum::extract::State;
use sentryops_events::compliance::{Severity, SeverityCounts};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::page_bounds;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, Auditor, Authenticated, Operator, RequestContext};
use super::response::{Answer, Page};
use super::AppState;
use crate::compliance::{run, RuleInfo};
use crate::ratelimit::{Decision, Limit};

/// Pagination only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/compliance/rules`: built-in rules first, then the
/// declarative ones.
pub async fn rules(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Answer<Page<RuleInfo>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let all = state.rules.rules();
    let items = all
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|rule| rule.info().clone())
        .collect();
    Ok(Answer::ok(Page {
        items,
        total: i64::try_from(all.len()).unwrap_or(i64::MAX),
        limit,
        offset,
    }))
}

/// A run as API.md shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RunView {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    finished_at: Option<OffsetDateTime>,
    triggered_by_id: Uuid,
    total_assets: i64,
    org_score: f64,
    passed_count: i64,
    failed_count: i64,
    not_applicable_count: i64,
    severity_failing: Json<SeverityCounts>,
    /// The run's cut: every event at or before
    /// `(event_transaction, event_position)` in the log's order.
    event_position: i64,
    event_transaction: i64,
    ruleset_hash: String,
}

impl From<run::RecordedRun> for RunView {
    fn from(recorded: run::RecordedRun) -> Self {
        let totals = recorded.totals;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        RunView {
            id: recorded.run_id,
            started_at: recorded.started_at,
            finished_at: Some(recorded.finished_at),
            triggered_by_id: recorded.triggered_by_id,
            total_assets: count(totals.total_assets),
            org_score: totals.org_score,
            passed_count: count(totals.passed_count),
            failed_count: count(totals.failed_count),
            not_applicable_count: count(totals.not_applicable_count),
            severity_failing: Json(totals.severity_failing),
            event_position: recorded.evaluated_at.position,
            event_transaction: recorded.evaluated_at.transaction_id,
            ruleset_hash: recorded.ruleset_hash,
        }
    }
}

const RUN_COLUMNS: &str = "run_id as id, started_at, finished_at, triggered_by_id, total_assets, \
     org_score, passed_count, failed_count, not_applicable_count, severity_failing, event_position, \
     event_transaction, ruleset_hash";

/// Newest first.
const NEWEST_FIRST: &str = "order by started_at desc, recorded_position desc";

async fn run_by_id(state: &AppState, id: Uuid) -> Result<Option<RunView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {RUN_COLUMNS} from compliance_runs where run_id = $1 and completed"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?)
}

/// The newest completed runs, newest first.
async fn newest_runs(state: &AppState, limit: i64, offset: i64) -> Result<Vec<RunView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {RUN_COLUMNS} from compliance_runs where completed {NEWEST_FIRST} limit $1 offset $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?)
}

/// `POST /api/v1/compliance/runs`: evaluates every rule on every asset as
/// of now and records the run; 201 with the run. Limited per user.
pub async fn start_run(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
) -> Result<Answer<RunView>, ApiError> {
    let limit = Limit {
        name: "compliance_runs",
        limit: state.config.compliance_runs_per_minute,
        period: std::time::Duration::from_secs(60),
    };
    let key = format!("user:{}", operator.user_id);
    if let Decision::Limited { retry_after, limit } = state.limiter.check(limit, &key).await {
        return Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
            limit,
        });
    }
    let recorded = run::run(
        &state.pool,
        &state.commands,
        &state.rules,
        operator.user_id,
        context.metadata(operator.actor),
    )
    .await
    .map_err(ApiError::from_failure)?;
    let position = recorded.position;
    if let Some(position) = position {
        // Read-your-writes for the lists that follow; the answer itself
        // is the recorded run, so a slow read model never turns a run that
        // was recorded into an error (a retry would record a second one).
        state.await_read_models(position).await;
    }
    Ok(Answer::created(RunView::from(recorded), position))
}

/// `GET /api/v1/compliance/runs`: newest first.
pub async fn list_runs(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Answer<Page<RunView>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let items = newest_runs(&state, limit, offset).await?;
    let total: i64 = sqlx::query_scalar("select count(*) from compliance_runs where completed")
        .fetch_one(&state.pool)
        .await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// `GET /api/v1/compliance/runs/latest`: 404 when there is none.
pub async fn latest_run(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Answer<RunView>, ApiError> {
    let latest = newest_runs(&state, 1, 0).await?.into_iter().next();
    Ok(Answer::ok(
        latest.ok_or(ApiError::NotFound("compliance run"))?,
    ))
}

/// The organization's score.
#[derive(Debug, Serialize)]
pub struct ScoreView {
    org_score: f64,
    run_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    total_assets: i64,
    passed_count: i64,
    failed_count: i64,
    not_applicable_count: i64,
    severity_failing: SeverityCounts,
}

/// `GET /api/v1/compliance/score`: of the latest run; 100 without one.
pub async fn score(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Answer<ScoreView>, ApiError> {
    let latest = newest_runs(&state, 1, 0).await?.into_iter().next();
    Ok(Answer::ok(match latest {
        Some(run) => ScoreView {
            org_score: run.org_score,
            run_id: Some(run.id),
            started_at: Some(run.started_at),
            total_assets: run.total_assets,
            passed_count: run.passed_count,
            failed_count: run.failed_count,
            not_applicable_count: run.not_applicable_count,
            severity_failing: run.severity_failing.0,
        },
        None => ScoreView {
            org_score: 100.0,
            run_id: None,
            started_at: None,
            total_assets: 0,
            passed_count: 0,
            failed_count: 0,
            not_applicable_count: 0,
            severity_failing: SeverityCounts::default(),
        },
    }))
}

/// Query of `GET /api/v1/compliance/drift`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    limit: Option<i64>,
}

/// One point of the drift series.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct DriftPoint {
    run_id: Uuid,
    org_score: f64,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    severity_failing: Json<SeverityCounts>,
}

/// `GET /api/v1/compliance/drift`: the newest `limit` runs, oldest first.
pub async fn drift(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<DriftQuery>,
) -> Result<Answer<Page<DriftPoint>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, None)?;
    let items = sqlx::query_as(&format!(
        "select * from (select run_id, org_score, started_at, severity_failing, recorded_position \
             from compliance_runs where completed {NEWEST_FIRST} limit $1) newest \
         order by started_at, recorded_position"
    ))
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("select count(*) from compliance_runs where completed")
        .fetch_one(&state.pool)
        .await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// A failing result in the latest run that was not failing in the one
/// before.
#[derive(Debug, Serialize)]
pub struct NewlyFailing {
    asset_id: Uuid,
    asset_name: String,
    rule_id: String,
    severity: Severity,
    title: String,
    control: String,
    evidence: Value,
}

/// Query of `GET /api/v1/compliance/newly-failing`: without `limit`, every
/// item (as the original API answered).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewlyFailingQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The rules a run recorded (title, control, severity of each at the time).
async fn run_rules(
    state: &AppState,
    run_id: Uuid,
) -> Result<Vec<sentryops_events::compliance::RuleRef>, ApiError> {
    let rules: Option<Json<Vec<sentryops_events::compliance::RuleRef>>> =
        sqlx::query_scalar("select rules from compliance_runs where run_id = $1")
            .bind(run_id)
            .fetch_optional(&state.pool)
            .await?;
    Ok(rules.map(|Json(rules)| rules).unwrap_or_default())
}

/// `GET /api/v1/compliance/newly-failing`: a list page, with the two runs
/// compared.
#[derive(Debug, Serialize)]
pub struct NewlyFailingView {
    run_id: Option<Uuid>,
    previous_run_id: Option<Uuid>,
    items: Vec<NewlyFailing>,
    total: i64,
    limit: i64,
    offset: i64,
}

/// The run's results of `asset_id` (bound as text) in batch `sequence`:
/// the read model indexes results; the log holds them (ADR 0001).
const RESULTS_OF_ASSET: &str = "select asset->'results' from events \
     cross join lateral jsonb_array_elements(events.payload->'ComplianceResultsRecorded'->'assets') as asset \
     where events.aggregate_type = 'compliance_run' and events.aggregate_id = $1 \
       and events.sequence = $2 and asset->>'asset_id' = $3";

/// `GET /api/v1/compliance/newly-failing`: (asset, rule) pairs failing in
/// the latest run and not in the previous one (with one run, all its
/// failures; with none, nothing), by asset name.
pub async fn newly_failing(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<NewlyFailingQuery>,
) -> Result<Answer<NewlyFailingView>, ApiError> {
    // No `limit`: the whole list (bounded by assets × rules of one run).
    let (limit, offset) = match query.limit {
        Some(_) => page_bounds(query.limit, query.offset)?,
        None => (i64::MAX, page_bounds(None, query.offset)?.1),
    };
    let runs = newest_runs(&state, 2, 0).await?;
    let (Some(latest), previous) = (runs.first(), runs.get(1)) else {
        return Ok(Answer::ok(NewlyFailingView {
            run_id: None,
            previous_run_id: None,
            items: Vec::new(),
            total: 0,
            limit: query.limit.unwrap_or(0),
            offset,
        }));
    };
    let newly = "select latest.asset_id, latest.asset_name, latest.batch_sequence, rule_id \
         from compliance_asset_results latest \
         cross join unnest(latest.failing_rules) as rule_id \
         left join compliance_asset_results previous \
                on previous.run_id = $2 and previous.asset_id = latest.asset_id \
         where latest.run_id = $1 \
           and not (coalesce(previous.failing_rules, '{}') @> array[rule_id])";
    let total: i64 = sqlx::query_scalar(&format!("select count(*) from ({newly}) newly"))
        .bind(latest.id)
        .bind(previous.map(|run| run.id))
        .fetch_one(&state.pool)
        .await?;
    let page: Vec<(Uuid, String, i64, String)> = sqlx::query_as(&format!(
        "{newly} order by latest.asset_name, latest.asset_id, rule_id limit $3 offset $4"
    ))
    .bind(latest.id)
    .bind(previous.map(|run| run.id))
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    // The page's results, each batch read once.
    let batches: Vec<i64> = page.iter().map(|row| row.2).collect();
    let assets: Vec<String> = page.iter().map(|row| row.0.to_string()).collect();
    let results: Vec<(Uuid, Json<Vec<Value>>)> = sqlx::query_as(
        "select (asset->>'asset_id')::uuid, asset->'results' from events \
         cross join lateral jsonb_array_elements(events.payload->'ComplianceResultsRecorded'->'assets') as asset \
         where events.aggregate_type = 'compliance_run' and events.aggregate_id = $1 \
           and events.sequence = any($2) and asset->>'asset_id' = any($3)",
    )
    .bind(latest.id.to_string())
    .bind(&batches)
    .bind(&assets)
    .fetch_all(&state.pool)
    .await?;
    let results: std::collections::HashMap<Uuid, Vec<Value>> = results
        .into_iter()
        .map(|(asset_id, Json(results))| (asset_id, results))
        .collect();
    let rules = run_rules(&state, latest.id).await?;
    let mut items = Vec::with_capacity(page.len());
    for (asset_id, asset_name, _, rule_id) in page {
        let result = results
            .get(&asset_id)
            .and_then(|results| {
                results
                    .iter()
                    .find(|result| result["rule_id"] == rule_id.as_str())
            })
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("run {} lacks a result", latest.id))
            })?;
        let rule = rules.iter().find(|rule| rule.id == rule_id);
        items.push(NewlyFailing {
            asset_id,
            asset_name,
            title: rule.map(|rule| rule.title.clone()).unwrap_or_default(),
            control: rule.map(|rule| rule.control.clone()).unwrap_or_default(),
            severity: serde_json::from_value(result["severity"].clone())
                .map_err(ApiError::internal)?,
            evidence: result.get("evidence").cloned().unwrap_or(Value::Null),
            rule_id,
        });
    }
    Ok(Answer::ok(NewlyFailingView {
        run_id: Some(latest.id),
        previous_run_id: previous.map(|run| run.id),
        limit: query.limit.unwrap_or(total),
        items,
        total,
        offset,
    }))
}

/// One asset's results in the latest run.
#[derive(Debug, Serialize)]
pub struct AssetResultsView {
    run_id: Option<Uuid>,
    asset_id: Uuid,
    asset_name: Option<String>,
    score: Option<f64>,
    items: Vec<Value>,
    total: i64,
}

/// The id of one result: the same (run, asset, rule) always gets the
/// same id, since results live in the log and have no row of their own.
fn result_id(run_id: Uuid, asset_id: Uuid, rule_id: &str) -> Uuid {
    Uuid::new_v5(&run_id, format!("{asset_id}/{rule_id}").as_bytes())
}

/// A recorded result as API.md shows it: the original's `id`, `run_id`,
/// `asset_id` and `created_at` beside what the log holds.
fn result_view(run: &RunView, asset_id: Uuid, mut result: Value) -> Value {
    let rule_id = result["rule_id"].as_str().unwrap_or_default().to_string();
    if let Value::Object(fields) = &mut result {
        fields.insert(
            "id".into(),
            Value::from(result_id(run.id, asset_id, &rule_id).to_string()),
        );
        fields.insert("run_id".into(), Value::from(run.id.to_string()));
        fields.insert("asset_id".into(), Value::from(asset_id.to_string()));
        let created_at = run
            .finished_at
            .unwrap_or(run.started_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        fields.insert("created_at".into(), Value::from(created_at));
    }
    result
}

/// `GET /api/v1/compliance/assets/{asset_id}/results`: the asset's results
/// in the latest run; an empty list when there is no run or the latest did
/// not evaluate the asset (a retired one, say).
pub async fn asset_results(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> Result<Answer<AssetResultsView>, ApiError> {
    let empty = |run_id| AssetResultsView {
        run_id,
        asset_id,
        asset_name: None,
        score: None,
        items: Vec::new(),
        total: 0,
    };
    let Some(latest) = newest_runs(&state, 1, 0).await?.into_iter().next() else {
        return Ok(Answer::ok(empty(None)));
    };
    let row: Option<(String, f64, i64)> = sqlx::query_as(
        "select asset_name, score, batch_sequence from compliance_asset_results \
         where run_id = $1 and asset_id = $2",
    )
    .bind(latest.id)
    .bind(asset_id)
    .fetch_optional(&state.pool)
    .await?;
    let Some((asset_name, score, batch_sequence)) = row else {
        return Ok(Answer::ok(empty(Some(latest.id))));
    };
    let items: Vec<Value> = sqlx::query_scalar::<_, Json<Vec<Value>>>(RESULTS_OF_ASSET)
        .bind(latest.id.to_string())
        .bind(batch_sequence)
        .bind(asset_id.to_string())
        .fetch_optional(&state.pool)
        .await?
        .map(|Json(items)| items)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("run {} lacks results", latest.id)))?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|result| result_view(&latest, asset_id, result))
        .collect();
    Ok(Answer::ok(AssetResultsView {
        run_id: Some(latest.id),
        asset_id,
        asset_name: Some(asset_name),
        score: Some(score),
        total: i64::try_from(items.len()).unwrap_or(i64::MAX),
        items,
    }))
}

/// Query of `GET /api/v1/compliance/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    run_id: Option<Uuid>,
}

/// An asset's line in the report (`asset_name` is ours, beside the
/// original's fields).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ReportAsset {
    asset_id: Uuid,
    asset_name: String,
    score: f64,
    passed: i32,
    failed: i32,
    not_applicable: i32,
}

/// One failing (asset, rule) of the report, as the original API lists
/// them (`asset_name` and `weight` are ours).
#[derive(Debug, Serialize)]
pub struct FailingControl {
    asset_id: Uuid,
    asset_name: String,
    rule_id: String,
    title: String,
    framework: String,
    control: String,
    severity: Severity,
    remediation: String,
    evidence: Value,
    /// The severity's weight in the score.
    weight: i64,
}

/// A failing rule across the run (ours): what fixing it is worth.
#[derive(Debug, Serialize)]
pub struct FailingRule {
    rule_id: String,
    title: String,
    framework: String,
    control: String,
    severity: Severity,
    failing_assets: i64,
    /// Severity weight × failing assets.
    weight: i64,
}

/// Result counts of a run by status.
#[derive(Debug, Serialize)]
pub struct StatusCounts {
    pass: i64,
    fail: i64,
    not_applicable: i64,
}

/// `GET /api/v1/compliance/report`: the original's shape, plus `run` (the
/// run with its event position) and `failing_rules`.
#[derive(Debug, Serialize)]
pub struct Report {
    run_id: Uuid,
    /// The run's clock: the moment the report describes.
    #[serde(with = "time::serde::rfc3339")]
    generated_for: OffsetDateTime,
    org_score: f64,
    total_assets: i64,
    status_counts: StatusCounts,
    severity_failing: SeverityCounts,
    /// Lowest score first.
    per_asset: Vec<ReportAsset>,
    /// One per failing (asset, rule): heaviest first, then by asset and rule.
    failing_controls: Vec<FailingControl>,
    /// Per rule, heaviest first.
    failing_rules: Vec<FailingRule>,
    run: RunView,
}

/// Every failing result of a run: `(asset_id, asset_name, rule_id, evidence)`.
const FAILING_RESULTS: &str = "select (asset->>'asset_id')::uuid, asset->>'asset_name', \
            result->>'rule_id', coalesce(result->'evidence', 'null'::jsonb) from events \
     cross join lateral jsonb_array_elements(events.payload->'ComplianceResultsRecorded'->'assets') as asset \
     cross join lateral jsonb_array_elements(asset->'results') as result \
     where events.aggregate_type = 'compliance_run' and events.aggregate_id = $1 \
       and events.event_type = 'ComplianceResultsRecorded' and result->>'status' = 'fail'";

/// `GET /api/v1/compliance/report`: of `run_id`, or of the latest run; 404
/// when there is no such run.
pub async fn report(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Answer<Report>, ApiError> {
    let run = match query.run_id {
        Some(id) => run_by_id(&state, id).await?,
        None => newest_runs(&state, 1, 0).await?.into_iter().next(),
    }
    .ok_or(ApiError::NotFound("compliance run"))?;
    let per_asset: Vec<ReportAsset> = sqlx::query_as(
        "select asset_id, asset_name, score, passed, failed, not_applicable \
         from compliance_asset_results where run_id = $1 order by score, asset_id",
    )
    .bind(run.id)
    .fetch_all(&state.pool)
    .await?;
    let rules = run_rules(&state, run.id).await?;
    let failing: Vec<(Uuid, String, String, Json<Value>)> = sqlx::query_as(FAILING_RESULTS)
        .bind(run.id.to_string())
        .fetch_all(&state.pool)
        .await?;
    let remediation = |rule_id: &str| {
        state
            .rules
            .rules()
            .iter()
            .find(|rule| rule.info().id == rule_id)
            .map(|rule| rule.info().remediation.clone())
            .unwrap_or_default()
    };
    let mut failing_controls: Vec<FailingControl> = failing
        .into_iter()
        .filter_map(|(asset_id, asset_name, rule_id, Json(evidence))| {
            let rule = rules.iter().find(|rule| rule.id == rule_id)?;
            Some(FailingControl {
                asset_id,
                asset_name,
                title: rule.title.clone(),
                framework: rule.framework.clone(),
                control: rule.control.clone(),
                severity: rule.severity,
                remediation: remediation(&rule_id),
                evidence,
                weight: i64::from(rule.severity.weight()),
                rule_id,
            })
        })
        .collect();
    failing_controls.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then(a.asset_id.cmp(&b.asset_id))
            .then(a.rule_id.cmp(&b.rule_id))
    });
    let mut failing_rules: Vec<FailingRule> = Vec::new();
    for control in &failing_controls {
        match failing_rules
            .iter_mut()
            .find(|rule| rule.rule_id == control.rule_id)
        {
            Some(rule) => {
                rule.failing_assets += 1;
                rule.weight += control.weight;
            }
            None => failing_rules.push(FailingRule {
                rule_id: control.rule_id.clone(),
                title: control.title.clone(),
                framework: control.framework.clone(),
                control: control.control.clone(),
                severity: control.severity,
                failing_assets: 1,
                weight: control.weight,
            }),
        }
    }
    failing_rules.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.rule_id.cmp(&b.rule_id)));
    Ok(Answer::ok(Report {
        run_id: run.id,
        generated_for: run.started_at,
        org_score: run.org_score,
        total_assets: run.total_assets,
        status_counts: StatusCounts {
            pass: run.passed_count,
            fail: run.failed_count,
            not_applicable: run.not_applicable_count,
        },
        severity_failing: run.severity_failing.0,
        per_asset,
        failing_controls,
        failing_rules,
        run,
    }))
}

/// `POST /api/v1/compliance/runs/{id}/verify` (auditor, admin): folds the
/// CMDB from the log at the run's position, re-evaluates with today's
/// rules at the run's clock, and compares with the recorded results.
pub async fn verify(
    State(state): State<AppState>,
    _auditor: Auditor,
    ApiPath(run_id): ApiPath<Uuid>,
) -> Result<Answer<run::Verification>, ApiError> {
    let verification = run::verify(&state.pool, &state.rules, run_id)
        .await
        .map_err(ApiError::from_failure)?
        .ok_or(ApiError::NotFound("compliance run"))?;
    Ok(Answer::ok(verification))
}
