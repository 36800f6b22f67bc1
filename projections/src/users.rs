//! `users`: the identity read model (one row per user).

use async_trait::async_trait;
use sentryops_events::user::{UserEvent, AGGREGATE_TYPE};
use serde::Deserialize;
use sqlx::PgConnection;

use crate::projection::Projection;
use crate::store::StoredEvent;

/// The users projection.
pub struct UsersProjection;

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events.iter().filter(|e| e.aggregate_type == AGGREGATE_TYPE) {
            let user_event = UserEvent::deserialize(&event.payload)?;
            match user_event {
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
                }
            }
        }
        Ok(())
    }
}
