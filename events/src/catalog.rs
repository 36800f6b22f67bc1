//! The pinned list of every event type and version this build reads, the
//! old versions (which only upcasters read) included.
//!
//! A golden test compares it with a literal copy, and the fixture test of
//! `events/tests/fixtures.rs` checks that every variant of every event enum
//! has a current row, every row a stored fixture, and every fixture decodes
//! to the current shape: renaming an event or bumping a version without an
//! upcaster fails CI.

/// `(aggregate_type, event_type, event_version)` of every event version
/// ever written, the versions of one type oldest first: the last is the
/// one this build writes.
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
    ("session", "RefreshTokenRotated", "1.0"),
    ("session", "RefreshTokenRotated", "1.1"),
    ("session", "RefreshTokenReuseDetected", "1.0"),
    ("session", "SessionRevoked", "1.0"),
    ("asset", "AssetRegistered", "1.0"),
    ("asset", "AssetUpdated", "1.0"),
    ("asset", "AssetUpdated", "2.0"),
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

/// The version this build writes of `event_type` on `aggregate_type`
/// streams; `None` for an event it does not know.
pub fn current_version(aggregate_type: &str, event_type: &str) -> Option<&'static str> {
    EVENT_CATALOG
        .iter()
        .rev()
        .find(|(aggregate, event, _)| *aggregate == aggregate_type && *event == event_type)
        .map(|(_, _, version)| *version)
}

/// [`current_version`] for an event of this build, which is always listed
/// (the fixture test checks every variant).
pub(crate) fn written_version(aggregate_type: &str, event_type: &str) -> String {
    current_version(aggregate_type, event_type)
        .unwrap_or("unlisted")
        .to_string()
}

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

    #[test]
    fn catalog_is_pinned() {
        // Golden copy: change it only together with an upcaster and a
        // fixture of the new version.
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
            ("session", "RefreshTokenRotated", "1.0"),
            ("session", "RefreshTokenRotated", "1.1"),
            ("session", "RefreshTokenReuseDetected", "1.0"),
            ("session", "SessionRevoked", "1.0"),
            ("asset", "AssetRegistered", "1.0"),
            ("asset", "AssetUpdated", "1.0"),
            ("asset", "AssetUpdated", "2.0"),
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
    fn the_current_version_is_the_last_listed() {
        assert_eq!(current_version("asset", "AssetUpdated"), Some("2.0"));
        assert_eq!(
            current_version("session", "RefreshTokenRotated"),
            Some("1.1")
        );
        assert_eq!(current_version("tag", "AssetUpdated"), None);
    }

    #[test]
    fn redaction_reaches_nested_keys() {
        let mut value = serde_json::json!({"UserRegistered": {"password_hash": "h", "email": "e"}});
        redact_secrets(&mut value);
        assert_eq!(value["UserRegistered"]["password_hash"], "[redacted]");
        assert_eq!(value["UserRegistered"]["email"], "e");
    }
}
