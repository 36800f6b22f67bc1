//! The one API error type and the error envelope of API.md.
//!
//! Handlers return [`ApiError`]; its response carries the error as an
//! extension, and the [`render_error_envelope`] middleware (which knows the
//! request id) writes the envelope. The same middleware wraps every other
//! error response too (unknown route, 405, body limits, timeouts, panics), so
//! no error leaves the service without the envelope.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cqrs_es::AggregateError;
use serde_json::{json, Value};

/// Every error the API answers with. Each variant documents its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not well-formed JSON.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that do not verify. Opaque.
    #[error("authentication required")]
    Unauthorized,
    /// 403: authenticated, but the role is below the route's floor.
    #[error("not allowed for your role")]
    Forbidden,
    /// 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: a uniqueness or state rule, or a concurrent change, refused it.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names a stale version.
    #[error("the resource has changed since the given version")]
    PreconditionFailed,
    /// 413: the body is over the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected a request with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: field-level validation failed; `details` names the fields.
    #[error("{message}")]
    Validation { message: String, details: Value },
    /// 429: over a rate limit; carries `Retry-After` and `RateLimit-*`.
    #[error("too many requests; retry later")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    /// 503: a dependency is down.
    #[error("service temporarily unavailable")]
    Unavailable,
    /// 503 with `Retry-After`: a statement ran out of time (the database
    /// is busy or a lock is held); nothing was changed.
    #[error("the database is busy; try again shortly")]
    Busy,
    /// 503 with `Retry-After`: too much work of one kind is queued (password
    /// hashing); shed now rather than answer late.
    #[error("too many requests in progress; try again shortly")]
    Overloaded { retry_after_secs: u64 },
    /// 500: anything unexpected. The detail is logged, never returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// What the envelope middleware renders.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::Validation {
            message: format!("{field}: {reason}"),
            details: json!({ "fields": [{ "field": field, "reason": reason }] }),
        }
    }

    /// A 422 for several fields at once.
    pub fn invalid_fields(fields: Vec<(&'static str, String)>) -> Self {
        let message = fields
            .iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        let details = fields
            .into_iter()
            .map(|(field, reason)| json!({ "field": field, "reason": reason }))
            .collect::<Vec<_>>();
        ApiError::Validation {
            message,
            details: json!({ "fields": details }),
        }
    }

    /// A 500 from any error.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    /// The database error `cause` is, also inside a log read or an append.
    fn database_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a sqlx::Error> {
        use sentryops_projections::store::{AppendError, ReadError};
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return Some(error);
        }
        match (
            cause.downcast_ref::<ReadError>(),
            cause.downcast_ref::<AppendError>(),
        ) {
            (Some(ReadError::Database(error)), _) | (_, Some(AppendError::Database(error))) => {
                Some(error)
            }
            _ => None,
        }
    }

    /// A failure of a longer piece of work: 503 when an unreachable
    /// database is anywhere in its causes (retryable), 500 otherwise.
    pub fn from_failure(error: anyhow::Error) -> Self {
        let unreachable = error
            .chain()
            .any(|cause| Self::database_error(cause).is_some_and(is_unreachable));
        let timed_out = error
            .chain()
            .any(|cause| Self::database_error(cause).is_some_and(is_timeout));
        if unreachable {
            tracing::error!(error = %error, "database unreachable");
            ApiError::Unavailable
        } else if timed_out {
            tracing::warn!(error = %error, "a statement ran out of time");
            ApiError::Busy
        } else {
            ApiError::Internal(error)
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::Busy | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The stable `code` for a status, used for every error response.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        412 => "precondition_failed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_error",
        429 => "rate_limited",
        503 => "service_unavailable",
        500..=599 => "internal_error",
        _ => "bad_request",
    }
}

/// The message for an error response the framework produced, by status:
/// the framework's own text may name internals, so it is never passed on.
fn message_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication required",
        403 => "not allowed for your role",
        404 => "no such resource",
        405 => "method not allowed for this resource",
        408 => "the request took too long",
        413 => "the request body is too large",
        415 => "unsupported content type",
        429 => "too many requests",
        500..=599 => "internal error",
        _ => "the request could not be processed",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let body = ErrorBody {
            code: code_for_status(status),
            message: match &self {
                ApiError::Internal(_) => message_for_status(status).to_string(),
                other => other.to_string(),
            },
            details: match &self {
                ApiError::Validation { details, .. } => details.clone(),
                _ => Value::Null,
            },
        };
        let mut response = status.into_response();
        if let ApiError::RateLimited {
            retry_after_secs,
            limit,
        } = &self
        {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            headers.insert("ratelimit-limit", HeaderValue::from(*limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(0));
            headers.insert("ratelimit-reset", HeaderValue::from(*retry_after_secs));
        }
        if let ApiError::Overloaded { retry_after_secs } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let ApiError::Busy = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        response.extensions_mut().insert(body);
        response
    }
}

