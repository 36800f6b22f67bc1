//! The CMDB as of a position in the log, folded from the events alone.
//!
//! A run evaluates a consistent cut: every event of every transaction that
//! had ended when the run began, and nothing else. [`settled_cut`] waits
//! (bounded) until each transaction begun before the request has ended,
//! so the caller's own earlier writes are in the cut, then names the cut's
//! last event `(transaction_id, position)` in DESIGN D3's order. Because
//! only ended transactions are in it, the same cut folds to the same CMDB
//! forever, which is what `verify` relies on: runs and re-verification use
//! this one fold ([`fold_cmdb`]), never the read models, which may be at
//! another position.
//!
//! Assets fold with the asset aggregate's own `apply`; owners with the
//! user events that decide `mfa_enabled` and `active` (logins are skipped:
//! they are most of a user's stream and change neither, ADR 0002). Every event type
//! read here is at version 1.0, the only one written so far; an upcaster
//! added to the events crate must be applied here too.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::Aggregate;
use futures_util::TryStreamExt;
use sentryops_events::cmdb::{AssetEvent, TagEvent, ASSET, TAG};
use sentryops_events::compliance::EvaluatedAt;
use sentryops_events::user::UserEvent;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{AssetSnapshot, OwnerSnapshot};
use crate::domain::asset::Asset;

