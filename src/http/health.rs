//! Liveness and readiness (no auth, no envelope, API.md "Platform").

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

/// `GET /health`: the process answers.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: the database answers and no projection is further behind
/// than `READY_MAX_LAG_EVENTS`.
pub async fn ready(State(state): State<AppState>) -> Response {
    let not_ready = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready" })),
        )
            .into_response()
    };
    let statuses =
        match sentryops_projections::status::status(&state.pool, state.runtime.projections()).await
        {
            Ok((statuses, _)) => statuses,
            Err(error) => {
                tracing::warn!(%error, "readiness check: database unreachable");
                return not_ready();
            }
        };
    if let Some(lagging) = statuses
        .iter()
        .find(|status| status.lag_events > state.config.ready_max_lag_events)
    {
        tracing::warn!(projection = %lagging.name, lag_events = lagging.lag_events, "readiness check: projection lagging");
        return not_ready();
    }
    Json(json!({ "status": "ready" })).into_response()
}
