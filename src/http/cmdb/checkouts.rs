//! `/api/v1/checkouts`: who holds an asset. At most one open check-out per
//! asset is a rule of the asset's own stream, so two concurrent check-outs
//! give one 201 and one 409.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{asset_exists, user_exists, Problems, MAX_NOTES_CHARS};
use crate::domain::asset::AssetCommand;
use crate::domain::text::TextKind;
use crate::http::audit::page_bounds;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, Operator, RequestContext};
use crate::http::response::{Answer, Page};
use crate::http::AppState;

/// A check-out as the API shows it.
#[derive(Debug, Serialize, FromRow)]
pub struct CheckoutView {
    id: Uuid,
    asset_id: Uuid,
    holder_id: Uuid,
    notes: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    checked_out_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    checked_in_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, asset_id, holder_id, notes, checked_out_at, checked_in_at";

async fn find(state: &AppState, id: Uuid) -> Result<Option<CheckoutView>, ApiError> {
    Ok(
        sqlx::query_as(&format!("select {COLUMNS} from checkouts where id = $1"))
            .bind(id)
            .fetch_optional(&state.pool)
            .await?,
    )
}

async fn open_checkout(state: &AppState, asset_id: Uuid) -> Result<Option<CheckoutView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from checkouts where asset_id = $1 and checked_in_at is null"
    ))
    .bind(asset_id)
    .fetch_optional(&state.pool)
    .await?)
}

/// Body of `POST /api/v1/checkouts/{asset_id}/check-out`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckOut {
    holder_id: Uuid,
    notes: Option<String>,
}

/// `POST /api/v1/checkouts/{asset_id}/check-out` → 201; 409 when it is out
/// already, 422 for an unknown holder, 404 for an unknown asset.
pub async fn check_out(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CheckOut>,
) -> Result<Answer<CheckoutView>, ApiError> {
    let mut problems = Problems::default();
    let notes = problems.optional_text(
        "notes",
        body.notes.as_deref(),
        MAX_NOTES_CHARS,
        TextKind::FreeText,
    );
    if !user_exists(&state, body.holder_id).await? {
        problems.add("holder_id", "no such user");
    }
    problems.into_result(|| ())?;
    let checkout_id = Uuid::new_v4();
    let pending = CheckoutView {
        id: checkout_id,
        asset_id,
        holder_id: body.holder_id,
        notes: notes.clone(),
        checked_out_at: OffsetDateTime::now_utc(),
        checked_in_at: None,
    };
    let position = state
        .commands
        .asset(
            asset_id,
            AssetCommand::CheckOut {
                checkout_id,
                holder_id: body.holder_id,
                notes,
            },
            context.metadata(operator.actor),
        )
        .await?;
    // A check-out is a version of the asset: its cached view must go.
    super::assets::settle_asset_change(&state, &[asset_id], position).await;
    let checkout = find(&state, checkout_id).await?.unwrap_or(pending);
    Ok(Answer::created(checkout, position))
}

/// `POST /api/v1/checkouts/{asset_id}/check-in`: 409 when it is not out.
pub async fn check_in(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> Result<Answer<CheckoutView>, ApiError> {
    let open = open_checkout(&state, asset_id).await?;
    let position = state
        .commands
        .asset(
            asset_id,
            AssetCommand::CheckIn,
            context.metadata(operator.actor),
        )
        .await?;
    super::assets::settle_asset_change(&state, &[asset_id], position).await;
    // The read model's open check-out is the one the command closed unless
    // another check-in and check-out raced in between; the answer then
    // names the asset's latest check-out.
    let closed = match open {
        Some(open) => find(&state, open.id).await?,
        None => None,
    };
    let closed = match closed {
        Some(closed) => closed,
        None => latest(&state, asset_id)
            .await?
            .ok_or(ApiError::NotFound("checkout"))?,
    };
    Ok(Answer::ok(closed).with_position(position))
}

async fn latest(state: &AppState, asset_id: Uuid) -> Result<Option<CheckoutView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from checkouts where asset_id = $1 \
         order by checked_out_at desc, id desc limit 1"
    ))
    .bind(asset_id)
    .fetch_optional(&state.pool)
    .await?)
}

/// `GET /api/v1/checkouts/{asset_id}/holder`: the open check-out; 404 when
/// nobody holds the asset.
pub async fn holder(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> Result<Answer<CheckoutView>, ApiError> {
    open_checkout(&state, asset_id)
        .await?
        .map(Answer::ok)
        .ok_or(ApiError::NotFound("checkout"))
}

/// Pagination of the check-out history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/checkouts/{asset_id}/history`: newest first; 404 for an
/// asset that does not exist (a deleted asset leaves the check-outs).
pub async fn history(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Answer<Page<CheckoutView>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    if !asset_exists(&state, asset_id).await? {
        return Err(ApiError::NotFound("asset"));
    }
    let items = sqlx::query_as(&format!(
        "select {COLUMNS} from checkouts where asset_id = $1 \
         order by checked_out_at desc, id desc limit $2 offset $3"
    ))
    .bind(asset_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("select count(*) from checkouts where asset_id = $1")
        .bind(asset_id)
        .fetch_one(&state.pool)
        .await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}
