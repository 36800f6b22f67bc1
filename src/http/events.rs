//! `GET /api/v1/events` (auditors and admins): the raw log in global
//! order, as stored (payloads at their stored version, secrets as their
//! digests) with each event's seal (`chain_index`, `chain_hash`, and the
//! signed `checkpoint` at a checkpoint's tree size, ADR 0006),
//! one page at a time with a cursor, or the whole of it as NDJSON streamed
//! batch by batch (`Accept: application/x-ndjson`), never held in memory.
//!
//! Only settled events are read (`store::read_settled_filtered`), in the
//! `(transaction_id, global_position)` order projections use, so a reader
//! following `meta.next_cursor` while writers append sees every event once:
//! an event committed late lands after the cursor, never behind it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sentryops_projections::seal::{exported_line, write_exported_line};
use sentryops_projections::store::{self, LogFilter, SealedEvent};
use sentryops_projections::LogPosition;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::error::ApiError;
use super::extract::{ApiQuery, Auditor};
use super::response::Answer;
use super::AppState;

/// The most events one page holds.
pub const MAX_PAGE: i64 = 1000;
/// Events per read while streaming NDJSON.
const STREAM_BATCH: i64 = 5000;
/// The longest accepted filter string (aggregate ids are at most a UUID,
/// types a few dozen characters).
const MAX_FILTER_CHARS: usize = 200;

/// Query parameters of `GET /events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// A `meta.next_cursor`, or a `global_position` of an event.
    after: Option<String>,
    limit: Option<i64>,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    event_type: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    to: Option<OffsetDateTime>,
}

/// The cursor naming `position`: `<transaction_id>:<global_position>`.
pub fn cursor_of(position: LogPosition) -> String {
    position.cursor()
}

fn parse_pair(raw: &str) -> Option<LogPosition> {
    let (transaction_id, position) = raw.split_once(':')?;
    Some(LogPosition {
        transaction_id: transaction_id.parse().ok().filter(|id: &i64| *id >= 0)?,
        position: position.parse().ok().filter(|p: &i64| *p >= 0)?,
    })
}

