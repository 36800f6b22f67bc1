//! The one decoder of stored events: every reader of the log, in every
//! crate, turns a stored `(event_type, event_version, payload)` into a typed
//! event here and nowhere else.
//!
//! A stored event of an older version is brought to the current shape by the
//! chain of [`UPCASTERS`] (one step per version, on the JSON tree) before it
//! is decoded; an event at the current version is decoded straight from its
//! text, without building a `serde_json::Value` tree first. The stored row
//! is never rewritten: the log keeps what was written (it is hashed and
//! signed as written), and every reader sees the current shape.
//!
//! Decoding fails loudly: an unknown type or version, a payload that does
//! not parse, or a payload whose variant is not the row's `event_type` is a
//! [`DecodeError`], never a silently defaulted value.

use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::catalog;
use crate::cmdb::{AssetEvent, DependencyEvent, TagEvent};
use crate::compliance::ComplianceEvent;
use crate::session::SessionEvent;
use crate::user::UserEvent;

/// An event enum of one aggregate type, as the log stores it.
pub trait LogEvent: DomainEvent + Serialize + DeserializeOwned {
    /// The `aggregate_type` of its streams.
    const AGGREGATE_TYPE: &'static str;
}

/// Why a stored event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{aggregate_type} event {event_type} is not an event type this build knows")]
    UnknownType {
        aggregate_type: String,
        event_type: String,
    },
    #[error("{event_type} {event_version} is not a version this build reads (no upcaster)")]
    UnknownVersion {
        event_type: String,
        event_version: String,
    },
    #[error("{event_type} {event_version} does not decode: {reason}")]
    Payload {
        event_type: String,
        event_version: String,
        reason: String,
    },
    #[error("the payload of a {event_type} row holds a {found}")]
    Mismatch { event_type: String, found: String },
    #[error("the payload of this {event_type} was left out of the read")]
    LeftOut { event_type: String },
}

/// One step of an event's evolution: turns a payload at `from` into the
/// same event at `to`.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// The whole stored payload (`{"EventType": {...}}`) in, the payload at
    /// `to` out; `Err` with a reason when it cannot be read at `from`.
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Every upcaster, oldest step first. A version bump adds one here, a row
/// in [`catalog::EVENT_CATALOG`] and a fixture under `events/tests/fixtures`.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "RefreshTokenRotated",
        from: "1.0",
        to: "1.1",
        upcast: crate::session::rotation_1_0_to_1_1,
    },
    Upcaster {
        event_type: "AssetUpdated",
        from: "1.0",
        to: "2.0",
        upcast: crate::cmdb::asset_updated_1_0_to_2_0,
    },
];

/// Decodes a stored event of `E`'s aggregate type.
pub fn decode<E: LogEvent>(
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<E, DecodeError> {
    let current = catalog::current_version(E::AGGREGATE_TYPE, event_type).ok_or_else(|| {
        DecodeError::UnknownType {
            aggregate_type: E::AGGREGATE_TYPE.into(),
            event_type: event_type.into(),
        }
    })?;
    let failed = |reason: String| DecodeError::Payload {
        event_type: event_type.into(),
        event_version: event_version.into(),
        reason,
    };
    let event: E = if event_version == current {
        serde_json::from_str(payload).map_err(|error| failed(error.to_string()))?
    } else {
        let tree: Value =
            serde_json::from_str(payload).map_err(|error| failed(error.to_string()))?;
        let upcast = upcast(event_type, event_version, current, tree)?;
        serde_json::from_value(upcast).map_err(|error| failed(error.to_string()))?
    };
    let found = event.event_type();
    if found != event_type {
        return Err(DecodeError::Mismatch {
            event_type: event_type.into(),
            found,
        });
    }
    Ok(event)
}

/// Runs the upcaster chain of `event_type` from `from` to `to`.
fn upcast(
    event_type: &str,
    from: &str,
    to: &str,
    mut payload: Value,
) -> Result<Value, DecodeError> {
    let mut version = from;
    while version != to {
        let step = UPCASTERS
            .iter()
            .find(|step| step.event_type == event_type && step.from == version)
            .ok_or_else(|| DecodeError::UnknownVersion {
                event_type: event_type.into(),
                event_version: from.into(),
            })?;
        payload = (step.upcast)(payload).map_err(|reason| DecodeError::Payload {
            event_type: event_type.into(),
            event_version: version.into(),
            reason,
        })?;
        version = step.to;
    }
    Ok(payload)
}

/// An event of any aggregate type, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    User(UserEvent),
    Session(SessionEvent),
    Asset(AssetEvent),
    Tag(TagEvent),
    Dependency(DependencyEvent),
    ComplianceRun(ComplianceEvent),
}

