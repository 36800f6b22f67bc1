//! The session aggregate: one refresh-token family (SPEC section 2,
//! DESIGN D5).
//!
//! The single-use rule lives here, not in a read model: a rotation appends
//! at the aggregate's next sequence, so of two concurrent rotations of one
//! token exactly one commits (the other gets `AggregateConflict`). Presenting
//! a token this session already consumed is reuse: the session records it
//! and revokes itself, and the caller still answers 401.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use sentryops_events::session::{RevocationReason, SessionEvent, AGGREGATE_TYPE};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a rotation decided, read from the events it appended (a command
/// that appends events cannot also return an error): see
/// [`RotationOutcome::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationOutcome {
    /// The presented token was current; a new one replaces it.
    Rotated { user_id: Uuid },
    /// The presented token was already consumed: the session is revoked.
    ReuseDetected,
    /// The presented token was consumed by a rotation whose request
    /// arrived within the reuse grace of this one (two tabs refreshing at
    /// once): refused, and nothing recorded (ADR 0003).
    RaceLost,
}

impl RotationOutcome {
    /// The outcome of an accepted rotation of the session `session`
    /// (its state after the command), from the events it appended: a new
    /// token, reuse, or nothing at all (a lost race).
    pub fn of(session: &Session, appended: &[SessionEvent]) -> RotationOutcome {
        let rotated = appended
            .iter()
            .any(|event| matches!(event, SessionEvent::RefreshTokenRotated { .. }));
        match (rotated, session.user_id) {
            (true, Some(user_id)) => RotationOutcome::Rotated { user_id },
            _ if appended.is_empty() => RotationOutcome::RaceLost,
            _ => RotationOutcome::ReuseDetected,
        }
    }
}

/// Commands on a session.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    StartSession {
        session_id: Uuid,
        user_id: Uuid,
        token_id: Uuid,
        token_hash: String,
        expires_at: OffsetDateTime,
    },
    RotateRefreshToken {
        presented_token_id: Uuid,
        presented_hash: String,
        token_id: Uuid,
        token_hash: String,
        expires_at: OffsetDateTime,
        /// When the request arrived.
        now: OffsetDateTime,
        /// How long after a rotation its consumed token is a lost race
        /// rather than reuse (`REFRESH_REUSE_GRACE_SECONDS`).
        reuse_grace: time::Duration,
    },
    /// Ends the session. With `proof` (a logout), only a holder of one of
    /// the session's refresh tokens may end it; otherwise nothing happens.
    RevokeSession {
        reason: RevocationReason,
        proof: Option<(Uuid, String)>,
    },
}

/// Why a session command was refused. The API answers all with 401.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session exists already")]
    AlreadyStarted,
    #[error("no such session")]
    NotFound,
    #[error("the session is revoked or expired")]
    Inactive,
    #[error("the refresh token is not this session's")]
    InvalidToken,
}

/// The session's state: the current token, the consumed ones, the end.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Session {
    user_id: Option<Uuid>,
    current: Option<(Uuid, String)>,
    consumed: Vec<(Uuid, String)>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    revoked: bool,
    /// When the request of the newest rotation arrived (unknown for 1.0
    /// rotations).
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_rotated_at: Option<OffsetDateTime>,
}

fn same(token: &(Uuid, String), id: Uuid, hash: &str) -> bool {
    token.0 == id && bool::from(token.1.as_bytes().ct_eq(hash.as_bytes()))
}

