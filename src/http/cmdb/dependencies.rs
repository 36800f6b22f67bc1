//! `/api/v1/dependencies`: edges "source depends on target", and the
//! upstream (what an asset depends on), downstream (what depends on it)
//! and graph (both) traversals.
//!
//! An edge's id derives from its `source → target` pair, so a duplicate is
//! the dependency aggregate's own 409. Traversals walk the `dependencies`
//! read model breadth first, one query per level, and visit each asset
//! once: cycles end the walk instead of looping, and `max_depth` bounds it.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::assets::{AssetListItem, LIST_COLUMNS};
use super::{asset_exists, deleted, Problems};
use crate::domain::dependency::DependencyCommand;
use crate::domain::text::TextKind;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, Operator, RequestContext};
use crate::http::response::Answer;
use crate::http::AppState;
use sentryops_events::cmdb::dependency_id_for;

/// Longest `kind`, in characters.
const MAX_KIND_CHARS: usize = 64;
/// Deepest traversal API.md allows.
const MAX_DEPTH: i64 = 10;

/// An edge as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct DependencyView {
    id: Uuid,
    source_asset_id: Uuid,
    target_asset_id: Uuid,
    kind: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// Body of `POST /api/v1/dependencies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDependency {
    source_asset_id: Uuid,
    target_asset_id: Uuid,
    kind: Option<String>,
}

async fn find(state: &AppState, id: Uuid) -> Result<Option<DependencyView>, ApiError> {
    Ok(sqlx::query_as(
        "select id, source_asset_id, target_asset_id, kind, created_at \
         from dependencies where id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?)
}

/// `POST /api/v1/dependencies` → 201; an asset depending on itself is 422,
/// an unknown asset 404, an existing edge 409.
pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateDependency>,
) -> Result<Answer<DependencyView>, ApiError> {
    let mut problems = Problems::default();
    if body.source_asset_id == body.target_asset_id {
        problems.add("target_asset_id", "an asset cannot depend on itself");
    }
    let kind = problems.optional_text("kind", body.kind.as_deref(), MAX_KIND_CHARS, TextKind::Name);
    problems.into_result(|| ())?;
    for asset_id in [body.source_asset_id, body.target_asset_id] {
        if !asset_exists(&state, asset_id).await? {
            return Err(ApiError::NotFound("asset"));
        }
    }
    let id = dependency_id_for(body.source_asset_id, body.target_asset_id);
    let pending = DependencyView {
        id,
        source_asset_id: body.source_asset_id,
        target_asset_id: body.target_asset_id,
        kind: kind.clone(),
        created_at: OffsetDateTime::now_utc(),
    };
    let position = state
        .commands
        .dependency(
            id,
            DependencyCommand::Add {
                source_asset_id: body.source_asset_id,
                target_asset_id: body.target_asset_id,
                kind,
            },
            context.metadata(operator.actor),
        )
        .await?;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    let edge = find(&state, id).await?.unwrap_or(pending);
    Ok(Answer::created(edge, position))
}

/// `DELETE /api/v1/dependencies/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Answer<Value>, ApiError> {
    // An edge of a deleted asset left the read model with the asset.
    if find(&state, id).await?.is_none() {
        return Err(ApiError::NotFound("dependency"));
    }
    let position = state
        .commands
        .dependency(
            id,
            DependencyCommand::Remove,
            context.metadata(operator.actor),
        )
        .await?;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    Ok(Answer::ok(deleted("dependency", id)).with_position(position))
}

/// Which way a traversal follows edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From an asset to what it depends on.
    Upstream,
    /// From an asset to what depends on it.
    Downstream,
    /// Both ways.
    Both,
}

/// Query of the traversals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraversalQuery {
    max_depth: Option<i64>,
}

/// An edge in a traversal.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Edge {
    id: Uuid,
    source_asset_id: Uuid,
    target_asset_id: Uuid,
    kind: Option<String>,
}

/// An asset reached by a traversal, with its distance from the start.
#[derive(Debug, Serialize)]
pub struct Node {
    #[serde(flatten)]
    asset: AssetListItem,
    depth: i64,
}

