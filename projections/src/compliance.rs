//! The compliance read models (SPEC section 4): `compliance_runs` and
//! `compliance_asset_results`.
//!
//! The results batches are the bulk of the log (a run over 10,000 assets
//! records ~30 MB of them) and reach projections with a `null` payload
//! (see [`crate::store::PROJECTED_EVENT_COLUMNS`]): this projection tallies
//! them inside PostgreSQL, one `INSERT … SELECT` from `events` per batch,
//! so no result passes through the process. A row keeps the batch's
//! sequence: the results and their evidence are read from that event.

use async_trait::async_trait;
use sentryops_events::compliance::{ComplianceEvent, COMPLIANCE_RUN};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::Projection;
use crate::store::StoredEvent;

/// The name of [`ComplianceProjection`].
pub const COMPLIANCE: &str = "compliance";

/// `compliance_runs` and `compliance_asset_results`.
pub struct ComplianceProjection;

#[async_trait]
impl Projection for ComplianceProjection {
    fn name(&self) -> &'static str {
        COMPLIANCE
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["compliance_runs", "compliance_asset_results"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events {
            if event.aggregate_type != COMPLIANCE_RUN {
                continue;
            }
            let run_id = Uuid::parse_str(&event.aggregate_id)?;
            if event.event_type == "ComplianceResultsRecorded" {
                record_results(conn, run_id, event).await?;
                continue;
            }
            match event.decode::<ComplianceEvent>()? {
                ComplianceEvent::ComplianceRunStarted {
                    triggered_by_id,
                    started_at,
                    evaluated_at,
                    ruleset_hash,
                    rules,
                    total_assets,
                    ..
                } => {
                    sqlx::query(
                        "insert into compliance_runs (run_id, started_at, triggered_by_id, total_assets, \
                             event_transaction, event_position, ruleset_hash, rules, recorded_position) \
                         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (run_id) do nothing",
                    )
                    .bind(run_id)
                    .bind(started_at)
                    .bind(triggered_by_id)
                    .bind(i64::try_from(total_assets)?)
                    .bind(evaluated_at.transaction_id)
                    .bind(evaluated_at.position)
                    .bind(ruleset_hash)
                    .bind(serde_json::to_value(rules)?)
                    .bind(event.global_position)
                    .execute(&mut *conn)
                    .await?;
                }
                ComplianceEvent::ComplianceRunCompleted {
                    finished_at,
                    org_score,
                    passed_count,
                    failed_count,
                    not_applicable_count,
                    severity_failing,
                    ..
                } => {
                    sqlx::query(
                        "update compliance_runs set completed = true, finished_at = $2, org_score = $3, \
                             passed_count = $4, failed_count = $5, not_applicable_count = $6, \
                             severity_failing = $7 \
                         where run_id = $1",
                    )
                    .bind(run_id)
                    .bind(finished_at)
                    .bind(org_score)
                    .bind(i64::try_from(passed_count)?)
                    .bind(i64::try_from(failed_count)?)
                    .bind(i64::try_from(not_applicable_count)?)
                    .bind(serde_json::to_value(severity_failing)?)
                    .execute(&mut *conn)
                    .await?;
                }
                ComplianceEvent::ComplianceResultsRecorded { .. } => {}
            }
        }
        Ok(())
    }
}

/// Unpacks one results batch from the log into `compliance_asset_results`.
async fn record_results(
    conn: &mut PgConnection,
    run_id: Uuid,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into compliance_asset_results \
             (run_id, asset_id, asset_name, score, passed, failed, not_applicable, failing_rules, batch_sequence) \
         select $1, (asset->>'asset_id')::uuid, asset->>'asset_name', (asset->>'score')::float8, \
             tally.passed, tally.failed, tally.not_applicable, tally.failing_rules, events.sequence \
         from public.events, \
              jsonb_array_elements(events.payload->'ComplianceResultsRecorded'->'assets') as asset, \
              lateral ( \
                  select count(*) filter (where result->>'status' = 'pass') as passed, \
                         count(*) filter (where result->>'status' = 'fail') as failed, \
                         count(*) filter (where result->>'status' = 'not_applicable') as not_applicable, \
                         coalesce(array_agg(result->>'rule_id') filter (where result->>'status' = 'fail'), \
                                  '{}') as failing_rules \
                  from jsonb_array_elements(asset->'results') as result \
              ) as tally \
         where events.aggregate_type = $2 and events.aggregate_id = $3 and events.sequence = $4 \
         on conflict (run_id, asset_id) do nothing",
    )
    .bind(run_id)
    .bind(COMPLIANCE_RUN)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
