//! The demo CMDB: about 30 assets across every type and environment, with
//! posture attributes in the one vocabulary the compliance rules read
//! ([`POSTURE_KEYS`]), dependency edges (one mutual pair, so traversals meet
//! a cycle), tags, an open check-out, and owners with and without MFA.
//!
//! Demo assets have fixed short codes (`HST-D0001`, …), so their ids are
//! fixed too and a second load finds them registered: loading is
//! idempotent through the aggregates, like every other uniqueness rule.

use cqrs_es::AggregateError;
use sentryops_events::cmdb::{tag_id_for, AssetType, Environment, LifecycleState};
use sentryops_events::EventMetadata;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::domain::asset::{asset_id_for, AssetCommand, AssetError, AssetFields};
use crate::domain::dependency::{DependencyCommand, DependencyError};
use crate::domain::tag::{TagCommand, TagError};
use crate::http::AppState;
use sentryops_events::cmdb::dependency_id_for;

/// The posture attributes the compliance rules read (API.md
/// "Compliance"): API, rules and demo data share this one vocabulary.
pub const POSTURE_KEYS: [&str; 14] = [
    "disk_encrypted",
    "encryption_in_transit",
    "edr_installed",
    "antivirus_installed",
    "has_default_credentials",
    "password_max_age_days",
    "logging_enabled",
    "log_retention_days",
    "last_backup_at",
    "firewall_enabled",
    "open_ports",
    "tls_cert_expires_at",
    "last_patched_at",
    "os_supported",
];

/// Demo tags: name and color.
const TAGS: [(&str, &str); 4] = [
    ("pci", "#dc2626"),
    ("customer-facing", "#2563eb"),
    ("legacy", "#d97706"),
    ("backup-critical", "#16a34a"),
];

/// How an asset is kept, which decides its posture attributes.
#[derive(Clone, Copy)]
enum Posture {
    /// Everything in order.
    Hardened,
    /// Patches, backups and password ages overdue.
    Lagging,
    /// Default credentials, risky ports, no EDR or firewall.
    Exposed,
    /// Out of support.
    Unsupported,
    /// A network device: firewall, ports, TLS, logging.
    Network { cert_days: i64 },
    /// A service: transport encryption, TLS and logging.
    Service { cert_days: i64 },
    /// A cloud resource: encryption, backups, logging.
    Cloud,
    /// No posture at all (a license): every rule is not applicable.
    None,
}

fn at(days_from_now: i64) -> Value {
    let moment = OffsetDateTime::now_utc() + Duration::days(days_from_now);
    Value::from(moment.format(&Rfc3339).unwrap_or_default())
}

