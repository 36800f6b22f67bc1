//! `GET /api/v1/projections` (admin): name, version, checkpoint, lag and
//! status of every read model, and the oldest open append when one
//! holds the projection horizon back (API.md "Audit and event log").

use axum::extract::State;
use sentryops_projections::status::{status, ProjectionStatus};
use serde_json::json;

use super::error::ApiError;
use super::extract::Admin;
use super::response::{Answer, Page};
use super::AppState;

/// `GET /api/v1/projections`.
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Answer<Page<ProjectionStatus>>, ApiError> {
    let (items, oldest) = status(&state.pool, state.runtime.projections()).await?;
    let total = items.len() as i64;
    Ok(Answer::ok(Page {
        items,
        total,
        limit: total,
        offset: 0,
    })
    .with_meta(json!({ "oldest_open_append": oldest, "oldest_open_transaction": oldest })))
}
