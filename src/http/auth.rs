//! Identity endpoints (API.md "Auth and users"): login, refresh, logout,
//! me, and the published verification keys.
//!
//! Every failure of login and refresh is the same opaque 401; the reason is
//! recorded as an event (login) or in the session (reuse), never answered.

use axum::extract::State;
use sentryops_events::session::RevocationReason;
use sentryops_events::user::LoginFailure;
use sentryops_events::{Actor, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::{ApiError, DomainError};
use super::extract::{ApiJson, Authenticated, RequestContext};
use super::response::Answer;
use super::users::UserView;
use super::AppState;
use crate::auth::access::AccessKey;
use crate::auth::keyring::PublishedKey;
use crate::auth::refresh::RefreshToken;
use crate::config::Secret;
use crate::domain::session::{RotationOutcome, SessionCommand, SessionError};
use crate::domain::user::{Email, UserCommand, UserError};
use crate::password::HashingError;
use crate::ratelimit::{Decision, Limit};

impl DomainError for SessionError {
    fn to_api_error(&self) -> ApiError {
        ApiError::Unauthorized
    }
}

/// The key set: the active key first, then retiring ones.
#[derive(Debug, Serialize)]
pub struct KeySet {
    keys: Vec<PublishedKey>,
}

/// `GET /api/v1/auth/keys`: public keys, so verifiers may cache them for a
/// minute (a rotation keeps the previous key valid far longer).
pub async fn keys(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("public, max-age=60"),
        )],
        Answer::ok(KeySet {
            keys: state.keyring.current().published(),
        }),
    )
}

/// `POST /api/v1/auth/login` body.
#[derive(Deserialize)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// The token pair of login and refresh.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_expires_in: u64,
}

#[derive(sqlx::FromRow)]
struct Credentials {
    id: Uuid,
    role: String,
    is_active: bool,
    password_hash: String,
}

/// Records a successful login of `user_id` and starts its session in one
/// append; answers the session's first token pair and the position to wait
/// for.
async fn open_session(
    state: &AppState,
    user_id: Uuid,
    role: Role,
    rehashed: Option<String>,
    context: &RequestContext,
) -> Result<(TokenPair, Option<sentryops_projections::LogPosition>), ApiError> {
    let session_id = Uuid::new_v4();
    let refresh = RefreshToken::generate(session_id).map_err(ApiError::internal)?;
    let now = OffsetDateTime::now_utc();
    let recorded = state
        .commands
        .record_login(
            user_id,
            || UserCommand::RecordLoginSuccess {
                rehashed: rehashed.clone(),
            },
            session_id,
            SessionCommand::StartSession {
                session_id,
                user_id,
                token_id: refresh.token_id,
                token_hash: refresh.secret_hash(),
                expires_at: now + state.config.refresh_token_ttl,
            },
            context.metadata(Actor::User(user_id)),
        )
        .await;
    let position = match recorded {
        Ok(position) => position,
        // Deactivated after the read model this login checked: refused
        // like any inactive account, and recorded as such.
        Err(cqrs_es::AggregateError::UserError(UserError::Inactive)) => {
            state
                .commands
                .record_for_user(
                    user_id,
                    || UserCommand::RecordLoginFailure {
                        reason: LoginFailure::Inactive,
                    },
                    context.metadata(Actor::Anonymous),
                )
                .await?;
            return Err(ApiError::Unauthorized);
        }
        Err(error) => return Err(error.into()),
    };
    let pair = sign_pair(state, user_id, role, session_id, &refresh, now)?;
    Ok((pair, position))
}

fn sign_pair(
    state: &AppState,
    user_id: Uuid,
    role: Role,
    session_id: Uuid,
    refresh: &RefreshToken,
    now: OffsetDateTime,
) -> Result<TokenPair, ApiError> {
    let ring = state.keyring.current();
    let (access_token, _) = ring
        .issue_access(user_id, role, session_id, now)
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token,
        refresh_token: refresh.encode(),
        token_type: "bearer",
        expires_in: ring.access_ttl().as_secs(),
        refresh_expires_in: state.config.refresh_token_ttl.as_secs(),
    })
}

