//! `/api/v1/tags`: list, create, delete, and attaching tags to assets.
//!
//! A tag's id derives from its normalized name, so a duplicate name is the
//! tag aggregate's own 409. Deleting a tag also detaches it from every
//! asset that carries it, as events on those assets, so their histories
//! say so and a tag re-created under the same name starts detached.

use axum::extract::State;
use cqrs_es::AggregateError;
use sentryops_events::cmdb::tag_id_for;
use sentryops_projections::LogPosition;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::assets::{self, AssetView};
use super::{deleted, Problems};
use crate::domain::asset::{AssetCommand, AssetError};
use crate::domain::tag::TagCommand;
use crate::domain::text::TextKind;
use crate::http::audit::page_bounds;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, Operator, RequestContext};
use crate::http::response::{Answer, Page};
use crate::http::AppState;

/// Longest tag name, in characters.
const MAX_TAG_NAME_CHARS: usize = 64;
/// The color of a tag created without one.
const DEFAULT_COLOR: &str = "#64748b";

/// A tag as the API shows it.
#[derive(Debug, Serialize, FromRow)]
pub struct TagView {
    id: Uuid,
    name: String,
    color: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

async fn find(state: &AppState, id: Uuid) -> Result<Option<TagView>, ApiError> {
    Ok(
        sqlx::query_as("select id, name, color, created_at from tags where id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?,
    )
}

/// Pagination of `GET /api/v1/tags`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/tags`: by name.
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<TagListQuery>,
) -> Result<Answer<Page<TagView>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let items = sqlx::query_as(
        "select id, name, color, created_at from tags order by lower(name), id \
         limit $1 offset $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("select count(*) from tags")
        .fetch_one(&state.pool)
        .await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// Body of `POST /api/v1/tags`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    name: String,
    color: Option<String>,
}

/// `#rgb` or `#rrggbb`.
fn is_hex_color(color: &str) -> bool {
    color
        .strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `POST /api/v1/tags` → 201; a name taken in any letter case is 409.
pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateTag>,
) -> Result<Answer<TagView>, ApiError> {
    let mut problems = Problems::default();
    let name = problems.text("name", &body.name, MAX_TAG_NAME_CHARS, TextKind::Name);
    let color = body.color.map_or_else(
        || DEFAULT_COLOR.to_string(),
        |color| color.trim().to_lowercase(),
    );
    if !is_hex_color(&color) {
        problems.add("color", "must be a hex color such as #64748b");
    }
    let pending = TagView {
        id: tag_id_for(&name),
        name: name.clone(),
        color: color.clone(),
        created_at: OffsetDateTime::now_utc(),
    };
    let command = problems.into_result(|| TagCommand::Create { name, color })?;
    let id = pending.id;
    let position = state
        .commands
        .tag(id, command, context.metadata(operator.actor))
        .await?;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    // The read model normally has it; past the bounded wait, the answer
    // is what was just recorded.
    let tag = find(&state, id).await?.unwrap_or(pending);
    Ok(Answer::created(tag, position))
}

/// `DELETE /api/v1/tags/{id}`: detaches the tag from every asset that
/// carries it, then deletes it. In that order, a failure half-way leaves
/// the tag in place and a retry finishes the job.
pub async fn delete(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Answer<Value>, ApiError> {
    if find(&state, id).await?.is_none() {
        return Err(ApiError::NotFound("tag"));
    }
    let metadata = context.metadata(operator.actor);
    let carriers: Vec<Uuid> =
        sqlx::query_scalar("select asset_id from asset_tags where tag_id = $1")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
    let mut position = None;
    for &asset_id in &carriers {
        match state
            .commands
            .asset(
                asset_id,
                AssetCommand::Untag { tag_id: id },
                metadata.clone(),
            )
            .await
        {
            Ok(untagged) => position = position.max(untagged),
            // Detached or deleted meanwhile: nothing left to do.
            Err(AggregateError::UserError(AssetError::NotTagged | AssetError::NotFound)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    let deleted_at = state.commands.tag(id, TagCommand::Delete, metadata).await?;
    let position = position.max(deleted_at);
    assets::settle_asset_change(&state, &carriers, position).await;
    Ok(Answer::ok(deleted("tag", id)).with_position(position))
}

/// Runs an attach or detach and answers with the asset.
async fn change_attachment(
    state: &AppState,
    asset_id: Uuid,
    command: AssetCommand,
    metadata: sentryops_events::EventMetadata,
) -> Result<(AssetView, Option<LogPosition>), ApiError> {
    let position = state.commands.asset(asset_id, command, metadata).await?;
    assets::settle_asset_change(state, &[asset_id], position).await;
    let asset = assets::find(state, asset_id)
        .await?
        .ok_or(ApiError::NotFound("asset"))?;
    Ok((asset, position))
}

/// `POST /api/v1/tags/{tag_id}/assets/{asset_id}`: attach; 409 when it is
/// attached already, 404 for an unknown tag or asset.
pub async fn attach(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath((tag_id, asset_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Answer<AssetView>, ApiError> {
    if find(&state, tag_id).await?.is_none() {
        return Err(ApiError::NotFound("tag"));
    }
    let (asset, position) = change_attachment(
        &state,
        asset_id,
        AssetCommand::Tag { tag_id },
        context.metadata(operator.actor),
    )
    .await?;
    Ok(Answer::ok(asset).with_position(position))
}

/// `DELETE /api/v1/tags/{tag_id}/assets/{asset_id}`: detach; 404 when it
/// is not attached.
pub async fn detach(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath((tag_id, asset_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Answer<AssetView>, ApiError> {
    let (asset, position) = change_attachment(
        &state,
        asset_id,
        AssetCommand::Untag { tag_id },
        context.metadata(operator.actor),
    )
    .await?;
    Ok(Answer::ok(asset).with_position(position))
}
