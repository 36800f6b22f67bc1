//! `/api/v1/assets`: list, register, read (now or `as_of` a past time),
//! partial update with `If-Match`, lifecycle, delete, history.
//!
//! Current reads come from the `assets` projection in one statement (tags
//! included). Time travel and history read the asset's own stream, which
//! deletion does not touch.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use cqrs_es::{Aggregate, AggregateError};
use sentryops_events::cmdb::{AssetEvent, AssetType, Environment, LifecycleState, TagEvent, ASSET};
use sentryops_events::{describe, EventMetadata};
use sentryops_projections::store::{self, StreamRange};
use sentryops_projections::LogPosition;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::cache::{AssetKey, CachedView};
use super::{
    clearable, deleted, user_exists, Problems, MAX_DESCRIPTION_CHARS, MAX_LOCATION_CHARS,
    MAX_NAME_CHARS,
};
use crate::domain::asset::{
    asset_id_for, draw_short_code, Asset, AssetCommand, AssetError, AssetFields, AssetPatch,
};
use crate::domain::text::TextKind;
use crate::http::audit::page_bounds;
use crate::http::error::ApiError;
use crate::http::extract::{
    Admin, ApiJson, ApiPath, ApiQuery, Authenticated, Operator, RequestContext,
};
use crate::http::response::{envelope_bytes, Answer, Page};
use crate::http::AppState;

/// A tag as an asset shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct TagRef {
    pub id: Uuid,
    pub name: String,
    pub color: String,
}

