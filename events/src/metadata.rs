//! Typed event metadata (SPEC section 7): who did it, from where, under which
//! request, and when.
//!
//! cqrs-es stores metadata as a `HashMap<String, String>`; [`EventMetadata`]
//! converts to and from that map without loss, and keeps unknown keys so that
//! metadata written by a newer version survives a round trip through an older
//! one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who caused an event: a user, the service itself, or an unauthenticated
/// caller (a failed login for an unknown email, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Actor {
    /// An authenticated user.
    User(Uuid),
    /// The service itself: start-up bootstrap, demo data, workers.
    System,
    /// The static admin token of the first increments: no longer accepted,
    /// kept so that events recorded under it still read back.
    StaticAdminToken,
    /// Nobody authenticated.
    Anonymous,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "{id}"),
            Actor::System => f.write_str("system"),
            Actor::StaticAdminToken => f.write_str("static-admin-token"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl From<Actor> for String {
    fn from(actor: Actor) -> Self {
        actor.to_string()
    }
}

impl TryFrom<String> for Actor {
    type Error = MetadataError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl std::str::FromStr for Actor {
    type Err = MetadataError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "system" => Ok(Actor::System),
            "static-admin-token" => Ok(Actor::StaticAdminToken),
            "anonymous" => Ok(Actor::Anonymous),
            other => Uuid::parse_str(other)
                .map(Actor::User)
                .map_err(|_| MetadataError::InvalidValue("actor")),
        }
    }
}

/// A metadata map that cannot be read back as [`EventMetadata`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A required key is absent.
    #[error("event metadata lacks `{0}`")]
    Missing(&'static str),
    /// A key holds a value of the wrong shape.
    #[error("event metadata has an invalid `{0}`")]
    InvalidValue(&'static str),
}

/// Metadata attached to every event appended by a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    /// Who caused the change.
    pub actor: Actor,
    /// Client address as seen by the service.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The request id (`x-request-id`) the change was made under.
    pub request_id: Option<String>,
    /// Groups the events of one business operation across aggregates.
    pub correlation_id: Option<String>,
    /// Unique per executed command: finds the events a command appended.
    pub command_id: Uuid,
    /// When the command was executed.
    pub occurred_at: OffsetDateTime,
    /// Keys this version does not know, kept for a lossless round trip.
    pub extra: BTreeMap<String, String>,
}

const ACTOR: &str = "actor";
const IP: &str = "ip";
const USER_AGENT: &str = "user_agent";
const REQUEST_ID: &str = "request_id";
const CORRELATION_ID: &str = "correlation_id";
const COMMAND_ID: &str = "command_id";
const OCCURRED_AT: &str = "occurred_at";
const KNOWN: [&str; 7] = [
    ACTOR,
    IP,
    USER_AGENT,
    REQUEST_ID,
    CORRELATION_ID,
    COMMAND_ID,
    OCCURRED_AT,
];

impl EventMetadata {
    /// Metadata for a command issued by `actor` now, outside any request.
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            ip: None,
            user_agent: None,
            request_id: None,
            correlation_id: None,
            command_id: Uuid::new_v4(),
            occurred_at: OffsetDateTime::now_utc(),
            extra: BTreeMap::new(),
        }
    }

    /// Metadata for the service's own changes (bootstrap, demo data).
    pub fn system() -> Self {
        Self::new(Actor::System)
    }

    /// The map cqrs-es stores with each event.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = self.extra.clone().into_iter().collect();
        map.insert(ACTOR.into(), self.actor.to_string());
        let optional = [
            (IP, &self.ip),
            (USER_AGENT, &self.user_agent),
            (REQUEST_ID, &self.request_id),
            (CORRELATION_ID, &self.correlation_id),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.into(), value.clone());
            }
        }
        map.insert(COMMAND_ID.into(), self.command_id.to_string());
        map.insert(
            OCCURRED_AT.into(),
            self.occurred_at
                .format(&Rfc3339)
                .expect("an OffsetDateTime always formats as RFC 3339"),
        );
        map
    }

    /// Reads the map back. `actor`, `command_id` and `occurred_at` are
    /// required; everything else is optional.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let required = |key: &'static str| map.get(key).ok_or(MetadataError::Missing(key));
        let actor = required(ACTOR)?.parse()?;
        let command_id = Uuid::parse_str(required(COMMAND_ID)?)
            .map_err(|_| MetadataError::InvalidValue(COMMAND_ID))?;
        let occurred_at = OffsetDateTime::parse(required(OCCURRED_AT)?, &Rfc3339)
            .map_err(|_| MetadataError::InvalidValue(OCCURRED_AT))?;
        let extra = map
            .iter()
            .filter(|(key, _)| !KNOWN.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Ok(Self {
            actor,
            ip: map.get(IP).cloned(),
            user_agent: map.get(USER_AGENT).cloned(),
            request_id: map.get(REQUEST_ID).cloned(),
            correlation_id: map.get(CORRELATION_ID).cloned(),
            command_id,
            occurred_at,
            extra,
        })
    }

    /// Reads metadata from the stored JSON text (the store's `metadata`
    /// column), straight into the map, without a `serde_json::Value` tree.
    /// Non-string values are refused rather than guessed at.
    pub fn from_json_text(text: &str) -> Result<Self, MetadataError> {
        let map = serde_json::from_str::<HashMap<String, String>>(text)
            .map_err(|_| MetadataError::InvalidValue("metadata"))?;
        Self::from_map(&map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> EventMetadata {
        let mut meta = EventMetadata::new(Actor::User(Uuid::new_v4()));
        meta.ip = Some("192.0.2.7".into());
        meta.user_agent = Some("curl/8.5".into());
        meta.request_id = Some("req-1".into());
        meta.correlation_id = Some("corr-1".into());
        meta.occurred_at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("valid timestamp");
        meta.extra.insert("tenant".into(), "acme".into());
        meta
    }

    #[test]
    fn round_trips_through_the_store_map_without_loss() {
        let meta = full();
        assert_eq!(EventMetadata::from_map(&meta.to_map()), Ok(meta));
    }

    #[test]
    fn round_trips_with_only_required_keys() {
        let meta = EventMetadata::system();
        let back = EventMetadata::from_map(&meta.to_map()).expect("readable");
        assert_eq!(back, meta);
        assert_eq!(back.ip, None);
    }

    #[test]
    fn refuses_a_map_without_an_actor() {
        let mut map = full().to_map();
        map.remove("actor");
        assert_eq!(
            EventMetadata::from_map(&map),
            Err(MetadataError::Missing("actor"))
        );
    }

    #[test]
    fn refuses_a_malformed_actor() {
        let mut map = full().to_map();
        map.insert("actor".into(), "root; drop table".into());
        assert_eq!(
            EventMetadata::from_map(&map),
            Err(MetadataError::InvalidValue("actor"))
        );
    }

    #[test]
    fn actor_spellings_are_stable() {
        for actor in [Actor::System, Actor::StaticAdminToken, Actor::Anonymous] {
            assert_eq!(actor.to_string().parse::<Actor>(), Ok(actor));
        }
    }
}
