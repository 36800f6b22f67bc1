//! Building and running the service: pool, migrations, projections,
//! bootstrap data and the HTTP listener. Tests build it with port 0.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use sentryops_projections::{ProjectionRuntime, RuntimeOptions, MIGRATOR};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::domain::Commands;
use crate::http::{self, AppState, AppStateInner};
use crate::password::Passwords;

/// Connects to PostgreSQL without statement or lock timeouts: for the
/// projection runtime, rebuilds and the command line, whose work may
/// rightly take long.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    connect_with(config, config.database_max_connections, None).await
}

/// The pool of the API: every connection carries `statement_timeout` and
/// `lock_timeout` below the request timeout, so a query whose request
/// timed out (or that waits on somebody's lock) ends inside PostgreSQL and
/// gives its connection back, instead of holding one of the pool's few
/// connections for as long as the lock lasts.
pub async fn connect_api(config: &Config) -> anyhow::Result<PgPool> {
    connect_with(
        config,
        config.database_max_connections,
        Some((config.statement_timeout, config.lock_timeout)),
    )
    .await
}

async fn connect_with(
    config: &Config,
    max_connections: u32,
    timeouts: Option<(std::time::Duration, std::time::Duration)>,
) -> anyhow::Result<PgPool> {
    let mut options: sqlx::postgres::PgConnectOptions = config
        .database_url
        .expose()
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    if let Some((statement, lock)) = timeouts {
        // Startup parameters: set once per connection, no round trip.
        // 0 is PostgreSQL's "no timeout"; anything else at least 1 ms.
        let ms = |d: std::time::Duration| match d.as_millis() {
            0 if d.is_zero() => "0".to_string(),
            0 => "1".to_string(),
            n => n.to_string(),
        };
        options = options.options([
            ("statement_timeout", ms(statement)),
            ("lock_timeout", ms(lock)),
        ]);
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL (check DATABASE_URL)")
}

/// The log's sealer as configured (ADR 0006).
pub fn sealer(config: &Config) -> anyhow::Result<sentryops_projections::seal::Sealer> {
    use sentryops_projections::seal::{checkpoint::SealKey, SealOptions, Sealer};
    let key = config
        .seal_key_file
        .as_deref()
        .map(SealKey::load)
        .transpose()?;
    if key.is_none() {
        tracing::warn!(
            "SENTRYOPS_SEAL_KEY_FILE is not set: the event log is hash-chained, but no \
             checkpoint is signed, so tampering by someone who rewrites the chain goes unseen"
        );
    }
    Ok(Sealer::new(SealOptions {
        key,
        every_events: config.seal_checkpoint_events,
        every: config.seal_checkpoint_interval,
        publish_dir: config.seal_publish_dir.clone(),
    }))
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("migrations failed")
}

/// A built service, listening, with its projections running.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The followers of other replicas' cache invalidations.
    invalidations: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects, migrates, starts the projections, creates the bootstrap
    /// admin when configured, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First: a rule file that does not load stops the start before
        // anything else happens (SPEC section 4).
        let rules = crate::compliance::load_rules(config.rules_dir.as_deref())?;
        let pool = connect_api(&config).await?;
        // The projectors' own pool, without the API's timeouts: a batch or
        // a rebuild may wait on a lock, and must not fail for it.
        let sealer = sealer(&config)?;
        let seal_verifier = sealer.key().map(|key| key.verifier());
        let projections = sentryops_projections::all(sealer);
        let runtime_pool = connect_with(
            &config,
            u32::try_from(projections.len() * 2 + 4).unwrap_or(32),
            None,
        )
        .await?;
        migrate(&runtime_pool).await?;
        let runtime = ProjectionRuntime::new(runtime_pool, projections, RuntimeOptions::default());
        let redis_url = config.redis_url.as_ref().map(|url| url.expose());
        if redis_url.is_none() {
            tracing::warn!(
                "REDIS_URL is not set: rate limits hold per process only, and other replicas \
                 see revocations only when their access-cache entries expire"
            );
        }
        let redis = redis_url.map(crate::redis_link::connect).transpose()?;
        let access = crate::auth::access::AccessCache::new(
            pool.clone(),
            config.auth_cache_ttl,
            redis.clone(),
            &config.redis_key_prefix,
        );
        runtime.observe(std::sync::Arc::new(
            crate::auth::access::AccessInvalidator::new(access.clone()),
        ));
        let asset_views = crate::http::cmdb::cache::AssetViewCache::new(
            config.asset_cache_ttl,
            redis.clone(),
            &config.redis_key_prefix,
        );
        runtime.observe(std::sync::Arc::new(
            crate::http::cmdb::cache::AssetViewInvalidator::new(asset_views.clone()),
        ));
        let mut invalidations = Vec::new();
        if let Some(url) = redis_url {
            invalidations.push(access.follow(url)?);
            invalidations.push(asset_views.follow(url)?);
        }
        runtime.start().await;
        let passwords = Passwords::new(config.password_hashing)?;
        let keyring = crate::auth::SharedKeyring::open(
            config.token_keys_file.as_ref(),
            config.access_token_ttl,
        )?;
        if let Some(file) = &config.token_keys_file {
            keyring.watch(
                file.clone(),
                config.access_token_ttl,
                std::time::Duration::from_secs(10),
            );
        }
        let dummy_hash = passwords
            .hash(&crate::config::Secret::new(
                uuid::Uuid::new_v4().to_string(),
            ))
            .await?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind_addr))?;
        let limiter = std::sync::Arc::new(crate::ratelimit::RateLimiter::new(
            redis,
            &config.redis_key_prefix,
        ));
        let state = AppState::new(AppStateInner {
            commands: Commands::new(pool.clone()),
            config,
            pool,
            runtime,
            passwords,
            keyring,
            dummy_hash,
            limiter,
            access,
            asset_views,
            rules,
            seal_verifier,
        });
        crate::demo::ensure_bootstrap_admin(&state).await?;
        Ok(Self {
            listener,
            state,
            invalidations,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state (tests use it to drive commands directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops the projections.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = http::router(self.state.clone());
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("server failed")?;
        self.state.runtime.stop().await;
        for follower in self.invalidations {
            follower.abort();
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
