//! The asset aggregate (SPEC section 3): registration, partial updates that
//! record each changed field's before and after, lifecycle, deletion, tags
//! and check-outs.
//!
//! An asset's id derives from its short code ([`asset_id_for`]), so two
//! registrations that drew the same code meet on one stream and the second
//! fails with [`AssetError::ShortCodeTaken`] (the caller draws again): short
//! codes stay unique under concurrency without a read-model check. Tags and
//! the one open check-out are rules of the asset's own stream.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use sentryops_events::cmdb::{
    AssetChange, AssetEvent, AssetType, Environment, LifecycleState, ASSET,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// Namespace of asset ids (UUIDv5 over the short code).
const ASSET_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2f6a_91c3_5d08_4b7e_a1c4_8e3b_0d72_6f15);

/// Crockford base32, as the short codes use it.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The id of the asset with `short_code`.
pub fn asset_id_for(short_code: &str) -> Uuid {
    Uuid::new_v5(&ASSET_ID_NAMESPACE, short_code.as_bytes())
}

/// A fresh short code for `asset_type`: its prefix, a dash and five random
/// Crockford base32 characters (`HST-7K2QX`).
pub fn draw_short_code(asset_type: AssetType) -> String {
    let random = Uuid::new_v4();
    let code: String = random.as_bytes()[..5]
        .iter()
        .map(|byte| CROCKFORD[usize::from(byte & 31)] as char)
        .collect();
    format!("{}-{code}", asset_type.short_code_prefix())
}

/// The editable fields of an asset, all validated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssetFields {
    pub name: String,
    pub environment: Option<Environment>,
    pub location: Option<String>,
    pub description: Option<String>,
    pub owner_id: Option<Uuid>,
    pub attributes: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
}

/// A partial update: `None` leaves a field alone; `Some(None)` clears an
/// optional one. `attributes` and `custom_fields` replace the whole map. A
/// new `lifecycle_state` is recorded as its own event, appended atomically
/// with the field changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssetPatch {
    pub name: Option<String>,
    pub lifecycle_state: Option<LifecycleState>,
    pub environment: Option<Environment>,
    pub location: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub owner_id: Option<Option<Uuid>>,
    pub attributes: Option<Map<String, Value>>,
    pub custom_fields: Option<Map<String, Value>>,
}

/// Commands on an asset.
#[derive(Debug, Clone, PartialEq)]
pub enum AssetCommand {
    Register {
        short_code: String,
        asset_type: AssetType,
        lifecycle_state: LifecycleState,
        environment: Environment,
        fields: AssetFields,
        tag_ids: Vec<Uuid>,
    },
    /// Applies `patch`; with `expected_version`, only if the asset is still
    /// at that version (`If-Match`).
    Update {
        patch: AssetPatch,
        expected_version: Option<u64>,
    },
    ChangeLifecycle {
        to: LifecycleState,
    },
    Delete,
    Tag {
        tag_id: Uuid,
    },
    Untag {
        tag_id: Uuid,
    },
    CheckOut {
        checkout_id: Uuid,
        holder_id: Uuid,
        notes: Option<String>,
    },
    CheckIn,
}

/// Why an asset command was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    #[error("the short code is taken")]
    ShortCodeTaken,
    #[error("asset")]
    NotFound,
    #[error("the asset has changed since the version given in If-Match")]
    VersionMismatch { current: u64 },
    #[error("the tag is already attached to the asset")]
    AlreadyTagged,
    #[error("the tag is not attached to the asset")]
    NotTagged,
    #[error("the asset is already checked out")]
    AlreadyCheckedOut,
    #[error("the asset is not checked out")]
    NotCheckedOut,
}

/// The asset's state: everything its decisions and its history need.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    registered: bool,
    short_code: String,
    asset_type: Option<AssetType>,
    deleted: bool,
    /// Events in the stream: the `version` of the API and its `ETag`.
    version: u64,
    lifecycle_state: Option<LifecycleState>,
    fields: AssetFields,
    tags: BTreeSet<Uuid>,
    open_checkout: Option<Uuid>,
}

impl Asset {
    /// The stream version (the `ETag`).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the asset was ever registered (a time-travel view before
    /// its registration has nothing to show).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Whether the asset was deleted (its history stays readable).
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The short code it was registered with.
    pub fn short_code(&self) -> &str {
        &self.short_code
    }

    /// Its type, once registered.
    pub fn asset_type(&self) -> Option<AssetType> {
        self.asset_type
    }

    /// Its lifecycle state, once registered.
    pub fn lifecycle_state(&self) -> Option<LifecycleState> {
        self.lifecycle_state
    }

    /// Its editable fields.
    pub fn fields(&self) -> &AssetFields {
        &self.fields
    }

    /// The tags attached to it.
    pub fn tags(&self) -> &BTreeSet<Uuid> {
        &self.tags
    }

