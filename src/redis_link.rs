//! The service's one Redis connection and how its outages are reported.
//!
//! Rate limits ([`crate::ratelimit`]) and access-cache invalidations
//! ([`crate::auth::access`]) share one `ConnectionManager`: it reconnects in
//! the background and fails commands meanwhile (DESIGN D6), each caller
//! falls back on its own, and each logs an outage once, not per request.

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

/// Remembers whether Redis is failing for one caller, so that an outage and
/// the recovery are each logged once.
#[derive(Debug, Default)]
pub struct Outage {
    failing: AtomicBool,
}

impl Outage {
    /// Records a failure; true for the first one of an outage.
    pub fn began(&self) -> bool {
        !self.failing.swap(true, Ordering::Relaxed)
    }

    /// Records a success; true for the first one after an outage.
    pub fn ended(&self) -> bool {
        self.failing.swap(false, Ordering::Relaxed)
    }
}