impl AnyEvent {
    /// Decodes a stored event whatever its aggregate type.
    pub fn decode(
        aggregate_type: &str,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> Result<AnyEvent, DecodeError> {
        Ok(match aggregate_type {
            UserEvent::AGGREGATE_TYPE => {
                AnyEvent::User(decode(event_type, event_version, payload)?)
            }
            SessionEvent::AGGREGATE_TYPE => {
                AnyEvent::Session(decode(event_type, event_version, payload)?)
            }
            AssetEvent::AGGREGATE_TYPE => {
                AnyEvent::Asset(decode(event_type, event_version, payload)?)
            }
            TagEvent::AGGREGATE_TYPE => AnyEvent::Tag(decode(event_type, event_version, payload)?),
            DependencyEvent::AGGREGATE_TYPE => {
                AnyEvent::Dependency(decode(event_type, event_version, payload)?)
            }
            ComplianceEvent::AGGREGATE_TYPE => {
                AnyEvent::ComplianceRun(decode(event_type, event_version, payload)?)
            }
            _ => {
                return Err(DecodeError::UnknownType {
                    aggregate_type: aggregate_type.into(),
                    event_type: event_type.into(),
                })
            }
        })
    }

    /// The aggregate type of its stream.
    pub fn aggregate_type(&self) -> &'static str {
        match self {
            AnyEvent::User(_) => UserEvent::AGGREGATE_TYPE,
            AnyEvent::Session(_) => SessionEvent::AGGREGATE_TYPE,
            AnyEvent::Asset(_) => AssetEvent::AGGREGATE_TYPE,
            AnyEvent::Tag(_) => TagEvent::AGGREGATE_TYPE,
            AnyEvent::Dependency(_) => DependencyEvent::AGGREGATE_TYPE,
            AnyEvent::ComplianceRun(_) => ComplianceEvent::AGGREGATE_TYPE,
        }
    }

    /// The current-shape payload, as this build would write it.
    pub fn to_payload(&self) -> serde_json::Result<Value> {
        match self {
            AnyEvent::User(event) => serde_json::to_value(event),
            AnyEvent::Session(event) => serde_json::to_value(event),
            AnyEvent::Asset(event) => serde_json::to_value(event),
            AnyEvent::Tag(event) => serde_json::to_value(event),
            AnyEvent::Dependency(event) => serde_json::to_value(event),
            AnyEvent::ComplianceRun(event) => serde_json::to_value(event),
        }
    }

    /// The version this build writes it at.
    pub fn event_version(&self) -> String {
        match self {
            AnyEvent::User(event) => event.event_version(),
            AnyEvent::Session(event) => event.event_version(),
            AnyEvent::Asset(event) => event.event_version(),
            AnyEvent::Tag(event) => event.event_version(),
            AnyEvent::Dependency(event) => event.event_version(),
            AnyEvent::ComplianceRun(event) => event.event_version(),
        }
    }

    /// The variant names of the event enum of `aggregate_type` (every
    /// event type it can write), `None` for an unknown aggregate type.
    pub fn variants_of(aggregate_type: &str) -> Option<&'static [&'static str]> {
        use strum::VariantNames;
        Some(match aggregate_type {
            UserEvent::AGGREGATE_TYPE => UserEvent::VARIANTS,
            SessionEvent::AGGREGATE_TYPE => SessionEvent::VARIANTS,
            AssetEvent::AGGREGATE_TYPE => AssetEvent::VARIANTS,
            TagEvent::AGGREGATE_TYPE => TagEvent::VARIANTS,
            DependencyEvent::AGGREGATE_TYPE => DependencyEvent::VARIANTS,
            ComplianceEvent::AGGREGATE_TYPE => ComplianceEvent::VARIANTS,
            _ => return None,
        })
    }

    /// Every aggregate type with events.
    pub const AGGREGATE_TYPES: &'static [&'static str] = &[
        UserEvent::AGGREGATE_TYPE,
        SessionEvent::AGGREGATE_TYPE,
        AssetEvent::AGGREGATE_TYPE,
        TagEvent::AGGREGATE_TYPE,
        DependencyEvent::AGGREGATE_TYPE,
        ComplianceEvent::AGGREGATE_TYPE,
    ];

    /// The event type string.
    pub fn event_type(&self) -> String {
        match self {
            AnyEvent::User(event) => event.event_type(),
            AnyEvent::Session(event) => event.event_type(),
            AnyEvent::Asset(event) => event.event_type(),
            AnyEvent::Tag(event) => event.event_type(),
            AnyEvent::Dependency(event) => event.event_type(),
            AnyEvent::ComplianceRun(event) => event.event_type(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_version_or_type_fails_loudly() {
        let payload = r#"{"TagDeleted":null}"#;
        assert!(decode::<TagEvent>("TagDeleted", "1.0", r#""TagDeleted""#).is_ok());
        assert!(matches!(
            decode::<TagEvent>("TagDeleted", "0.9", payload),
            Err(DecodeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            decode::<TagEvent>("TagRenamed", "1.0", payload),
            Err(DecodeError::UnknownType { .. })
        ));
    }

    #[test]
    fn a_payload_of_another_variant_is_a_mismatch() {
        assert!(matches!(
            decode::<TagEvent>("TagCreated", "1.0", r#""TagDeleted""#),
            Err(DecodeError::Mismatch { .. })
        ));
    }

    #[test]
    fn every_upcaster_steps_between_catalogued_versions() {
        for step in UPCASTERS {
            let versions: Vec<&str> = catalog::EVENT_CATALOG
                .iter()
                .filter(|row| row.1 == step.event_type)
                .map(|row| row.2)
                .collect();
            assert!(
                versions.contains(&step.from),
                "{} {}",
                step.event_type,
                step.from
            );
            assert!(
                versions.contains(&step.to),
                "{} {}",
                step.event_type,
                step.to
            );
        }
        // Every old version has exactly one way forward.
        for (aggregate, event_type, version) in catalog::EVENT_CATALOG {
            let current = catalog::current_version(aggregate, event_type).expect("listed");
            let steps = UPCASTERS
                .iter()
                .filter(|step| step.event_type == *event_type && step.from == *version)
                .count();
            assert_eq!(
                steps,
                usize::from(*version != current),
                "{event_type} {version}"
            );
        }
    }
}