    fn require_live(&self) -> Result<(), AssetError> {
        if self.registered && !self.deleted {
            Ok(())
        } else {
            Err(AssetError::NotFound)
        }
    }

    /// The field changes `patch` makes, in field-name order (the order of
    /// a 1.0 `AssetUpdated`'s map, so old and new events list alike).
    fn changes(&self, patch: AssetPatch) -> Vec<AssetChange> {
        let current = &self.fields;
        let mut changes = Vec::new();
        if let Some(after) = patch
            .attributes
            .filter(|after| *after != current.attributes)
        {
            changes.push(AssetChange::Attributes {
                before: current.attributes.clone(),
                after,
            });
        }
        if let Some(after) = patch
            .custom_fields
            .filter(|after| *after != current.custom_fields)
        {
            changes.push(AssetChange::CustomFields {
                before: current.custom_fields.clone(),
                after,
            });
        }
        if let Some(after) = patch
            .description
            .filter(|after| *after != current.description)
        {
            changes.push(AssetChange::Description {
                before: current.description.clone(),
                after,
            });
        }
        if let (Some(after), Some(before)) = (patch.environment, current.environment) {
            if after != before {
                changes.push(AssetChange::Environment { before, after });
            }
        }
        if let Some(after) = patch.location.filter(|after| *after != current.location) {
            changes.push(AssetChange::Location {
                before: current.location.clone(),
                after,
            });
        }
        if let Some(after) = patch.name.filter(|after| *after != current.name) {
            changes.push(AssetChange::Name {
                before: current.name.clone(),
                after,
            });
        }
        if let Some(after) = patch.owner_id.filter(|after| *after != current.owner_id) {
            changes.push(AssetChange::OwnerId {
                before: current.owner_id,
                after,
            });
        }
        changes
    }
}

impl Asset {
    /// Records a move to `to`, when it is a move.
    async fn change_lifecycle(&mut self, to: Option<LifecycleState>, sink: &EventSink<Self>) {
        let from = self.lifecycle_state;
        if let (Some(from), Some(to)) = (from, to) {
            if from != to {
                sink.write(AssetEvent::AssetLifecycleChanged { from, to }, self)
                    .await;
            }
        }
    }
}

