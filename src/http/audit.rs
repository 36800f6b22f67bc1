//! `GET /api/v1/audit` and `GET /api/v1/audit/{entity_type}/{entity_id}`:
//! the audit timeline read model, newest first, with filters, offset
//! pagination and a keyset cursor (API.md "Audit and event log").

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, FromRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, Authenticated};
use super::response::{Answer, Page};
use super::AppState;
use sentryops_events::audit::{actions_of_verb, coarse_action};
use sentryops_events::Role;

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

/// One audit entry as the API shows it: the original's fields (`action` is
/// its coarse verb, `actor_id` a user id or `null`) and ours beside them
/// (`event_type`, the precise action; `actor`, who acted in words).
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    actor_id: Option<Uuid>,
    actor: String,
    action: &'static str,
    event_type: String,
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

/// A row of `audit_timeline`.
#[derive(Debug, FromRow)]
struct AuditRow {
    id: Uuid,
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

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            id: row.id,
            created_at: row.created_at,
            actor_id: Uuid::parse_str(&row.actor_id).ok(),
            action: coarse_action(&row.action),
            event_type: row.action,
            actor: row.actor_id,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            before: row.before,
            after: row.after,
            source_ip: row.source_ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
            correlation_id: row.correlation_id,
            event_position: row.event_position,
        }
    }
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
     and ($4::text[] is null or action = any($4)) \
     and ($5::timestamptz is null or created_at >= $5) \
     and ($6::timestamptz is null or created_at <= $6) \
     and ($7 or entity_type <> 'session')";

/// Whether `role` may see session entries: they name session ids (which
/// a forged refresh token could aim at) and the addresses they were used
/// from, so only admins and auditors read them (and the addresses of
/// logins).
fn sees_sessions(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Auditor)
}

/// The filters ($1..$7), bound once and shared by the count, and the same
/// plus cursor, limit and offset ($8..$10) for the page. `action` is a
/// coarse verb (every precise action it stands for) or a precise action.
fn arguments(
    query: &AuditQuery,
    role: Role,
    cursor: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<(PgArguments, PgArguments), BoxDynError> {
    let actions: Option<Vec<String>> = query.action.as_ref().map(|action| {
        let precise = actions_of_verb(action);
        if precise.is_empty() {
            vec![action.clone()]
        } else {
            precise.into_iter().map(str::to_string).collect()
        }
    });
    let mut filters = PgArguments::default();
    filters.add(&query.entity_type)?;
    filters.add(&query.entity_id)?;
    filters.add(&query.actor_id)?;
    filters.add(actions)?;
    filters.add(query.from)?;
    filters.add(query.to)?;
    filters.add(sees_sessions(role))?;
    let mut page = filters.clone();
    page.add(cursor)?;
    page.add(limit)?;
    page.add(if cursor.is_some() { 0 } else { offset })?;
    Ok((filters, page))
}

async fn list(
    state: &AppState,
    role: Role,
    query: AuditQuery,
) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let cursor = parse_cursor(query.cursor.as_deref())?;
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(ApiError::invalid_field("from", "must not be after `to`"));
        }
    }
    let (filters, page) = arguments(&query, role, cursor, limit, offset)
        .map_err(|error| ApiError::internal(anyhow::anyhow!(error)))?;
    let rows: Vec<AuditRow> = sqlx::query_as_with(
        &format!(
            "select id, created_at, actor_id, action, entity_type, entity_id, before, after, \
                    source_ip, user_agent, request_id, correlation_id, event_position \
             from audit_timeline \
             where {FILTERS} and ($8::bigint is null or event_position < $8) \
             order by event_position desc limit $9 offset $10"
        ),
        page,
    )
    .fetch_all(&state.pool)
    .await?;
    let items: Vec<AuditEntry> = rows
        .into_iter()
        .map(AuditEntry::from)
        .map(|mut entry| {
            // Where people log in from is for admins and auditors, like
            // the sessions themselves.
            if !sees_sessions(role) && entry.event_type.starts_with("auth.") {
                entry.source_ip = None;
                entry.user_agent = None;
            }
            entry
        })
        .collect();
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
    caller: Authenticated,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    list(&state, caller.role, query).await
}

/// `GET /api/v1/audit/{entity_type}/{entity_id}`.
pub async fn list_entity(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((entity_type, entity_id)): ApiPath<(String, String)>,
    ApiQuery(mut query): ApiQuery<AuditQuery>,
) -> Result<Answer<Page<AuditEntry>>, ApiError> {
    query.entity_type = Some(entity_type);
    query.entity_id = Some(entity_id);
    list(&state, caller.role, query).await
}
