//! Configuration from the environment (SPEC section 8). `.env` is read when
//! present; `.env.example` lists every variable with a safe placeholder.
//! Secrets are wrapped in [`Secret`] so that they never reach a log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

/// A value that must never be logged or returned. `Debug` prints a
/// placeholder; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Argon2id cost parameters (OWASP: m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashing threads (hashes at once). They run at a lower priority
    /// than the async runtime, so a login flood cannot starve it.
    pub max_concurrent: usize,
    /// Hashes that may wait for a thread; beyond that a login is shed at
    /// once with 503 and `Retry-After` instead of queueing without bound.
    pub max_queued: usize,
}

/// Credentials of the bootstrap admin created on first start.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: Secret,
}

/// The service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL connection string (may hold a password).
    pub database_url: Secret,
    pub database_max_connections: u32,
    /// Address the API listens on; port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// Origins allowed by CORS; empty means no cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// `SENTRYOPS_ENV=production` turns on HSTS.
    pub production: bool,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    pub otlp_endpoint: Option<String>,
    /// `/ready` fails when a projection's oldest unprojected event is older
    /// than this (a burst being drained is not unreadiness; a stalled
    /// projector is).
    pub ready_max_lag: Duration,
    /// `/ready` reports `degraded` when an append has been open longer than
    /// this: it holds every projection back.
    pub ready_max_open_append: Duration,
    pub request_timeout: Duration,
    /// `statement_timeout` of every API connection: below the request
    /// timeout, so a query whose request gave up ends in PostgreSQL too
    /// instead of holding its connection.
    pub statement_timeout: Duration,
    /// `lock_timeout` of every API connection: a query waiting on a lock
    /// gives up this soon.
    pub lock_timeout: Duration,
    /// How long a command waits for its read models before answering.
    pub read_your_writes_timeout: Duration,
    pub max_body_bytes: usize,
    pub password_hashing: PasswordHashing,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// The access-token key file (`sentryops keys init|rotate`). Without it
    /// the process signs with a key of its own that dies with it.
    pub token_keys_file: Option<std::path::PathBuf>,
    /// The event log's checkpoint signing key (`sentryops audit keygen`,
    /// ADR 0006). Without it the chain is kept but nothing is signed.
    pub seal_key_file: Option<std::path::PathBuf>,
    /// A checkpoint at least every this many events…
    pub seal_checkpoint_events: u64,
    /// …and at least this often while the log grows.
    pub seal_checkpoint_interval: Duration,
    /// Where the newest checkpoint is also written, for publication.
    pub seal_publish_dir: Option<std::path::PathBuf>,
    /// Lifetime of access tokens (SPEC: 15 minutes by default).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (SPEC: 14 days by default).
    pub refresh_token_ttl: Duration,
    /// How long after a rotation its consumed refresh token answers 401
    /// without revoking the session (a lost race between two tabs, not
    /// reuse; ADR 0003).
    pub refresh_reuse_grace: Duration,
    /// Redis for shared rate limits; without it limits hold per process.
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key (deployments sharing one Redis stay apart).
    pub redis_key_prefix: String,
    /// Logins and refreshes per minute, per client address and per account.
    pub auth_rate_limit_per_minute: u32,
    /// How long an access check (session open, user active, role) may be
    /// served from the cache. Invalidations normally arrive within
    /// milliseconds (projector, Redis pub/sub); this bounds staleness when
    /// they cannot (Redis down).
    pub auth_cache_ttl: Duration,
    /// How long an asset's current view may be served from the cache
    /// without an invalidation (the staleness bound while Redis is down).
    pub asset_cache_ttl: Duration,
    /// The directory of declarative compliance rules (`RULES_DIR`; by
    /// default `rules` when that directory exists). An invalid file stops
    /// the start.
    pub rules_dir: Option<std::path::PathBuf>,
    /// Compliance runs per minute per user (API.md: the 7th is 429).
    pub compliance_runs_per_minute: u32,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match var(name) {
        Some(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name} is not valid")),
        None => Ok(default),
    }
}

