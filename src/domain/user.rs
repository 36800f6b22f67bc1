//! The user aggregate. Registration only, for now; login and sessions come
//! with the identity issue (SPEC section 2).
//!
//! A user's aggregate id is derived from the normalized email, so "one
//! account per email" holds under concurrency through the event store's
//! optimistic concurrency, not through a read model that can be stale.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use sentryops_events::user::{LoginFailure, Role, UserEvent, AGGREGATE_TYPE};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Namespace of user ids (UUIDv5 over the normalized email).
const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x9b1f_36c4_7e0a_4d52_b8e1_2c6f_5a09_d3e7);

/// A syntactically valid, normalized email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims and lowercases; refuses what cannot be an address.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(email.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(email))
        } else {
            Err("must be a valid email address")
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the user registered with this email.
    pub fn user_id(&self) -> Uuid {
        Uuid::new_v5(&USER_ID_NAMESPACE, self.0.as_bytes())
    }
}

/// A display name: 1 to 200 characters once trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    /// Trims; refuses empty or over-long names and, like every name of the
    /// service, control and bidi override characters ([`super::text`]).
    pub fn parse(raw: &str) -> Result<Self, super::text::TextError> {
        super::text::DisplayText::parse(raw, 200, super::text::TextKind::Name)
            .map(|name| Self(name.into_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Commands on a user.
#[derive(Debug, Clone)]
pub enum UserCommand {
    /// Changes any of the profile fields; unchanged fields append nothing.
    UpdateUser {
        full_name: Option<FullName>,
        is_active: Option<bool>,
        mfa_enabled: Option<bool>,
    },
    /// Gives the user another role.
    ChangeRole { role: Role },
    /// Soft-deactivates the account (idempotent).
    DeactivateUser,
    /// Sets a new password (already hashed).
    ChangePassword { password_hash: String },
    /// Records a successful login, upgrading the stored hash if given.
    RecordLoginSuccess { rehashed: Option<String> },
    /// Records a failed login; allowed on an email no user has.
    RecordLoginFailure { reason: LoginFailure },
    /// Creates the account. The password arrives already hashed: hashing is
    /// slow and belongs on the blocking pool, not in the aggregate.
    RegisterUser {
        email: Email,
        full_name: FullName,
        role: Role,
        password_hash: String,
        mfa_enabled: bool,
    },
}

/// Why a user command was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error("user")]
    NotFound,
    /// A login of a deactivated account: its password matched, but it may
    /// not start a session (the read model the login checked was behind a
    /// deactivation).
    #[error("the account is deactivated")]
    Inactive,
}

/// The events that change nothing in a [`User`]: recording a login skips
/// them when it folds the stream (ADR 0002), and a partial index
/// (migration 0009) leaves them out. `apply` must keep ignoring them; a
/// test says so.
pub const STATE_NEUTRAL_EVENTS: [&str; 2] = ["LoginSucceeded", "LoginFailed"];

/// The user aggregate's state: only what its decisions need.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    user_id: Option<Uuid>,
    role: Option<Role>,
    full_name: String,
    is_active: bool,
    mfa_enabled: bool,
}

impl User {
    fn require_registered(&self) -> Result<(), UserError> {
        match self.user_id {
            Some(_) => Ok(()),
            None => Err(UserError::NotFound),
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            UserCommand::RegisterUser {
                email,
                full_name,
                role,
                password_hash,
                mfa_enabled,
            } => {
                if self.user_id.is_some() {
                    return Err(UserError::EmailTaken);
                }
                let event = UserEvent::UserRegistered {
                    user_id: email.user_id(),
                    email: email.as_str().to_string(),
                    full_name: full_name.as_str().to_string(),
                    role,
                    password_hash,
                    mfa_enabled,
                    registered_at: OffsetDateTime::now_utc(),
                };
                sink.write(event, self).await;
                Ok(())
            }
            UserCommand::UpdateUser {
                full_name,
                is_active,
                mfa_enabled,
            } => {
                self.require_registered()?;
                let mut events = Vec::new();
                if let Some(full_name) = full_name.filter(|name| name.as_str() != self.full_name) {
                    events.push(UserEvent::UserProfileUpdated {
                        full_name_before: self.full_name.clone(),
                        full_name: full_name.as_str().to_string(),
                    });
                }
                match is_active {
                    Some(true) if !self.is_active => events.push(UserEvent::UserReactivated),
                    Some(false) if self.is_active => events.push(UserEvent::UserDeactivated),
                    _ => {}
                }
                if let Some(mfa_enabled) =
                    mfa_enabled.filter(|&enabled| enabled != self.mfa_enabled)
                {
                    events.push(UserEvent::UserMfaChanged { mfa_enabled });
                }
                for event in events {
                    sink.write(event, self).await;
                }
                Ok(())
            }
            UserCommand::ChangeRole { role } => {
                self.require_registered()?;
                if let Some(from) = self.role.filter(|&current| current != role) {
                    sink.write(UserEvent::UserRoleChanged { from, to: role }, self)
                        .await;
                }
                Ok(())
            }
            UserCommand::RecordLoginSuccess { rehashed } => {
                self.require_registered()?;
                if !self.is_active {
                    return Err(UserError::Inactive);
                }
                sink.write(UserEvent::LoginSucceeded, self).await;
                if let Some(password_hash) = rehashed {
                    sink.write(UserEvent::PasswordRehashed { password_hash }, self)
                        .await;
                }
                Ok(())
            }
            UserCommand::ChangePassword { password_hash } => {
                self.require_registered()?;
                sink.write(UserEvent::PasswordChanged { password_hash }, self)
                    .await;
                Ok(())
            }
            UserCommand::RecordLoginFailure { reason } => {
                sink.write(UserEvent::LoginFailed { reason }, self).await;
                Ok(())
            }
            UserCommand::DeactivateUser => {
                self.require_registered()?;
                if self.is_active {
                    sink.write(UserEvent::UserDeactivated, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                role,
                full_name,
                mfa_enabled,
                ..
            } => {
                self.user_id = Some(user_id);
                self.role = Some(role);
                self.full_name = full_name;
                self.is_active = true;
                self.mfa_enabled = mfa_enabled;
            }
            UserEvent::UserProfileUpdated { full_name, .. } => self.full_name = full_name,
            UserEvent::UserRoleChanged { to, .. } => self.role = Some(to),
            UserEvent::UserDeactivated => self.is_active = false,
            UserEvent::UserReactivated => self.is_active = true,
            UserEvent::UserMfaChanged { mfa_enabled } => self.mfa_enabled = mfa_enabled,
            UserEvent::PasswordChanged { .. }
            | UserEvent::PasswordRehashed { .. }
            | UserEvent::LoginSucceeded
            | UserEvent::LoginFailed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;

    fn register(email: &str) -> UserCommand {
        UserCommand::RegisterUser {
            email: Email::parse(email).expect("valid"),
            full_name: FullName::parse("Ada Lovelace").expect("valid"),
            role: Role::Operator,
            password_hash: "$argon2id$hash".into(),
            mfa_enabled: true,
        }
    }

    fn registered(email: &str) -> UserEvent {
        let email = Email::parse(email).expect("valid");
        UserEvent::UserRegistered {
            user_id: email.user_id(),
            email: email.as_str().into(),
            full_name: "Ada Lovelace".into(),
            role: Role::Operator,
            password_hash: "$argon2id$hash".into(),
            mfa_enabled: true,
            registered_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn given_nothing_when_registering_then_the_user_is_registered() {
        let events = TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(register("Ada@Example.com "))
            .inspect_result()
            .expect("accepted");
        let [UserEvent::UserRegistered {
            user_id,
            email,
            role,
            mfa_enabled,
            ..
        }] = events.as_slice()
        else {
            panic!("expected one UserRegistered, got {events:?}");
        };
        assert_eq!(email, "ada@example.com");
        assert_eq!(
            *user_id,
            Email::parse("ada@example.com").expect("valid").user_id()
        );
        assert_eq!(*role, Role::Operator);
        assert!(*mfa_enabled);
    }

    #[test]
    fn given_a_registered_user_when_registering_again_then_email_taken() {
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(register("ada@example.com"))
            .then_expect_error(UserError::EmailTaken);
    }

    #[test]
    fn given_a_user_when_updating_then_only_changed_fields_are_events() {
        let events = TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::UpdateUser {
                full_name: Some(FullName::parse("Ada King").expect("valid")),
                is_active: Some(false),
                mfa_enabled: Some(true),
            })
            .inspect_result()
            .expect("accepted");
        assert_eq!(
            events,
            vec![
                UserEvent::UserProfileUpdated {
                    full_name_before: "Ada Lovelace".into(),
                    full_name: "Ada King".into(),
                },
                UserEvent::UserDeactivated,
            ],
            "mfa was already on: no event for it"
        );
    }

    #[test]
    fn given_a_user_when_updating_nothing_then_no_event() {
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::UpdateUser {
                full_name: Some(FullName::parse("Ada Lovelace").expect("valid")),
                is_active: Some(true),
                mfa_enabled: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_an_inactive_user_when_reactivating_then_reactivated() {
        TestFramework::<User>::with(())
            .given(vec![
                registered("ada@example.com"),
                UserEvent::UserDeactivated,
            ])
            .when(UserCommand::UpdateUser {
                full_name: None,
                is_active: Some(true),
                mfa_enabled: Some(false),
            })
            .then_expect_events(vec![
                UserEvent::UserReactivated,
                UserEvent::UserMfaChanged { mfa_enabled: false },
            ]);
    }

    #[test]
    fn given_a_user_when_changing_role_then_role_changed_once() {
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::ChangeRole { role: Role::Admin })
            .then_expect_events(vec![UserEvent::UserRoleChanged {
                from: Role::Operator,
                to: Role::Admin,
            }]);
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::ChangeRole {
                role: Role::Operator,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_a_user_when_deactivating_twice_then_one_event() {
        TestFramework::<User>::with(())
            .given(vec![
                registered("ada@example.com"),
                UserEvent::UserDeactivated,
            ])
            .when(UserCommand::DeactivateUser)
            .then_expect_events(vec![]);
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::DeactivateUser)
            .then_expect_events(vec![UserEvent::UserDeactivated]);
    }

    #[test]
    fn given_no_user_when_changing_it_then_not_found() {
        for command in [
            UserCommand::DeactivateUser,
            UserCommand::ChangeRole { role: Role::Admin },
            UserCommand::UpdateUser {
                full_name: None,
                is_active: Some(false),
                mfa_enabled: None,
            },
        ] {
            TestFramework::<User>::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(UserError::NotFound);
        }
    }

    #[test]
    fn given_no_user_when_a_login_fails_then_it_is_recorded_without_a_user() {
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(UserCommand::RecordLoginFailure {
                reason: LoginFailure::UnknownEmail,
            })
            .then_expect_events(vec![UserEvent::LoginFailed {
                reason: LoginFailure::UnknownEmail,
            }]);
        // The email can still be registered afterwards.
        TestFramework::<User>::with(())
            .given(vec![UserEvent::LoginFailed {
                reason: LoginFailure::UnknownEmail,
            }])
            .when(register("ada@example.com"))
            .inspect_result()
            .expect("registration still possible");
    }

    #[test]
    fn given_a_user_when_a_login_succeeds_with_an_old_hash_then_rehashed() {
        TestFramework::<User>::with(())
            .given(vec![registered("ada@example.com")])
            .when(UserCommand::RecordLoginSuccess {
                rehashed: Some("$argon2id$new".into()),
            })
            .then_expect_events(vec![
                UserEvent::LoginSucceeded,
                UserEvent::PasswordRehashed {
                    password_hash: "$argon2id$new".into(),
                },
            ]);
    }

    #[test]
    fn given_a_deactivated_user_when_a_login_succeeds_then_it_is_refused() {
        TestFramework::<User>::with(())
            .given(vec![
                registered("ada@example.com"),
                UserEvent::UserDeactivated,
            ])
            .when(UserCommand::RecordLoginSuccess { rehashed: None })
            .then_expect_error(UserError::Inactive);
    }

    #[test]
    fn emails_are_normalized_and_validated() {
        assert_eq!(Email::parse(" A@B.io ").expect("valid").as_str(), "a@b.io");
        for bad in ["", "a", "a@b", "@b.io", "a b@c.io", "a@b.io.", "a@@b.io"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn full_names_are_bounded() {
        assert!(FullName::parse("  ").is_err());
        assert!(FullName::parse(&"x".repeat(201)).is_err());
        assert_eq!(FullName::parse(" Ada ").expect("valid").as_str(), "Ada");
    }

    #[test]
    fn given_a_user_when_logins_are_applied_then_nothing_changes() {
        let mut user = User::default();
        user.apply(UserEvent::UserRegistered {
            user_id: Uuid::nil(),
            email: "a@b.example".into(),
            full_name: "A".into(),
            role: Role::Operator,
            password_hash: String::new(),
            mfa_enabled: true,
            registered_at: time::OffsetDateTime::UNIX_EPOCH,
        });
        let before = serde_json::to_value(&user).expect("serializes");
        let neutral = [
            UserEvent::LoginSucceeded,
            UserEvent::LoginFailed {
                reason: LoginFailure::WrongPassword,
            },
        ];
        for event in neutral {
            assert!(STATE_NEUTRAL_EVENTS.contains(&event.event_type().as_str()));
            user.apply(event);
        }
        assert_eq!(serde_json::to_value(&user).expect("serializes"), before);
    }
}
