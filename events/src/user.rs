//! Events of the user aggregate (SPEC section 2).
//!
//! Only registration exists so far; login, sessions and profile changes come
//! with the identity issue. The password hash travels in the event (the log is
//! the source of truth for credentials) and is redacted wherever events leave
//! the service: see [`crate::audit`] and the event export.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The aggregate type string of users in the event store.
pub const AGGREGATE_TYPE: &str = "user";

/// A user's role. `viewer < operator < admin`; `auditor` reads everything,
/// including the raw event log, and mutates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Auditor,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Auditor];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

/// Everything that can happen to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEvent {
    /// A user account was created.
    UserRegistered {
        user_id: Uuid,
        email: String,
        full_name: String,
        role: Role,
        /// PHC-format Argon2id hash. Never the password.
        password_hash: String,
        mfa_enabled: bool,
        #[serde(with = "time::serde::rfc3339")]
        registered_at: OffsetDateTime,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered".into(),
        }
    }

    fn event_version(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "1.0".into(),
        }
    }
}
