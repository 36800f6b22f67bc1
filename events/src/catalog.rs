//! The pinned list of every event type and version this build writes.
//!
//! A golden test compares it with a literal copy, and another test checks
//! that every variant's `event_type`/`event_version` is listed: renaming an
//! event or bumping a version without an upcaster fails CI.

/// `(aggregate_type, event_type, event_version)` of every event written today.
pub const EVENT_CATALOG: &[(&str, &str, &str)] = &[
    ("user", "UserRegistered", "1.0"),
    ("user", "UserProfileUpdated", "1.0"),
    ("user", "UserRoleChanged", "1.0"),
    ("user", "UserDeactivated", "1.0"),
    ("user", "UserReactivated", "1.0"),
    ("user", "UserMfaChanged", "1.0"),
    ("user", "PasswordChanged", "1.0"),
    ("user", "PasswordRehashed", "1.0"),
    ("user", "LoginSucceeded", "1.0"),
    ("user", "LoginFailed", "1.0"),
    ("session", "SessionStarted", "1.0"),
    ("session", "RefreshTokenRotated", "1.1"),
    ("session", "RefreshTokenReuseDetected", "1.0"),
    ("session", "SessionRevoked", "1.0"),
    ("asset", "AssetRegistered", "1.0"),
    ("asset", "AssetUpdated", "1.0"),
    ("asset", "AssetLifecycleChanged", "1.0"),
    ("asset", "AssetDeleted", "1.0"),
    ("asset", "AssetTagged", "1.0"),
    ("asset", "AssetUntagged", "1.0"),
    ("asset", "AssetCheckedOut", "1.0"),
    ("asset", "AssetCheckedIn", "1.0"),
    ("tag", "TagCreated", "1.0"),
    ("tag", "TagDeleted", "1.0"),
    ("dependency", "DependencyAdded", "1.0"),
    ("dependency", "DependencyRemoved", "1.0"),
    ("compliance_run", "ComplianceRunStarted", "1.0"),
    ("compliance_run", "ComplianceResultsRecorded", "1.0"),
    ("compliance_run", "ComplianceRunCompleted", "1.0"),
];

/// Event payload keys that hold secrets. They are stored (the log is the
/// source of truth) but redacted wherever events leave the service.
pub const SECRET_PAYLOAD_KEYS: &[&str] = &["password_hash", "token_hash"];

