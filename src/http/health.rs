//! Liveness and readiness (no auth, no envelope, API.md "Platform").

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use time::OffsetDateTime;

use super::AppState;

/// `GET /health`: the process answers.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 `ready` while the database answers and every
/// projection keeps up. Lag is judged in time and progress, not in a count
/// of events: a burst the projector is visibly draining (an import of
/// 50,000 rows) is not unreadiness; a projection whose oldest unprojected
/// event is older than `READY_MAX_LAG_SECONDS` and that committed no batch
/// in that time is. 503 `not_ready` then, or when the database is gone; 503
/// `degraded`, naming it, while an append has been open longer than
/// `READY_MAX_OPEN_APPEND_SECONDS` (it holds every projection back, so
/// writes wait for their read models).
pub async fn ready(State(state): State<AppState>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response()
    };
    let pool = &state.pool;
    // `status` reads the oldest open append too: one round of queries.
    let (statuses, oldest_append) =
        match sentryops_projections::status::status(pool, state.runtime.projections()).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "readiness check: database unreachable");
                return not_ready("the database is unreachable".into());
            }
        };
    // First: an append held open is the cause of any lag behind it.
    if let Some(append) = oldest_append
        .filter(|append| append.age_seconds > state.config.ready_max_open_append.as_secs_f64())
    {
        tracing::warn!(
            pid = append.pid,
            age_seconds = append.age_seconds,
            "readiness check: an append is held open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "degraded",
                "reason": format!(
                    "an append has been open for {:.0} s; projections wait for it",
                    append.age_seconds
                ),
                "oldest_open_append": append,
            })),
        )
            .into_response();
    }
    let max_lag = state.config.ready_max_lag.as_secs_f64();
    let now = OffsetDateTime::now_utc();
    if let Some(stalled) = statuses.iter().find(|status| {
        let idle_for = status
            .updated_at
            .map_or(f64::INFINITY, |at| (now - at).as_seconds_f64());
        // A failing runner touches its row on every retry: that is no
        // progress.
        let progressing = idle_for <= max_lag && status.status != "failed";
        status.lag_events > 0 && status.lag_seconds > max_lag && !progressing
    }) {
        tracing::warn!(
            projection = %stalled.name,
            lag_events = stalled.lag_events,
            lag_seconds = stalled.lag_seconds,
            "readiness check: projection stalled"
        );
        return not_ready(format!(
            "projection {} is {:.0} s behind and not catching up",
            stalled.name, stalled.lag_seconds
        ));
    }
    Json(json!({ "status": "ready" })).into_response()
}
