//! What an event means to the audit timeline: an action name and the
//! before/after view of the entity, with secrets left out.
//!
//! Lives beside the event types so that adding an event forces a decision on
//! how it is audited (the match below is exhaustive).

use serde_json::{json, Value};

use crate::cmdb::{AssetEvent, DependencyEvent, TagEvent};
use crate::compliance;
use crate::decode::AnyEvent;
use crate::session::SessionEvent;
use crate::user::UserEvent;

/// The audit view of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFacts {
    /// Dotted action name, e.g. `user.registered`.
    pub action: String,
    /// Entity state (or changed fields) before; `None` when not applicable.
    pub before: Option<Value>,
    /// Entity state (or changed fields) after; `None` when not applicable.
    pub after: Option<Value>,
}

/// The original API's coarse verbs, which its console colours.
pub const COARSE_ACTIONS: &[&str] = &[
    "create",
    "update",
    "delete",
    "state_change",
    "checkout",
    "checkin",
];

/// Every precise action this build writes, with its coarse verb (the
/// original API's `action`). A precise action it does not know (an event
/// of a newer version) is an `update`.
pub const ACTION_VERBS: &[(&str, &str)] = &[
    ("user.registered", "create"),
    ("user.profile_updated", "update"),
    ("user.role_changed", "update"),
    ("user.mfa_changed", "update"),
    ("user.password_changed", "update"),
    ("user.password_rehashed", "update"),
    ("user.deactivated", "state_change"),
    ("user.reactivated", "state_change"),
    ("auth.login_succeeded", "state_change"),
    ("auth.login_failed", "state_change"),
    ("session.started", "create"),
    ("session.refresh_rotated", "update"),
    ("session.refresh_reuse_detected", "state_change"),
    ("session.revoked", "state_change"),
    ("asset.created", "create"),
    ("asset.updated", "update"),
    ("asset.tagged", "update"),
    ("asset.untagged", "update"),
    ("asset.lifecycle_changed", "state_change"),
    ("asset.deleted", "delete"),
    ("asset.checked_out", "checkout"),
    ("asset.checked_in", "checkin"),
    ("tag.created", "create"),
    ("tag.deleted", "delete"),
    ("dependency.created", "create"),
    ("dependency.deleted", "delete"),
    ("compliance.run_started", "create"),
    ("compliance.results_recorded", "create"),
    ("compliance.run_completed", "state_change"),
];

/// The coarse verb of a precise action.
pub fn coarse_action(action: &str) -> &'static str {
    ACTION_VERBS
        .iter()
        .find(|(precise, _)| *precise == action)
        .map_or("update", |(_, verb)| verb)
}

/// The precise actions a coarse verb stands for (empty for a string that
/// is no coarse verb).
pub fn actions_of_verb(verb: &str) -> Vec<&'static str> {
    ACTION_VERBS
        .iter()
        .filter(|(_, coarse)| *coarse == verb)
        .map(|(precise, _)| *precise)
        .collect()
}

/// Describes a stored event for the audit timeline, decoding it through
/// the one decoder ([`crate::decode`]); `payload` is `None` when the read
/// left it out (a compliance results batch, ADR 0001).
///
/// An event this version cannot decode (an unknown aggregate or event type
/// from a newer version, or a payload that does not parse) is still audited,
/// under its raw event type and without before/after: the timeline never
/// drops an event, and never copies a payload it does not understand, since
/// that payload may hold a secret.
pub fn describe(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: Option<&str>,
) -> AuditFacts {
    let decoded = payload.and_then(|payload| {
        AnyEvent::decode(aggregate_type, event_type, event_version, payload).ok()
    });
    match decoded {
        Some(event) => describe_event(&event),
        None if aggregate_type == compliance::COMPLIANCE_RUN
            && event_type == "ComplianceResultsRecorded" =>
        {
            facts("compliance.results_recorded", None, None)
        }
        None => AuditFacts {
            action: format!("{aggregate_type}.{event_type}"),
            before: None,
            after: None,
        },
    }
}