/// Replaces the value of every [`SECRET_PAYLOAD_KEYS`] key, at any depth.
pub fn redact_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if SECRET_PAYLOAD_KEYS.contains(&key.as_str()) {
                    *child = serde_json::Value::String("[redacted]".into());
                } else {
                    redact_secrets(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{RevocationReason, SessionEvent};
    use crate::user::{Role, UserEvent};
    use cqrs_es::DomainEvent;
    use time::OffsetDateTime;
    use uuid::Uuid;

    #[test]
    fn catalog_is_pinned() {
        // Golden copy: change it only together with an upcaster and a note
        // in the changelog of events.
        let golden: &[(&str, &str, &str)] = &[
            ("user", "UserRegistered", "1.0"),
            ("user", "UserProfileUpdated", "1.0"),
            ("user", "UserRoleChanged", "1.0"),
            ("user", "UserDeactivated", "1.0"),
            ("user", "UserReactivated", "1.0"),
            ("user", "UserMfaChanged", "1.0"),
            ("user", "PasswordChanged", "1.0"),
            ("user", "PasswordRehashed", "1.0"),
            ("user", "LoginSucceeded", "1.0"),
            ("user", "LoginFailed", "1.0"),
            ("session", "SessionStarted", "1.0"),
            ("session", "RefreshTokenRotated", "1.1"),
            ("session", "RefreshTokenReuseDetected", "1.0"),
            ("session", "SessionRevoked", "1.0"),
            ("asset", "AssetRegistered", "1.0"),
            ("asset", "AssetUpdated", "1.0"),
            ("asset", "AssetLifecycleChanged", "1.0"),
            ("asset", "AssetDeleted", "1.0"),
            ("asset", "AssetTagged", "1.0"),
            ("asset", "AssetUntagged", "1.0"),
            ("asset", "AssetCheckedOut", "1.0"),
            ("asset", "AssetCheckedIn", "1.0"),
            ("tag", "TagCreated", "1.0"),
            ("tag", "TagDeleted", "1.0"),
            ("dependency", "DependencyAdded", "1.0"),
            ("dependency", "DependencyRemoved", "1.0"),
            ("compliance_run", "ComplianceRunStarted", "1.0"),
            ("compliance_run", "ComplianceResultsRecorded", "1.0"),
            ("compliance_run", "ComplianceRunCompleted", "1.0"),
        ];
        assert_eq!(EVENT_CATALOG, golden);
    }

    #[test]
    fn every_event_is_in_the_catalog() {
        let samples = [
            UserEvent::UserRegistered {
                user_id: Uuid::nil(),
                email: String::new(),
                full_name: String::new(),
                role: Role::Viewer,
                password_hash: String::new(),
                mfa_enabled: false,
                registered_at: OffsetDateTime::UNIX_EPOCH,
            },
            UserEvent::UserProfileUpdated {
                full_name_before: String::new(),
                full_name: String::new(),
            },
            UserEvent::UserRoleChanged {
                from: Role::Viewer,
                to: Role::Admin,
            },
            UserEvent::UserDeactivated,
            UserEvent::UserReactivated,
            UserEvent::UserMfaChanged { mfa_enabled: true },
            UserEvent::PasswordChanged {
                password_hash: String::new(),
            },
            UserEvent::PasswordRehashed {
                password_hash: String::new(),
            },
            UserEvent::LoginSucceeded,
            UserEvent::LoginFailed {
                reason: crate::user::LoginFailure::WrongPassword,
            },
        ];
        let session_samples = [
            SessionEvent::SessionStarted {
                session_id: Uuid::nil(),
                user_id: Uuid::nil(),
                token_id: Uuid::nil(),
                token_hash: String::new(),
                expires_at: OffsetDateTime::UNIX_EPOCH,
            },
            SessionEvent::RefreshTokenRotated {
                consumed_token_id: Uuid::nil(),
                token_id: Uuid::nil(),
                token_hash: String::new(),
                expires_at: OffsetDateTime::UNIX_EPOCH,
                rotated_at: None,
            },
            SessionEvent::RefreshTokenReuseDetected {
                token_id: Uuid::nil(),
            },
            SessionEvent::SessionRevoked {
                reason: RevocationReason::Logout,
            },
        ];
        use crate::cmdb::{
            AssetEvent, AssetType, DependencyEvent, Environment, LifecycleState, TagEvent,
        };
        let cmdb_samples: Vec<(&str, String, String)> = [
            AssetEvent::AssetRegistered {
                asset_id: Uuid::nil(),
                short_code: String::new(),
                name: String::new(),
                asset_type: AssetType::Host,
                lifecycle_state: LifecycleState::Active,
                environment: Environment::Prod,
                location: None,
                description: None,
                owner_id: None,
                attributes: Default::default(),
                custom_fields: Default::default(),
                registered_at: OffsetDateTime::UNIX_EPOCH,
            },
            AssetEvent::AssetUpdated {
                changes: Default::default(),
            },
            AssetEvent::AssetLifecycleChanged {
                from: LifecycleState::Active,
                to: LifecycleState::Retired,
            },
            AssetEvent::AssetDeleted,
            AssetEvent::AssetTagged {
                tag_id: Uuid::nil(),
            },
            AssetEvent::AssetUntagged {
                tag_id: Uuid::nil(),
            },
            AssetEvent::AssetCheckedOut {
                checkout_id: Uuid::nil(),
                holder_id: Uuid::nil(),
                notes: None,
            },
            AssetEvent::AssetCheckedIn {
                checkout_id: Uuid::nil(),
            },
        ]
        .iter()
        .map(|event| ("asset", event.event_type(), event.event_version()))
        .chain(
            [
                TagEvent::TagCreated {
                    tag_id: Uuid::nil(),
                    name: String::new(),
                    color: String::new(),
                },
                TagEvent::TagDeleted,
            ]
            .iter()
            .map(|event| ("tag", event.event_type(), event.event_version())),
        )
        .chain(
            [
                DependencyEvent::DependencyAdded {
                    dependency_id: Uuid::nil(),
                    source_asset_id: Uuid::nil(),
                    target_asset_id: Uuid::nil(),
                    kind: None,
                },
                DependencyEvent::DependencyRemoved,
            ]
            .iter()
            .map(|event| ("dependency", event.event_type(), event.event_version())),
        )
        .chain(
            {
                use crate::compliance::{ComplianceEvent, EvaluatedAt, SeverityCounts};
                [
                    ComplianceEvent::ComplianceRunStarted {
                        run_id: Uuid::nil(),
                        triggered_by_id: Uuid::nil(),
                        started_at: OffsetDateTime::UNIX_EPOCH,
                        evaluated_at: EvaluatedAt {
                            transaction_id: 0,
                            position: 0,
                        },
                        ruleset_hash: String::new(),
                        rules: Vec::new(),
                        total_assets: 0,
                    },
                    ComplianceEvent::ComplianceResultsRecorded {
                        batch: 1,
                        assets: Vec::new(),
                    },
                    ComplianceEvent::ComplianceRunCompleted {
                        finished_at: OffsetDateTime::UNIX_EPOCH,
                        total_assets: 0,
                        org_score: 100.0,
                        passed_count: 0,
                        failed_count: 0,
                        not_applicable_count: 0,
                        severity_failing: SeverityCounts::default(),
                    },
                ]
            }
            .iter()
            .map(|event| ("compliance_run", event.event_type(), event.event_version())),
        )
        .collect();
        assert_eq!(
            samples.len() + session_samples.len() + cmdb_samples.len(),
            EVENT_CATALOG.len(),
            "a sample per catalogued event"
        );
        for (aggregate, event_type, version) in &cmdb_samples {
            assert!(
                EVENT_CATALOG.contains(&(*aggregate, event_type.as_str(), version.as_str())),
                "{aggregate} {event_type} {version} is not in EVENT_CATALOG"
            );
        }
        for event in session_samples {
            let entry = (
                "session".to_string(),
                event.event_type(),
                event.event_version(),
            );
            assert!(
                EVENT_CATALOG
                    .iter()
                    .any(|(a, t, v)| (a.to_string(), t.to_string(), v.to_string()) == entry),
                "{entry:?} is not in EVENT_CATALOG"
            );
        }
        for event in samples {
            let entry = ("user", event.event_type(), event.event_version());
            assert!(
                EVENT_CATALOG
                    .iter()
                    .any(|(a, t, v)| (*a, t.to_string(), v.to_string())
                        == (entry.0, entry.1.clone(), entry.2.clone())),
                "{entry:?} is not in EVENT_CATALOG"
            );
        }
    }

    #[test]
    fn redaction_reaches_nested_keys() {
        let mut value = serde_json::json!({"UserRegistered": {"password_hash": "h", "email": "e"}});
        redact_secrets(&mut value);
        assert_eq!(value["UserRegistered"]["password_hash"], "[redacted]");
        assert_eq!(value["UserRegistered"]["email"], "e");
    }
}