/// A statement's budget inside a request's: nine tenths of it, and at
/// least one second less when there is room, so PostgreSQL ends the query
/// before the client is told 408.
pub fn default_statement_timeout(request_timeout: Duration) -> Duration {
    let tenth = request_timeout / 10;
    request_timeout.saturating_sub(tenth.max(Duration::from_secs(1)).min(request_timeout / 2))
}

impl Config {
    /// Reads `.env` (if present) and the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let _ = dotenvy::dotenv();
        let database_url = var("DATABASE_URL").context("DATABASE_URL is not set")?;
        let bootstrap_admin = match (
            var("SENTRYOPS_BOOTSTRAP_ADMIN_EMAIL"),
            var("SENTRYOPS_BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some(BootstrapAdmin {
                email,
                password: Secret::new(password),
            }),
            _ => None,
        };
        let request_timeout = Duration::from_secs(parsed("REQUEST_TIMEOUT_SECONDS", 30)?);
        Ok(Self {
            database_url: Secret::new(database_url),
            database_max_connections: parsed("DATABASE_MAX_CONNECTIONS", 20)?,
            bind_addr: parsed("SENTRYOPS_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            cors_allowed_origins: var("CORS_ALLOWED_ORIGINS")
                .map(|value| {
                    value
                        .split(',')
                        .map(|origin| origin.trim().to_string())
                        .filter(|origin| !origin.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            production: var("SENTRYOPS_ENV").as_deref() == Some("production"),
            log_format: var("LOG_FORMAT").unwrap_or_else(|| "json".into()),
            otlp_endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            ready_max_lag: Duration::from_secs(parsed("READY_MAX_LAG_SECONDS", 30)?),
            ready_max_open_append: Duration::from_secs(parsed(
                "READY_MAX_OPEN_APPEND_SECONDS",
                10,
            )?),
            request_timeout,
            statement_timeout: match var("DATABASE_STATEMENT_TIMEOUT_MS") {
                Some(_) => Duration::from_millis(parsed("DATABASE_STATEMENT_TIMEOUT_MS", 0)?),
                None => default_statement_timeout(request_timeout),
            },
            lock_timeout: match var("DATABASE_LOCK_TIMEOUT_MS") {
                Some(_) => Duration::from_millis(parsed("DATABASE_LOCK_TIMEOUT_MS", 0)?),
                None => default_statement_timeout(request_timeout).min(Duration::from_secs(5)),
            },
            read_your_writes_timeout: Duration::from_millis(parsed(
                "READ_YOUR_WRITES_TIMEOUT_MS",
                2000,
            )?),
            max_body_bytes: parsed("MAX_BODY_BYTES", 1024 * 1024)?,
            password_hashing: PasswordHashing {
                memory_kib: parsed("ARGON2_MEMORY_KIB", 19 * 1024)?,
                iterations: parsed("ARGON2_ITERATIONS", 2)?,
                parallelism: parsed("ARGON2_PARALLELISM", 1)?,
                max_concurrent: parsed("ARGON2_MAX_CONCURRENT", 2)?,
                max_queued: parsed("ARGON2_MAX_QUEUED", 32)?,
            },
            bootstrap_admin,
            token_keys_file: var("SENTRYOPS_TOKEN_KEYS_FILE").map(std::path::PathBuf::from),
            seal_key_file: var("SENTRYOPS_SEAL_KEY_FILE").map(std::path::PathBuf::from),
            seal_checkpoint_events: parsed("SEAL_CHECKPOINT_EVERY_EVENTS", 1000u64)?.max(1),
            seal_checkpoint_interval: Duration::from_secs(
                parsed("SEAL_CHECKPOINT_EVERY_SECONDS", 60u64)?.max(1),
            ),
            seal_publish_dir: var("SENTRYOPS_SEAL_PUBLISH_DIR").map(std::path::PathBuf::from),
            access_token_ttl: Duration::from_secs(parsed("ACCESS_TOKEN_TTL_SECONDS", 900)?),
            refresh_token_ttl: Duration::from_secs(parsed(
                "REFRESH_TOKEN_TTL_SECONDS",
                14 * 24 * 3600,
            )?),
            refresh_reuse_grace: Duration::from_secs(parsed("REFRESH_REUSE_GRACE_SECONDS", 2)?),
            redis_url: var("REDIS_URL").map(Secret::new),
            redis_key_prefix: var("REDIS_KEY_PREFIX").unwrap_or_else(|| "sentryops".into()),
            auth_rate_limit_per_minute: parsed("AUTH_RATE_LIMIT_PER_MINUTE", 10)?,
            auth_cache_ttl: Duration::from_millis(parsed("AUTH_CACHE_TTL_MS", 2000)?),
            asset_cache_ttl: Duration::from_millis(parsed("ASSET_CACHE_TTL_MS", 2000)?),
            rules_dir: var("RULES_DIR").map(std::path::PathBuf::from).or_else(|| {
                let default = std::path::PathBuf::from("rules");
                default.is_dir().then_some(default)
            }),
            compliance_runs_per_minute: parsed("COMPLIANCE_RUNS_PER_MINUTE", 6)?,
        })
    }

    /// A configuration for tests: the given database, port 0 and cheap
    /// password hashing.
    pub fn for_tests(database_url: &str) -> Self {
        Self {
            database_url: Secret::new(database_url),
            database_max_connections: 10,
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cors_allowed_origins: vec!["https://console.example.test".into()],
            production: false,
            log_format: "json".into(),
            otlp_endpoint: None,
            ready_max_lag: Duration::from_secs(30),
            ready_max_open_append: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            statement_timeout: default_statement_timeout(Duration::from_secs(30)),
            lock_timeout: Duration::from_secs(5),
            read_your_writes_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            password_hashing: PasswordHashing {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
                max_concurrent: 2,
                max_queued: 64,
            },
            bootstrap_admin: None,
            token_keys_file: None,
            seal_key_file: None,
            seal_checkpoint_events: 1000,
            seal_checkpoint_interval: Duration::from_secs(60),
            seal_publish_dir: None,
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 3600),
            // Generous: concurrent-refresh tests send their requests at
            // once on a loaded machine; the replay test sets it to zero.
            refresh_reuse_grace: Duration::from_secs(10),
            redis_url: Some(Secret::new(
                std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            )),
            // Tests share one Redis: each app gets its own key space.
            redis_key_prefix: format!("sentryops-test-{}", uuid::Uuid::new_v4().simple()),
            // High, so tests that log in often are not limited; the rate
            // limit tests lower it.
            auth_rate_limit_per_minute: 1000,
            auth_cache_ttl: Duration::from_secs(2),
            asset_cache_ttl: Duration::from_secs(2),
            // The built-in rules only; tests of declarative rules set a
            // directory of their own.
            rules_dir: None,
            compliance_runs_per_minute: 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_before_their_request() {
        let ms = |d: Duration| d.as_millis();
        assert_eq!(
            ms(default_statement_timeout(Duration::from_secs(30))),
            27_000
        );
        assert_eq!(ms(default_statement_timeout(Duration::from_secs(2))), 1_000);
        assert_eq!(ms(default_statement_timeout(Duration::from_secs(1))), 500);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2-hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        let mut config = Config::for_tests("postgres://u:pw-123@h/db");
        config.bootstrap_admin = Some(BootstrapAdmin {
            email: "a@b.io".into(),
            password: Secret::new("boot-pass-123"),
        });
        let printed = format!("{config:?}");
        assert!(!printed.contains("pw-123"), "{printed}");
        assert!(!printed.contains("boot-pass-123"), "{printed}");
    }
}
