//! The access check every authenticated request makes (SPEC section 2,
//! DESIGN D5): is the token's session still open, is its user active, and
//! with which role. Answers come from the `sessions` and `users` read models
//! behind a moka cache.
//!
//! Staleness is bounded three ways:
//! - the projector invalidates an entry right after it commits the event
//!   that changes it ([`AccessInvalidator`]), and a handler that revoked
//!   access invalidates once the read models have caught up;
//! - every invalidation is published on a Redis channel, so the other
//!   replicas drop the entry within milliseconds; after a lost subscription
//!   a replica drops everything, since it may have missed messages;
//! - every entry expires after `AUTH_CACHE_TTL_MS`, the bound when Redis is
//!   down.
//!
//! A load that raced with an invalidation is not cached: loads and
//! invalidations are fenced by a generation counter, so a read model row
//! read before an invalidation can never outlive it in the cache.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use redis::aio::ConnectionManager;
use sentryops_events::Role;
use sentryops_projections::runtime::CommitObserver;
use sentryops_projections::StoredEvent;
use sqlx::PgPool;
use uuid::Uuid;

use crate::redis_link::{Delivery, InvalidationChannel};

/// What may be dropped from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKey {
    /// One session (revoked).
    Session(Uuid),
    /// One user (role changed, deactivated, reactivated).
    User(Uuid),
    /// Everything (a rebuilt read model, a lost subscription).
    All,
}

impl AccessKey {
    fn encode(self) -> String {
        match self {
            AccessKey::Session(id) => format!("session:{id}"),
            AccessKey::User(id) => format!("user:{id}"),
            AccessKey::All => "all".to_string(),
        }
    }

    fn decode(message: &str) -> Option<Self> {
        if message == "all" {
            return Some(AccessKey::All);
        }
        let (kind, id) = message.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "session" => Some(AccessKey::Session(id)),
            "user" => Some(AccessKey::User(id)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SessionAccess {
    user_id: Uuid,
    open: bool,
}

#[derive(Debug, Clone, Copy)]
struct UserAccess {
    /// `None` for a role this build does not know: access is refused.
    role: Option<Role>,
    active: bool,
}

const MAX_ENTRIES: u64 = 100_000;

fn bounded_cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<Uuid, V> {
    Cache::builder()
        .max_capacity(MAX_ENTRIES)
        .time_to_live(ttl)
        .build()
}

/// The cached access check. Cheap to clone.
#[derive(Clone)]
pub struct AccessCache {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    sessions: Cache<Uuid, SessionAccess>,
    users: Cache<Uuid, UserAccess>,
    /// Bumped by every invalidation; a load inserts only if it did not move.
    generation: tokio::sync::Mutex<u64>,
    channel: InvalidationChannel,
}

impl AccessCache {
    /// A cache over the read models of `pool` whose entries live at most
    /// `ttl`; invalidations travel on `{prefix}:access-invalidations` when
    /// there is a Redis connection.
    pub fn new(
        pool: PgPool,
        ttl: Duration,
        redis: Option<ConnectionManager>,
        prefix: &str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                sessions: bounded_cache(ttl),
                users: bounded_cache(ttl),
                generation: tokio::sync::Mutex::new(0),
                channel: InvalidationChannel::new(
                    redis,
                    format!("{prefix}:access-invalidations"),
                    "access checks",
                ),
            }),
        }
    }

    /// The role of `user_id` when `session_id` is open, belongs to that
    /// user, and the user is active; `None` otherwise.
    pub async fn check(&self, session_id: Uuid, user_id: Uuid) -> sqlx::Result<Option<Role>> {
        let inner = &self.inner;
        if let Some(session) = inner.sessions.get(&session_id).await {
            if !session.open || session.user_id != user_id {
                return Ok(None);
            }
            if let Some(user) = inner.users.get(&user_id).await {
                return Ok(user.active.then_some(user.role).flatten());
            }
        }
        let generation = *inner.generation.lock().await;
        let row: Option<(Uuid, bool, String, bool)> = sqlx::query_as(
            "select s.user_id, s.revoked_at is null, u.role, u.is_active \
             from sessions s join users u on u.id = s.user_id where s.id = $1",
        )
        .bind(session_id)
        .fetch_optional(&inner.pool)
        .await?;
        // A session the read model does not know yet is refused and not
        // remembered: it may be projected a moment later.
        let Some((owner, open, role, active)) = row else {
            return Ok(None);
        };
        let session = SessionAccess {
            user_id: owner,
            open,
        };
        let user = UserAccess {
            role: Role::parse(&role),
            active,
        };
        {
            let current = inner.generation.lock().await;
            if *current == generation {
                inner.sessions.insert(session_id, session).await;
                inner.users.insert(owner, user).await;
            }
        }
        if !open || owner != user_id || !active {
            return Ok(None);
        }
        Ok(user.role)
    }

