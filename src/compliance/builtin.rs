//! The 16 built-in rules of API.md "Compliance", each a [`Check`] on one
//! attribute (or on the owner) with its threshold.
//!
//! Boundaries, as API.md words them: `password_max_age_days <= 90`,
//! `log_retention_days >= 30`, `last_backup_at` within 7 days (an age of
//! exactly 7 days passes), `last_patched_at` less than 30 days ago (exactly
//! 30 days fails), `tls_cert_expires_at` at least 30 days away (exactly 30
//! passes, 29.99 fails). Ages are measured from the run's clock.

use sentryops_events::compliance::{ResultStatus, Severity};
use serde_json::Value;

use super::values;
use super::{Outcome, Rule, RuleInfo, Subject};

/// Ports whose exposure fails `no-high-risk-open-ports`: FTP, Telnet, SMB,
/// the alternative Telnet port IoT botnets scan, RDP.
pub const HIGH_RISK_PORTS: [u16; 5] = [21, 23, 445, 2323, 3389];

/// What a built-in rule checks.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The attribute reads as this boolean.
    Flag { key: &'static str, pass_when: bool },
    /// The attribute is a number at most this.
    AtMost { key: &'static str, limit: f64 },
    /// The attribute is a number at least this.
    AtLeast { key: &'static str, limit: f64 },
    /// The attribute is a date at most this many days before the run.
    AgeAtMost { key: &'static str, days: f64 },
    /// The attribute is a date less than this many days before the run.
    AgeUnder { key: &'static str, days: f64 },
    /// The attribute is a date at least this many days after the run.
    AtLeastDaysAway { key: &'static str, days: f64 },
    /// The attribute is a port list holding none of [`HIGH_RISK_PORTS`].
    NoHighRiskPorts { key: &'static str },
    /// The owner has multi-factor authentication (n/a without an owner).
    OwnerMfa,
    /// The asset has an owner (never n/a).
    HasOwner,
}

impl Check {
    /// The check in words, precise enough to tell two thresholds apart.
    fn definition(self) -> String {
        match self {
            Check::Flag { key, pass_when } => format!("attributes.{key} is {pass_when}"),
            Check::AtMost { key, limit } => format!("attributes.{key} <= {limit}"),
            Check::AtLeast { key, limit } => format!("attributes.{key} >= {limit}"),
            Check::AgeAtMost { key, days } => format!("age_days(attributes.{key}) <= {days}"),
            Check::AgeUnder { key, days } => format!("age_days(attributes.{key}) < {days}"),
            Check::AtLeastDaysAway { key, days } => {
                format!("days_until(attributes.{key}) >= {days}")
            }
            Check::NoHighRiskPorts { key } => {
                format!("attributes.{key} contains none of {HIGH_RISK_PORTS:?}")
            }
            Check::OwnerMfa => "owner.mfa_enabled is true".into(),
            Check::HasOwner => "owner_id is set".into(),
        }
    }

    fn evaluate(self, subject: &Subject<'_>) -> Outcome {
        match self {
            Check::Flag { key, pass_when } => judged(
                subject,
                key,
                &pass_when.to_string(),
                values::boolean,
                "not a boolean",
                |flag| (Some(flag == pass_when), format!("{key} is {flag}")),
            ),
            Check::AtMost { key, limit } => judged(
                subject,
                key,
                &format!("<= {limit}"),
                values::number,
                "not a number",
                |n| (Some(n <= limit), format!("{key} is {n}")),
            ),
            Check::AtLeast { key, limit } => judged(
                subject,
                key,
                &format!(">= {limit}"),
                values::number,
                "not a number",
                |n| (Some(n >= limit), format!("{key} is {n}")),
            ),
            Check::AgeAtMost { key, days } => {
                let expected = format!("at most {days} days before the run");
                judged(
                    subject,
                    key,
                    &expected,
                    values::moment,
                    "not a date",
                    |moment| {
                        let age = values::days_between(moment, subject.now);
                        judge_age(age, age <= days)
                    },
                )
            }
            Check::AgeUnder { key, days } => {
                let expected = format!("less than {days} days before the run");
                judged(
                    subject,
                    key,
                    &expected,
                    values::moment,
                    "not a date",
                    |moment| {
                        let age = values::days_between(moment, subject.now);
                        judge_age(age, age < days)
                    },
                )
            }
            Check::AtLeastDaysAway { key, days } => {
                let expected = format!("at least {days} days after the run");
                judged(
                    subject,
                    key,
                    &expected,
                    values::moment,
                    "not a date",
                    |moment| {
                        let left = values::days_between(subject.now, moment);
                        (Some(left >= days), format!("{left:.2} days after the run"))
                    },
                )
            }
            Check::NoHighRiskPorts { key } => {
                let expected = format!("none of {HIGH_RISK_PORTS:?}");
                judged(
                    subject,
                    key,
                    &expected,
                    values::readable_ports,
                    "not a list of ports",
                    |(ports, unreadable)| {
                        let risky: Vec<u16> = ports
                            .into_iter()
                            .filter(|port| HIGH_RISK_PORTS.contains(port))
                            .collect();
                        // One odd entry must not hide another that reads
                        // as RDP: a risky port fails whatever else is there.
                        if !risky.is_empty() {
                            (Some(false), format!("high-risk ports open: {risky:?}"))
                        } else if unreadable > 0 {
                            let reason = format!(
                                "{unreadable} entries of {key} are not ports; the others are not high-risk"
                            );
                            (None, reason)
                        } else {
                            (Some(true), "no high-risk port is open".to_string())
                        }
                    },
                )
            }
            Check::OwnerMfa => {
                let attribute = None;
                let expected = "the owner has MFA enabled";
                match (subject.asset.owner_id, subject.owner) {
                    (None, _) => Outcome::new(
                        ResultStatus::NotApplicable,
                        attribute,
                        Value::Null,
                        expected,
                        "the asset has no owner",
                    ),
                    (Some(owner_id), None) => Outcome::new(
                        ResultStatus::NotApplicable,
                        attribute,
                        Value::from(owner_id.to_string()),
                        expected,
                        "the owner is not a known user",
                    ),
                    (Some(_), Some(owner)) => Outcome::new(
                        status(owner.mfa_enabled),
                        attribute,
                        Value::from(owner.mfa_enabled),
                        expected,
                        format!("owner mfa_enabled is {}", owner.mfa_enabled),
                    ),
                }
            }
            Check::HasOwner => {
                let owner = subject.asset.owner_id;
                Outcome::new(
                    status(owner.is_some()),
                    Some("owner_id"),
                    owner.map_or(Value::Null, |id| Value::from(id.to_string())),
                    "an owner",
                    if owner.is_some() {
                        "the asset has an owner"
                    } else {
                        "the asset has no owner"
                    },
                )
            }
        }
    }
}

fn status(passed: bool) -> ResultStatus {
    if passed {
        ResultStatus::Pass
    } else {
        ResultStatus::Fail
    }
}

/// How far in the future a "last done" date may lie before it reads as a
/// mistake rather than clock skew or a time zone.
const FUTURE_TOLERANCE_DAYS: f64 = 1.0;

/// The verdict on a "last done" date `age` days before the run: a date
/// further in the future than [`FUTURE_TOLERANCE_DAYS`] is a typo, not a
/// fresh backup or patch, so it decides nothing.
fn judge_age(age: f64, within: bool) -> (Option<bool>, String) {
    if age < -FUTURE_TOLERANCE_DAYS {
        (
            None,
            format!("{:.2} days after the run: a date in the future", -age),
        )
    } else {
        (Some(within), format!("{age:.2} days before the run"))
    }
}

/// Reads attribute `key` with `parse` and lets `judge` decide (`None`:
/// not applicable, with its reason); a missing or uninterpretable value
/// (`kind` says what it should have been) is not applicable, never a
/// failure.
fn judged<T>(
    subject: &Subject<'_>,
    key: &str,
    expected: &str,
    parse: impl Fn(&Value) -> Option<T>,
    kind: &str,
    judge: impl FnOnce(T) -> (Option<bool>, String),
) -> Outcome {
    let Some(value) = subject.asset.attributes.get(key) else {
        let reason = format!("{key} is missing");
        return Outcome::new(
            ResultStatus::NotApplicable,
            Some(key),
            Value::Null,
            expected,
            reason,
        );
    };
    match parse(value) {
        Some(parsed) => {
            let (passed, reason) = judge(parsed);
            let status = passed.map_or(ResultStatus::NotApplicable, status);
            Outcome::new(status, Some(key), value.clone(), expected, reason)
        }
        None => {
            let reason = format!("{key} is {kind}");
            Outcome::new(
                ResultStatus::NotApplicable,
                Some(key),
                value.clone(),
                expected,
                reason,
            )
        }
    }
}

#[derive(Debug)]
struct BuiltinRule {
    info: RuleInfo,
    check: Check,
}

impl Rule for BuiltinRule {
    fn info(&self) -> &RuleInfo {
        &self.info
    }

    fn evaluate(&self, subject: &Subject<'_>) -> Outcome {
        self.check.evaluate(subject)
    }
}

/// NIST SP 800-53, the framework of every built-in control.
const NIST: &str = "NIST SP 800-53";

#[allow(clippy::too_many_arguments)]
fn rule(
    id: &str,
    title: &str,
    severity: Severity,
    control: &str,
    family: &str,
    check: Check,
    description: &str,
    remediation: &str,
) -> Box<dyn Rule> {
    Box::new(BuiltinRule {
        info: RuleInfo {
            id: id.into(),
            title: title.into(),
            framework: NIST.into(),
            control: control.into(),
            severity,
            description: description.into(),
            remediation: remediation.into(),
            family: family.into(),
            source: "builtin".into(),
            definition: check.definition(),
        },
        check,
    })
}

/// The 16 built-in rules, in API.md's order.
pub fn rules() -> Vec<Box<dyn Rule>> {
    use Severity::{Critical, High, Low, Medium};
    vec![
        rule(
            "disk-encryption",
            "Disks are encrypted at rest",
            High,
            "SC-28",
            "encryption",
            Check::Flag { key: "disk_encrypted", pass_when: true },
            "Data at rest on the asset's disks is encrypted.",
            "Enable full-disk encryption (BitLocker, FileVault, LUKS or the cloud provider's volume encryption).",
        ),
        rule(
            "encryption-in-transit",
            "Traffic is encrypted in transit",
            High,
            "SC-8",
            "encryption",
            Check::Flag { key: "encryption_in_transit", pass_when: true },
            "The asset only accepts and sends encrypted connections.",
            "Require TLS 1.2 or newer on every listener and client; disable plaintext protocols.",
        ),
        rule(
            "edr-present",
            "An EDR agent is installed",
            High,
            "SI-3",
            "endpoint",
            Check::Flag { key: "edr_installed", pass_when: true },
            "An endpoint detection and response agent watches the asset.",
            "Install and enrol the organization's EDR agent.",
        ),
        rule(
            "antivirus-present",
            "Antivirus is installed",
            Medium,
            "SI-3",
            "endpoint",
            Check::Flag { key: "antivirus_installed", pass_when: true },
            "Malware protection runs on the asset.",
            "Install the approved antivirus and keep its signatures current.",
        ),
        rule(
            "owner-mfa",
            "The owner uses multi-factor authentication",
            Critical,
            "IA-2",
            "identity",
            Check::OwnerMfa,
            "The person accountable for the asset signs in with a second factor.",
            "Ask the owner to enrol a second factor, or hand the asset to an owner who has one.",
        ),
        rule(
            "no-default-credentials",
            "No default credentials",
            Critical,
            "IA-5",
            "identity",
            Check::Flag { key: "has_default_credentials", pass_when: false },
            "No account on the asset still has its vendor default password.",
            "Change or disable every vendor default account.",
        ),
        rule(
            "password-max-age",
            "Passwords expire within 90 days",
            Medium,
            "IA-5",
            "identity",
            Check::AtMost { key: "password_max_age_days", limit: 90.0 },
            "The asset's password policy forces a change at least every 90 days.",
            "Set the maximum password age to 90 days or less.",
        ),
        rule(
            "has-owner",
            "The asset has an owner",
            Low,
            "CM-8",
            "identity",
            Check::HasOwner,
            "Someone is accountable for the asset in the inventory.",
            "Assign an owner to the asset.",
        ),
        rule(
            "logging-enabled",
            "Logging is enabled",
            Medium,
            "AU-2",
            "logging_and_backup",
            Check::Flag { key: "logging_enabled", pass_when: true },
            "The asset records security-relevant events.",
            "Enable audit logging and ship the logs to the central collector.",
        ),
        rule(
            "log-retention",
            "Logs are kept at least 30 days",
            Low,
            "AU-11",
            "logging_and_backup",
            Check::AtLeast { key: "log_retention_days", limit: 30.0 },
            "Logs stay available long enough for an investigation.",
            "Keep logs for 30 days or more.",
        ),
        rule(
            "backup-recency",
            "Backed up within 7 days",
            High,
            "CP-9",
            "logging_and_backup",
            Check::AgeAtMost { key: "last_backup_at", days: 7.0 },
            "The newest backup is at most 7 days old.",
            "Fix the backup job and take a backup now.",
        ),
        rule(
            "firewall-enabled",
            "A firewall is enabled",
            High,
            "SC-7",
            "network",
            Check::Flag { key: "firewall_enabled", pass_when: true },
            "A host or network firewall filters the asset's traffic.",
            "Enable the firewall with a default-deny inbound policy.",
        ),
        rule(
            "no-high-risk-open-ports",
            "No high-risk ports are open",
            High,
            "SC-7",
            "network",
            Check::NoHighRiskPorts { key: "open_ports" },
            "FTP (21), Telnet (23, 2323), SMB (445) and RDP (3389) are not exposed.",
            "Close these ports or put the service behind a VPN or bastion.",
        ),
        rule(
            "tls-cert-expiry",
            "TLS certificate valid for 30 more days",
            High,
            "SC-12",
            "encryption",
            Check::AtLeastDaysAway { key: "tls_cert_expires_at", days: 30.0 },
            "The asset's TLS certificate does not expire within 30 days.",
            "Renew the certificate, and automate renewal.",
        ),
        rule(
            "patch-age",
            "Patched within 30 days",
            High,
            "SI-2",
            "patching",
            Check::AgeUnder { key: "last_patched_at", days: 30.0 },
            "The asset was last patched less than 30 days ago.",
            "Apply the outstanding patches.",
        ),
        rule(
            "os-supported",
            "The operating system is supported",
            Critical,
            "SI-2",
            "patching",
            Check::Flag { key: "os_supported", pass_when: true },
            "The vendor still ships security fixes for the asset's operating system.",
            "Upgrade to a supported release or replace the asset.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{AssetSnapshot, OwnerSnapshot};
    use sentryops_events::cmdb::{AssetType, Environment, LifecycleState};
    use serde_json::{json, Map};
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    fn asset(attributes: Value, owner_id: Option<Uuid>) -> AssetSnapshot {
        let attributes: Map<String, Value> = match attributes {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        AssetSnapshot {
            id: Uuid::nil(),
            short_code: "HST-00000".into(),
            name: "web-01".into(),
            asset_type: AssetType::Host,
            lifecycle_state: LifecycleState::Active,
            environment: Environment::Prod,
            location: None,
            owner_id,
            attributes,
            tags: Vec::new(),
        }
    }

    fn rule(id: &str) -> Box<dyn Rule> {
        rules()
            .into_iter()
            .find(|rule| rule.info().id == id)
            .unwrap_or_else(|| panic!("no rule {id}"))
    }

    /// `rule_id` on an asset with `attributes` (no owner).
    fn judge(rule_id: &str, attributes: Value) -> Outcome {
        let asset = asset(attributes, None);
        rule(rule_id).evaluate(&Subject {
            asset: &asset,
            owner: None,
            now: NOW,
        })
    }

    fn status_of(rule_id: &str, attributes: Value) -> ResultStatus {
        judge(rule_id, attributes).status
    }

    fn iso(moment: OffsetDateTime) -> Value {
        Value::from(
            moment
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formats"),
        )
    }

    use ResultStatus::{Fail, NotApplicable, Pass};

    #[test]
    fn there_are_sixteen_rules_with_the_severities_and_controls_of_the_contract() {
        let expected = [
            ("disk-encryption", Severity::High, "SC-28"),
            ("encryption-in-transit", Severity::High, "SC-8"),
            ("edr-present", Severity::High, "SI-3"),
            ("antivirus-present", Severity::Medium, "SI-3"),
            ("owner-mfa", Severity::Critical, "IA-2"),
            ("no-default-credentials", Severity::Critical, "IA-5"),
            ("password-max-age", Severity::Medium, "IA-5"),
            ("has-owner", Severity::Low, "CM-8"),
            ("logging-enabled", Severity::Medium, "AU-2"),
            ("log-retention", Severity::Low, "AU-11"),
            ("backup-recency", Severity::High, "CP-9"),
            ("firewall-enabled", Severity::High, "SC-7"),
            ("no-high-risk-open-ports", Severity::High, "SC-7"),
            ("tls-cert-expiry", Severity::High, "SC-12"),
            ("patch-age", Severity::High, "SI-2"),
            ("os-supported", Severity::Critical, "SI-2"),
        ];
        let actual: Vec<(String, Severity, String)> = rules()
            .iter()
            .map(|rule| {
                (
                    rule.info().id.clone(),
                    rule.info().severity,
                    rule.info().control.clone(),
                )
            })
            .collect();
        let expected: Vec<(String, Severity, String)> = expected
            .iter()
            .map(|(id, severity, control)| (id.to_string(), *severity, control.to_string()))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn boolean_rules_read_every_spelling_and_a_missing_or_odd_value_is_not_applicable() {
        for yes in [
            json!(true),
            json!(1),
            json!("yes"),
            json!("on"),
            json!("enabled"),
            json!("TRUE"),
        ] {
            assert_eq!(
                status_of("disk-encryption", json!({"disk_encrypted": yes})),
                Pass,
                "{yes}"
            );
        }
        for no in [
            json!(false),
            json!(0),
            json!("no"),
            json!("off"),
            json!("disabled"),
            json!("False"),
        ] {
            assert_eq!(
                status_of("disk-encryption", json!({"disk_encrypted": no})),
                Fail,
                "{no}"
            );
        }
        assert_eq!(status_of("disk-encryption", json!({})), NotApplicable);
        assert_eq!(
            status_of("disk-encryption", json!({"disk_encrypted": "probably"})),
            NotApplicable
        );
        // Default credentials pass when absent ("false").
        assert_eq!(
            status_of(
                "no-default-credentials",
                json!({"has_default_credentials": "no"})
            ),
            Pass
        );
        assert_eq!(
            status_of(
                "no-default-credentials",
                json!({"has_default_credentials": 1})
            ),
            Fail
        );
        for (rule_id, key) in [
            ("encryption-in-transit", "encryption_in_transit"),
            ("edr-present", "edr_installed"),
            ("antivirus-present", "antivirus_installed"),
            ("logging-enabled", "logging_enabled"),
            ("firewall-enabled", "firewall_enabled"),
            ("os-supported", "os_supported"),
        ] {
            assert_eq!(
                status_of(rule_id, json!({ key: "enabled" })),
                Pass,
                "{rule_id}"
            );
            assert_eq!(status_of(rule_id, json!({ key: "off" })), Fail, "{rule_id}");
            assert_eq!(status_of(rule_id, json!({})), NotApplicable, "{rule_id}");
        }
    }

    #[test]
    fn numeric_thresholds_hold_at_their_boundaries() {
        assert_eq!(
            status_of("password-max-age", json!({"password_max_age_days": 90})),
            Pass
        );
        assert_eq!(
            status_of("password-max-age", json!({"password_max_age_days": "90"})),
            Pass
        );
        assert_eq!(
            status_of("password-max-age", json!({"password_max_age_days": 91})),
            Fail
        );
        assert_eq!(
            status_of(
                "password-max-age",
                json!({"password_max_age_days": "a lot"})
            ),
            NotApplicable
        );
        assert_eq!(
            status_of("log-retention", json!({"log_retention_days": 30})),
            Pass
        );
        assert_eq!(
            status_of("log-retention", json!({"log_retention_days": 29.5})),
            Fail
        );
        assert_eq!(status_of("log-retention", json!({})), NotApplicable);
    }

    #[test]
    fn patch_age_passes_just_under_30_days_and_fails_at_30() {
        let just_under = NOW - Duration::days(30) + Duration::seconds(1);
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": iso(just_under)})),
            Pass
        );
        let at = NOW - Duration::days(30);
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": iso(at)})),
            Fail
        );
        // Epoch seconds, as a number and as a string.
        let epoch = (NOW - Duration::days(3)).unix_timestamp();
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": epoch})),
            Pass
        );
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": epoch.to_string()})),
            Pass
        );
        let old_epoch = (NOW - Duration::days(31)).unix_timestamp();
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": old_epoch})),
            Fail
        );
        assert_eq!(
            status_of("patch-age", json!({"last_patched_at": "last tuesday"})),
            NotApplicable
        );
        assert_eq!(status_of("patch-age", json!({})), NotApplicable);
    }

    #[test]
    fn backup_recency_passes_at_7_days_and_fails_after() {
        let at = NOW - Duration::days(7);
        assert_eq!(
            status_of("backup-recency", json!({"last_backup_at": iso(at)})),
            Pass
        );
        let after = at - Duration::seconds(1);
        assert_eq!(
            status_of("backup-recency", json!({"last_backup_at": iso(after)})),
            Fail
        );
        assert_eq!(
            status_of("backup-recency", json!({"last_backup_at": "2026-11-20"})),
            Pass
        );
    }

    #[test]
    fn certificate_expiry_fails_at_29_days_and_passes_at_30() {
        let in_29 = NOW + Duration::days(29);
        assert_eq!(
            status_of(
                "tls-cert-expiry",
                json!({"tls_cert_expires_at": iso(in_29)})
            ),
            Fail
        );
        let in_30 = NOW + Duration::days(30);
        assert_eq!(
            status_of(
                "tls-cert-expiry",
                json!({"tls_cert_expires_at": iso(in_30)})
            ),
            Pass
        );
        let expired = NOW - Duration::days(1);
        assert_eq!(
            status_of(
                "tls-cert-expiry",
                json!({"tls_cert_expires_at": iso(expired)})
            ),
            Fail
        );
    }

    #[test]
    fn open_ports_fail_on_any_high_risk_port() {
        assert_eq!(
            status_of("no-high-risk-open-ports", json!({"open_ports": [22, 443]})),
            Pass
        );
        assert_eq!(
            status_of("no-high-risk-open-ports", json!({"open_ports": []})),
            Pass
        );
        for risky in HIGH_RISK_PORTS {
            assert_eq!(
                status_of(
                    "no-high-risk-open-ports",
                    json!({"open_ports": [443, risky]})
                ),
                Fail
            );
        }
        assert_eq!(
            status_of("no-high-risk-open-ports", json!({"open_ports": "22, 3389"})),
            Fail
        );
        assert_eq!(
            status_of("no-high-risk-open-ports", json!({"open_ports": ["ssh"]})),
            NotApplicable
        );
    }

    #[test]
    fn owner_rules_read_the_owner() {
        let owner_id = Uuid::from_u128(1);
        let owned = asset(json!({}), Some(owner_id));
        let unowned = asset(json!({}), None);
        let with_mfa = OwnerSnapshot {
            mfa_enabled: true,
            active: true,
        };
        let without_mfa = OwnerSnapshot {
            mfa_enabled: false,
            active: true,
        };
        let judge = |id: &str, asset: &AssetSnapshot, owner: Option<&OwnerSnapshot>| {
            rule(id)
                .evaluate(&Subject {
                    asset,
                    owner,
                    now: NOW,
                })
                .status
        };
        assert_eq!(judge("owner-mfa", &owned, Some(&with_mfa)), Pass);
        assert_eq!(judge("owner-mfa", &owned, Some(&without_mfa)), Fail);
        assert_eq!(judge("owner-mfa", &unowned, None), NotApplicable);
        assert_eq!(
            judge("owner-mfa", &owned, None),
            NotApplicable,
            "an owner id naming no user"
        );
        assert_eq!(judge("has-owner", &owned, None), Pass);
        assert_eq!(
            judge("has-owner", &unowned, None),
            Fail,
            "never not applicable"
        );
    }

    #[test]
    fn evidence_says_what_was_observed_and_what_was_expected() {
        let patched = NOW - Duration::days(45);
        let outcome = judge("patch-age", json!({"last_patched_at": iso(patched)}));
        assert_eq!(outcome.status, Fail);
        assert_eq!(
            outcome.evidence,
            json!({
                "attribute": "last_patched_at",
                "observed": iso(patched),
                "expected": "less than 30 days before the run",
                "reason": "45.00 days before the run",
            })
        );
        let missing = judge("disk-encryption", json!({}));
        assert_eq!(
            missing.evidence,
            json!({
                "attribute": "disk_encrypted",
                "observed": null,
                "expected": "true",
                "reason": "disk_encrypted is missing",
            })
        );
        let ports = judge(
            "no-high-risk-open-ports",
            json!({"open_ports": [22, 23, 3389]}),
        );
        assert_eq!(ports.evidence["reason"], "high-risk ports open: [23, 3389]");
        assert_eq!(ports.evidence["observed"], json!([22, 23, 3389]));
    }

    #[test]
    fn a_changed_threshold_changes_the_digest() {
        let base = rule("password-max-age").info().clone();
        let mut changed = base.clone();
        changed.definition = Check::AtMost {
            key: "password_max_age_days",
            limit: 60.0,
        }
        .definition();
        assert_ne!(base.digest(), changed.digest());
        let mut reworded = base.clone();
        reworded.description = "Reworded.".into();
        assert_eq!(base.digest(), reworded.digest());
    }
}