impl From<crate::password::HashingError> for ApiError {
    fn from(error: crate::password::HashingError) -> Self {
        match error {
            crate::password::HashingError::Busy => ApiError::Overloaded {
                retry_after_secs: 1,
            },
            failed => ApiError::internal(failed),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            // 422 as in the original API (FastAPI answers malformed JSON so),
            // whose clients switch on `validation_error`.
            JsonRejection::JsonSyntaxError(_) => ApiError::Validation {
                message: "the request body is not valid JSON".into(),
                details: json!({ "body": "not valid JSON" }),
            },
            JsonRejection::JsonDataError(error) => ApiError::Validation {
                message: "the request body does not match the expected shape".into(),
                details: json!({ "body": error.body_text() }),
            },
            other => {
                // Body read failures, including the size limit: keep the
                // framework's status, render our envelope.
                let status = other.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    return ApiError::PayloadTooLarge;
                }
                ApiError::BadRequest("the request body could not be read".into())
            }
        }
    }
}

/// Whether a database error means "cannot reach the database" (retryable)
/// rather than a fault in a statement.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    )
}

/// Whether PostgreSQL gave up on a statement for time: its
/// `statement_timeout` (57014) or `lock_timeout` (55P03). The database is
/// busy or something holds a lock: retryable, not a fault.
pub fn is_timeout(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "57014" || code == "55P03")
}

impl From<sentryops_projections::store::ReadError> for ApiError {
    /// A stored event that does not decode is a 500 (logged with its
    /// position), never a silently skipped event.
    fn from(error: sentryops_projections::store::ReadError) -> Self {
        match error {
            sentryops_projections::store::ReadError::Database(error) => error.into(),
            decode => ApiError::internal(decode),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// An unreachable database, or a statement that ran out of time, is a
    /// 503 (retryable); anything else is a 500.
    fn from(error: sqlx::Error) -> Self {
        if is_unreachable(&error) {
            tracing::error!(%error, "database unreachable");
            ApiError::Unavailable
        } else if is_timeout(&error) {
            tracing::warn!(%error, "a statement ran out of time");
            ApiError::Busy
        } else {
            ApiError::internal(error)
        }
    }
}

/// Maps an aggregate's own refusals to precise API errors.
pub trait DomainError: std::error::Error {
    /// The API error for this refusal.
    fn to_api_error(&self) -> ApiError;
}

impl<E: DomainError> From<AggregateError<E>> for ApiError {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(error) => error.to_api_error(),
            AggregateError::AggregateConflict => {
                ApiError::Conflict("the resource was changed concurrently; reload and retry".into())
            }
            AggregateError::DatabaseConnectionError(error) => {
                tracing::error!(%error, "event store unreachable");
                ApiError::Unavailable
            }
            // The store reports every database error as unexpected: an
            // unreachable database or a statement out of time is told apart
            // here.
            AggregateError::UnexpectedError(error)
                if error
                    .downcast_ref::<sqlx::Error>()
                    .is_some_and(is_unreachable) =>
            {
                tracing::error!(%error, "event store unreachable");
                ApiError::Unavailable
            }
            AggregateError::UnexpectedError(error)
                if error.downcast_ref::<sqlx::Error>().is_some_and(is_timeout) =>
            {
                tracing::warn!(%error, "an event store statement ran out of time");
                ApiError::Busy
            }
            other => ApiError::internal(anyhow::anyhow!("event store: {other}")),
        }
    }
}

/// Renders every error response as the envelope of API.md, with the
/// request id. Headers the error set (`Allow`, `Retry-After`, …) are kept.
pub async fn render_error_envelope(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let mut response = next.run(request).await;
    let status = response.status();
    let body = match response.extensions_mut().remove::<ErrorBody>() {
        Some(body) => body,
        // A handler that answers an error with its own JSON body (`/ready`'s
        // 503) meant it; everything else gets the envelope.
        None if (status.is_client_error() || status.is_server_error()) && !is_json(&response) => {
            if status.is_server_error() {
                tracing::error!(
                    status = status.as_u16(),
                    "request failed without an ApiError"
                );
            }
            ErrorBody {
                code: code_for_status(status),
                message: message_for_status(status).to_string(),
                details: Value::Null,
            }
        }
        None => return response,
    };
    let envelope = json!({
        "success": false,
        "data": null,
        "error": { "code": body.code, "message": body.message, "details": body.details },
        "meta": { "request_id": request_id },
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(envelope.to_string()))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}