/// Counts one attempt against the auth limit of `name` for each key (client
/// address, account or session): 429 when any is over.
async fn enforce_auth_limit(
    state: &AppState,
    name: &'static str,
    keys: &[String],
) -> Result<(), ApiError> {
    let limit = Limit {
        name,
        limit: state.config.auth_rate_limit_per_minute,
        period: std::time::Duration::from_secs(60),
    };
    for key in keys {
        if let Decision::Limited { retry_after, limit } = state.limiter.check(limit, key).await {
            return Err(ApiError::RateLimited {
                retry_after_secs: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
                limit,
            });
        }
    }
    Ok(())
}

/// The client-address key of the auth limits: the address, or for IPv6
/// its /64 (one host commonly holds a whole /64, so per address it could
/// draw on 2^64 budgets).
fn client_key(context: &RequestContext) -> String {
    let Some(ip) = context.ip.as_deref() else {
        return "ip:unknown".into();
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => format!("ip:{ip}"),
    }
}

/// `POST /api/v1/auth/login`: unknown email, wrong password and inactive
/// account give the same 401 after the same work (a hash verification).
pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Answer<TokenPair>, ApiError> {
    let email = Email::parse(&body.email).ok();
    let account = email.as_ref().map_or_else(
        || body.email.trim().to_lowercase(),
        |email| email.as_str().to_string(),
    );
    enforce_auth_limit(
        &state,
        "login",
        &[client_key(&context), format!("account:{account}")],
    )
    .await?;
    if !state.passwords.has_room() {
        return Err(HashingError::Busy.into());
    }
    let password = Secret::new(body.password);
    let user: Option<Credentials> = match &email {
        Some(email) => {
            sqlx::query_as(
                "select id, role, is_active, password_hash from users where lower(email) = $1",
            )
            .bind(email.as_str())
            .fetch_optional(&state.pool)
            .await?
        }
        None => None,
    };
    let stored_hash = user.as_ref().map_or(state.dummy_hash.as_str(), |user| {
        user.password_hash.as_str()
    });
    let verified = state.passwords.verify(&password, stored_hash).await?;
    let failure = match &user {
        None => Some(LoginFailure::UnknownEmail),
        Some(_) if !verified => Some(LoginFailure::WrongPassword),
        Some(user) if !user.is_active => Some(LoginFailure::Inactive),
        Some(_) => None,
    };
    let (Some(user), None) = (user, failure) else {
        if let (Some(email), Some(reason)) = (&email, failure) {
            state
                .commands
                .record_for_user(
                    email.user_id(),
                    || UserCommand::RecordLoginFailure { reason },
                    context.metadata(Actor::Anonymous),
                )
                .await?;
        }
        return Err(ApiError::Unauthorized);
    };
    let role = Role::parse(&user.role)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored role {}", user.role)))?;
    let rehashed = if state.passwords.needs_rehash(&user.password_hash) {
        Some(state.passwords.hash(&password).await?)
    } else {
        None
    };
    let (pair, position) = open_session(&state, user.id, role, rehashed, &context).await?;
    if let Some(position) = position {
        // The session must be visible to the next request's token check.
        state.await_read_models(position).await;
    }
    Ok(Answer::ok(pair).with_position(position))
}