/// `{asset, nodes, edges}`.
#[derive(Debug, Serialize)]
pub struct Traversal {
    asset: AssetListItem,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

/// The edges touching `frontier` in `direction`, between live assets only
/// (an edge whose asset was just deleted may outlive it for a moment).
async fn edges_from(
    state: &AppState,
    frontier: &[Uuid],
    direction: Direction,
) -> Result<Vec<Edge>, ApiError> {
    let touching = match direction {
        Direction::Upstream => "d.source_asset_id = any($1)",
        Direction::Downstream => "d.target_asset_id = any($1)",
        Direction::Both => "(d.source_asset_id = any($1) or d.target_asset_id = any($1))",
    };
    Ok(sqlx::query_as(&format!(
        "select d.id, d.source_asset_id, d.target_asset_id, d.kind from dependencies d \
         join assets s on s.id = d.source_asset_id \
         join assets t on t.id = d.target_asset_id \
         where {touching}"
    ))
    .bind(frontier)
    .fetch_all(&state.pool)
    .await?)
}

/// Walks from `root` breadth first, at most `max_depth` edges away, each
/// asset once.
pub async fn traverse(
    state: &AppState,
    root: Uuid,
    direction: Direction,
    max_depth: i64,
) -> Result<Option<Traversal>, ApiError> {
    let Some(asset) = sqlx::query_as::<_, AssetListItem>(&format!(
        "select {LIST_COLUMNS} from assets a where a.id = $1"
    ))
    .bind(root)
    .fetch_optional(&state.pool)
    .await?
    else {
        return Ok(None);
    };
    let mut depth_of: HashMap<Uuid, i64> = HashMap::from([(root, 0)]);
    let mut edges: BTreeMap<Uuid, Edge> = BTreeMap::new();
    let mut frontier = vec![root];
    for depth in 1..=max_depth {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for edge in edges_from(state, &frontier, direction).await? {
            let ends = match direction {
                Direction::Upstream => vec![edge.target_asset_id],
                Direction::Downstream => vec![edge.source_asset_id],
                Direction::Both => vec![edge.source_asset_id, edge.target_asset_id],
            };
            for end in ends {
                if let std::collections::hash_map::Entry::Vacant(slot) = depth_of.entry(end) {
                    slot.insert(depth);
                    next.push(end);
                }
            }
            edges.insert(edge.id, edge);
        }
        frontier = next;
    }
    // The focus asset is a node too, at depth 0 (API.md: `nodes` includes
    // it; the original console subtracts one for it).
    let reached: Vec<Uuid> = depth_of.keys().copied().collect();
    let assets: Vec<AssetListItem> = sqlx::query_as(&format!(
        "select {LIST_COLUMNS} from assets a where a.id = any($1)"
    ))
    .bind(&reached)
    .fetch_all(&state.pool)
    .await?;
    let mut nodes: Vec<Node> = assets
        .into_iter()
        .map(|asset| Node {
            depth: depth_of.get(&asset.id).copied().unwrap_or(0),
            asset,
        })
        .collect();
    nodes.sort_by(|a, b| {
        (a.depth, &a.asset.name, a.asset.id).cmp(&(b.depth, &b.asset.name, b.asset.id))
    });
    Ok(Some(Traversal {
        asset,
        nodes,
        edges: edges.into_values().collect(),
    }))
}

async fn answer_traversal(
    state: &AppState,
    root: Uuid,
    direction: Direction,
    max_depth: Option<i64>,
    default_depth: i64,
) -> Result<Answer<Traversal>, ApiError> {
    let max_depth = max_depth.unwrap_or(default_depth);
    if !(1..=MAX_DEPTH).contains(&max_depth) {
        return Err(ApiError::invalid_field(
            "max_depth",
            format!("must be between 1 and {MAX_DEPTH}"),
        ));
    }
    traverse(state, root, direction, max_depth)
        .await?
        .map(Answer::ok)
        .ok_or(ApiError::NotFound("asset"))
}

/// `GET /api/v1/dependencies/upstream/{asset_id}`: what it depends on.
pub async fn upstream(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<TraversalQuery>,
) -> Result<Answer<Traversal>, ApiError> {
    answer_traversal(&state, asset_id, Direction::Upstream, query.max_depth, 5).await
}

/// `GET /api/v1/dependencies/downstream/{asset_id}`: what depends on it.
pub async fn downstream(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<TraversalQuery>,
) -> Result<Answer<Traversal>, ApiError> {
    answer_traversal(&state, asset_id, Direction::Downstream, query.max_depth, 5).await
}

/// `GET /api/v1/dependencies/graph/{asset_id}`: both ways.
pub async fn graph(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<TraversalQuery>,
) -> Result<Answer<Traversal>, ApiError> {
    answer_traversal(&state, asset_id, Direction::Both, query.max_depth, 3).await
}