/// Describes a decoded event for the audit timeline.
pub fn describe_event(event: &AnyEvent) -> AuditFacts {
    match event {
        AnyEvent::User(event) => describe_user(event),
        AnyEvent::Session(event) => describe_session(event),
        AnyEvent::Asset(event) => describe_asset(event),
        AnyEvent::Tag(event) => describe_tag(event),
        AnyEvent::Dependency(event) => describe_dependency(event),
        AnyEvent::ComplianceRun(event) => describe_compliance(event),
    }
}

/// A run's events. The results batches are described by type: the
/// timeline says results were recorded, the log and the per-asset results
/// say which.
fn describe_compliance(event: &compliance::ComplianceEvent) -> AuditFacts {
    match event {
        compliance::ComplianceEvent::ComplianceRunStarted {
            triggered_by_id,
            evaluated_at,
            ruleset_hash,
            total_assets,
            ..
        } => facts(
            "compliance.run_started",
            None,
            Some(json!({
                "triggered_by_id": triggered_by_id,
                "event_position": evaluated_at.position,
                "ruleset_hash": ruleset_hash,
                "total_assets": total_assets,
            })),
        ),
        compliance::ComplianceEvent::ComplianceResultsRecorded { .. } => {
            facts("compliance.results_recorded", None, None)
        }
        compliance::ComplianceEvent::ComplianceRunCompleted {
            total_assets,
            org_score,
            passed_count,
            failed_count,
            not_applicable_count,
            severity_failing,
            ..
        } => facts(
            "compliance.run_completed",
            None,
            Some(json!({
                "total_assets": total_assets,
                "org_score": org_score,
                "passed_count": passed_count,
                "failed_count": failed_count,
                "not_applicable_count": not_applicable_count,
                "severity_failing": severity_failing,
            })),
        ),
    }
}

fn describe_user(event: &UserEvent) -> AuditFacts {
    match event {
        UserEvent::UserRegistered {
            email,
            full_name,
            role,
            mfa_enabled,
            ..
        } => AuditFacts {
            action: "user.registered".into(),
            before: None,
            after: Some(json!({
                "email": email,
                "full_name": full_name,
                "role": role,
                "is_active": true,
                "mfa_enabled": mfa_enabled,
            })),
        },
        UserEvent::UserProfileUpdated {
            full_name_before,
            full_name,
        } => AuditFacts {
            action: "user.profile_updated".into(),
            before: Some(json!({ "full_name": full_name_before })),
            after: Some(json!({ "full_name": full_name })),
        },
        UserEvent::UserRoleChanged { from, to } => AuditFacts {
            action: "user.role_changed".into(),
            before: Some(json!({ "role": from })),
            after: Some(json!({ "role": to })),
        },
        UserEvent::UserDeactivated => state_change("user.deactivated", "is_active", true, false),
        UserEvent::UserReactivated => state_change("user.reactivated", "is_active", false, true),
        UserEvent::UserMfaChanged { mfa_enabled } => state_change(
            "user.mfa_changed",
            "mfa_enabled",
            !mfa_enabled,
            *mfa_enabled,
        ),
        // The hash is a secret: the timeline says that it changed, not to what.
        UserEvent::PasswordChanged { .. } => AuditFacts {
            action: "user.password_changed".into(),
            before: None,
            after: Some(json!({ "password": "changed" })),
        },
        UserEvent::PasswordRehashed { .. } => AuditFacts {
            action: "user.password_rehashed".into(),
            before: None,
            after: Some(json!({ "password_hash": "upgraded" })),
        },
        UserEvent::LoginSucceeded => AuditFacts {
            action: "auth.login_succeeded".into(),
            before: None,
            after: None,
        },
        UserEvent::LoginFailed { reason } => AuditFacts {
            action: "auth.login_failed".into(),
            before: None,
            after: Some(json!({ "reason": reason })),
        },
    }
}

fn describe_session(event: &SessionEvent) -> AuditFacts {
    let (action, after) = match event {
        SessionEvent::SessionStarted {
            user_id,
            expires_at,
            ..
        } => (
            "session.started",
            json!({ "user_id": user_id, "refresh_expires_at": expires_at.unix_timestamp() }),
        ),
        SessionEvent::RefreshTokenRotated { token_id, .. } => {
            ("session.refresh_rotated", json!({ "token_id": token_id }))
        }
        SessionEvent::RefreshTokenReuseDetected { token_id } => (
            "session.refresh_reuse_detected",
            json!({ "token_id": token_id }),
        ),
        SessionEvent::SessionRevoked { reason } => ("session.revoked", json!({ "reason": reason })),
    };
    AuditFacts {
        action: action.into(),
        before: None,
        after: Some(after),
    }
}