/// An asset as the API shows it (API.md "CMDB").
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AssetView {
    pub id: Uuid,
    pub short_code: String,
    pub name: String,
    pub asset_type: String,
    pub lifecycle_state: String,
    pub environment: String,
    pub location: Option<String>,
    pub description: Option<String>,
    pub owner_id: Option<Uuid>,
    pub attributes: Value,
    pub custom_fields: Value,
    pub tags: Json<Vec<TagRef>>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl AssetView {
    /// The answer with its `ETag`.
    fn answer(self, answer: impl FnOnce(Self) -> Answer<Self>) -> Response {
        let etag = etag(self.version);
        ([(header::ETAG, etag)], answer(self)).into_response()
    }
}

/// `ETag: "<version>"` (a number is always a valid header value).
fn etag(version: i64) -> HeaderValue {
    HeaderValue::try_from(format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The asset `id` from the read model, with its tags; `None` when there
/// is none (never registered, or deleted).
pub async fn find(state: &AppState, id: Uuid) -> Result<Option<AssetView>, ApiError> {
    Ok(sqlx::query_as(
        "select a.id, a.short_code, a.name, a.asset_type, a.lifecycle_state, a.environment, \
             a.location, a.description, a.owner_id, a.attributes, a.custom_fields, a.version, \
             a.created_at, a.updated_at, \
             coalesce((select jsonb_agg(jsonb_build_object('id', t.id, 'name', t.name, \
                          'color', t.color) order by lower(t.name), t.id) \
                       from asset_tags at join tags t on t.id = at.tag_id \
                       where at.asset_id = a.id), '[]'::jsonb) as tags \
         from assets a where a.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?)
}

/// The asset `id` folded from its own events recorded up to `as_of` (all of
/// them without): what it was then, also after a later deletion. `None`
/// when it was not registered yet.
pub async fn fold_from_log(
    state: &AppState,
    id: Uuid,
    as_of: Option<OffsetDateTime>,
) -> Result<Option<AssetView>, ApiError> {
    let range = StreamRange {
        until_time: as_of,
        until_position: None,
    };
    let events = store::read_stream::<AssetEvent>(&state.pool, &id.to_string(), range).await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(None);
    };
    let (created_at, updated_at) = (first.stored.recorded_at, last.stored.recorded_at);
    // The aggregate's own fold: the view is exactly the state its
    // decisions saw.
    let mut asset = Asset::default();
    for recorded in events {
        asset.apply(recorded.event);
    }
    if !asset.is_registered() {
        return Ok(None);
    }
    let tag_ids: Vec<String> = asset.tags().iter().map(Uuid::to_string).collect();
    // Names from the tags' own creation events up to `as_of`: a tag
    // deleted (or deleted and re-created) since then has the name it had.
    let created =
        store::read_latest_of::<TagEvent>(&state.pool, &tag_ids, "TagCreated", as_of).await?;
    let mut tags: Vec<TagRef> = created
        .into_iter()
        .filter_map(|recorded| match recorded.event {
            TagEvent::TagCreated {
                tag_id,
                name,
                color,
            } => Some(TagRef {
                id: tag_id,
                name,
                color,
            }),
            TagEvent::TagDeleted => None,
        })
        .collect();
    tags.sort_by_key(|tag| (tag.name.to_lowercase(), tag.id));
    let fields = asset.fields();
    Ok(Some(AssetView {
        id,
        short_code: asset.short_code().to_string(),
        name: fields.name.clone(),
        asset_type: asset.asset_type().map_or("", AssetType::as_str).to_string(),
        lifecycle_state: asset
            .lifecycle_state()
            .map_or("", LifecycleState::as_str)
            .to_string(),
        environment: fields
            .environment
            .map_or("", Environment::as_str)
            .to_string(),
        location: fields.location.clone(),
        description: fields.description.clone(),
        owner_id: fields.owner_id,
        attributes: Value::Object(fields.attributes.clone()),
        custom_fields: Value::Object(fields.custom_fields.clone()),
        tags: Json(tags),
        version: i64::try_from(asset.version()).unwrap_or(i64::MAX),
        created_at,
        updated_at,
    }))
}

/// Read-your-writes for a change of assets: waits (bounded) for the read
/// models, then drops the changed assets' cached views here and on every
/// replica, so the next read sees the change.
/// Returns whether the read models caught up (always, when nothing was
/// appended).
pub async fn settle_asset_change(
    state: &AppState,
    ids: &[Uuid],
    position: Option<LogPosition>,
) -> bool {
    let Some(position) = position else {
        return true;
    };
    let caught_up = state.await_read_models(position).await;
    let keys: Vec<AssetKey> = ids.iter().copied().map(AssetKey::One).collect();
    state.asset_views.invalidate(&keys).await;
    caught_up
}

/// The asset after a command: read-your-writes on the read model, or, if
/// it lags past the bounded wait, folded from the log. `stale` are the
/// assets whose cached views the command outdated (none for a new one).
async fn after_command(
    state: &AppState,
    id: Uuid,
    position: Option<LogPosition>,
    stale: &[Uuid],
) -> Result<AssetView, ApiError> {
    if settle_asset_change(state, stale, position).await {
        if let Some(view) = find(state, id).await? {
            return Ok(view);
        }
    }
    // The read model lags (it may still hold the old row): the log has it.
    fold_from_log(state, id, None)
        .await?
        .ok_or(ApiError::NotFound("asset"))
}

/// Body of `POST /api/v1/assets` (also one row of an import).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAsset {
    pub name: String,
    pub asset_type: String,
    pub environment: Option<String>,
    pub lifecycle_state: Option<String>,
    pub location: Option<String>,
    pub description: Option<String>,
    pub owner_id: Option<Uuid>,
    pub attributes: Option<Map<String, Value>>,
    pub custom_fields: Option<Map<String, Value>>,
    pub tag_ids: Option<Vec<Uuid>>,
}

/// A validated registration.
#[derive(Debug, Clone)]
pub struct NewAsset {
    asset_type: AssetType,
    environment: Environment,
    lifecycle_state: LifecycleState,
    fields: AssetFields,
    tag_ids: Vec<Uuid>,
}

impl CreateAsset {
    /// Checks every field and reports all problems in one 422; owner and
    /// tags are checked against the read models.
    pub async fn validate(self, state: &AppState) -> Result<NewAsset, ApiError> {
        let mut problems = Problems::default();
        let name = problems.text("name", &self.name, MAX_NAME_CHARS, TextKind::Name);
        let asset_type = problems.choice(
            "asset_type",
            &self.asset_type,
            AssetType::parse,
            AssetType::expected,
        );
        let environment = match self.environment.as_deref() {
            None => Some(Environment::Prod),
            Some(raw) => problems.choice(
                "environment",
                raw,
                Environment::parse,
                Environment::expected,
            ),
        };
        let lifecycle_state = match self.lifecycle_state.as_deref() {
            None => Some(LifecycleState::Active),
            Some(raw) => problems.choice(
                "lifecycle_state",
                raw,
                LifecycleState::parse,
                LifecycleState::expected,
            ),
        };
        let location = problems.optional_text(
            "location",
            self.location.as_deref(),
            MAX_LOCATION_CHARS,
            TextKind::Name,
        );
        let description = problems.optional_text(
            "description",
            self.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
            TextKind::FreeText,
        );
        let attributes = self.attributes.unwrap_or_default();
        problems.map("attributes", &attributes);
        let custom_fields = self.custom_fields.unwrap_or_default();
        problems.map("custom_fields", &custom_fields);
        if let Some(owner_id) = self.owner_id {
            if !user_exists(state, owner_id).await? {
                problems.add("owner_id", "no such user");
            }
        }
        let tag_ids = self.tag_ids.unwrap_or_default();
        if let Some(unknown) = unknown_tags(state, &tag_ids).await? {
            problems.add("tag_ids", format!("no such tag: {unknown}"));
        }
        let (Some(asset_type), Some(environment), Some(lifecycle_state)) =
            (asset_type, environment, lifecycle_state)
        else {
            // Each missing value was noted as a problem.
            return Err(problems.into_error());
        };
        problems.into_result(|| NewAsset {
            asset_type,
            environment,
            lifecycle_state,
            fields: AssetFields {
                name,
                environment: Some(environment),
                location,
                description,
                owner_id: self.owner_id,
                attributes,
                custom_fields,
            },
            tag_ids,
        })
    }
}

impl NewAsset {
    /// Its registration under `short_code`.
    fn command(&self, short_code: String) -> AssetCommand {
        AssetCommand::Register {
            short_code,
            asset_type: self.asset_type,
            lifecycle_state: self.lifecycle_state,
            environment: self.environment,
            fields: self.fields.clone(),
            tag_ids: self.tag_ids.clone(),
        }
    }
}

/// The first of `tag_ids` that names no tag, if any.
async fn unknown_tags(state: &AppState, tag_ids: &[Uuid]) -> Result<Option<Uuid>, ApiError> {
    if tag_ids.is_empty() {
        return Ok(None);
    }
    let known: Vec<Uuid> = sqlx::query_scalar("select id from tags where id = any($1)")
        .bind(tag_ids)
        .fetch_all(&state.pool)
        .await?;
    Ok(tag_ids.iter().find(|id| !known.contains(id)).copied())
}

/// How many short codes a registration draws before giving up: 32^5 codes
/// per type make a second collision in a row all but impossible.
const SHORT_CODE_DRAWS: usize = 8;

/// Registers a validated asset under a freshly drawn short code, drawing
/// again when the code is taken (two registrations that drew one code meet
/// on one stream; the loser draws anew). Returns the id and the position.
pub async fn register(
    state: &AppState,
    asset: NewAsset,
    metadata: &EventMetadata,
) -> Result<(Uuid, Option<LogPosition>), ApiError> {
    for _ in 0..SHORT_CODE_DRAWS {
        let short_code = draw_short_code(asset.asset_type);
        let id = asset_id_for(&short_code);
        let command = asset.command(short_code);
        match state.commands.asset(id, command, metadata.clone()).await {
            Ok(position) => return Ok((id, position)),
            Err(AggregateError::UserError(AssetError::ShortCodeTaken)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::Conflict(
        "no free short code was found; try again".into(),
    ))
}

/// Registers many validated assets in one atomic append (all or none),
/// in the order given, each under a fresh short code that no stream has
/// used (deleted assets' codes included). A registration racing in between
/// the check and the append fails the whole append; the batch then draws
/// again.
pub async fn register_many(
    state: &AppState,
    assets: Vec<NewAsset>,
    metadata: &EventMetadata,
) -> Result<Option<LogPosition>, ApiError> {
    for _ in 0..SHORT_CODE_DRAWS {
        let codes = free_short_codes(state, &assets).await?;
        let registrations = assets
            .iter()
            .zip(codes)
            .map(|(asset, short_code)| (asset_id_for(&short_code), asset.command(short_code)))
            .collect();
        match state
            .commands
            .register_assets(registrations, metadata.clone())
            .await
        {
            Ok(position) => return Ok(position),
            Err(AggregateError::AggregateConflict) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::Conflict(
        "no free short codes were found; try again".into(),
    ))
}

/// One short code per asset, distinct, and unused by any asset stream.
async fn free_short_codes(state: &AppState, assets: &[NewAsset]) -> Result<Vec<String>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut draw = |asset_type: AssetType| loop {
        let code = draw_short_code(asset_type);
        if seen.insert(code.clone()) {
            break code;
        }
    };
    let mut codes: Vec<String> = assets.iter().map(|asset| draw(asset.asset_type)).collect();
    for _ in 0..SHORT_CODE_DRAWS {
        let ids: Vec<String> = codes
            .iter()
            .map(|code| asset_id_for(code).to_string())
            .collect();
        let taken: std::collections::HashSet<String> = sqlx::query_scalar(
            "select aggregate_id from events \
             where aggregate_type = $1 and aggregate_id = any($2) and sequence = 1",
        )
        .bind(ASSET)
        .bind(&ids)
        .fetch_all(&state.pool)
        .await?
        .into_iter()
        .collect();
        if taken.is_empty() {
            return Ok(codes);
        }
        for (index, id) in ids.iter().enumerate() {
            if taken.contains(id) {
                codes[index] = draw(assets[index].asset_type);
            }
        }
    }
    Err(ApiError::Conflict(
        "no free short codes were found; try again".into(),
    ))
}

/// `POST /api/v1/assets` → 201 with the asset and its `ETag`.
pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateAsset>,
) -> Result<Response, ApiError> {
    let asset = body.validate(&state).await?;
    let (id, position) = register(&state, asset, &context.metadata(operator.actor)).await?;
    let view = after_command(&state, id, position, &[]).await?;
    Ok(view.answer(|view| Answer::created(view, position)))
}

/// Query of `GET /api/v1/assets/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetQuery {
    #[serde(default, with = "time::serde::rfc3339::option")]
    as_of: Option<OffsetDateTime>,
}

/// `GET /api/v1/assets/{id}`: the asset with `ETag`; with `as_of`, as it
/// was then (404 before its registration). The current view is served
/// from [`super::cache`], built from the read model on a miss.
pub async fn get(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AssetQuery>,
) -> Result<Response, ApiError> {
    if let Some(as_of) = query.as_of {
        let view = fold_from_log(&state, id, Some(as_of))
            .await?
            .ok_or(ApiError::NotFound("asset"))?;
        return Ok(view.answer(Answer::ok));
    }
    let cached = state
        .asset_views
        .get_or_load(id, async {
            let Some(view) = find(&state, id).await? else {
                return Ok::<_, ApiError>(None);
            };
            Ok(Some(CachedView {
                body: envelope_bytes(&view).map_err(ApiError::internal)?.into(),
                version: view.version,
            }))
        })
        .await?
        .ok_or(ApiError::NotFound("asset"))?;
    let etag =
        HeaderValue::try_from(format!("\"{}\"", cached.version)).map_err(ApiError::internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
        ],
        cached.body,
    )
        .into_response())
}

/// Body of `PATCH /api/v1/assets/{id}`: every field optional; `null`
/// clears `location`, `description` and `owner_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAsset {
    name: Option<String>,
    /// Present only to refuse it with a clear message: the short code
    /// carries the type.
    asset_type: Option<Value>,
    environment: Option<String>,
    lifecycle_state: Option<String>,
    #[serde(default, deserialize_with = "clearable")]
    location: Option<Option<String>>,
    #[serde(default, deserialize_with = "clearable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "clearable")]
    owner_id: Option<Option<Uuid>>,
    attributes: Option<Map<String, Value>>,
    custom_fields: Option<Map<String, Value>>,
}