impl Posture {
    fn attributes(self) -> Map<String, Value> {
        let value = match self {
            Posture::Hardened => json!({
                "disk_encrypted": true, "edr_installed": true, "antivirus_installed": true,
                "has_default_credentials": false, "password_max_age_days": 60,
                "logging_enabled": true, "log_retention_days": 90, "last_backup_at": at(-1),
                "firewall_enabled": true, "open_ports": [22, 443], "last_patched_at": at(-6),
                "os_supported": true,
            }),
            Posture::Lagging => json!({
                "disk_encrypted": true, "edr_installed": true, "antivirus_installed": "yes",
                "has_default_credentials": "no", "password_max_age_days": 180,
                "logging_enabled": "enabled", "log_retention_days": 14, "last_backup_at": at(-12),
                "firewall_enabled": true, "open_ports": [22, 8080], "last_patched_at": at(-75),
                "os_supported": true,
            }),
            Posture::Exposed => json!({
                "disk_encrypted": false, "edr_installed": false, "antivirus_installed": false,
                "has_default_credentials": true, "logging_enabled": false,
                "firewall_enabled": "off", "open_ports": [21, 23, 3389],
                "last_patched_at": at(-200), "os_supported": true,
            }),
            Posture::Unsupported => json!({
                "disk_encrypted": false, "edr_installed": true, "antivirus_installed": true,
                "has_default_credentials": false, "logging_enabled": true,
                "log_retention_days": 30, "last_backup_at": at(-3), "firewall_enabled": true,
                "open_ports": [445], "last_patched_at": at(-400), "os_supported": false,
            }),
            Posture::Network { cert_days } => json!({
                "has_default_credentials": false, "logging_enabled": true,
                "log_retention_days": 365, "firewall_enabled": true, "open_ports": [22, 443],
                "tls_cert_expires_at": at(cert_days), "last_patched_at": at(-20),
                "os_supported": true,
            }),
            Posture::Service { cert_days } => json!({
                "encryption_in_transit": true, "logging_enabled": true,
                "log_retention_days": 30, "tls_cert_expires_at": at(cert_days),
            }),
            Posture::Cloud => json!({
                "disk_encrypted": true, "encryption_in_transit": true, "logging_enabled": true,
                "log_retention_days": 400, "last_backup_at": at(0),
            }),
            Posture::None => json!({}),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// The demo people who own assets: `(email, name, role, mfa_enabled)`.
pub const OWNERS: [(&str, &str, sentryops_events::Role, bool); 3] = [
    (
        "alice@sentryops.local",
        "Alice Ops",
        sentryops_events::Role::Operator,
        true,
    ),
    (
        "bob@sentryops.local",
        "Bob Dev",
        sentryops_events::Role::Viewer,
        false,
    ),
    (
        "carol@sentryops.local",
        "Carol Sec",
        sentryops_events::Role::Admin,
        true,
    ),
];

/// One demo asset.
struct DemoAsset {
    name: &'static str,
    asset_type: AssetType,
    environment: Environment,
    lifecycle_state: LifecycleState,
    /// Index into [`OWNERS`].
    owner: Option<usize>,
    location: &'static str,
    posture: Posture,
    tags: &'static [&'static str],
}

const fn asset(
    name: &'static str,
    asset_type: AssetType,
    environment: Environment,
    owner: Option<usize>,
    location: &'static str,
    posture: Posture,
    tags: &'static [&'static str],
) -> DemoAsset {
    DemoAsset {
        name,
        asset_type,
        environment,
        lifecycle_state: LifecycleState::Active,
        owner,
        location,
        posture,
        tags,
    }
}

const fn in_state(mut demo: DemoAsset, lifecycle_state: LifecycleState) -> DemoAsset {
    demo.lifecycle_state = lifecycle_state;
    demo
}

use AssetType::{CloudResource, Host, NetworkDevice, Service, SoftwareLicense};
use Environment::{Dev, Prod, Staging};

#[rustfmt::skip]
const ASSETS: [DemoAsset; 30] = [
    asset("web-prod-01", Host, Prod, Some(0), "dc-1 rack 4", Posture::Hardened, &["customer-facing"]),
    asset("web-prod-02", Host, Prod, Some(0), "dc-1 rack 4", Posture::Hardened, &["customer-facing"]),
    asset("web-prod-03", Host, Prod, Some(1), "dc-2 rack 1", Posture::Lagging, &["customer-facing"]),
    asset("db-prod-01", Host, Prod, Some(2), "dc-1 rack 9", Posture::Hardened, &["pci", "backup-critical"]),
    asset("db-prod-02", Host, Prod, Some(1), "dc-2 rack 9", Posture::Lagging, &["backup-critical"]),
    asset("app-staging-01", Host, Staging, Some(1), "dc-2 rack 2", Posture::Lagging, &[]),
    asset("app-staging-02", Host, Staging, None, "dc-2 rack 2", Posture::Lagging, &[]),
    asset("build-agent-01", Host, Dev, None, "office lab", Posture::Exposed, &[]),
    asset("jump-host-01", Host, Prod, Some(1), "dc-1 rack 1", Posture::Exposed, &[]),
    in_state(
        asset("legacy-erp-01", Host, Prod, Some(2), "dc-1 rack 12", Posture::Unsupported, &["legacy"]),
        LifecycleState::Maintenance,
    ),
    asset("laptop-it-07", Host, Prod, Some(0), "it storeroom", Posture::Hardened, &[]),
    in_state(
        asset("kiosk-lobby", Host, Prod, None, "lobby", Posture::Unsupported, &["legacy"]),
        LifecycleState::Retired,
    ),
    asset("core-sw-01", NetworkDevice, Prod, Some(2), "dc-1 rack 1", Posture::Network { cert_days: 200 }, &[]),
    asset("edge-fw-01", NetworkDevice, Prod, Some(2), "dc-1 rack 1", Posture::Network { cert_days: 90 }, &["pci"]),
    asset("wifi-ctrl-01", NetworkDevice, Staging, Some(1), "office", Posture::Network { cert_days: 45 }, &[]),
    asset("vpn-gw-01", NetworkDevice, Prod, Some(0), "dc-1 rack 1", Posture::Network { cert_days: 12 }, &[]),
    asset("lab-switch", NetworkDevice, Dev, None, "office lab", Posture::Exposed, &[]),
    asset("checkout-api", Service, Prod, Some(0), "k8s prod", Posture::Service { cert_days: 70 }, &["pci", "customer-facing"]),
    asset("payments-svc", Service, Prod, Some(2), "k8s prod", Posture::Service { cert_days: 20 }, &["pci"]),
    asset("auth-svc", Service, Prod, Some(0), "k8s prod", Posture::Service { cert_days: 150 }, &["customer-facing"]),
    asset("search-svc", Service, Staging, Some(1), "k8s staging", Posture::Service { cert_days: 300 }, &[]),
    asset("reporting-svc", Service, Dev, None, "k8s dev", Posture::Service { cert_days: -3 }, &[]),
    asset("status-page", Service, Prod, Some(1), "saas", Posture::Service { cert_days: 60 }, &["customer-facing"]),
    asset("office-suite", SoftwareLicense, Prod, Some(2), "", Posture::None, &[]),
    asset("db-enterprise", SoftwareLicense, Prod, Some(2), "", Posture::None, &["pci"]),
    asset("monitoring-saas", SoftwareLicense, Prod, None, "", Posture::None, &[]),
    asset("s3-backups", CloudResource, Prod, Some(2), "eu-west-1", Posture::Cloud, &["backup-critical"]),
    asset("rds-main", CloudResource, Prod, Some(0), "eu-west-1", Posture::Cloud, &["pci", "backup-critical"]),
    asset("k8s-prod-cluster", CloudResource, Prod, Some(0), "eu-west-1", Posture::Cloud, &[]),
    in_state(
        asset("sandbox-vpc", CloudResource, Dev, Some(1), "eu-central-1", Posture::Cloud, &[]),
        LifecycleState::Provisioning,
    ),
];

/// "source depends on target", by asset name. `core-sw-01` and
/// `edge-fw-01` depend on each other: a cycle for the traversals.
#[rustfmt::skip]
const EDGES: [(&str, &str, &str); 23] = [
    ("web-prod-01", "checkout-api", "calls"),
    ("web-prod-02", "checkout-api", "calls"),
    ("web-prod-03", "search-svc", "calls"),
    ("web-prod-01", "core-sw-01", "network"),
    ("checkout-api", "payments-svc", "calls"),
    ("checkout-api", "auth-svc", "calls"),
    ("checkout-api", "db-prod-01", "stores_in"),
    ("payments-svc", "db-prod-01", "stores_in"),
    ("payments-svc", "rds-main", "stores_in"),
    ("auth-svc", "db-prod-02", "stores_in"),
    ("search-svc", "k8s-prod-cluster", "runs_on"),
    ("reporting-svc", "db-prod-02", "reads"),
    ("status-page", "checkout-api", "monitors"),
    ("status-page", "auth-svc", "monitors"),
    ("legacy-erp-01", "db-prod-02", "stores_in"),
    ("db-prod-01", "s3-backups", "backs_up_to"),
    ("db-prod-02", "s3-backups", "backs_up_to"),
    ("db-prod-01", "db-enterprise", "licensed_by"),
    ("k8s-prod-cluster", "core-sw-01", "network"),
    ("core-sw-01", "edge-fw-01", "network"),
    ("edge-fw-01", "core-sw-01", "management"),
    ("vpn-gw-01", "edge-fw-01", "network"),
    ("jump-host-01", "vpn-gw-01", "network"),
];

/// The fixed short code of the `index`-th demo asset (`HST-D0001`).
fn demo_short_code(asset_type: AssetType, index: usize) -> String {
    format!("{}-D{:04}", asset_type.short_code_prefix(), index + 1)
}

/// The id of the demo asset named `name`.
pub fn demo_asset_id(name: &str) -> Option<Uuid> {
    ASSETS
        .iter()
        .enumerate()
        .find(|(_, demo)| demo.name == name)
        .map(|(index, demo)| asset_id_for(&demo_short_code(demo.asset_type, index)))
}

/// Loads tags, assets, edges and one open check-out; returns how many
/// assets it registered (0 on a second load). `owners` are the user ids of
/// [`OWNERS`], in order.
pub async fn load(state: &AppState, owners: &[Uuid]) -> anyhow::Result<usize> {
    let metadata = EventMetadata::system;
    let mut last = None;
    for (name, color) in TAGS {
        let created = state
            .commands
            .tag(
                tag_id_for(name),
                TagCommand::Create {
                    name: name.into(),
                    color: color.into(),
                },
                metadata(),
            )
            .await;
        match created {
            Ok(position) => last = last.max(position),
            Err(AggregateError::UserError(TagError::NameTaken)) => {}
            Err(error) => anyhow::bail!("demo tag {name}: {error}"),
        }
    }
    let mut registered = 0;
    for (index, demo) in ASSETS.iter().enumerate() {
        let short_code = demo_short_code(demo.asset_type, index);
        let id = asset_id_for(&short_code);
        let command = AssetCommand::Register {
            short_code,
            asset_type: demo.asset_type,
            lifecycle_state: demo.lifecycle_state,
            environment: demo.environment,
            fields: AssetFields {
                name: demo.name.into(),
                environment: Some(demo.environment),
                location: Some(demo.location)
                    .filter(|location| !location.is_empty())
                    .map(str::to_string),
                description: None,
                owner_id: demo.owner.and_then(|owner| owners.get(owner).copied()),
                attributes: demo.posture.attributes(),
                custom_fields: Map::new(),
            },
            tag_ids: demo.tags.iter().map(|tag| tag_id_for(tag)).collect(),
        };
        match state.commands.asset(id, command, metadata()).await {
            Ok(position) => {
                registered += 1;
                last = last.max(position);
            }
            Err(AggregateError::UserError(AssetError::ShortCodeTaken)) => {}
            Err(error) => anyhow::bail!("demo asset {}: {error}", demo.name),
        }
    }
    for (source, target, kind) in EDGES {
        let (Some(source), Some(target)) = (demo_asset_id(source), demo_asset_id(target)) else {
            anyhow::bail!("demo edge {source} → {target} names an unknown asset");
        };
        let added = state
            .commands
            .dependency(
                dependency_id_for(source, target),
                DependencyCommand::Add {
                    source_asset_id: source,
                    target_asset_id: target,
                    kind: Some(kind.into()),
                },
                metadata(),
            )
            .await;
        match added {
            Ok(position) => last = last.max(position),
            Err(AggregateError::UserError(DependencyError::Exists)) => {}
            Err(error) => anyhow::bail!("demo edge: {error}"),
        }
    }
    // The laptop is out with Bob, on the first load only: a later load
    // must not undo a check-in someone made.
    if registered > 0 {
        if let (Some(laptop), Some(bob)) = (demo_asset_id("laptop-it-07"), owners.get(1)) {
            let checked_out = state
                .commands
                .asset(
                    laptop,
                    AssetCommand::CheckOut {
                        checkout_id: Uuid::new_v4(),
                        holder_id: *bob,
                        notes: Some("on-call rotation".into()),
                    },
                    metadata(),
                )
                .await;
            match checked_out {
                Ok(position) => last = last.max(position),
                Err(AggregateError::UserError(AssetError::AlreadyCheckedOut)) => {}
                Err(error) => anyhow::bail!("demo check-out: {error}"),
            }
        }
    }
    // Visible as soon as the demo is "loaded".
    if let Some(position) = last {
        state.await_read_models(position).await;
    }
    Ok(registered)
}
