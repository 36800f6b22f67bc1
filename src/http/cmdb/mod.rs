//! The CMDB endpoints (API.md "CMDB", SPEC section 3): assets, tags,
//! dependencies and check-outs. Reads come from the CMDB projections; every
//! change is a command on an asset, tag or dependency aggregate; history
//! and `as_of` read the asset's own stream.
//!
//! This module holds what the resources share: the mapping of aggregate
//! refusals to API errors, existence checks against the read models, and
//! field validation.

pub mod assets;
pub mod cache;
pub mod checkouts;
pub mod dependencies;
pub mod tags;
pub mod transfer;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, DomainError};
use super::AppState;
use crate::domain::asset::AssetError;
use crate::domain::dependency::DependencyError;
use crate::domain::tag::TagError;
use crate::domain::text::{DisplayText, TextKind};

impl DomainError for AssetError {
    fn to_api_error(&self) -> ApiError {
        match self {
            AssetError::NotFound => ApiError::NotFound("asset"),
            AssetError::NotTagged => ApiError::NotFound("tag attachment"),
            AssetError::VersionMismatch { .. } => ApiError::PreconditionFailed,
            AssetError::ShortCodeTaken
            | AssetError::AlreadyTagged
            | AssetError::AlreadyCheckedOut
            | AssetError::NotCheckedOut => ApiError::Conflict(self.to_string()),
        }
    }
}

impl DomainError for TagError {
    fn to_api_error(&self) -> ApiError {
        match self {
            TagError::NameTaken => ApiError::Conflict(self.to_string()),
            TagError::NotFound => ApiError::NotFound("tag"),
        }
    }
}

impl DomainError for DependencyError {
    fn to_api_error(&self) -> ApiError {
        match self {
            DependencyError::Exists => ApiError::Conflict(self.to_string()),
            DependencyError::NotFound => ApiError::NotFound("dependency"),
        }
    }
}

/// Longest asset name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest location, in characters.
pub const MAX_LOCATION_CHARS: usize = 255;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Most keys in `attributes` or `custom_fields`.
pub const MAX_MAP_KEYS: usize = 100;
/// Largest `attributes` or `custom_fields`, serialized.
pub const MAX_MAP_BYTES: usize = 64 * 1024;
/// Longest free-text note (check-out notes, dependency kinds are shorter).
pub const MAX_NOTES_CHARS: usize = 2000;

/// The first key or string value of a map that [`DisplayText`]'s rule
/// refuses: keys are names (at most [`MAX_NAME_CHARS`]), string values free
/// text, at any depth.
fn map_text_problem(map: &Map<String, Value>) -> Option<String> {
    fn value_problem(value: &Value) -> Option<String> {
        match value {
            Value::String(text) => crate::domain::text::check(text, usize::MAX, TextKind::FreeText)
                .err()
                .map(|reason| reason.to_string()),
            Value::Array(items) => items.iter().find_map(value_problem),
            Value::Object(map) => map_text_problem(map),
            _ => None,
        }
    }
    map.iter().find_map(|(key, value)| {
        crate::domain::text::check(key, MAX_NAME_CHARS, TextKind::Name)
            .err()
            .map(|reason| format!("key {key:?}: {reason}"))
            .or_else(|| value_problem(value))
    })
}

/// Collects every problem of a request body, so one 422 names them all.
#[derive(Default)]
pub struct Problems(Vec<(&'static str, String)>);

impl Problems {
    /// Notes that `field` is invalid.
    pub fn add(&mut self, field: &'static str, reason: impl Into<String>) {
        self.0.push((field, reason.into()));
    }

    /// `Ok(value)` when nothing was noted, else the 422.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ApiError::invalid_fields(self.0))
        }
    }

    /// The 422 naming every noted problem.
    pub fn into_error(self) -> ApiError {
        ApiError::invalid_fields(self.0)
    }

    /// A required text field of `kind`: trimmed, 1 to `max` characters,
    /// checked by [`DisplayText`].
    pub fn text(&mut self, field: &'static str, raw: &str, max: usize, kind: TextKind) -> String {
        match DisplayText::parse(raw, max, kind) {
            Ok(text) => text.into_string(),
            Err(reason) => {
                self.add(field, reason.to_string());
                raw.trim().to_string()
            }
        }
    }

    /// An optional text field of `kind`: trimmed, at most `max`
    /// characters; empty means absent.
    pub fn optional_text(
        &mut self,
        field: &'static str,
        raw: Option<&str>,
        max: usize,
        kind: TextKind,
    ) -> Option<String> {
        let trimmed = raw.map(str::trim).filter(|value| !value.is_empty())?;
        if let Err(reason) = crate::domain::text::check(trimmed, max, kind) {
            self.add(field, reason.to_string());
        }
        Some(trimmed.to_string())
    }

    /// A free-form map (`attributes`, `custom_fields`): at most
    /// [`MAX_MAP_KEYS`] keys and [`MAX_MAP_BYTES`] serialized.
    pub fn map(&mut self, field: &'static str, map: &Map<String, Value>) {
        if map.len() > MAX_MAP_KEYS {
            self.add(field, format!("must have at most {MAX_MAP_KEYS} keys"));
        } else if let Some(reason) = map_text_problem(map) {
            self.add(field, reason);
        } else if serde_json::to_vec(map).map_or(usize::MAX, |bytes| bytes.len()) > MAX_MAP_BYTES {
            self.add(
                field,
                format!("must be at most {} KiB as JSON", MAX_MAP_BYTES / 1024),
            );
        }
    }

    /// A wire enum: parsed, or noted with the accepted spellings.
    pub fn choice<T>(
        &mut self,
        field: &'static str,
        raw: &str,
        parse: fn(&str) -> Option<T>,
        expected: fn() -> String,
    ) -> Option<T> {
        let parsed = parse(raw);
        if parsed.is_none() {
            self.add(field, format!("must be one of {}", expected()));
        }
        parsed
    }
}

/// Whether a user with `id` exists (active or not): owners and holders
/// must name a real user.
pub async fn user_exists(state: &AppState, id: Uuid) -> Result<bool, ApiError> {
    Ok(
        sqlx::query_scalar::<_, bool>("select exists (select 1 from users where id = $1)")
            .bind(id)
            .fetch_one(&state.pool)
            .await?,
    )
}

/// Whether the asset `id` exists now (not deleted) in the read model.
pub async fn asset_exists(state: &AppState, id: Uuid) -> Result<bool, ApiError> {
    Ok(
        sqlx::query_scalar::<_, bool>("select exists (select 1 from assets where id = $1)")
            .bind(id)
            .fetch_one(&state.pool)
            .await?,
    )
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`,
/// clear it) or a value (`Some(Some(v))`). Use with `#[serde(default)]`.
pub fn clearable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `{"status": "deleted", "<kind>_id": id}`, the answer of every delete.
pub fn deleted(kind: &str, id: Uuid) -> Value {
    let mut body = Map::new();
    body.insert("status".into(), Value::from("deleted"));
    body.insert(format!("{kind}_id"), Value::from(id.to_string()));
    Value::Object(body)
}