fn facts(action: &str, before: Option<Value>, after: Option<Value>) -> AuditFacts {
    AuditFacts {
        action: action.into(),
        before,
        after,
    }
}

fn describe_asset(event: &AssetEvent) -> AuditFacts {
    match event {
        AssetEvent::AssetRegistered {
            short_code,
            name,
            asset_type,
            lifecycle_state,
            environment,
            location,
            description,
            owner_id,
            attributes,
            custom_fields,
            ..
        } => facts(
            "asset.created",
            None,
            Some(json!({
                "short_code": short_code,
                "name": name,
                "asset_type": asset_type,
                "lifecycle_state": lifecycle_state,
                "environment": environment,
                "location": location,
                "description": description,
                "owner_id": owner_id,
                "attributes": attributes,
                "custom_fields": custom_fields,
            })),
        ),
        AssetEvent::AssetUpdated { changes } => {
            let mut before = serde_json::Map::new();
            let mut after = serde_json::Map::new();
            for change in changes {
                let (was, is) = change.values();
                before.insert(change.field().into(), was);
                after.insert(change.field().into(), is);
            }
            facts(
                "asset.updated",
                Some(Value::Object(before)),
                Some(Value::Object(after)),
            )
        }
        AssetEvent::AssetLifecycleChanged { from, to } => facts(
            "asset.lifecycle_changed",
            Some(json!({ "lifecycle_state": from })),
            Some(json!({ "lifecycle_state": to })),
        ),
        AssetEvent::AssetDeleted => facts("asset.deleted", None, Some(json!({ "deleted": true }))),
        AssetEvent::AssetTagged { tag_id } => {
            facts("asset.tagged", None, Some(json!({ "tag_id": tag_id })))
        }
        AssetEvent::AssetUntagged { tag_id } => {
            facts("asset.untagged", Some(json!({ "tag_id": tag_id })), None)
        }
        AssetEvent::AssetCheckedOut {
            checkout_id,
            holder_id,
            notes,
        } => facts(
            "asset.checked_out",
            None,
            Some(json!({ "checkout_id": checkout_id, "holder_id": holder_id, "notes": notes })),
        ),
        AssetEvent::AssetCheckedIn { checkout_id } => facts(
            "asset.checked_in",
            Some(json!({ "checkout_id": checkout_id })),
            None,
        ),
    }
}

fn describe_tag(event: &TagEvent) -> AuditFacts {
    match event {
        TagEvent::TagCreated { name, color, .. } => facts(
            "tag.created",
            None,
            Some(json!({ "name": name, "color": color })),
        ),
        TagEvent::TagDeleted => facts("tag.deleted", None, Some(json!({ "deleted": true }))),
    }
}

fn describe_dependency(event: &DependencyEvent) -> AuditFacts {
    match event {
        DependencyEvent::DependencyAdded {
            source_asset_id,
            target_asset_id,
            kind,
            ..
        } => facts(
            "dependency.created",
            None,
            Some(json!({
                "source_asset_id": source_asset_id,
                "target_asset_id": target_asset_id,
                "kind": kind,
            })),
        ),
        DependencyEvent::DependencyRemoved => {
            facts("dependency.deleted", None, Some(json!({ "deleted": true })))
        }
    }
}