impl UpdateAsset {
    async fn validate(self, state: &AppState) -> Result<AssetPatch, ApiError> {
        let mut problems = Problems::default();
        if self.asset_type.is_some() {
            problems.add(
                "asset_type",
                "cannot be changed; register a new asset instead",
            );
        }
        let name = self
            .name
            .as_deref()
            .map(|raw| problems.text("name", raw, MAX_NAME_CHARS, TextKind::Name));
        let environment = self.environment.as_deref().and_then(|raw| {
            problems.choice(
                "environment",
                raw,
                Environment::parse,
                Environment::expected,
            )
        });
        let lifecycle_state = self.lifecycle_state.as_deref().and_then(|raw| {
            problems.choice(
                "lifecycle_state",
                raw,
                LifecycleState::parse,
                LifecycleState::expected,
            )
        });
        let location = self.location.map(|value| {
            problems.optional_text(
                "location",
                value.as_deref(),
                MAX_LOCATION_CHARS,
                TextKind::Name,
            )
        });
        let description = self.description.map(|value| {
            problems.optional_text(
                "description",
                value.as_deref(),
                MAX_DESCRIPTION_CHARS,
                TextKind::FreeText,
            )
        });
        if let Some(attributes) = &self.attributes {
            problems.map("attributes", attributes);
        }
        if let Some(custom_fields) = &self.custom_fields {
            problems.map("custom_fields", custom_fields);
        }
        if let Some(Some(owner_id)) = self.owner_id {
            if !user_exists(state, owner_id).await? {
                problems.add("owner_id", "no such user");
            }
        }
        problems.into_result(|| AssetPatch {
            name,
            lifecycle_state,
            environment,
            location,
            description,
            owner_id: self.owner_id,
            attributes: self.attributes,
            custom_fields: self.custom_fields,
        })
    }
}

