//! Events of the CMDB (SPEC section 3): assets, tags and dependencies.
//!
//! Uniqueness rules live in aggregate identities, not in read-model checks
//! that can be stale: a tag's id derives from its normalized name, a
//! dependency's from its `source → target` pair, and one open checkout per
//! asset is a rule of the asset's own stream (see [`tag_id_for`] and
//! [`dependency_id_for`]).

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The aggregate type string of assets in the event store.
pub const ASSET: &str = "asset";
/// The aggregate type string of tags.
pub const TAG: &str = "tag";
/// The aggregate type string of dependency edges.
pub const DEPENDENCY: &str = "dependency";

/// Namespace of the name-derived ids of this module (a fixed random UUID).
const CMDB_NAMESPACE: Uuid = Uuid::from_u128(0x5d0c_8f3e_2b9a_4c71_9e2d_4a6f_1b3c_7e90);

/// The id of the tag named `name` (case and surrounding space ignored): two
/// concurrent creations of one name meet on one stream.
pub fn tag_id_for(name: &str) -> Uuid {
    Uuid::new_v5(
        &CMDB_NAMESPACE,
        format!("tag:{}", name.trim().to_lowercase()).as_bytes(),
    )
}

/// The id of the edge "`source` depends on `target`": two concurrent
/// additions of one edge meet on one stream.
pub fn dependency_id_for(source: Uuid, target: Uuid) -> Uuid {
    Uuid::new_v5(
        &CMDB_NAMESPACE,
        format!("dependency:{source}:{target}").as_bytes(),
    )
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in a stable order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// Parses the wire spelling; `None` for anything else.
            pub fn parse(value: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|known| known.as_str() == value)
            }

            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                Self::ALL.iter().map(|known| known.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

wire_enum!(
    /// What kind of thing an asset is.
    AssetType {
        Host => "host",
        NetworkDevice => "network_device",
        Service => "service",
        SoftwareLicense => "software_license",
        CloudResource => "cloud_resource",
    }
);

wire_enum!(
    /// Where an asset is in its life.
    LifecycleState {
        Provisioning => "provisioning",
        Active => "active",
        Maintenance => "maintenance",
        Retired => "retired",
        Disposed => "disposed",
    }
);

wire_enum!(
    /// The environment an asset serves.
    Environment {
        Prod => "prod",
        Staging => "staging",
        Dev => "dev",
    }
);

impl AssetType {
    /// The short-code prefix of this type (`HST-` and so on).
    pub fn short_code_prefix(self) -> &'static str {
        match self {
            AssetType::Host => "HST",
            AssetType::NetworkDevice => "NET",
            AssetType::Service => "SVC",
            AssetType::SoftwareLicense => "LIC",
            AssetType::CloudResource => "CLD",
        }
    }
}

/// One changed field of an asset, typed: its value before and after.
///
/// Stored (version 2.0 of `AssetUpdated`) as `{"field": "<name>", "before":
/// …, "after": …}` with the field names of the API. A field this build does
/// not know, or a value of the wrong type, fails the decoding: nothing is
/// dropped on the way to `apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case", deny_unknown_fields)]
pub enum AssetChange {
    Name {
        before: String,
        after: String,
    },
    Environment {
        before: Environment,
        after: Environment,
    },
    Location {
        before: Option<String>,
        after: Option<String>,
    },
    Description {
        before: Option<String>,
        after: Option<String>,
    },
    OwnerId {
        before: Option<Uuid>,
        after: Option<Uuid>,
    },
    Attributes {
        before: Map<String, Value>,
        after: Map<String, Value>,
    },
    CustomFields {
        before: Map<String, Value>,
        after: Map<String, Value>,
    },
}

impl AssetChange {
    /// The API's name of the changed field.
    pub fn field(&self) -> &'static str {
        match self {
            AssetChange::Name { .. } => "name",
            AssetChange::Environment { .. } => "environment",
            AssetChange::Location { .. } => "location",
            AssetChange::Description { .. } => "description",
            AssetChange::OwnerId { .. } => "owner_id",
            AssetChange::Attributes { .. } => "attributes",
            AssetChange::CustomFields { .. } => "custom_fields",
        }
    }

    /// The value before and after, as JSON (for the audit's before/after).
    pub fn values(&self) -> (Value, Value) {
        fn pair<T: Serialize>(before: &T, after: &T) -> (Value, Value) {
            (
                serde_json::to_value(before).unwrap_or(Value::Null),
                serde_json::to_value(after).unwrap_or(Value::Null),
            )
        }
        match self {
            AssetChange::Name { before, after } => pair(before, after),
            AssetChange::Environment { before, after } => pair(before, after),
            AssetChange::Location { before, after } => pair(before, after),
            AssetChange::Description { before, after } => pair(before, after),
            AssetChange::OwnerId { before, after } => pair(before, after),
            AssetChange::Attributes { before, after } => pair(before, after),
            AssetChange::CustomFields { before, after } => pair(before, after),
        }
    }
}