    /// Drops `keys` here and tells the other replicas to drop them too.
    pub async fn invalidate(&self, keys: &[AccessKey]) {
        if keys.is_empty() {
            return;
        }
        self.invalidate_locally(keys).await;
        self.publish(keys).await;
    }

    /// Drops `keys` from this process's cache only.
    pub async fn invalidate_locally(&self, keys: &[AccessKey]) {
        let inner = &self.inner;
        let mut generation = inner.generation.lock().await;
        *generation += 1;
        for key in keys {
            match *key {
                AccessKey::Session(id) => inner.sessions.invalidate(&id).await,
                AccessKey::User(id) => inner.users.invalidate(&id).await,
                AccessKey::All => {
                    inner.sessions.invalidate_all();
                    inner.users.invalidate_all();
                }
            }
        }
    }

    async fn publish(&self, keys: &[AccessKey]) {
        let messages: Vec<String> = keys.iter().map(|key| key.encode()).collect();
        self.inner.channel.publish(&messages).await;
    }

    /// Follows the invalidations other replicas publish, reconnecting
    /// after a failure. Each (re)subscription drops the whole cache first:
    /// messages sent while this replica was not listening are lost.
    pub fn follow(&self, redis_url: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let cache = self.clone();
        self.inner.channel.follow(redis_url, move |delivery| {
            let cache = cache.clone();
            async move {
                let key = match delivery {
                    Delivery::Subscribed => Some(AccessKey::All),
                    Delivery::Message(payload) => AccessKey::decode(&payload),
                };
                if let Some(key) = key {
                    cache.invalidate_locally(&[key]).await;
                }
            }
        })
    }
}

/// What an applied event changes for the access check, if anything.
pub fn affected_access(event: &StoredEvent) -> Option<AccessKey> {
    use sentryops_events::{session, user};
    let id = Uuid::parse_str(&event.aggregate_id).ok()?;
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        (session::AGGREGATE_TYPE, "SessionRevoked") => Some(AccessKey::Session(id)),
        (user::AGGREGATE_TYPE, "UserRoleChanged" | "UserDeactivated" | "UserReactivated") => {
            Some(AccessKey::User(id))
        }
        _ => None,
    }
}

/// Invalidates the cache after the `sessions` and `users` projections
/// commit, on whichever replica leads them.
pub struct AccessInvalidator {
    cache: AccessCache,
}

impl AccessInvalidator {
    pub fn new(cache: AccessCache) -> Self {
        Self { cache }
    }
}

fn feeds_access_check(projection: &str) -> bool {
    projection == sentryops_projections::sessions::NAME
        || projection == sentryops_projections::users::NAME
}

impl CommitObserver for AccessInvalidator {
    fn committed(&self, projection: &str, events: &[StoredEvent]) {
        if !feeds_access_check(projection) {
            return;
        }
        let keys: Vec<AccessKey> = events.iter().filter_map(affected_access).collect();
        if keys.is_empty() {
            return;
        }
        let cache = self.cache.clone();
        tokio::spawn(async move { cache.invalidate(&keys).await });
    }

    fn rebuilt(&self, projection: &str) {
        if feeds_access_check(projection) {
            let cache = self.cache.clone();
            tokio::spawn(async move { cache.invalidate(&[AccessKey::All]).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_wire() {
        let id = Uuid::new_v4();
        for key in [AccessKey::Session(id), AccessKey::User(id), AccessKey::All] {
            assert_eq!(AccessKey::decode(&key.encode()), Some(key));
        }
        assert_eq!(AccessKey::decode("session:not-a-uuid"), None);
        assert_eq!(AccessKey::decode(&format!("tag:{id}")), None);
        assert_eq!(AccessKey::decode(""), None);
    }
}
