//! Projection status for operators: version, checkpoint, lag in events and
//! seconds, and the oldest open append when one holds the horizon back
//! (DESIGN D3's caveat made visible).

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::projection::Projection;
use crate::store::LogPosition;
use std::sync::Arc;

/// One projection's state.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// The version the running code folds with.
    pub code_version: i32,
    /// The version the live tables were built with (`None`: never started).
    pub stored_version: Option<i32>,
    pub checkpoint: LogPosition,
    pub events_applied: i64,
    /// `idle`, `running`, `rebuilding` or `failed`.
    pub status: String,
    pub last_error: Option<String>,
    /// Committed events past the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest committed event past the checkpoint.
    pub lag_seconds: f64,
    /// Shadow progress while a rebuild runs.
    pub rebuild_checkpoint: Option<LogPosition>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

/// The oldest append in flight: while it lasts, the settled horizon cannot
/// pass it, so events committed after it started cannot be projected
/// (ADR 0004). Other open transactions no longer hold projections back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OpenTransaction {
    pub pid: i32,
    pub state: Option<String>,
    pub age_seconds: f64,
    pub application_name: Option<String>,
}

/// The oldest append in flight in this database, if any.
pub async fn oldest_open_append(pool: &PgPool) -> sqlx::Result<Option<OpenTransaction>> {
    sqlx::query_as::<_, OpenTransaction>(
        "select pid, state, coalesce(age_seconds, 0) as age_seconds, application_name \
         from events_open_appends() limit 1",
    )
    .fetch_optional(pool)
    .await
}

/// Status of every projection, and the oldest open append if any.
pub async fn status(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
) -> sqlx::Result<(Vec<ProjectionStatus>, Option<OpenTransaction>)> {
    let mut rows = Vec::with_capacity(projections.len());
    for projection in projections {
        type Row = (
            i32,
            i64,
            i64,
            i64,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            OffsetDateTime,
        );
        let row: Option<Row> = sqlx::query_as(
            "select version, last_transaction_id, last_position, events_applied, status, \
                    last_error, rebuild_transaction_id, rebuild_position, updated_at \
             from projection_checkpoints where name = $1",
        )
        .bind(projection.name())
        .fetch_optional(pool)
        .await?;
        let checkpoint = row.as_ref().map_or(LogPosition::START, |r| LogPosition {
            transaction_id: r.1,
            position: r.2,
        });
        let (lag_events, lag_seconds): (i64, Option<f64>) = sqlx::query_as(
            "select count(*), extract(epoch from now() - min(recorded_at))::float8 from events \
             where (transaction_id, global_position) > ($1::text::xid8, $2)",
        )
        .bind(checkpoint.transaction_id.to_string())
        .bind(checkpoint.position)
        .fetch_one(pool)
        .await?;
        rows.push(ProjectionStatus {
            name: projection.name().to_string(),
            code_version: projection.version(),
            stored_version: row.as_ref().map(|r| r.0),
            checkpoint,
            events_applied: row.as_ref().map_or(0, |r| r.3),
            status: row
                .as_ref()
                .map_or_else(|| "idle".to_string(), |r| r.4.clone()),
            last_error: row.as_ref().and_then(|r| r.5.clone()),
            lag_events,
            lag_seconds: lag_seconds.unwrap_or(0.0).max(0.0),
            rebuild_checkpoint: row.as_ref().and_then(|r| match (r.6, r.7) {
                (Some(transaction_id), Some(position)) => Some(LogPosition {
                    transaction_id,
                    position,
                }),
                _ => None,
            }),
            updated_at: row.as_ref().map(|r| r.8),
        });
    }
    let oldest = oldest_open_append(pool).await?;
    Ok((rows, oldest))
}