/// `AssetUpdated` 1.0 → 2.0: the map `{field: {before, after}}` of JSON
/// values becomes the list of typed [`AssetChange`]s, in field-name order
/// (the order of the 1.0 map). Whether each value has its field's type is
/// then checked by the decoding.
pub(crate) fn asset_updated_1_0_to_2_0(payload: Value) -> Result<Value, String> {
    let Value::Object(mut outer) = payload else {
        return Err("not an object".into());
    };
    let Some(Value::Object(mut body)) = outer.remove("AssetUpdated") else {
        return Err("no AssetUpdated object".into());
    };
    let Some(Value::Object(changes)) = body.remove("changes") else {
        return Err("changes is not an object".into());
    };
    let mut list = Vec::with_capacity(changes.len());
    for (field, change) in changes {
        let Value::Object(mut change) = change else {
            return Err(format!("the change of {field} is not an object"));
        };
        let mut entry = Map::new();
        entry.insert("field".into(), Value::String(field.clone()));
        for side in ["before", "after"] {
            let value = change
                .remove(side)
                .ok_or_else(|| format!("the change of {field} has no {side}"))?;
            entry.insert(side.into(), value);
        }
        if let Some((extra, _)) = change.into_iter().next() {
            return Err(format!("the change of {field} has an unknown key {extra}"));
        }
        list.push(Value::Object(entry));
    }
    body.insert("changes".into(), Value::Array(list));
    outer.insert("AssetUpdated".into(), Value::Object(body));
    Ok(Value::Object(outer))
}

/// Everything that can happen to an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
pub enum AssetEvent {
    /// An asset entered the CMDB.
    AssetRegistered {
        asset_id: Uuid,
        short_code: String,
        name: String,
        asset_type: AssetType,
        lifecycle_state: LifecycleState,
        environment: Environment,
        location: Option<String>,
        description: Option<String>,
        owner_id: Option<Uuid>,
        attributes: Map<String, Value>,
        custom_fields: Map<String, Value>,
        #[serde(with = "time::serde::rfc3339")]
        registered_at: OffsetDateTime,
    },
    /// Fields changed; each with its value before and after, at most one
    /// change per field, in field-name order. Version 2.0: typed changes
    /// (1.0 held a map of JSON values, see [`asset_updated_1_0_to_2_0`]).
    AssetUpdated { changes: Vec<AssetChange> },
    /// The lifecycle state changed.
    AssetLifecycleChanged {
        from: LifecycleState,
        to: LifecycleState,
    },
    /// The asset was deleted; its history stays in the log.
    AssetDeleted,
    /// A tag was attached.
    AssetTagged { tag_id: Uuid },
    /// A tag was detached.
    AssetUntagged { tag_id: Uuid },
    /// The asset was handed to someone.
    AssetCheckedOut {
        checkout_id: Uuid,
        holder_id: Uuid,
        notes: Option<String>,
    },
    /// The asset came back.
    AssetCheckedIn { checkout_id: Uuid },
}

impl DomainEvent for AssetEvent {
    fn event_type(&self) -> String {
        match self {
            AssetEvent::AssetRegistered { .. } => "AssetRegistered",
            AssetEvent::AssetUpdated { .. } => "AssetUpdated",
            AssetEvent::AssetLifecycleChanged { .. } => "AssetLifecycleChanged",
            AssetEvent::AssetDeleted => "AssetDeleted",
            AssetEvent::AssetTagged { .. } => "AssetTagged",
            AssetEvent::AssetUntagged { .. } => "AssetUntagged",
            AssetEvent::AssetCheckedOut { .. } => "AssetCheckedOut",
            AssetEvent::AssetCheckedIn { .. } => "AssetCheckedIn",
        }
        .into()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(ASSET, &self.event_type())
    }
}

impl crate::decode::LogEvent for AssetEvent {
    const AGGREGATE_TYPE: &'static str = ASSET;
}

/// Everything that can happen to a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum TagEvent {
    /// A tag was created (again, after a deletion, under the same id).
    TagCreated {
        tag_id: Uuid,
        name: String,
        color: String,
    },
    /// The tag was deleted.
    TagDeleted,
}

impl DomainEvent for TagEvent {
    fn event_type(&self) -> String {
        match self {
            TagEvent::TagCreated { .. } => "TagCreated",
            TagEvent::TagDeleted => "TagDeleted",
        }
        .into()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(TAG, &self.event_type())
    }
}

impl crate::decode::LogEvent for TagEvent {
    const AGGREGATE_TYPE: &'static str = TAG;
}

/// Everything that can happen to a dependency edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum DependencyEvent {
    /// "`source_asset_id` depends on `target_asset_id`".
    DependencyAdded {
        dependency_id: Uuid,
        source_asset_id: Uuid,
        target_asset_id: Uuid,
        kind: Option<String>,
    },
    /// The edge was removed.
    DependencyRemoved,
}

impl DomainEvent for DependencyEvent {
    fn event_type(&self) -> String {
        match self {
            DependencyEvent::DependencyAdded { .. } => "DependencyAdded",
            DependencyEvent::DependencyRemoved => "DependencyRemoved",
        }
        .into()
    }

    fn event_version(&self) -> String {
        crate::catalog::written_version(DEPENDENCY, &self.event_type())
    }
}

impl crate::decode::LogEvent for DependencyEvent {
    const AGGREGATE_TYPE: &'static str = DEPENDENCY;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_ignore_case_and_space_but_not_direction() {
        assert_eq!(tag_id_for("Prod"), tag_id_for("  prod "));
        assert_ne!(tag_id_for("prod"), tag_id_for("staging"));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(dependency_id_for(a, b), dependency_id_for(a, b));
        assert_ne!(dependency_id_for(a, b), dependency_id_for(b, a));
    }

    #[test]
    fn enums_parse_only_their_wire_spellings() {
        for kind in AssetType::ALL {
            assert_eq!(AssetType::parse(kind.as_str()), Some(*kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                Value::String(kind.as_str().into())
            );
        }
        assert_eq!(AssetType::parse("Host"), None);
        assert_eq!(
            LifecycleState::parse("retired"),
            Some(LifecycleState::Retired)
        );
        assert_eq!(Environment::parse("production"), None);
        assert_eq!(Environment::expected(), "prod, staging, dev");
    }
}
