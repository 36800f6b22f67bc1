//! The service's one Redis connection and how its outages are reported.
//!
//! Rate limits ([`crate::ratelimit`]) and access-cache invalidations
//! ([`crate::auth::access`]) share one `ConnectionManager`: it reconnects in
//! the background and fails commands meanwhile (DESIGN D6); each caller
//! falls back on its own behind a [`Circuit`], which skips Redis during an
//! outage and probes it in the background, and logs an outage once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long one Redis call may take before the caller falls back.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(200);

/// A lazily connecting, self-reconnecting connection to `url`.
pub fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    Ok(redis::Client::open(url)?.get_connection_manager_lazy(config)?)
}

/// How often an open circuit probes Redis (`PING`) in the background.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A circuit breaker over the Redis connection, one per caller (the rate
/// limiter, each invalidation channel). Closed, calls go to Redis. The
/// first failure opens it: from then on callers skip Redis at once (their
/// in-process fallback answers in microseconds instead of after a timeout
/// on every request) while a background task pings Redis every
/// [`PROBE_INTERVAL`]; the first answer closes it. Opening and closing are
/// each reported once, so an outage is logged once, not per request.
#[derive(Debug, Default)]
pub struct Circuit {
    open: AtomicBool,
}

impl Circuit {
    /// A closed circuit.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Whether callers should skip Redis now.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records a failed call: opens the circuit and starts the probe; true
    /// when this failure opened it (log it), false when it was open.
    pub fn trip(self: &std::sync::Arc<Self>, redis: &ConnectionManager) -> bool {
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        let circuit = std::sync::Arc::clone(self);
        let redis = redis.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let mut connection = redis.clone();
                let command = redis::cmd("PING");
                let ping = command.query_async::<String>(&mut connection);
                if matches!(tokio::time::timeout(CALL_TIMEOUT, ping).await, Ok(Ok(_))) {
                    circuit.open.store(false, Ordering::Release);
                    tracing::info!("Redis answers again");
                    return;
                }
            }
        });
        true
    }
}

/// A channel on which replicas tell each other which entries of a cache
/// to drop. Publishing fails soft (logged once per outage): the cache's
/// TTL bounds staleness meanwhile.
pub struct InvalidationChannel {
    redis: Option<ConnectionManager>,
    name: String,
    /// What the cache holds, for the logs.
    what: &'static str,
    circuit: std::sync::Arc<Circuit>,
}

impl InvalidationChannel {
    /// The channel `name`; without a connection, publishing does nothing.
    pub fn new(redis: Option<ConnectionManager>, name: String, what: &'static str) -> Self {
        Self {
            redis,
            name,
            what,
            circuit: Circuit::new(),
        }
    }

    /// Tells the other replicas to drop `messages`' entries.
    pub async fn publish(&self, messages: &[String]) {
        let Some(redis) = &self.redis else {
            return;
        };
        if self.circuit.is_open() {
            // Skipped: the TTL bounds staleness until Redis answers again.
            return;
        }
        if let Err(reason) = publish(redis, &self.name, messages).await {
            if self.circuit.trip(redis) {
                tracing::warn!(
                    cache = self.what,
                    reason,
                    "Redis unavailable: other replicas see changes only when their cache entries expire"
                );
            }
        }
    }

    /// Follows what other replicas publish (see [`follow`]).
    pub fn follow<H, F>(
        &self,
        redis_url: &str,
        handle: H,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>>
    where
        H: Fn(Delivery) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = ()> + Send,
    {
        follow(redis_url, self.name.clone(), self.what, handle)
    }
}

/// Publishes `messages` on `channel` in one round trip, within
/// [`CALL_TIMEOUT`]; the error says why it failed.
async fn publish(
    redis: &ConnectionManager,
    channel: &str,
    messages: &[String],
) -> Result<(), String> {
    let mut connection = redis.clone();
    let mut pipeline = redis::pipe();
    for message in messages {
        pipeline.cmd("PUBLISH").arg(channel).arg(message).ignore();
    }
    let call = pipeline.query_async::<()>(&mut connection);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// What a follower of a channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The subscription was (re)established: messages sent while nobody
    /// listened are lost, so whatever they would have dropped must go.
    Subscribed,
    /// One message.
    Message(String),
}

/// Follows `channel` on `redis_url` for as long as the task runs,
/// resubscribing after a failure; `what` names the follower in the logs.
fn follow<H, F>(
    redis_url: &str,
    channel: String,
    what: &'static str,
    handle: H,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    use futures_util::StreamExt;
    let client = redis::Client::open(redis_url)?;
    Ok(tokio::spawn(async move {
        let mut failing = false;
        loop {
            let subscribe = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribe).await {
                Ok(Ok(pubsub)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(
                            follower = what,
                            "invalidations from other replicas resumed"
                        );
                    }
                    handle(Delivery::Subscribed).await;
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        if let Ok(payload) = message.get_payload::<String>() {
                            handle(Delivery::Message(payload)).await;
                        }
                    }
                }
                failed => {
                    if !std::mem::replace(&mut failing, true) {
                        let error = match failed {
                            Ok(Err(error)) => error.to_string(),
                            _ => "timed out".to_string(),
                        };
                        tracing::warn!(
                            follower = what,
                            %error,
                            "cannot follow invalidations from other replicas; cache entries expire after their TTL"
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }))
}