impl Session {
    /// Whether `(id, hash)` is one of this session's refresh tokens,
    /// current or consumed: a token that is not was never issued by us.
    pub fn issued(&self, id: Uuid, hash: &str) -> bool {
        self.current
            .iter()
            .chain(self.consumed.iter())
            .any(|token| same(token, id, hash))
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            SessionCommand::StartSession {
                session_id,
                user_id,
                token_id,
                token_hash,
                expires_at,
            } => {
                if self.user_id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                sink.write(
                    SessionEvent::SessionStarted {
                        session_id,
                        user_id,
                        token_id,
                        token_hash,
                        expires_at,
                    },
                    self,
                )
                .await;
                Ok(())
            }
            SessionCommand::RotateRefreshToken {
                presented_token_id,
                presented_hash,
                token_id,
                token_hash,
                expires_at,
                now,
                reuse_grace,
            } => {
                if self.user_id.is_none() {
                    return Err(SessionError::NotFound);
                }
                if self.revoked || self.expires_at.is_none_or(|at| at <= now) {
                    return Err(SessionError::Inactive);
                }
                if self
                    .current
                    .as_ref()
                    .is_some_and(|current| same(current, presented_token_id, &presented_hash))
                {
                    sink.write(
                        SessionEvent::RefreshTokenRotated {
                            consumed_token_id: presented_token_id,
                            token_id,
                            token_hash,
                            expires_at,
                            rotated_at: Some(now),
                        },
                        self,
                    )
                    .await;
                    return Ok(());
                }
                // The token the newest rotation consumed, presented by a
                // request that arrived at most `reuse_grace` after that
                // rotation's, or as much before it (it loaded the session
                // late): the loser of a race, not a replay. Bounded both
                // ways, so a replica whose clock lags cannot stretch it.
                // Older tokens get no grace.
                let lost_race = self
                    .consumed
                    .last()
                    .is_some_and(|last| same(last, presented_token_id, &presented_hash))
                    && self.last_rotated_at.is_some_and(|rotated_at| {
                        let apart = now - rotated_at;
                        -reuse_grace <= apart && apart <= reuse_grace
                    });
                if lost_race {
                    return Ok(());
                }
                if self
                    .consumed
                    .iter()
                    .any(|consumed| same(consumed, presented_token_id, &presented_hash))
                {
                    sink.write(
                        SessionEvent::RefreshTokenReuseDetected {
                            token_id: presented_token_id,
                        },
                        self,
                    )
                    .await;
                    sink.write(
                        SessionEvent::SessionRevoked {
                            reason: RevocationReason::RefreshTokenReuse,
                        },
                        self,
                    )
                    .await;
                    return Ok(());
                }
                Err(SessionError::InvalidToken)
            }
            SessionCommand::RevokeSession { reason, proof } => {
                if self.user_id.is_none() {
                    return Err(SessionError::NotFound);
                }
                let proven = proof.is_none_or(|(id, hash)| {
                    self.current
                        .iter()
                        .chain(self.consumed.iter())
                        .any(|token| same(token, id, &hash))
                });
                if !self.revoked && proven {
                    sink.write(SessionEvent::SessionRevoked { reason }, self)
                        .await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SessionEvent::SessionStarted {
                user_id,
                token_id,
                token_hash,
                expires_at,
                ..
            } => {
                self.user_id = Some(user_id);
                self.current = Some((token_id, token_hash));
                self.expires_at = Some(expires_at);
            }
            SessionEvent::RefreshTokenRotated {
                token_id,
                token_hash,
                expires_at,
                rotated_at,
                ..
            } => {
                self.last_rotated_at = rotated_at;
                if let Some(previous) = self.current.replace((token_id, token_hash)) {
                    self.consumed.push(previous);
                }
                self.expires_at = Some(expires_at);
            }
            SessionEvent::RefreshTokenReuseDetected { .. } => {}
            SessionEvent::SessionRevoked { .. } => {
                self.revoked = true;
                if let Some(current) = self.current.take() {
                    self.consumed.push(current);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    const USER: Uuid = Uuid::from_u128(7);
    const SESSION: Uuid = Uuid::from_u128(9);
    const FIRST: Uuid = Uuid::from_u128(1);
    const SECOND: Uuid = Uuid::from_u128(2);

    fn far() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::days(14)
    }

    fn started() -> SessionEvent {
        SessionEvent::SessionStarted {
            session_id: SESSION,
            user_id: USER,
            token_id: FIRST,
            token_hash: "hash-1".into(),
            expires_at: far(),
        }
    }

    /// When the rotation of [`rotated`] happened.
    fn rotation_time() -> OffsetDateTime {
        time::macros::datetime!(2026-12-03 12:00 UTC)
    }

    fn rotated() -> SessionEvent {
        SessionEvent::RefreshTokenRotated {
            consumed_token_id: FIRST,
            token_id: SECOND,
            token_hash: "hash-2".into(),
            expires_at: far(),
            rotated_at: Some(rotation_time()),
        }
    }

    /// The session folded from `events`.
    fn session_of(events: &[SessionEvent]) -> Session {
        let mut session = Session::default();
        for event in events {
            session.apply(event.clone());
        }
        session
    }

    const GRACE: time::Duration = time::Duration::seconds(2);

    /// A rotation request arriving `after` the rotation of [`rotated`].
    fn rotate_at(id: Uuid, hash: &str, after: time::Duration) -> SessionCommand {
        SessionCommand::RotateRefreshToken {
            presented_token_id: id,
            presented_hash: hash.into(),
            token_id: Uuid::from_u128(3),
            token_hash: "hash-3".into(),
            expires_at: far(),
            now: rotation_time() + after,
            reuse_grace: GRACE,
        }
    }

    /// What presenting [`FIRST`] again records once it is reuse.
    fn reuse_of_first() -> Vec<SessionEvent> {
        vec![
            SessionEvent::RefreshTokenReuseDetected { token_id: FIRST },
            SessionEvent::SessionRevoked {
                reason: RevocationReason::RefreshTokenReuse,
            },
        ]
    }

    /// A rotation request well past any grace.
    fn rotate(id: Uuid, hash: &str) -> SessionCommand {
        rotate_at(id, hash, time::Duration::minutes(5))
    }

    #[test]
    fn given_a_rotation_when_its_token_comes_again_within_the_grace_then_refused_without_revoking()
    {
        for after in [
            time::Duration::seconds(-1),
            time::Duration::ZERO,
            time::Duration::seconds(2),
        ] {
            TestFramework::<Session>::with(())
                .given(vec![started(), rotated()])
                .when(rotate_at(FIRST, "hash-1", after))
                .then_expect_events(vec![]);
            let outcome = RotationOutcome::of(&session_of(&[started(), rotated()]), &[]);
            assert_eq!(outcome, RotationOutcome::RaceLost, "{after}");
        }
    }

    #[test]
    fn given_a_rotation_when_its_token_comes_again_after_the_grace_then_reuse_revokes() {
        TestFramework::<Session>::with(())
            .given(vec![started(), rotated()])
            .when(rotate_at(
                FIRST,
                "hash-1",
                GRACE + time::Duration::milliseconds(1),
            ))
            .then_expect_events(reuse_of_first());
        assert_eq!(
            RotationOutcome::of(&session_of(&reuse_of_first()), &reuse_of_first()),
            RotationOutcome::ReuseDetected
        );
    }

    #[test]
    fn given_two_rotations_when_the_older_token_comes_within_the_grace_then_reuse_revokes() {
        let second_rotation = SessionEvent::RefreshTokenRotated {
            consumed_token_id: SECOND,
            token_id: Uuid::from_u128(4),
            token_hash: "hash-4".into(),
            expires_at: far(),
            rotated_at: Some(rotation_time()),
        };
        TestFramework::<Session>::with(())
            .given(vec![started(), rotated(), second_rotation])
            .when(rotate_at(FIRST, "hash-1", time::Duration::ZERO))
            .then_expect_events(reuse_of_first());
    }

    #[test]
    fn given_a_version_1_0_rotation_when_its_token_comes_again_then_reuse_revokes() {
        let old_rotation = SessionEvent::RefreshTokenRotated {
            consumed_token_id: FIRST,
            token_id: SECOND,
            token_hash: "hash-2".into(),
            expires_at: far(),
            rotated_at: None,
        };
        TestFramework::<Session>::with(())
            .given(vec![started(), old_rotation])
            .when(rotate_at(FIRST, "hash-1", time::Duration::ZERO))
            .then_expect_events(reuse_of_first());
    }

    #[test]
    fn given_a_session_when_presenting_the_current_token_then_rotated() {
        let events = TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(rotate(FIRST, "hash-1"))
            .inspect_result()
            .expect("accepted");
        assert!(matches!(
            events.as_slice(),
            [SessionEvent::RefreshTokenRotated { consumed_token_id, .. }] if *consumed_token_id == FIRST
        ));
        let mut history = vec![started()];
        history.extend(events.iter().cloned());
        assert_eq!(
            RotationOutcome::of(&session_of(&history), &events),
            RotationOutcome::Rotated { user_id: USER }
        );
    }

    #[test]
    fn given_a_rotation_when_presenting_the_consumed_token_then_reuse_revokes() {
        TestFramework::<Session>::with(())
            .given(vec![started(), rotated()])
            .when(rotate(FIRST, "hash-1"))
            .then_expect_events(reuse_of_first());
        assert_eq!(
            RotationOutcome::of(&session_of(&reuse_of_first()), &reuse_of_first()),
            RotationOutcome::ReuseDetected
        );
    }

    #[test]
    fn given_a_revoked_session_when_rotating_then_inactive() {
        TestFramework::<Session>::with(())
            .given(vec![
                started(),
                SessionEvent::SessionRevoked {
                    reason: RevocationReason::Logout,
                },
            ])
            .when(rotate(FIRST, "hash-1"))
            .then_expect_error(SessionError::Inactive);
    }

    #[test]
    fn given_a_session_when_presenting_a_forged_token_then_invalid_and_nothing_recorded() {
        TestFramework::<Session>::with(())
            .given(vec![started(), rotated()])
            .when(rotate(FIRST, "not-the-hash"))
            .then_expect_error(SessionError::InvalidToken);
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(rotate(SECOND, "hash-2"))
            .then_expect_error(SessionError::InvalidToken);
    }

    #[test]
    fn given_an_expired_session_when_rotating_then_inactive() {
        let expired = SessionEvent::SessionStarted {
            session_id: SESSION,
            user_id: USER,
            token_id: FIRST,
            token_hash: "hash-1".into(),
            expires_at: rotation_time() - time::Duration::seconds(1),
        };
        TestFramework::<Session>::with(())
            .given(vec![expired])
            .when(rotate(FIRST, "hash-1"))
            .then_expect_error(SessionError::Inactive);
    }

    #[test]
    fn a_logout_needs_one_of_the_sessions_tokens() {
        let logout = |id: Uuid, hash: &str| SessionCommand::RevokeSession {
            reason: RevocationReason::Logout,
            proof: Some((id, hash.into())),
        };
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(logout(FIRST, "forged"))
            .then_expect_events(vec![]);
        TestFramework::<Session>::with(())
            .given(vec![started(), rotated()])
            .when(logout(FIRST, "hash-1"))
            .then_expect_events(vec![SessionEvent::SessionRevoked {
                reason: RevocationReason::Logout,
            }]);
    }

    #[test]
    fn revoking_is_idempotent() {
        let revoke = || SessionCommand::RevokeSession {
            reason: RevocationReason::Logout,
            proof: None,
        };
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(revoke())
            .then_expect_events(vec![SessionEvent::SessionRevoked {
                reason: RevocationReason::Logout,
            }]);
        TestFramework::<Session>::with(())
            .given(vec![
                started(),
                SessionEvent::SessionRevoked {
                    reason: RevocationReason::Logout,
                },
            ])
            .when(revoke())
            .then_expect_events(vec![]);
    }
}
