//! `GET /api/v1/audit` and `GET /api/v1/audit/{entity_type}/{entity_id}`:
//! the audit timeline read model, newest first, with filters, offset
//! pagination and a keyset cursor (API.md "Audit and event log").

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, FromRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, Authenticated};
use super::response::{Answer, Page};
use super::AppState;

/// Query parameters of the audit endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    entity_type: Option<String>,
    entity_id: Option<String>,
    actor_id: Option<String>,
    action: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    to: Option<OffsetDateTime>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// Opaque keyset cursor from a previous page's `meta.next_cursor`.
    cursor: Option<String>,
}

/// One audit entry as the API shows it.
#[derive(Debug, Serialize, FromRow)]
pub struct AuditEntry {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    actor_id: String,
    action: String,
    entity_type: String,
    entity_id: String,
    before: Option<Value>,
    after: Option<Value>,
    source_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    correlation_id: Option<String>,
    event_position: i64,
}

/// Validated list bounds of API.md: `limit` 1..200 (default 50), `offset` >= 0.
pub fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    let mut problems = Vec::new();
    if !(1..=200).contains(&limit) {
        problems.push(("limit", "must be between 1 and 200".to_string()));
    }
    if offset < 0 {
        problems.push(("offset", "must be 0 or more".to_string()));
    }
    if problems.is_empty() {
        Ok((limit, offset))
    } else {
        Err(ApiError::invalid_fields(problems))
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|raw| {
            raw.parse::<i64>()
                .ok()
                .filter(|position| *position > 0)
                .ok_or_else(|| ApiError::invalid_field("cursor", "is not a cursor this API issued"))
        })
        .transpose()
}

const FILTERS: &str = "($1::text is null or entity_type = $1) \
     and ($2::text is null or entity_id = $2) \
     and ($3::text is null or actor_id = $3) \
     and ($4::text is null or action = $4) \
     and ($5::timestamptz is null or created_at >= $5) \
     and ($6::timestamptz is null or created_at <= $6)";

/// The filters ($1..$6), bound once and shared by the count, and the same
/// plus cursor, limit and offset ($7..$9) for the page.
fn arguments(
    query: &AuditQuery,
    cursor: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<(PgArguments, PgArguments), BoxDynError> {
    let mut filters = PgArguments::default();
    filters.add(&query.entity_type)?;
    filters.add(&query.entity_id)?;
    filters.add(&query.actor_id)?;
    filters.add(&query.action)?;
    filters.add(query.from)?;
    filters.add(query.to)?;
    let mut page = filters.clone();
    page.add(cursor)?;
    page.add(limit)?;
    page.add(if cursor.is_some() { 0 } else { offset })?;
    Ok((filters, page))
}

async fn list(state: &AppState, query: AuditQuery) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let cursor = parse_cursor(query.cursor.as_deref())?;
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(ApiError::invalid_field("from", "must not be after `to`"));
        }
    }
    let (filters, page) = arguments(&query, cursor, limit, offset)
        .map_err(|error| ApiError::internal(anyhow::anyhow!(error)))?;
    let items: Vec<AuditEntry> = sqlx::query_as_with(
        &format!(
            "select id, created_at, actor_id, action, entity_type, entity_id, before, after, \
                    source_ip, user_agent, request_id, correlation_id, event_position \
             from audit_timeline \
             where {FILTERS} and ($7::bigint is null or event_position < $7) \
             order by event_position desc limit $8 offset $9"
        ),
        page,
    )
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar_with(
        &format!("select count(*) from audit_timeline where {FILTERS}"),
        filters,
    )
    .fetch_one(&state.pool)
    .await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|entry| entry.event_position.to_string()))
        .flatten();
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    })
    .with_meta(json!({ "next_cursor": next_cursor })))
}

/// `GET /api/v1/audit`.
pub async fn list_all(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    list(&state, query).await
}

/// `GET /api/v1/audit/{entity_type}/{entity_id}`.
pub async fn list_entity(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path((entity_type, entity_id)): Path<(String, String)>,
    ApiQuery(mut query): ApiQuery<AuditQuery>,
) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    query.entity_type = Some(entity_type);
    query.entity_id = Some(entity_id);
    list(&state, query).await
}