/// `POST /api/v1/auth/refresh` and `/logout` body.
#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// `POST /api/v1/auth/refresh`: rotates a refresh token. A consumed token
/// revokes its whole session (reuse detection) unless it was consumed
/// within the reuse grace (a lost race: 401, nothing revoked; ADR 0003);
/// an access token, garbage, or a token of a revoked or expired session is
/// a 401.
///
/// Limits: every attempt counts against the client address; only a token
/// the session really issued counts against the session, so forged tokens
/// naming somebody's session spend nobody's budget but their sender's.
pub async fn refresh(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Answer<TokenPair>, ApiError> {
    let now = OffsetDateTime::now_utc();
    enforce_auth_limit(&state, "refresh", &[client_key(&context)]).await?;
    let presented = RefreshToken::parse(&body.refresh_token).ok_or(ApiError::Unauthorized)?;
    if !state
        .commands
        .session_issued(
            presented.session_id,
            presented.token_id,
            &presented.secret_hash(),
        )
        .await?
    {
        return Err(ApiError::Unauthorized);
    }
    enforce_auth_limit(
        &state,
        "refresh",
        &[format!("session:{}", presented.session_id)],
    )
    .await?;
    let next = RefreshToken::generate(presented.session_id).map_err(ApiError::internal)?;
    let result = state
        .commands
        .rotate_refresh_token(
            presented.session_id,
            SessionCommand::RotateRefreshToken {
                presented_token_id: presented.token_id,
                presented_hash: presented.secret_hash(),
                token_id: next.token_id,
                token_hash: next.secret_hash(),
                expires_at: now + state.config.refresh_token_ttl,
                now,
                reuse_grace: time::Duration::try_from(state.config.refresh_reuse_grace)
                    .unwrap_or(time::Duration::ZERO),
            },
            context.metadata(Actor::Anonymous),
        )
        .await;
    let (outcome, position) = match result {
        Ok(done) => done,
        // The loser of two concurrent rotations of one token.
        Err(cqrs_es::AggregateError::AggregateConflict) => return Err(ApiError::Unauthorized),
        Err(error) => return Err(error.into()),
    };
    let user_id = match outcome {
        RotationOutcome::Rotated { user_id } => user_id,
        // Lost a race the winner already committed: nothing to settle.
        RotationOutcome::RaceLost => return Err(ApiError::Unauthorized),
        RotationOutcome::ReuseDetected => {
            // Reuse revoked the session: its access tokens stop here.
            state
                .settle_access_change(position, AccessKey::Session(presented.session_id))
                .await;
            return Err(ApiError::Unauthorized);
        }
    };
    let user: Option<(String, bool)> =
        sqlx::query_as("select role, is_active from users where id = $1")
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await?;
    let Some((role, true)) = user else {
        return Err(ApiError::Unauthorized);
    };
    let role = Role::parse(&role)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored role {role}")))?;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    let pair = sign_pair(&state, user_id, role, presented.session_id, &next, now)?;
    Ok(Answer::ok(pair).with_position(position))
}

/// Answer of `POST /api/v1/auth/logout`.
#[derive(Debug, Serialize)]
pub struct Revoked {
    revoked: bool,
}

/// `POST /api/v1/auth/logout`: idempotent; anything that is not a token of
/// a live session is ignored and the answer is the same.
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Answer<Revoked>, ApiError> {
    let mut position = None;
    let presented = RefreshToken::parse(&body.refresh_token);
    if let Some(presented) = &presented {
        let result = state
            .commands
            .session(
                presented.session_id,
                SessionCommand::RevokeSession {
                    reason: RevocationReason::Logout,
                    proof: Some((presented.token_id, presented.secret_hash())),
                },
                context.metadata(Actor::Anonymous),
            )
            .await;
        match result {
            Ok(appended) => position = appended,
            Err(cqrs_es::AggregateError::UserError(_))
            | Err(cqrs_es::AggregateError::AggregateConflict) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(presented) = presented {
        state
            .settle_access_change(position, AccessKey::Session(presented.session_id))
            .await;
    }
    Ok(Answer::ok(Revoked { revoked: true }).with_position(position))
}

/// `GET /api/v1/auth/me`: the authenticated user.
pub async fn me(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Answer<UserView>, ApiError> {
    let user_id = auth.user_id;
    let user = super::users::find(&state, user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Answer::ok(user))
}

/// Revokes every open session of `user_id` (but `except`), as the read
/// model knows them. A session too new to be projected yet is still shut
/// out: every request also checks that the user is active. Returns the
/// position of the last revocation.
pub async fn revoke_sessions(
    state: &AppState,
    user_id: Uuid,
    except: Option<Uuid>,
    reason: RevocationReason,
    metadata: &sentryops_events::EventMetadata,
) -> Result<(usize, Option<sentryops_projections::LogPosition>), ApiError> {
    let open: Vec<Uuid> = sqlx::query_scalar(
        "select id from sessions where user_id = $1 and revoked_at is null \
           and ($2::uuid is null or id <> $2) order by created_at",
    )
    .bind(user_id)
    .bind(except)
    .fetch_all(&state.pool)
    .await?;
    let mut last = None;
    for session_id in &open {
        let mut metadata = metadata.clone();
        metadata.command_id = Uuid::new_v4();
        let position = state
            .commands
            .session(
                *session_id,
                SessionCommand::RevokeSession {
                    reason,
                    proof: None,
                },
                metadata,
            )
            .await?;
        last = last.max(position);
    }
    Ok((open.len(), last))
}

/// A session as its owner sees it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SessionView {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    refresh_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    last_rotated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    revoked_reason: Option<String>,
    current: bool,
}

/// `GET /api/v1/auth/sessions`: the caller's own sessions, newest first.
pub async fn sessions(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Answer<super::response::Page<SessionView>>, ApiError> {
    let user_id = auth.user_id;
    let items: Vec<SessionView> = sqlx::query_as(
        "select id, created_at, refresh_expires_at, last_rotated_at, revoked_at, revoked_reason, \
                id = $2 as current \
         from sessions where user_id = $1 order by created_at desc limit 200",
    )
    .bind(user_id)
    .bind(auth.session_id)
    .fetch_all(&state.pool)
    .await?;
    let total = items.len() as i64;
    Ok(Answer::ok(super::response::Page {
        items,
        total,
        limit: 200,
        offset: 0,
    }))
}

/// Answer of `POST /api/v1/auth/sessions/revoke-all`.
#[derive(Debug, Serialize)]
pub struct RevokedCount {
    revoked: usize,
}

/// `POST /api/v1/auth/sessions/revoke-all`: ends every own session, the
/// current one included.
pub async fn revoke_all(
    State(state): State<AppState>,
    auth: Authenticated,
    context: RequestContext,
) -> Result<Answer<RevokedCount>, ApiError> {
    let user_id = auth.user_id;
    let (revoked, position) = revoke_sessions(
        &state,
        user_id,
        None,
        RevocationReason::RevokedByUser,
        &context.metadata(auth.actor),
    )
    .await?;
    // A user entry that misses reloads the session with it: dropping the
    // user drops the cached view of every one of their sessions.
    state
        .settle_access_change(position, AccessKey::User(user_id))
        .await;
    Ok(Answer::ok(RevokedCount { revoked }).with_position(position))
}

/// `POST /api/v1/users/me/password` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/users/me/password`: the current password proves the
/// caller; the user's other sessions are revoked.
pub async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    context: RequestContext,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Answer<Revoked>, ApiError> {
    let user_id = auth.user_id;
    if !(8..=1024).contains(&body.new_password.chars().count()) {
        return Err(ApiError::invalid_field(
            "new_password",
            "must be 8 to 1024 characters",
        ));
    }
    let stored: String = sqlx::query_scalar("select password_hash from users where id = $1")
        .bind(user_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !state
        .passwords
        .verify(&Secret::new(body.current_password), &stored)
        .await?
    {
        return Err(ApiError::invalid_field(
            "current_password",
            "is not correct",
        ));
    }
    let hash = state
        .passwords
        .hash(&Secret::new(body.new_password))
        .await?;
    let metadata = context.metadata(auth.actor.clone());
    let mut position = state
        .commands
        .user(
            user_id,
            UserCommand::ChangePassword {
                password_hash: hash,
            },
            metadata.clone(),
        )
        .await?;
    let (_, revoked_at) = revoke_sessions(
        &state,
        user_id,
        Some(auth.session_id),
        RevocationReason::PasswordChanged,
        &metadata,
    )
    .await?;
    position = position.max(revoked_at);
    state
        .settle_access_change(position, AccessKey::User(user_id))
        .await;
    Ok(Answer::ok(Revoked { revoked: true }).with_position(position))
}
