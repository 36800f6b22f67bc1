//! The current view of each asset, as the bytes `GET /api/v1/assets/{id}`
//! answers with, behind a moka cache: a read then needs no database round
//! trip (issue 4's read target).
//!
//! Staleness is bounded as for the access cache ([`crate::auth::access`]):
//! - the projector drops an asset's entry right after it commits the
//!   asset's events ([`AssetViewInvalidator`]), and every handler that
//!   changed an asset drops it once the read models caught up, so the
//!   caller reads its own write;
//! - every invalidation is published on `{prefix}:asset-invalidations`, so
//!   other replicas drop the entry within milliseconds; a replica that
//!   (re)subscribes drops everything;
//! - every entry expires after `ASSET_CACHE_TTL_MS`, the bound when Redis
//!   is down.
//!
//! Loads and invalidations are fenced by a generation counter: a row read
//! before an invalidation is never cached after it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use moka::future::Cache;
use redis::aio::ConnectionManager;
use sentryops_events::cmdb::{ASSET, TAG};
use sentryops_projections::runtime::CommitObserver;
use sentryops_projections::StoredEvent;
use uuid::Uuid;

use crate::redis_link::{Delivery, InvalidationChannel};

/// The most bytes of views kept in memory.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The message that drops every entry.
const ALL: &str = "all";

/// An asset's answer: the serialized success envelope and its version.
#[derive(Debug, Clone)]
pub struct CachedView {
    pub body: Bytes,
    pub version: i64,
}

/// The cache of asset views. Cheap to clone.
#[derive(Clone)]
pub struct AssetViewCache {
    inner: Arc<Inner>,
}

struct Inner {
    views: Cache<Uuid, CachedView>,
    generation: tokio::sync::Mutex<u64>,
    channel: InvalidationChannel,
}

/// What may be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKey {
    One(Uuid),
    All,
}

impl AssetKey {
    fn encode(self) -> String {
        match self {
            AssetKey::One(id) => id.to_string(),
            AssetKey::All => ALL.to_string(),
        }
    }

    fn decode(message: &str) -> Option<Self> {
        if message == ALL {
            return Some(AssetKey::All);
        }
        Uuid::parse_str(message).ok().map(AssetKey::One)
    }
}

impl AssetViewCache {
    /// A cache whose entries live at most `ttl`; invalidations travel on
    /// `{prefix}:asset-invalidations` when there is a Redis connection.
    pub fn new(ttl: Duration, redis: Option<ConnectionManager>, prefix: &str) -> Self {
        let views = Cache::builder()
            .weigher(|_id: &Uuid, view: &CachedView| {
                u32::try_from(view.body.len()).unwrap_or(u32::MAX)
            })
            .max_capacity(MAX_BYTES)
            .time_to_live(ttl)
            .build();
        Self {
            inner: Arc::new(Inner {
                views,
                generation: tokio::sync::Mutex::new(0),
                channel: InvalidationChannel::new(
                    redis,
                    format!("{prefix}:asset-invalidations"),
                    "asset views",
                ),
            }),
        }
    }

    /// The cached view of `id`, or the one `load` builds (cached unless an
    /// invalidation happened meanwhile). `load` answers `None` for no
    /// asset, which is not remembered.
    pub async fn get_or_load<E, F>(&self, id: Uuid, load: F) -> Result<Option<CachedView>, E>
    where
        F: std::future::Future<Output = Result<Option<CachedView>, E>>,
    {
        let inner = &self.inner;
        if let Some(view) = inner.views.get(&id).await {
            return Ok(Some(view));
        }
        let generation = *inner.generation.lock().await;
        let Some(view) = load.await? else {
            return Ok(None);
        };
        let current = inner.generation.lock().await;
        if *current == generation {
            inner.views.insert(id, view.clone()).await;
        }
        Ok(Some(view))
    }

    /// Drops `keys` here and tells the other replicas to drop them too.
    pub async fn invalidate(&self, keys: &[AssetKey]) {
        if keys.is_empty() {
            return;
        }
        self.invalidate_locally(keys).await;
        let messages: Vec<String> = keys.iter().map(|key| key.encode()).collect();
        self.inner.channel.publish(&messages).await;
    }

    /// Drops `keys` from this process's cache only.
    pub async fn invalidate_locally(&self, keys: &[AssetKey]) {
        let inner = &self.inner;
        let mut generation = inner.generation.lock().await;
        *generation += 1;
        for key in keys {
            match key {
                AssetKey::One(id) => inner.views.invalidate(id).await,
                AssetKey::All => inner.views.invalidate_all(),
            }
        }
    }

    /// Follows the invalidations other replicas publish; every
    /// (re)subscription drops the whole cache first.
    pub fn follow(&self, redis_url: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let cache = self.clone();
        self.inner.channel.follow(redis_url, move |delivery| {
            let cache = cache.clone();
            async move {
                let key = match delivery {
                    Delivery::Subscribed => Some(AssetKey::All),
                    Delivery::Message(payload) => AssetKey::decode(&payload),
                };
                if let Some(key) = key {
                    cache.invalidate_locally(&[key]).await;
                }
            }
        })
    }
}

/// Drops views after the `assets` and `tags` projections commit, on
/// whichever replica leads them.
pub struct AssetViewInvalidator {
    cache: AssetViewCache,
}

impl AssetViewInvalidator {
    pub fn new(cache: AssetViewCache) -> Self {
        Self { cache }
    }
}

/// Whether a projection's tables feed the asset view.
fn feeds_asset_views(projection: &str) -> bool {
    projection == sentryops_projections::cmdb::ASSETS
        || projection == sentryops_projections::cmdb::TAGS
}

/// What a committed batch of `projection` makes stale: a tag appearing or
/// going changes the tags of views cached with or without it (tags change
/// rarely, so everything goes); otherwise the assets the `assets`
/// projection just changed.
fn stale_views(projection: &str, events: &[StoredEvent]) -> Vec<AssetKey> {
    if events.iter().any(|event| event.aggregate_type == TAG) {
        return vec![AssetKey::All];
    }
    if projection != sentryops_projections::cmdb::ASSETS {
        return Vec::new();
    }
    let mut ids: Vec<Uuid> = events
        .iter()
        .filter(|event| event.aggregate_type == ASSET)
        .filter_map(|event| Uuid::parse_str(&event.aggregate_id).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(AssetKey::One).collect()
}

impl CommitObserver for AssetViewInvalidator {
    fn committed(&self, projection: &str, events: &[StoredEvent]) {
        if !feeds_asset_views(projection) {
            return;
        }
        let keys = stale_views(projection, events);
        if keys.is_empty() {
            return;
        }
        let cache = self.cache.clone();
        tokio::spawn(async move { cache.invalidate(&keys).await });
    }

    fn rebuilt(&self, projection: &str) {
        if feeds_asset_views(projection) {
            let cache = self.cache.clone();
            tokio::spawn(async move { cache.invalidate(&[AssetKey::All]).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_wire() {
        let id = Uuid::new_v4();
        for key in [AssetKey::One(id), AssetKey::All] {
            assert_eq!(AssetKey::decode(&key.encode()), Some(key));
        }
        assert_eq!(AssetKey::decode("not-an-id"), None);
    }
}