/// The version an `If-Match` header names: `None` without the header or
/// with `*` (any current version). A list, a weak tag or anything else
/// this API never issued cannot match: 412.
fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed)?
        .trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<u64>().ok())
        .map(Some)
        .ok_or(ApiError::PreconditionFailed)
}

/// `PATCH /api/v1/assets/{id}`: partial update; with `If-Match`, only if
/// the asset is still at that version (412 otherwise).
pub async fn update(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateAsset>,
) -> Result<Response, ApiError> {
    let expected_version = expected_version(&headers)?;
    let patch = body.validate(&state).await?;
    let command = AssetCommand::Update {
        patch,
        expected_version,
    };
    let position = state
        .commands
        .asset(id, command, context.metadata(operator.actor))
        .await?;
    let view = after_command(&state, id, position, &[id]).await?;
    Ok(view.answer(|view| Answer::ok(view).with_position(position)))
}

/// Body of `POST /api/v1/assets/{id}/state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeState {
    lifecycle_state: String,
}

/// `POST /api/v1/assets/{id}/state`: `{lifecycle_state}`.
pub async fn change_state(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChangeState>,
) -> Result<Response, ApiError> {
    let to = LifecycleState::parse(&body.lifecycle_state).ok_or_else(|| {
        ApiError::invalid_field(
            "lifecycle_state",
            format!("must be one of {}", LifecycleState::expected()),
        )
    })?;
    let position = state
        .commands
        .asset(
            id,
            AssetCommand::ChangeLifecycle { to },
            context.metadata(operator.actor),
        )
        .await?;
    let view = after_command(&state, id, position, &[id]).await?;
    Ok(view.answer(|view| Answer::ok(view).with_position(position)))
}