fn state_change(action: &str, field: &str, before: bool, after: bool) -> AuditFacts {
    AuditFacts {
        action: action.into(),
        before: Some(json!({ field: before })),
        after: Some(json!({ field: after })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use uuid::Uuid;

    #[test]
    fn registration_is_audited_without_the_password_hash() {
        let event = UserEvent::UserRegistered {
            user_id: Uuid::new_v4(),
            email: "a@example.com".into(),
            full_name: "A".into(),
            role: crate::user::Role::Viewer,
            password_hash: "$argon2id$v=19$secret".into(),
            mfa_enabled: false,
            registered_at: OffsetDateTime::UNIX_EPOCH,
        };
        let payload = serde_json::to_string(&event).expect("serializable");
        let facts = describe("user", "UserRegistered", "1.0", Some(&payload));
        assert_eq!(facts.action, "user.registered");
        let rendered = serde_json::to_string(&facts.after).expect("serializable");
        assert!(!rendered.contains("argon2"), "{rendered}");
        assert!(rendered.contains("a@example.com"));
    }

    #[test]
    fn password_events_never_carry_the_hash_into_the_timeline() {
        for event in [
            UserEvent::PasswordChanged {
                password_hash: "$argon2id$v=19$secret-hash".into(),
            },
            UserEvent::PasswordRehashed {
                password_hash: "$argon2id$v=19$secret-hash".into(),
            },
        ] {
            let facts = describe_event(&AnyEvent::User(event));
            let rendered = format!("{:?} {:?}", facts.before, facts.after);
            assert!(!rendered.contains("secret-hash"), "{rendered}");
        }
    }

    #[test]
    fn a_role_change_shows_before_and_after() {
        let event = UserEvent::UserRoleChanged {
            from: crate::user::Role::Viewer,
            to: crate::user::Role::Admin,
        };
        let facts = describe_event(&AnyEvent::User(event));
        assert_eq!(facts.action, "user.role_changed");
        assert_eq!(facts.before, Some(json!({ "role": "viewer" })));
        assert_eq!(facts.after, Some(json!({ "role": "admin" })));
    }

    #[test]
    fn an_asset_update_shows_each_changed_field_before_and_after() {
        let event = AssetEvent::AssetUpdated {
            changes: vec![crate::cmdb::AssetChange::Name {
                before: "web-1".into(),
                after: "web-01".into(),
            }],
        };
        let facts = describe_event(&AnyEvent::Asset(event));
        assert_eq!(facts.action, "asset.updated");
        assert_eq!(facts.before, Some(json!({ "name": "web-1" })));
        assert_eq!(facts.after, Some(json!({ "name": "web-01" })));
    }

    #[test]
    fn unknown_events_are_audited_without_their_payload() {
        let facts = describe(
            "widget",
            "WidgetFrobbed",
            "1.0",
            Some(r#"{"WidgetFrobbed": {"token": "s3cret"}}"#),
        );
        assert_eq!(facts.action, "widget.WidgetFrobbed");
        assert_eq!(facts.after, None);
        assert_eq!(facts.before, None);
        // A known event whose payload does not decode: the same.
        let facts = describe(
            "user",
            "UserRoleChanged",
            "1.0",
            Some(r#"{"UserRoleChanged": {"to": "root"}}"#),
        );
        assert_eq!(facts.action, "user.UserRoleChanged");
        assert_eq!(facts.after, None);
    }

    #[test]
    fn a_stored_1_0_asset_update_is_audited_as_2_0() {
        let stored = r#"{"AssetUpdated": {"changes": {"name": {"before": "a", "after": "b"}}}}"#;
        let facts = describe("asset", "AssetUpdated", "1.0", Some(stored));
        assert_eq!(facts.action, "asset.updated");
        assert_eq!(facts.before, Some(json!({ "name": "a" })));
        assert_eq!(facts.after, Some(json!({ "name": "b" })));
    }

    #[test]
    fn every_action_has_an_original_verb() {
        for (action, verb) in ACTION_VERBS {
            assert!(COARSE_ACTIONS.contains(verb), "{action} -> {verb}");
        }
        // Every dotted action literal of this file is mapped, so a new
        // event cannot be audited without a decision on its verb.
        let source = include_str!("audit.rs");
        // Every stretch between two quote marks, whatever the parity.
        for literal in source.split('"') {
            let dotted = literal.split_once('.').is_some_and(|(area, name)| {
                !area.is_empty()
                    && !name.is_empty()
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            });
            if dotted && !["future.thing", "audit.rs"].contains(&literal) {
                assert!(
                    ACTION_VERBS.iter().any(|(action, _)| *action == literal),
                    "{literal} has no coarse verb"
                );
            }
        }
        assert_eq!(coarse_action("asset.checked_out"), "checkout");
        assert_eq!(coarse_action("future.thing"), "update");
        assert!(actions_of_verb("delete").contains(&"asset.deleted"));
        assert!(actions_of_verb("asset.deleted").is_empty());
    }
}
