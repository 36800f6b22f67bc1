//! `users`: the identity read model (one row per user).

use async_trait::async_trait;
use sentryops_events::user::{UserEvent, AGGREGATE_TYPE};
use serde_json::Value;
use sqlx::PgConnection;

use crate::projection::Projection;
use crate::store::StoredEvent;

/// The projection's name (its checkpoint row and advisory lock).
pub const NAME: &str = "users";

/// The users projection.
pub struct UsersProjection;

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        // 2: folds the whole user lifecycle, not only registration.
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events.iter().filter(|e| e.aggregate_type == AGGREGATE_TYPE) {
            let user_event = event.decode::<UserEvent>()?;
            let id = uuid::Uuid::parse_str(&event.aggregate_id)?;
            // (column, value) of the change an event makes, if it changes a row.
            let change: Option<(&str, Value)> = match user_event {
                UserEvent::UserRegistered {
                    user_id,
                    email,
                    full_name,
                    role,
                    password_hash,
                    mfa_enabled,
                    registered_at,
                } => {
                    sqlx::query(
                        "insert into users (id, email, full_name, role, is_active, mfa_enabled, \
                             password_hash, created_at, updated_at, event_position) \
                         values ($1, $2, $3, $4, true, $5, $6, $7, $7, $8) \
                         on conflict (id) do nothing",
                    )
                    .bind(user_id)
                    .bind(email)
                    .bind(full_name)
                    .bind(role.as_str())
                    .bind(mfa_enabled)
                    .bind(password_hash)
                    .bind(registered_at)
                    .bind(event.global_position)
                    .execute(&mut *conn)
                    .await?;
                    None
                }
                UserEvent::UserProfileUpdated { full_name, .. } => {
                    Some(("full_name", Value::from(full_name)))
                }
                UserEvent::UserRoleChanged { to, .. } => Some(("role", Value::from(to.as_str()))),
                UserEvent::UserDeactivated => Some(("is_active", Value::from(false))),
                UserEvent::UserReactivated => Some(("is_active", Value::from(true))),
                UserEvent::UserMfaChanged { mfa_enabled } => {
                    Some(("mfa_enabled", Value::from(mfa_enabled)))
                }
                UserEvent::PasswordChanged { password_hash }
                | UserEvent::PasswordRehashed { password_hash } => {
                    Some(("password_hash", Value::from(password_hash)))
                }
                UserEvent::LoginSucceeded | UserEvent::LoginFailed { .. } => None,
            };
            if let Some((column, value)) = change {
                // One statement for every column: the value travels as JSON
                // and is cast by the column it lands in.
                sqlx::query(
                    "update users set \
                         full_name = case when $2 = 'full_name' then $3 #>> '{}' else full_name end, \
                         role = case when $2 = 'role' then $3 #>> '{}' else role end, \
                         is_active = case when $2 = 'is_active' then ($3 #>> '{}')::boolean else is_active end, \
                         mfa_enabled = case when $2 = 'mfa_enabled' then ($3 #>> '{}')::boolean else mfa_enabled end, \
                         password_hash = case when $2 = 'password_hash' then $3 #>> '{}' else password_hash end, \
                         updated_at = $4, event_position = $5 \
                     where id = $1 and event_position < $5",
                )
                .bind(id)
                .bind(column)
                .bind(value)
                .bind(event.recorded_at)
                .bind(event.global_position)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}
