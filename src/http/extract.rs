//! Extractors: validated JSON and query strings whose rejections are
//! [`ApiError`]s, the request context that becomes event metadata, and the
//! authentication guard.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use sentryops_events::{Actor, EventMetadata, Role};

use super::error::ApiError;
use super::AppState;

/// `axum::Json` with the API's own rejection (400/413/415/422 envelopes).
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path` with a 422 envelope on a malformed segment (an id
/// that is not a UUID, say).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with a 422 envelope on bad parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
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
