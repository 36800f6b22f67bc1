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
//! they are most of a user's stream and change neither, ADR 0002). Every
//! event is read through the store's `read_at_cut`, so it is decoded (and
//! upcast) by the one decoder, as everywhere else.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::Aggregate;
use futures_util::TryStreamExt;
use sentryops_events::cmdb::{AssetEvent, TagEvent};
use sentryops_events::compliance::EvaluatedAt;
use sentryops_events::user::UserEvent;
use sentryops_projections::store::{self, CutFilter};
use sentryops_projections::LogPosition;
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

/// The cut as a position in the global order.
fn cut_of(at: EvaluatedAt) -> LogPosition {
    LogPosition {
        transaction_id: at.transaction_id,
        position: at.position,
    }
}

/// The owners (users) as of `at`, by id.
async fn fold_owners(
    pool: &PgPool,
    at: EvaluatedAt,
) -> anyhow::Result<HashMap<Uuid, OwnerSnapshot>> {
    let mut rows = store::read_at_cut::<UserEvent>(pool, cut_of(at), CutFilter::UserState);
    let mut owners: HashMap<Uuid, OwnerSnapshot> = HashMap::new();
    while let Some(recorded) = rows.try_next().await? {
        let Ok(id) = Uuid::parse_str(&recorded.stored.aggregate_id) else {
            continue;
        };
        match recorded.event {
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
                    owner.active = matches!(recorded.event, UserEvent::UserReactivated);
                }
            }
            _ => {}
        }
    }
    Ok(owners)
}

/// The names of the tags that exist as of `at`, by id.
async fn fold_tags(pool: &PgPool, at: EvaluatedAt) -> anyhow::Result<HashMap<Uuid, String>> {
    let mut rows = store::read_at_cut::<TagEvent>(pool, cut_of(at), CutFilter::All);
    let mut tags = HashMap::new();
    while let Some(recorded) = rows.try_next().await? {
        let Ok(id) = Uuid::parse_str(&recorded.stored.aggregate_id) else {
            continue;
        };
        match recorded.event {
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
    let mut rows = store::read_at_cut::<AssetEvent>(pool, cut_of(at), CutFilter::All);
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
    while let Some(recorded) = rows.try_next().await? {
        let aggregate_id = recorded.stored.aggregate_id;
        match &mut current {
            Some((id, asset)) if *id == aggregate_id => asset.apply(recorded.event),
            _ => {
                if let Some((id, asset)) = current.take() {
                    finish(&id, asset)?;
                }
                let mut asset = Asset::default();
                asset.apply(recorded.event);
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