/// `DELETE /api/v1/assets/{id}` (admin): an event, so history and `as_of`
/// keep the asset; it leaves lists, graphs and check-outs.
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Answer<Value>, ApiError> {
    let position = state
        .commands
        .asset(id, AssetCommand::Delete, context.metadata(admin.actor))
        .await?;
    settle_asset_change(&state, &[id], position).await;
    Ok(Answer::ok(deleted("asset", id)).with_position(position))
}

/// Query of `GET /api/v1/assets`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetListQuery {
    asset_type: Option<String>,
    environment: Option<String>,
    lifecycle_state: Option<String>,
    owner_id: Option<Uuid>,
    tag_id: Option<Uuid>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// One asset in a list.
#[derive(Debug, Serialize, FromRow)]
pub struct AssetListItem {
    pub id: Uuid,
    pub short_code: String,
    pub name: String,
    pub asset_type: String,
    pub lifecycle_state: String,
    pub environment: String,
    pub owner_id: Option<Uuid>,
}

/// Longest `q`, in characters.
const MAX_QUERY_CHARS: usize = 200;

/// What `search_text` puts between the name and the short code (migration
/// 0010): refused in `q`, so that no match spans the two.
const SEARCH_SEPARATOR: char = '\u{1f}';

/// A `q` search: a `LIKE` pattern matching it anywhere in `search_text`
/// (migration 0010), wildcards escaped. Lower-cased by the database, as the
/// stored `search_text` is: Rust's lower-casing differs for a few letters.
struct NameSearch {
    pattern: String,
    /// `q` itself when it is two characters long: too short for a trigram,
    /// it is found through the bigram index instead of a scan.
    two_characters: Option<String>,
}

