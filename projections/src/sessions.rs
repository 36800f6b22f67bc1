//! `sessions`: open and revoked sessions, read on every authenticated
//! request.

use async_trait::async_trait;
use sentryops_events::session::{SessionEvent, AGGREGATE_TYPE};
use sqlx::PgConnection;

use crate::projection::Projection;
use crate::store::StoredEvent;

/// The projection's name (its checkpoint row and advisory lock).
pub const NAME: &str = "sessions";

/// The sessions projection.
pub struct SessionsProjection;

#[async_trait]
impl Projection for SessionsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sessions"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events.iter().filter(|e| e.aggregate_type == AGGREGATE_TYPE) {
            let id = uuid::Uuid::parse_str(&event.aggregate_id)?;
            match event.decode::<SessionEvent>()? {
                SessionEvent::SessionStarted {
                    user_id,
                    expires_at,
                    ..
                } => {
                    sqlx::query(
                        "insert into sessions (id, user_id, created_at, refresh_expires_at, event_position) \
                         values ($1, $2, $3, $4, $5) on conflict (id) do nothing",
                    )
                    .bind(id)
                    .bind(user_id)
                    .bind(event.recorded_at)
                    .bind(expires_at)
                    .bind(event.global_position)
                    .execute(&mut *conn)
                    .await?;
                }
                SessionEvent::RefreshTokenRotated { expires_at, .. } => {
                    sqlx::query(
                        "update sessions set refresh_expires_at = $2, last_rotated_at = $3, event_position = $4 \
                         where id = $1 and event_position < $4",
                    )
                    .bind(id)
                    .bind(expires_at)
                    .bind(event.recorded_at)
                    .bind(event.global_position)
                    .execute(&mut *conn)
                    .await?;
                }
                SessionEvent::RefreshTokenReuseDetected { .. } => {}
                SessionEvent::SessionRevoked { reason } => {
                    sqlx::query(
                        "update sessions set revoked_at = $2, revoked_reason = $3, event_position = $4 \
                         where id = $1 and event_position < $4",
                    )
                    .bind(id)
                    .bind(event.recorded_at)
                    .bind(serde_json::to_value(reason)?.as_str().unwrap_or("unknown").to_string())
                    .bind(event.global_position)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}