/// The validated query: where to start, how many, which events.
fn validate(query: EventsQuery) -> Result<(Option<String>, Option<i64>, LogFilter), ApiError> {
    let mut problems = Vec::new();
    if let Some(limit) = query.limit {
        if !(1..=MAX_PAGE).contains(&limit) {
            problems.push(("limit", format!("must be between 1 and {MAX_PAGE}")));
        }
    }
    for (field, value) in [
        ("aggregate_type", &query.aggregate_type),
        ("aggregate_id", &query.aggregate_id),
        ("event_type", &query.event_type),
        ("after", &query.after),
    ] {
        if value
            .as_ref()
            .is_some_and(|value| value.chars().count() > MAX_FILTER_CHARS)
        {
            problems.push((
                field,
                format!("must be at most {MAX_FILTER_CHARS} characters"),
            ));
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            problems.push(("from", "must not be after `to`".to_string()));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    let filter = LogFilter {
        aggregate_type: query.aggregate_type,
        aggregate_id: query.aggregate_id,
        event_type: query.event_type,
        from: query.from,
        to: query.to,
    };
    Ok((query.after, query.limit, filter))
}

/// Where `after` starts reading.
async fn start_of(state: &AppState, after: Option<&str>) -> Result<LogPosition, ApiError> {
    let Some(raw) = after else {
        return Ok(LogPosition::START);
    };
    if let Some(pair) = parse_pair(raw) {
        return Ok(pair);
    }
    let refused = || {
        ApiError::invalid_field(
            "after",
            "is neither a cursor this API issued nor the position of an event",
        )
    };
    let position: i64 = raw.parse().ok().filter(|p| *p >= 0).ok_or_else(refused)?;
    if position == 0 {
        return Ok(LogPosition::START);
    }
    let mut conn = state.pool.acquire().await?;
    store::position_of(&mut conn, position)
        .await?
        .ok_or_else(refused)
}

/// `GET /api/v1/events`.
pub async fn list(
    State(state): State<AppState>,
    _caller: Auditor,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let (after, limit, filter) = validate(query)?;
    let start = start_of(&state, after.as_deref()).await?;
    let wants_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    if wants_ndjson {
        return Ok(stream_ndjson(state, start, limit, filter));
    }
    let limit = limit.unwrap_or(100);
    let mut conn = state.pool.acquire().await?;
    let events = store::read_settled_filtered(&mut conn, start, limit, &filter).await?;
    drop(conn);
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) == limit;
    let next_cursor = events
        .last()
        .filter(|_| full)
        .map(|sealed| cursor_of(sealed.event.log_position()));
    let items = events
        .iter()
        .map(exported_line)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(ApiError::internal)?;
    let count = items.len();
    Ok(Answer::ok(items)
        .with_meta(json!({ "next_cursor": next_cursor, "count": count }))
        .into_response())
}

/// Every matching event after `start` (at most `limit` if given), one
/// line each, read and sent a batch at a time.
fn stream_ndjson(
    state: AppState,
    start: LogPosition,
    limit: Option<i64>,
    filter: LogFilter,
) -> Response {
    /// A batch being read, aborted if the response is dropped before it
    /// is needed (the client went away).
    struct ReadAhead(tokio::task::JoinHandle<anyhow::Result<Vec<SealedEvent>>>);
    impl Drop for ReadAhead {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    struct Reading {
        state: AppState,
        filter: Arc<LogFilter>,
        left: Option<i64>,
        next: Option<(ReadAhead, i64)>,
    }
    // Reads one batch ahead: the next batch is read (by PostgreSQL, on the
    // other core) while this one is encoded and sent.
    fn read_after(reading: &mut Reading, cursor: LogPosition) {
        if reading.left == Some(0) {
            reading.next = None;
            return;
        }
        let batch = reading
            .left
            .map_or(STREAM_BATCH, |left| left.min(STREAM_BATCH));
        let (pool, filter) = (reading.state.pool.clone(), reading.filter.clone());
        let task = tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            Ok(store::read_settled_filtered(&mut conn, cursor, batch, &filter).await?)
        });
        reading.next = Some((ReadAhead(task), batch));
    }
    let mut reading = Reading {
        state,
        filter: Arc::new(filter),
        left: limit,
        next: None,
    };
    read_after(&mut reading, start);
    let lines = futures_util::stream::unfold(reading, |mut reading| async move {
        let (mut pending, batch) = reading.next.take()?;
        let events = match (&mut pending.0).await {
            Ok(Ok(events)) => events,
            Ok(Err(error)) => {
                // The response has begun: cutting it short is all that is
                // left; the client sees a truncated stream, not a clean end.
                tracing::error!(%error, "streaming the event log failed");
                return Some((Err(std::io::Error::other("event log read failed")), reading));
            }
            Err(error) => {
                tracing::error!(%error, "the event log reader stopped");
                return Some((Err(std::io::Error::other("event log read failed")), reading));
            }
        };
        let last = events.last()?.event.log_position();
        if let Some(left) = reading.left.as_mut() {
            *left -= i64::try_from(events.len()).unwrap_or(*left);
        }
        if i64::try_from(events.len()).unwrap_or(0) == batch {
            read_after(&mut reading, last);
        }
        let mut chunk = Vec::with_capacity(events.len() * 512);
        for event in &events {
            if let Err(error) = write_exported_line(event, &mut chunk) {
                tracing::error!(%error, "an event could not be exported");
                reading.next = None;
                return Some((Err(std::io::Error::other("event export failed")), reading));
            }
            chunk.push(b'\n');
        }
        Some((Ok(Bytes::from(chunk)), reading))
    });
    let mut response = Response::new(Body::from_stream(lines));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// Query parameters of `GET /audit/verify`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// Start at the newest checkpoint that verifies instead of the start.
    #[serde(default)]
    from_checkpoint: bool,
}

/// `GET /api/v1/audit/verify`: recomputes the hash chain over the whole
/// log (or from the newest good checkpoint) and checks every checkpoint's
/// signature (ADR 0006). A log that does not verify is still a 200: the
/// report is the answer, and `ok` says which it is.
pub async fn verify(
    State(state): State<AppState>,
    _caller: Auditor,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Result<Response, ApiError> {
    // One verification at a time per process: each walks the whole log in
    // one long snapshot on a pooled connection.
    static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let Ok(_running) = RUNNING.try_acquire() else {
        return Err(ApiError::Busy);
    };
    let mut conn = state.pool.acquire().await?;
    let report = sentryops_projections::seal::verify::verify_database(
        &mut conn,
        state.seal_verifier.clone(),
        query.from_checkpoint,
        &[],
    )
    .await
    .map_err(ApiError::from_failure)?;
    Ok(Answer::ok(report).into_response())
}