impl NameSearch {
    fn new(q: &str) -> Self {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        Self {
            pattern: format!("%{escaped}%"),
            two_characters: (q.chars().count() == 2).then(|| q.to_string()),
        }
    }
}

/// How a query may reach the matches of a search.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SearchPath {
    /// Through the search indexes: for the total, and for a page of few
    /// matches.
    Indexes,
    /// Only the `LIKE`: for a page of many matches, which walks the
    /// newest-first index and stops after the page.
    NewestFirst,
}

/// Appends the list filters: only those given, so each query gets a plan
/// for its own shape (the search indexes for `q`, the kind index for enums).
fn push_filters<'a>(
    sql: &mut QueryBuilder<'a, Postgres>,
    filters: &'a ListFilters,
    path: SearchPath,
) {
    sql.push(" where true");
    if let Some(asset_type) = filters.asset_type {
        sql.push(" and a.asset_type = ")
            .push_bind(asset_type.as_str());
    }
    if let Some(environment) = filters.environment {
        sql.push(" and a.environment = ")
            .push_bind(environment.as_str());
    }
    if let Some(lifecycle_state) = filters.lifecycle_state {
        sql.push(" and a.lifecycle_state = ")
            .push_bind(lifecycle_state.as_str());
    }
    if let Some(owner_id) = filters.owner_id {
        sql.push(" and a.owner_id = ").push_bind(owner_id);
    }
    if let Some(tag_id) = filters.tag_id {
        sql.push(" and exists (select 1 from asset_tags t where t.asset_id = a.id and t.tag_id = ")
            .push_bind(tag_id)
            .push(")");
    }
    if let Some(search) = &filters.search {
        sql.push(" and a.search_text like lower(")
            .push_bind(search.pattern.as_str())
            .push(")");
        if let (Some(q), SearchPath::Indexes) = (&search.two_characters, path) {
            // Necessary, not sufficient (the `LIKE` decides): it only lets
            // the bigram index find the candidates.
            sql.push(" and asset_search_bigrams(a.search_text) @> asset_search_bigrams(lower(")
                .push_bind(q.as_str())
                .push("))");
        }
    }
}

/// The validated filters of a list.
struct ListFilters {
    asset_type: Option<AssetType>,
    environment: Option<Environment>,
    lifecycle_state: Option<LifecycleState>,
    owner_id: Option<Uuid>,
    tag_id: Option<Uuid>,
    search: Option<NameSearch>,
}

/// `GET /api/v1/assets`: filtered, newest first.
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<AssetListQuery>,
) -> Result<Answer<Page<AssetListItem>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let mut problems = Problems::default();
    let asset_type = query
        .asset_type
        .as_deref()
        .and_then(|raw| problems.choice("asset_type", raw, AssetType::parse, AssetType::expected));
    let environment = query.environment.as_deref().and_then(|raw| {
        problems.choice(
            "environment",
            raw,
            Environment::parse,
            Environment::expected,
        )
    });
    let lifecycle_state = query.lifecycle_state.as_deref().and_then(|raw| {
        problems.choice(
            "lifecycle_state",
            raw,
            LifecycleState::parse,
            LifecycleState::expected,
        )
    });
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        problems.add("q", format!("must be at most {MAX_QUERY_CHARS} characters"));
    } else if q.is_some_and(|q| q.contains(SEARCH_SEPARATOR)) {
        problems.add("q", "must not contain the unit separator (U+001F)");
    }
    let filters = problems.into_result(|| ListFilters {
        asset_type,
        environment,
        lifecycle_state,
        owner_id: query.owner_id,
        tag_id: query.tag_id,
        search: q.map(NameSearch::new),
    })?;

    let (items, total) = list_page(&state, &filters, limit, offset).await?;
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// The columns of [`AssetListItem`], from `assets a`.
pub const LIST_COLUMNS: &str =
    "a.id, a.short_code, a.name, a.asset_type, a.lifecycle_state, a.environment, a.owner_id";