impl Aggregate for Asset {
    const TYPE: &'static str = ASSET;
    type Command = AssetCommand;
    type Event = AssetEvent;
    type Error = AssetError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AssetCommand::Register {
                short_code,
                asset_type,
                lifecycle_state,
                environment,
                fields,
                tag_ids,
            } => {
                if self.registered {
                    return Err(AssetError::ShortCodeTaken);
                }
                let event = AssetEvent::AssetRegistered {
                    asset_id: asset_id_for(&short_code),
                    short_code,
                    name: fields.name,
                    asset_type,
                    lifecycle_state,
                    environment,
                    location: fields.location,
                    description: fields.description,
                    owner_id: fields.owner_id,
                    attributes: fields.attributes,
                    custom_fields: fields.custom_fields,
                    registered_at: OffsetDateTime::now_utc(),
                };
                sink.write(event, self).await;
                for tag_id in tag_ids.into_iter().collect::<BTreeSet<_>>() {
                    sink.write(AssetEvent::AssetTagged { tag_id }, self).await;
                }
                Ok(())
            }
            AssetCommand::Update {
                patch,
                expected_version,
            } => {
                self.require_live()?;
                if expected_version.is_some_and(|expected| expected != self.version) {
                    return Err(AssetError::VersionMismatch {
                        current: self.version,
                    });
                }
                let lifecycle = patch.lifecycle_state;
                let changes = self.changes(patch);
                if !changes.is_empty() {
                    sink.write(AssetEvent::AssetUpdated { changes }, self).await;
                }
                self.change_lifecycle(lifecycle, sink).await;
                Ok(())
            }
            AssetCommand::ChangeLifecycle { to } => {
                self.require_live()?;
                self.change_lifecycle(Some(to), sink).await;
                Ok(())
            }
            AssetCommand::Delete => {
                self.require_live()?;
                if let Some(checkout_id) = self.open_checkout {
                    // A deleted asset is in nobody's hands.
                    sink.write(AssetEvent::AssetCheckedIn { checkout_id }, self)
                        .await;
                }
                sink.write(AssetEvent::AssetDeleted, self).await;
                Ok(())
            }
            AssetCommand::Tag { tag_id } => {
                self.require_live()?;
                if self.tags.contains(&tag_id) {
                    return Err(AssetError::AlreadyTagged);
                }
                sink.write(AssetEvent::AssetTagged { tag_id }, self).await;
                Ok(())
            }
            AssetCommand::Untag { tag_id } => {
                self.require_live()?;
                if !self.tags.contains(&tag_id) {
                    return Err(AssetError::NotTagged);
                }
                sink.write(AssetEvent::AssetUntagged { tag_id }, self).await;
                Ok(())
            }
            AssetCommand::CheckOut {
                checkout_id,
                holder_id,
                notes,
            } => {
                self.require_live()?;
                if self.open_checkout.is_some() {
                    return Err(AssetError::AlreadyCheckedOut);
                }
                sink.write(
                    AssetEvent::AssetCheckedOut {
                        checkout_id,
                        holder_id,
                        notes,
                    },
                    self,
                )
                .await;
                Ok(())
            }
            AssetCommand::CheckIn => {
                self.require_live()?;
                let checkout_id = self.open_checkout.ok_or(AssetError::NotCheckedOut)?;
                sink.write(AssetEvent::AssetCheckedIn { checkout_id }, self)
                    .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            AssetEvent::AssetRegistered {
                short_code,
                asset_type,
                name,
                lifecycle_state,
                environment,
                location,
                description,
                owner_id,
                attributes,
                custom_fields,
                ..
            } => {
                self.registered = true;
                self.short_code = short_code;
                self.asset_type = Some(asset_type);
                self.lifecycle_state = Some(lifecycle_state);
                self.fields = AssetFields {
                    name,
                    environment: Some(environment),
                    location,
                    description,
                    owner_id,
                    attributes,
                    custom_fields,
                };
            }
            AssetEvent::AssetUpdated { changes } => {
                let fields = &mut self.fields;
                for change in changes {
                    match change {
                        AssetChange::Name { after, .. } => fields.name = after,
                        AssetChange::Environment { after, .. } => fields.environment = Some(after),
                        AssetChange::Location { after, .. } => fields.location = after,
                        AssetChange::Description { after, .. } => fields.description = after,
                        AssetChange::OwnerId { after, .. } => fields.owner_id = after,
                        AssetChange::Attributes { after, .. } => fields.attributes = after,
                        AssetChange::CustomFields { after, .. } => fields.custom_fields = after,
                    }
                }
            }
            AssetEvent::AssetLifecycleChanged { to, .. } => self.lifecycle_state = Some(to),
            AssetEvent::AssetDeleted => self.deleted = true,
            AssetEvent::AssetTagged { tag_id } => {
                self.tags.insert(tag_id);
            }
            AssetEvent::AssetUntagged { tag_id } => {
                self.tags.remove(&tag_id);
            }
            AssetEvent::AssetCheckedOut { checkout_id, .. } => {
                self.open_checkout = Some(checkout_id)
            }
            AssetEvent::AssetCheckedIn { .. } => self.open_checkout = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    fn registered() -> AssetEvent {
        AssetEvent::AssetRegistered {
            asset_id: asset_id_for("HST-ABCDE"),
            short_code: "HST-ABCDE".into(),
            name: "web-1".into(),
            asset_type: AssetType::Host,
            lifecycle_state: LifecycleState::Active,
            environment: Environment::Prod,
            location: None,
            description: None,
            owner_id: None,
            attributes: Map::new(),
            custom_fields: Map::new(),
            registered_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn framework() -> TestFramework<Asset> {
        TestFramework::<Asset>::with(())
    }

    #[test]
    fn short_codes_have_the_type_prefix_and_five_crockford_characters() {
        let code = draw_short_code(AssetType::NetworkDevice);
        let (prefix, rest) = code.split_once('-').expect("dash");
        assert_eq!(prefix, "NET");
        assert_eq!(rest.len(), 5);
        assert!(rest.bytes().all(|c| CROCKFORD.contains(&c)), "{code}");
        assert_eq!(asset_id_for(&code), asset_id_for(&code));
    }

    #[test]
    fn given_a_registered_asset_when_registered_again_then_the_short_code_is_taken() {
        framework()
            .given(vec![registered()])
            .when(AssetCommand::Register {
                short_code: "HST-ABCDE".into(),
                asset_type: AssetType::Host,
                lifecycle_state: LifecycleState::Active,
                environment: Environment::Prod,
                fields: AssetFields::default(),
                tag_ids: vec![],
            })
            .then_expect_error(AssetError::ShortCodeTaken);
    }

    #[test]
    fn given_no_asset_when_registered_with_tags_then_each_distinct_tag_is_attached() {
        let tag = Uuid::from_u128(7);
        framework()
            .given_no_previous_events()
            .when(AssetCommand::Register {
                short_code: "HST-ABCDE".into(),
                asset_type: AssetType::Host,
                lifecycle_state: LifecycleState::Active,
                environment: Environment::Prod,
                fields: AssetFields {
                    name: "web-1".into(),
                    ..AssetFields::default()
                },
                tag_ids: vec![tag, tag],
            })
            .inspect_result()
            .map(|events| {
                assert_eq!(events.len(), 2);
                assert_eq!(events[1], AssetEvent::AssetTagged { tag_id: tag });
            })
            .expect("registered");
    }

    #[test]
    fn given_an_asset_when_patched_then_only_changed_fields_are_recorded() {
        let mut attributes = Map::new();
        attributes.insert("disk_encrypted".into(), json!(true));
        let changes = vec![
            AssetChange::Attributes {
                before: Map::new(),
                after: attributes.clone(),
            },
            AssetChange::Location {
                before: None,
                after: Some("rack 4".into()),
            },
        ];
        framework()
            .given(vec![registered()])
            .when(AssetCommand::Update {
                patch: AssetPatch {
                    name: Some("web-1".into()),
                    location: Some(Some("rack 4".into())),
                    attributes: Some(attributes),
                    ..AssetPatch::default()
                },
                expected_version: Some(1),
            })
            .then_expect_events(vec![AssetEvent::AssetUpdated { changes }]);
    }

    #[test]
    fn given_a_deleted_or_since_changed_asset_when_patched_then_refused() {
        framework()
            .given(vec![registered(), AssetEvent::AssetDeleted])
            .when(AssetCommand::Update {
                patch: AssetPatch::default(),
                expected_version: Some(1),
            })
            .then_expect_error(AssetError::NotFound);
        framework()
            .given(vec![
                registered(),
                AssetEvent::AssetTagged {
                    tag_id: Uuid::from_u128(1),
                },
            ])
            .when(AssetCommand::Update {
                patch: AssetPatch {
                    name: Some("web-2".into()),
                    ..AssetPatch::default()
                },
                expected_version: Some(1),
            })
            .then_expect_error(AssetError::VersionMismatch { current: 2 });
    }

    #[test]
    fn given_an_asset_checked_out_when_checked_out_again_then_refused() {
        let checkout = AssetEvent::AssetCheckedOut {
            checkout_id: Uuid::from_u128(3),
            holder_id: Uuid::from_u128(4),
            notes: None,
        };
        framework()
            .given(vec![registered(), checkout.clone()])
            .when(AssetCommand::CheckOut {
                checkout_id: Uuid::from_u128(5),
                holder_id: Uuid::from_u128(6),
                notes: None,
            })
            .then_expect_error(AssetError::AlreadyCheckedOut);
        framework()
            .given(vec![registered()])
            .when(AssetCommand::CheckIn)
            .then_expect_error(AssetError::NotCheckedOut);
        framework()
            .given(vec![registered(), checkout])
            .when(AssetCommand::CheckIn)
            .then_expect_events(vec![AssetEvent::AssetCheckedIn {
                checkout_id: Uuid::from_u128(3),
            }]);
    }

    #[test]
    fn given_a_checked_out_asset_when_deleted_then_it_is_checked_in_first() {
        framework()
            .given(vec![
                registered(),
                AssetEvent::AssetCheckedOut {
                    checkout_id: Uuid::from_u128(3),
                    holder_id: Uuid::from_u128(4),
                    notes: None,
                },
            ])
            .when(AssetCommand::Delete)
            .then_expect_events(vec![
                AssetEvent::AssetCheckedIn {
                    checkout_id: Uuid::from_u128(3),
                },
                AssetEvent::AssetDeleted,
            ]);
        framework()
            .given(vec![registered(), AssetEvent::AssetDeleted])
            .when(AssetCommand::Delete)
            .then_expect_error(AssetError::NotFound);
    }

    #[test]
    fn given_tags_when_attached_twice_or_detached_unattached_then_refused() {
        let tag = Uuid::from_u128(9);
        framework()
            .given(vec![registered(), AssetEvent::AssetTagged { tag_id: tag }])
            .when(AssetCommand::Tag { tag_id: tag })
            .then_expect_error(AssetError::AlreadyTagged);
        framework()
            .given(vec![registered()])
            .when(AssetCommand::Untag { tag_id: tag })
            .then_expect_error(AssetError::NotTagged);
    }

    #[test]
    fn folding_an_update_reproduces_the_patched_fields() {
        let mut asset = Asset::default();
        asset.apply(registered());
        let patch = AssetPatch {
            name: Some("web-9".into()),
            environment: Some(Environment::Dev),
            owner_id: Some(Some(Uuid::from_u128(2))),
            description: Some(Some("edge".into())),
            ..AssetPatch::default()
        };
        let changes = asset.changes(patch);
        asset.apply(AssetEvent::AssetUpdated { changes });
        assert_eq!(asset.fields.name, "web-9");
        assert_eq!(asset.fields.environment, Some(Environment::Dev));
        assert_eq!(asset.fields.owner_id, Some(Uuid::from_u128(2)));
        assert_eq!(asset.fields.description.as_deref(), Some("edge"));
        assert_eq!(asset.version(), 2);
    }
}
