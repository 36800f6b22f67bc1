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

/// Seeds `events` `UserRegistered` events (each with a password hash to
/// seal as a digest, and full metadata) in transactions of 10,000, through
/// SQL so this process never holds the log in memory; then vacuums.
pub async fn seed_user_registered_events(pool: &PgPool, events: u64) -> anyhow::Result<()> {
    let payload = user_registered_payload(0);
    let metadata = serde_json::to_value(sentryops_events::EventMetadata::system().to_map())?;
    let mut seeded = 0u64;
    while seeded < events {
        let chunk = (events - seeded).min(10_000);
        sqlx::query(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             select 'user', gen_random_uuid()::text, 1, 'UserRegistered', '1.0', \
                    jsonb_set($1, '{UserRegistered,email}', to_jsonb('user' || i || '@bench.example')), \
                    jsonb_set($2, '{request_id}', to_jsonb('req-' || i)) \
             from generate_series($3::bigint, $4::bigint) as i",
        )
        .bind(&payload)
        .bind(&metadata)
        .bind(seeded as i64 + 1)
        .bind((seeded + chunk) as i64)
        .execute(pool)
        .await?;
        seeded += chunk;
    }
    sqlx::query("vacuum analyze events").execute(pool).await?;
    Ok(())
}

/// The `events export` path into `out`: every settled event in global
/// order, with its chain hash, one NDJSON line each, read in batches of
/// 5,000. Returns how many were written. The baseline of the tamper
/// evidence and `GET /events` benchmarks.
pub async fn export_log(
    conn: &mut PgConnection,
    out: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    use sentryops_projections::seal::write_exported_line;
    use sentryops_projections::store::{read_settled_filtered, LogFilter};
    let mut cursor = sentryops_projections::LogPosition::START;
    let mut exported = 0u64;
    let mut line = Vec::with_capacity(1024);
    loop {
        let batch = read_settled_filtered(conn, cursor, 5000, &LogFilter::default()).await?;
        let Some(last) = batch.last().map(|sealed| sealed.event.log_position()) else {
            break;
        };
        for sealed in &batch {
            line.clear();
            write_exported_line(sealed, &mut line)?;
            line.push(b'\n');
            out.write_all(&line)?;
        }
        exported += batch.len() as u64;
        cursor = last;
    }
    out.flush()?;
    Ok(exported)
}

/// Logs in to the service at `base` and returns the access token.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await?
        .json()
        .await?;
    Ok(login["data"]["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?
        .to_string())
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

/// One commit of [`steady_appends`]: where the event landed, when the
/// commit returned, and how long the append (begin to commit) took.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub position: sentryops_projections::LogPosition,
    pub committed_at: std::time::Instant,
    pub latency: Duration,
}

/// Appends `UserRegistered` events as single-event transactions at a steady
/// `rate` per second for `seconds`, spread over `writers` connections to
/// `url` (each commit waits for its WAL flush, so one connection alone
/// tops out near 1 / fsync time), the way the command path writes them (a
/// payload with a secret to seal, full metadata). Ticks missed by a slow
/// commit are caught up in a burst. Commits come back in commit order.
pub async fn steady_appends(
    url: &str,
    rate: u64,
    seconds: u64,
    writers: u64,
) -> anyhow::Result<Vec<Commit>> {
    let metadata = serde_json::to_value(sentryops_events::EventMetadata::system().to_map())?;
    let per_writer = rate * seconds / writers;
    let interval = Duration::from_secs_f64(writers as f64 / rate as f64);
    let mut tasks = Vec::new();
    for writer_index in 0..writers {
        let mut writer = PgConnection::connect(url).await?;
        let metadata = metadata.clone();
        tasks.push(tokio::spawn(async move {
            // Writers start spread over one interval, not all at once.
            tokio::time::sleep(interval.mul_f64(writer_index as f64 / writers as f64)).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut commits = Vec::with_capacity(per_writer as usize);
            for n in 0..per_writer {
                ticker.tick().await;
                let started = std::time::Instant::now();
                let mut tx = writer.begin().await?;
                let (transaction_id, position): (i64, i64) = sqlx::query_as(
                    "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                     values ('user', gen_random_uuid()::text, 1, 'UserRegistered', '1.0', $1, $2) \
                     returning transaction_id::text::bigint, global_position",
                )
                .bind(user_registered_payload(writer_index * per_writer + n))
                .bind(&metadata)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let committed_at = std::time::Instant::now();
                commits.push(Commit {
                    position: sentryops_projections::LogPosition {
                        transaction_id,
                        position,
                    },
                    committed_at,
                    latency: committed_at - started,
                });
            }
            anyhow::Ok(commits)
        }));
    }
    let mut commits = Vec::new();
    for task in tasks {
        commits.extend(task.await??);
    }
    commits.sort_by_key(|commit| commit.committed_at);
    Ok(commits)
}

/// Records when each checkpoint of `projection` on `runtime` is committed;
/// [`lags_behind`] pairs them with the commits.
pub fn record_checkpoints(
    runtime: &sentryops_projections::ProjectionRuntime,
    projection: &str,
) -> anyhow::Result<
    tokio::sync::mpsc::UnboundedReceiver<(sentryops_projections::LogPosition, std::time::Instant)>,
> {
    let mut progress = runtime
        .subscribe(projection)
        .ok_or_else(|| anyhow::anyhow!("{projection} does not run"))?;
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let checkpoint = *progress.borrow_and_update();
            if seen_tx
                .send((checkpoint, std::time::Instant::now()))
                .is_err()
            {
                break;
            }
        }
    });
    Ok(seen_rx)
}

/// For each commit, the time from its commit returning to the first
/// recorded checkpoint at or past it; sorted.
pub fn lags_behind(
    commits: &[Commit],
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<(
        sentryops_projections::LogPosition,
        std::time::Instant,
    )>,
) -> Vec<Duration> {
    let mut checkpoints = std::collections::BTreeMap::new();
    while let Ok((checkpoint, at)) = seen.try_recv() {
        checkpoints.entry(checkpoint).or_insert(at);
    }
    let mut lags: Vec<Duration> = commits
        .iter()
        .filter_map(|commit| {
            checkpoints
                .range(commit.position..)
                .next()
                .map(|(_, at)| at.saturating_duration_since(commit.committed_at))
        })
        .collect();
    lags.sort();
    lags
}
