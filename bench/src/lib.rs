//! Shared set-up of the SentryOps benchmarks: a fresh, migrated database on
//! the server named by `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`), and
//! small statistics helpers. Figures go to `docs/BENCHMARKS.md`.

use std::time::Duration;

use sentryops_projections::testing::with_database;
use sentryops_projections::MIGRATOR;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server URL benchmarks create their databases on.
pub fn admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh, migrated database: its URL and a pool of `connections`.
pub async fn fresh_database(label: &str, connections: u32) -> anyhow::Result<(String, PgPool)> {
    let name = format!("sentryops_bench_{label}");
    let mut admin = PgConnection::connect(&admin_url()).await?;
    sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("create database \"{name}\""))
        .execute(&mut admin)
        .await?;
    // The URL's parameters (sslmode, ...) carry over to the new database.
    let url = with_database(&admin_url(), &name);
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok((url, pool))
}

/// Drops a benchmark database.
pub async fn drop_database(label: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&admin_url()).await?;
    sqlx::query(&format!(
        "drop database if exists \"sentryops_bench_{label}\" with (force)"
    ))
    .execute(&mut admin)
    .await?;
    Ok(())
}

/// The `q` quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Current resident set size in MiB (Linux `VmRSS`).
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A `UserRegistered` payload of realistic size for event `n`.
pub fn user_registered_payload(n: u64) -> serde_json::Value {
    serde_json::json!({ "UserRegistered": {
        "user_id": uuid::Uuid::new_v4(),
        "email": format!("user{n}@bench.example"),
        "full_name": format!("Bench User {n}"),
        "role": "viewer",
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0123456789abcdef0123456789abcdef0123456789a",
        "mfa_enabled": false,
        "registered_at": "2026-11-23T00:00:00Z",
    }})
}

/// Starts the service on a runtime (and threads) of its own, so that the
/// load generator's scheduling does not share its workers; returns its
/// address, its state, and the sender that stops it.
pub fn serve(
    config: sentryops::config::Config,
) -> anyhow::Result<(
    std::net::SocketAddr,
    sentryops::http::AppState,
    tokio::sync::oneshot::Sender<()>,
)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            match sentryops::startup::Application::build(config).await {
                Ok(app) => {
                    let _ = ready_tx.send(Ok((app.local_addr(), app.state().clone())));
                    let _ = app
                        .run_until(async move {
                            let _ = stop_rx.await;
                        })
                        .await;
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            }
        });
    });
    let (addr, state) = ready_rx.recv()??;
    Ok((addr, state, stop_tx))
}
