//! Events of the session aggregate: one session per refresh-token family
//! (SPEC section 2, DESIGN D5).
//!
//! Refresh tokens are never stored: events carry a token id and the
//! SHA-256 of the token's 256-bit random secret (redacted on export anyway).

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    RefreshTokenRotated {
        consumed_token_id: Uuid,
        token_id: Uuid,
        token_hash: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
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
        "1.0".into()
    }
}