/// Most matches for which a page is found by collecting every match through
/// the search indexes and sorting them (about 4 ms for 1,000 at 100,000
/// assets). Beyond it, matches are dense enough that walking the
/// newest-first index finds a page sooner (docs/BENCHMARKS.md, issue 4).
const FEW_MATCHES: i64 = 1_000;

/// A page and the total. The total comes first and picks the page's plan:
/// the planner guesses how many assets match, and when it expects many of
/// a set that holds few (a word that no asset of the filtered kind has), its
/// walk of the newest-first index visits the whole table.
async fn list_page(
    state: &AppState,
    filters: &ListFilters,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AssetListItem>, i64), ApiError> {
    let mut count = QueryBuilder::new("select count(*) from assets a");
    push_filters(&mut count, filters, SearchPath::Indexes);
    let total: i64 = count.build_query_scalar().fetch_one(&state.pool).await?;
    if offset >= total {
        return Ok((Vec::new(), total));
    }
    const ORDER: &str = " order by created_at desc, registration_position desc, id desc limit ";
    let mut page = if total <= FEW_MATCHES {
        let mut few = QueryBuilder::new(format!(
            "with matches as materialized (select {LIST_COLUMNS}, a.created_at, \
             a.registration_position from assets a"
        ));
        push_filters(&mut few, filters, SearchPath::Indexes);
        // Named `a` too, so that the same column list reads it.
        few.push(format!(") select {LIST_COLUMNS} from matches a"));
        few
    } else {
        let mut many = QueryBuilder::new(format!("select {LIST_COLUMNS} from assets a"));
        push_filters(&mut many, filters, SearchPath::NewestFirst);
        many
    };
    page.push(ORDER)
        .push_bind(limit)
        .push(" offset ")
        .push_bind(offset);
    let items = page
        .build_query_as::<AssetListItem>()
        .fetch_all(&state.pool)
        .await?;
    Ok((items, total))
}

/// Query of `GET /api/v1/assets/{id}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// One change in an asset's history.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// The asset's version after this change.
    version: i64,
    event_type: String,
    /// The audit action (`asset.updated`, …).
    action: String,
    actor_id: String,
    #[serde(with = "time::serde::rfc3339")]
    recorded_at: OffsetDateTime,
    /// Changed fields (or the whole new state) before and after.
    before: Option<Value>,
    after: Option<Value>,
    request_id: Option<String>,
    event_position: i64,
}

/// `GET /api/v1/assets/{id}/history`: the asset's events, newest first,
/// readable after deletion; 404 for an id that never was an asset.
pub async fn history(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Answer<Page<HistoryEntry>>, ApiError> {
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    let aggregate_id = id.to_string();
    let (total, rows) =
        store::read_stream_page(&state.pool, ASSET, &aggregate_id, limit, offset).await?;
    if total == 0 {
        return Err(ApiError::NotFound("asset"));
    }
    let items = rows
        .into_iter()
        .map(|stored| {
            let facts = describe(
                ASSET,
                &stored.event_type,
                &stored.event_version,
                stored.payload.as_deref(),
            );
            let metadata = stored.event_metadata().ok();
            HistoryEntry {
                version: stored.sequence,
                action: facts.action,
                event_type: stored.event_type,
                actor_id: metadata
                    .as_ref()
                    .map_or_else(|| "unknown".to_string(), |m| m.actor.to_string()),
                recorded_at: stored.recorded_at,
                before: facts.before,
                after: facts.after,
                request_id: metadata.and_then(|m| m.request_id),
                event_position: stored.global_position,
            }
        })
        .collect();
    Ok(Answer::ok(Page {
        items,
        total,
        limit,
        offset,
    }))
}
