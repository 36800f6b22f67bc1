//! Events of the session aggregate: one session per refresh-token family
//! (SPEC section 2, DESIGN D5).
//!
//! Refresh tokens are never stored: events carry a token id and the
//! SHA-256 of the token's 256-bit random secret (redacted on export anyway).

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The aggregate type string of sessions in the event store.
pub const AGGREGATE_TYPE: &str = "session";

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Logout,
    RevokedByUser,
    RevokedByAdmin,
    UserDeactivated,
    PasswordChanged,
    RefreshTokenReuse,
}

/// Everything that can happen to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum SessionEvent {
    /// A login opened the session with its first refresh token.
    SessionStarted {
        session_id: Uuid,
        user_id: Uuid,
        token_id: Uuid,
        token_hash: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The current refresh token was consumed and a new one issued.
    ///
    /// Version 1.1 adds `rotated_at`, the moment the rotating request
    /// arrived: a request presenting the consumed token that arrived
    /// within the reuse grace of it lost a race (two tabs refreshing at
    /// once) and is not reuse (ADR 0003). A 1.0 event reads with `None`,
    /// which no grace covers: it reads exactly as it did.
    RefreshTokenRotated {
        consumed_token_id: Uuid,
        token_id: Uuid,
        token_hash: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339::option")]
        rotated_at: Option<OffsetDateTime>,
    },
    /// An already-consumed refresh token was presented again (RFC 9700):
    /// the family is compromised; `SessionRevoked` follows.
    RefreshTokenReuseDetected { token_id: Uuid },
    /// The session ended; its tokens are refused from now on.
    SessionRevoked { reason: RevocationReason },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::RefreshTokenRotated { .. } => "RefreshTokenRotated",
            SessionEvent::RefreshTokenReuseDetected { .. } => "RefreshTokenReuseDetected",
            SessionEvent::SessionRevoked { .. } => "SessionRevoked",
        }
        .into()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(AGGREGATE_TYPE, &self.event_type())
    }
}

impl crate::decode::LogEvent for SessionEvent {
    const AGGREGATE_TYPE: &'static str = AGGREGATE_TYPE;
}

/// `RefreshTokenRotated` 1.0 → 1.1: a rotation recorded before
/// `rotated_at` existed has no time (`null`), which no reuse grace covers.
pub(crate) fn rotation_1_0_to_1_1(mut payload: Value) -> Result<Value, String> {
    let body = payload
        .get_mut("RefreshTokenRotated")
        .and_then(Value::as_object_mut)
        .ok_or("no RefreshTokenRotated object")?;
    if body.insert("rotated_at".into(), Value::Null).is_some() {
        return Err("a 1.0 rotation has no rotated_at".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1.0 rotation, as stored before `rotated_at` existed, still reads.
    #[test]
    fn a_stored_version_1_0_rotation_reads_without_its_time() {
        let stored = serde_json::json!({"RefreshTokenRotated": {
            "consumed_token_id": Uuid::from_u128(1),
            "token_id": Uuid::from_u128(2),
            "token_hash": "h",
            "expires_at": "2030-01-01T00:00:00Z",
        }});
        let event: SessionEvent =
            crate::decode::decode("RefreshTokenRotated", "1.0", &stored.to_string())
                .expect("1.0 reads");
        assert!(matches!(
            event,
            SessionEvent::RefreshTokenRotated {
                rotated_at: None,
                ..
            }
        ));
        assert_eq!(event.event_version(), "1.1");
    }
}
