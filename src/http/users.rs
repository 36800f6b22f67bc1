//! `POST /api/v1/users` and `GET /api/v1/users` (admin): the first mutation
//! end to end, from validated input to event to read model.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::page_bounds;
use super::error::{ApiError, DomainError};
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery, RequestContext};
use super::response::{Answer, Page};
use super::AppState;
use crate::config::Secret;
use crate::domain::user::{Email, FullName, UserCommand, UserError};
use sentryops_events::Role;

impl DomainError for UserError {
    fn to_api_error(&self) -> ApiError {
        match self {
            UserError::EmailTaken => ApiError::Conflict(self.to_string()),
            UserError::NotFound => ApiError::NotFound("user"),
            // Opaque, as every refused login is.
            UserError::Inactive => ApiError::Unauthorized,
        }
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, FromRow)]
pub struct UserView {
    id: Uuid,
    email: String,
    full_name: String,
    role: String,
    is_active: bool,
    mfa_enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

/// Body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    full_name: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    mfa_enabled: bool,
}

/// A validated registration.
pub struct NewUser {
    pub email: Email,
    pub full_name: FullName,
    pub password: Secret,
    pub role: Role,
    pub mfa_enabled: bool,
}

impl CreateUser {
    /// Validates every field at once and reports all problems together.
    pub fn validate(self) -> Result<NewUser, ApiError> {
        let mut problems = Vec::new();
        let email = Email::parse(&self.email)
            .map_err(|reason| problems.push(("email", reason.to_string())));
        let full_name = FullName::parse(&self.full_name)
            .map_err(|reason| problems.push(("full_name", reason.to_string())));
        let length = self.password.chars().count();
        if !(8..=1024).contains(&length) {
            problems.push(("password", "must be 8 to 1024 characters".to_string()));
        }
        let role = match self.role.as_deref() {
            None => Some(Role::Viewer),
            Some(raw) => Role::parse(raw),
        };
        if role.is_none() {
            problems.push((
                "role",
                "must be one of viewer, operator, admin, auditor".to_string(),
            ));
        }
        match (email, full_name, role) {
            (Ok(email), Ok(full_name), Some(role)) if problems.is_empty() => Ok(NewUser {
                email,
                full_name,
                password: Secret::new(self.password),
                role,
                mfa_enabled: self.mfa_enabled,
            }),
            _ => Err(ApiError::invalid_fields(problems)),
        }
    }
}

/// Registers a validated user: hash off the runtime, then the command.
pub async fn register(
    state: &AppState,
    new_user: NewUser,
    metadata: sentryops_events::EventMetadata,
) -> Result<(Uuid, Option<sentryops_projections::LogPosition>), ApiError> {
    let password_hash = state.passwords.hash(&new_user.password).await?;
    let user_id = new_user.email.user_id();
    let position = state
        .commands
        .user(
            user_id,
            UserCommand::RegisterUser {
                email: new_user.email,
                full_name: new_user.full_name,
                role: new_user.role,
                password_hash,
                mfa_enabled: new_user.mfa_enabled,
            },
            metadata,
        )
        .await?;
    Ok((user_id, position))
}

pub(crate) async fn find(state: &AppState, id: Uuid) -> Result<Option<UserView>, ApiError> {
    sqlx::query_as(
        "select id, email, full_name, role, is_active, mfa_enabled, created_at, updated_at \
         from users where id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::from)
}

/// `POST /api/v1/users` → 201 with the user, read from the read model once
/// it has caught up with the registration.
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<Answer<UserView>, ApiError> {
    let new_user = body.validate()?;
    let fallback = |id: Uuid, now: OffsetDateTime| UserView {
        id,
        email: new_user.email.as_str().to_string(),
        full_name: new_user.full_name.as_str().to_string(),
        role: new_user.role.as_str().to_string(),
        is_active: true,
        mfa_enabled: new_user.mfa_enabled,
        created_at: now,
        updated_at: now,
    };
    let pending = fallback(new_user.email.user_id(), OffsetDateTime::now_utc());
    let (user_id, position) = register(&state, new_user, context.metadata(admin.actor)).await?;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    // The read model normally has it; if it lags past the bounded wait, the
    // answer is built from what was just recorded.
    let user = find(&state, user_id).await?.unwrap_or(pending);
    Ok(Answer::created(user, position))
}

/// Pagination of `GET /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/users`: by creation time.
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> Result<Answer<Page<UserView>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let items = sqlx::query_as(
        "select id, email, full_name, role, is_active, mfa_enabled, created_at, updated_at \
         from users order by created_at, id limit $1 offset $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&state.pool)
        .await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// Reads a user after a command, waiting (bounded) for the read model to
/// pass the command's events.
async fn answer_with_user(
    state: &AppState,
    id: Uuid,
    position: Option<sentryops_projections::LogPosition>,
) -> Result<Answer<UserView>, ApiError> {
    // Role and active flag feed the access check; a profile change does
    // not, but one needless invalidation costs less than a missed one.
    state
        .settle_access_change(position, crate::auth::access::AccessKey::User(id))
        .await;
    let user = find(state, id).await?.ok_or(ApiError::NotFound("user"))?;
    Ok(Answer::ok(user).with_position(position))
}

/// `GET /api/v1/users/{id}`.
pub async fn get(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Answer<UserView>, ApiError> {
    answer_with_user(&state, id, None).await
}

/// Body of `PATCH /api/v1/users/{id}`: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    full_name: Option<String>,
    is_active: Option<bool>,
    mfa_enabled: Option<bool>,
}

/// `PATCH /api/v1/users/{id}`: `{full_name?, is_active?, mfa_enabled?}`.
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Answer<UserView>, ApiError> {
    let full_name = body
        .full_name
        .as_deref()
        .map(FullName::parse)
        .transpose()
        .map_err(|reason| ApiError::invalid_field("full_name", reason.to_string()))?;
    let command = UserCommand::UpdateUser {
        full_name,
        is_active: body.is_active,
        mfa_enabled: body.mfa_enabled,
    };
    let metadata = context.metadata(admin.actor);
    let mut position = state.commands.user(id, command, metadata.clone()).await?;
    if body.is_active == Some(false) {
        let (_, revoked) = super::auth::revoke_sessions(
            &state,
            id,
            None,
            sentryops_events::session::RevocationReason::UserDeactivated,
            &metadata,
        )
        .await?;
        position = position.max(revoked);
    }
    answer_with_user(&state, id, position).await
}

/// Body of `PATCH /api/v1/users/{id}/role`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    role: String,
}

/// `PATCH /api/v1/users/{id}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    admin: Admin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChangeRole>,
) -> Result<Answer<UserView>, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::invalid_field("role", "must be one of viewer, operator, admin, auditor")
    })?;
    let position = state
        .commands
        .user(
            id,
            UserCommand::ChangeRole { role },
            context.metadata(admin.actor),
        )
        .await?;
    answer_with_user(&state, id, position).await
}

/// `POST /api/v1/users/{id}/deactivate`: soft and idempotent; revokes the
/// user's sessions.
pub async fn deactivate(
    State(state): State<AppState>,
    admin: Admin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Answer<UserView>, ApiError> {
    let metadata = context.metadata(admin.actor);
    let position = state
        .commands
        .user(id, UserCommand::DeactivateUser, metadata.clone())
        .await?;
    let (_, revoked) = super::auth::revoke_sessions(
        &state,
        id,
        None,
        sentryops_events::session::RevocationReason::UserDeactivated,
        &metadata,
    )
    .await?;
    answer_with_user(&state, id, position.max(revoked)).await
}
