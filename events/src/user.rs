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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
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
    /// The display name changed.
    UserProfileUpdated {
        full_name_before: String,
        full_name: String,
    },
    /// The role changed.
    UserRoleChanged { from: Role, to: Role },
    /// The account was deactivated: it can no longer log in, and its
    /// sessions are revoked.
    UserDeactivated,
    /// The account was reactivated.
    UserReactivated,
    /// Multi-factor authentication was switched on or off.
    UserMfaChanged { mfa_enabled: bool },
    /// The user (or an admin) set a new password.
    PasswordChanged { password_hash: String },
    /// The stored hash was upgraded to the current parameters on login.
    PasswordRehashed { password_hash: String },
    /// A login succeeded (ip, user agent and request id are in the metadata).
    LoginSucceeded,
    /// A login failed. Recorded on the aggregate of the presented email even
    /// when no user has it; that creates no user.
    LoginFailed { reason: LoginFailure },
}

/// Why a login failed. Never shown to the caller (all answer the same 401),
/// only recorded for auditors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    UnknownEmail,
    WrongPassword,
    Inactive,
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::UserProfileUpdated { .. } => "UserProfileUpdated",
            UserEvent::UserRoleChanged { .. } => "UserRoleChanged",
            UserEvent::UserDeactivated => "UserDeactivated",
            UserEvent::UserReactivated => "UserReactivated",
            UserEvent::UserMfaChanged { .. } => "UserMfaChanged",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
            UserEvent::PasswordRehashed { .. } => "PasswordRehashed",
            UserEvent::LoginSucceeded => "LoginSucceeded",
            UserEvent::LoginFailed { .. } => "LoginFailed",
        }
        .into()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(AGGREGATE_TYPE, &self.event_type())
    }
}

impl crate::decode::LogEvent for UserEvent {
    const AGGREGATE_TYPE: &'static str = AGGREGATE_TYPE;
}
