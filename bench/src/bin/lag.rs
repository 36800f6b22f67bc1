//! Catch-up lag: p50/p99 from commit to projected under a steady rate of
//! single-event transactions (default 500 events/s for 20 s), with every
//! projection of the service running. Baseline, in the same run: the
//! commit-to-notification latency of PostgreSQL LISTEN/NOTIFY itself.
//!
//! `cargo run --release -p sentryops-bench --bin lag [EVENTS_PER_S] [SECONDS]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sentryops_bench::{drop_database, fresh_database, quantile, user_registered_payload};
use sentryops_events::EventMetadata;
use sentryops_projections::{LogPosition, ProjectionRuntime, RuntimeOptions};
use sqlx::postgres::PgListener;
use sqlx::Connection;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate: u64 = std::env::args().nth(1).map_or(Ok(500), |s| s.parse())?;
    let seconds: u64 = std::env::args().nth(2).map_or(Ok(20), |s| s.parse())?;
    let (url, pool) = fresh_database("lag", 12).await?;
    let runtime = ProjectionRuntime::new(
        pool.clone(),
        sentryops_projections::all(sentryops_projections::seal::Sealer::new(Default::default())),
        RuntimeOptions::default(),
    );
    runtime.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Projected: every checkpoint the audit timeline commits, with its time.
    // (The users projection runs too and shares the database.)
    let mut progress = runtime
        .subscribe("audit_timeline")
        .expect("audit_timeline runs");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(LogPosition, Instant)>();
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let checkpoint = *progress.borrow_and_update();
            if seen_tx.send((checkpoint, Instant::now())).is_err() {
                break;
            }
        }
    });

    // Baseline: a plain listener's notification times.
    let mut listener = PgListener::connect(&url).await?;
    listener.listen("sentryops_events").await?;
    let (notified_tx, mut notified_rx) = mpsc::unbounded_channel::<Instant>();
    tokio::spawn(async move {
        while listener.recv().await.is_ok() {
            if notified_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });

    let mut writer = sqlx::PgConnection::connect(&url).await?;
    let metadata = serde_json::to_value(EventMetadata::system().to_map())?;
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut committed: Vec<(LogPosition, Instant)> = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let mut tx = writer.begin().await?;
        let (transaction_id, position): (i64, i64) = sqlx::query_as(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             values ('user', gen_random_uuid()::text, 1, 'UserRegistered', '1.0', $1, $2) \
             returning transaction_id::text::bigint, global_position",
        )
        .bind(user_registered_payload(n))
        .bind(&metadata)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        committed.push((
            LogPosition {
                transaction_id,
                position,
            },
            Instant::now(),
        ));
    }
    let last = committed.last().expect("events").0;
    anyhow::ensure!(
        runtime.wait_for(last, Duration::from_secs(30)).await,
        "projection did not catch up"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    runtime.stop().await;

    let mut checkpoints = BTreeMap::new();
    while let Ok((checkpoint, at)) = seen_rx.try_recv() {
        checkpoints.entry(checkpoint).or_insert(at);
    }
    let mut lags: Vec<Duration> = committed
        .iter()
        .filter_map(|(position, committed_at)| {
            checkpoints
                .range(*position..)
                .next()
                .map(|(_, projected_at)| projected_at.saturating_duration_since(*committed_at))
        })
        .collect();
    lags.sort();
    let mut notifications = Vec::new();
    while let Ok(at) = notified_rx.try_recv() {
        notifications.push(at);
    }
    // Pair each commit with the first notification at or after it.
    let mut baseline: Vec<Duration> = Vec::new();
    let mut next = 0;
    for (_, committed_at) in &committed {
        while next < notifications.len()
            && notifications[next] + Duration::from_micros(200) < *committed_at
        {
            next += 1;
        }
        if let Some(at) = notifications.get(next) {
            baseline.push(at.saturating_duration_since(*committed_at));
        }
    }
    baseline.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{} events at {rate}/s over {seconds} s", committed.len());
    println!(
        "commit -> projected   p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} measured)",
        ms(quantile(&lags, 0.5)),
        ms(quantile(&lags, 0.99)),
        ms(quantile(&lags, 1.0)),
        lags.len()
    );
    println!(
        "commit -> NOTIFY seen p50 {:>7.2} ms  p99 {:>7.2} ms  (baseline)",
        ms(quantile(&baseline, 0.5)),
        ms(quantile(&baseline, 0.99)),
    );
    pool.close().await;
    drop_database("lag").await?;
    Ok(())
}
