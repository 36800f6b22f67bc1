//! Extractors: validated JSON and query strings whose rejections are
//! [`ApiError`]s, the request context that becomes event metadata, and the
//! authentication guard.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use sentryops_events::{Actor, EventMetadata, Role};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::rejection;
use super::AppState;

/// A JSON body with the API's own rejections: 415 without
/// `application/json`, 413 over the limit, 422 for malformed JSON, for a
/// string holding NUL anywhere (keys included), and for a value of the
/// wrong shape, naming the field and the JSON type it must be
/// ([`super::rejection`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<Value>::from_request(request, state).await?;
        if let Some(field) = rejection::nul_path(&value) {
            return Err(ApiError::invalid_field(&field, rejection::NUL_REASON));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|error| {
                let (field, reason) = rejection::describe(
                    &error.path().to_string(),
                    &error.inner().to_string(),
                    "body",
                );
                ApiError::invalid_field(&field, reason)
            })
    }
}

/// `axum::extract::Path` with a 422 naming the parameter and what it must
/// be (an id that is not a UUID, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(rejection::from_path_rejection)
    }
}

/// A query string with a 422 naming the parameter and what it must be.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let (field, reason) = rejection::describe(
                    &error.path().to_string(),
                    &error.inner().to_string(),
                    "query",
                );
                ApiError::invalid_field(&field, reason)
            })
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(512).collect())
}

/// Who is calling and under which request: becomes [`EventMetadata`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl RequestContext {
    /// Event metadata for a command `actor` issues in this request.
    pub fn metadata(&self, actor: Actor) -> EventMetadata {
        let mut metadata = EventMetadata::new(actor);
        metadata.ip = self.ip.clone();
        metadata.user_agent = self.user_agent.clone();
        metadata.request_id = self.request_id.clone();
        metadata.correlation_id = self.correlation_id.clone();
        metadata
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let request_id = header(&parts.headers, "x-request-id");
        Ok(Self {
            ip,
            user_agent: header(&parts.headers, "user-agent"),
            correlation_id: header(&parts.headers, "x-correlation-id")
                .or_else(|| request_id.clone()),
            request_id,
        })
    }
}

/// An authenticated caller: a PASETO v4.public access token whose session
/// is open and whose user is active (checked on every request against the
/// `sessions` and `users` read models, through the cache of
/// [`crate::auth::access`]). The role comes from the read model, so a role
/// change applies at once. Every failure is the same opaque 401.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: uuid::Uuid,
    pub session_id: uuid::Uuid,
    pub role: Role,
    pub actor: Actor,
}

/// The credentials of `Authorization: Bearer <token>`; the scheme name is
/// case-insensitive (RFC 9110 section 11.1).
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
        .filter(|credentials| !credentials.is_empty())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let claims = state
            .keyring
            .verify_access(presented)
            .map_err(|_| ApiError::Unauthorized)?;
        let role = state
            .access
            .check(claims.sid, claims.sub)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Authenticated {
            user_id: claims.sub,
            session_id: claims.sid,
            role,
            actor: Actor::User(claims.sub),
        })
    }
}

/// An authenticated administrator: 401 without valid credentials, 403 for
/// any other role.
#[derive(Debug, Clone)]
pub struct Admin {
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Authenticated::from_request_parts(parts, state).await?;
        if caller.role == Role::Admin {
            Ok(Admin {
                actor: caller.actor,
            })
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// An authenticated operator or administrator (the `op` floor of API.md):
/// 401 without valid credentials, 403 for viewers and auditors (an auditor
/// reads everything and mutates nothing).
#[derive(Debug, Clone)]
pub struct Operator {
    pub user_id: uuid::Uuid,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Authenticated::from_request_parts(parts, state).await?;
        if matches!(caller.role, Role::Operator | Role::Admin) {
            Ok(Operator {
                user_id: caller.user_id,
                actor: caller.actor,
            })
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// An authenticated auditor or administrator (the "auditor, admin" floor
/// of API.md: reading the raw log, re-verifying runs): 401 without valid
/// credentials, 403 for viewers and operators.
#[derive(Debug, Clone)]
pub struct Auditor {
    pub user_id: uuid::Uuid,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Authenticated::from_request_parts(parts, state).await?;
        if matches!(caller.role, Role::Auditor | Role::Admin) {
            Ok(Auditor {
                user_id: caller.user_id,
                actor: caller.actor,
            })
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