/// The end of the log prefix made of every transaction that has ended:
/// first waits up to `patience` until each append begun before this
/// call has ended (on timeout the cut is simply older). Before the first
/// event it is `(0, 0)`.
pub async fn settled_cut(pool: &PgPool, patience: Duration) -> sqlx::Result<EvaluatedAt> {
    let (begun_before,): (i64,) =
        sqlx::query_as("select pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let (horizon,): (i64,) = sqlx::query_as("select events_settled_horizon()::text::bigint")
            .fetch_one(pool)
            .await?;
        let timed_out = tokio::time::Instant::now() >= deadline;
        if timed_out && horizon < begun_before {
            // Consistent still, but older than the request: writes that
            // committed just before it may be left out. Say so.
            tracing::warn!(
                horizon,
                begun_before,
                "a transaction stayed open past the run's patience; the run evaluates an older cut"
            );
        }
        if horizon >= begun_before || timed_out {
            let last: Option<(i64, i64)> = sqlx::query_as(
                "select transaction_id::text::bigint, global_position from events \
                 where transaction_id < $1::text::xid8 \
                 order by events.transaction_id desc, events.global_position desc limit 1",
            )
            .bind(horizon.min(begun_before).to_string())
            .fetch_optional(pool)
            .await?;
            let (transaction_id, position) = last.unwrap_or((0, 0));
            return Ok(EvaluatedAt {
                transaction_id,
                position,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The filter of every fold: events of `aggregate_type` at or before the cut.
const IN_CUT: &str = "aggregate_type = $1 \
     and (transaction_id, global_position) <= ($2::text::xid8, $3)";

/// The owners (users) as of `at`, by id.
async fn fold_owners(pool: &PgPool, at: EvaluatedAt) -> sqlx::Result<HashMap<Uuid, OwnerSnapshot>> {
    // Literal predicates, so that the partial index of migration 0009
    // (which leaves the logins out) serves the query.
    let sql = "select aggregate_id, payload from events \
         where aggregate_type = 'user' and event_type not in ('LoginSucceeded', 'LoginFailed') \
           and (transaction_id, global_position) <= ($1::text::xid8, $2) \
         order by aggregate_id, sequence";
    let mut rows = sqlx::query_as::<_, (String, Json<UserEvent>)>(sql)
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .fetch(pool);
    let mut owners: HashMap<Uuid, OwnerSnapshot> = HashMap::new();
    while let Some((aggregate_id, Json(event))) = rows.try_next().await? {
        let Ok(id) = Uuid::parse_str(&aggregate_id) else {
            continue;
        };
        match event {
            UserEvent::UserRegistered { mfa_enabled, .. } => {
                owners.insert(
                    id,
                    OwnerSnapshot {
                        mfa_enabled,
                        active: true,
                    },
                );
            }
            UserEvent::UserMfaChanged { mfa_enabled } => {
                if let Some(owner) = owners.get_mut(&id) {
                    owner.mfa_enabled = mfa_enabled;
                }
            }
            UserEvent::UserDeactivated | UserEvent::UserReactivated => {
                if let Some(owner) = owners.get_mut(&id) {
                    owner.active = matches!(event, UserEvent::UserReactivated);
                }
            }
            _ => {}
        }
    }
    Ok(owners)
}

/// The names of the tags that exist as of `at`, by id.
async fn fold_tags(pool: &PgPool, at: EvaluatedAt) -> sqlx::Result<HashMap<Uuid, String>> {
    let sql = format!(
        "select aggregate_id, payload from events where {IN_CUT} order by aggregate_id, sequence"
    );
    let mut rows = sqlx::query_as::<_, (String, Json<TagEvent>)>(&sql)
        .bind(TAG)
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .fetch(pool);
    let mut tags = HashMap::new();
    while let Some((aggregate_id, Json(event))) = rows.try_next().await? {
        let Ok(id) = Uuid::parse_str(&aggregate_id) else {
            continue;
        };
        match event {
            TagEvent::TagCreated { name, .. } => {
                tags.insert(id, name);
            }
            TagEvent::TagDeleted => {
                tags.remove(&id);
            }
        }
    }
    Ok(tags)
}

/// Folds the CMDB as of `at` and hands `visit` every asset that exists
/// then (registered, not deleted) with its owner, in ascending id order,
/// one at a time: only one asset's state is held at once.
pub async fn fold_cmdb(
    pool: &PgPool,
    at: EvaluatedAt,
    mut visit: impl FnMut(&AssetSnapshot, Option<&OwnerSnapshot>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let owners = fold_owners(pool, at).await?;
    let tags = fold_tags(pool, at).await?;
    // `collate "C"` orders the ids as `Uuid`'s `Ord` does (bytewise).
    let sql = format!(
        "select aggregate_id, payload from events where {IN_CUT} \
         order by aggregate_id collate \"C\", sequence"
    );
    let mut rows = sqlx::query_as::<_, (String, Json<AssetEvent>)>(&sql)
        .bind(ASSET)
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .fetch(pool);
    let mut current: Option<(String, Asset)> = None;
    let mut finish = |id: &str, asset: Asset| -> anyhow::Result<()> {
        match snapshot_of(id, &asset, &tags) {
            Some(snapshot) => {
                let owner = snapshot.owner_id.and_then(|owner| owners.get(&owner));
                visit(&snapshot, owner)
            }
            None => Ok(()),
        }
    };
    while let Some((aggregate_id, Json(event))) = rows.try_next().await? {
        match &mut current {
            Some((id, asset)) if *id == aggregate_id => asset.apply(event),
            _ => {
                if let Some((id, asset)) = current.take() {
                    finish(&id, asset)?;
                }
                let mut asset = Asset::default();
                asset.apply(event);
                current = Some((aggregate_id, asset));
            }
        }
    }
    if let Some((id, asset)) = current.take() {
        finish(&id, asset)?;
    }
    Ok(())
}

/// The rule's view of a folded asset; `None` when it does not exist at
/// the cut (never registered, or deleted).
fn snapshot_of(id: &str, asset: &Asset, tags: &HashMap<Uuid, String>) -> Option<AssetSnapshot> {
    if !asset.is_registered() || asset.is_deleted() {
        return None;
    }
    let fields = asset.fields();
    let mut tag_names: Vec<String> = asset
        .tags()
        .iter()
        .filter_map(|tag| tags.get(tag).cloned())
        .collect();
    tag_names.sort();
    Some(AssetSnapshot {
        id: Uuid::parse_str(id).ok()?,
        short_code: asset.short_code().to_string(),
        name: fields.name.clone(),
        asset_type: asset.asset_type()?,
        lifecycle_state: asset.lifecycle_state()?,
        environment: fields.environment?,
        location: fields.location.clone(),
        owner_id: fields.owner_id,
        attributes: fields.attributes.clone(),
        tags: tag_names,
    })
}
