//! Catch-up lag: p50/p99 from commit to projected under a steady rate of
//! single-event transactions (default 500 events/s for 20 s), with every
//! projection of the service running. Baseline, in the same run: the
//! commit-to-notification latency of PostgreSQL LISTEN/NOTIFY itself.
//!
//! `cargo run --release -p sentryops-bench --bin lag [EVENTS_PER_S] [SECONDS]`

use std::time::{Duration, Instant};

use sentryops_bench::{
    drop_database, fresh_database, lags_behind, quantile, record_checkpoints, steady_appends,
    Commit,
};
use sentryops_projections::{ProjectionRuntime, RuntimeOptions};
use sqlx::postgres::PgListener;
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
    let mut seen = record_checkpoints(&runtime, "audit_timeline")?;

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

    let committed = steady_appends(&url, rate, seconds, 1).await?;
    let last = committed
        .iter()
        .map(|commit| commit.position)
        .max()
        .expect("events");
    anyhow::ensure!(
        runtime.wait_for(last, Duration::from_secs(30)).await,
        "projection did not catch up"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    runtime.stop().await;

    let lags = lags_behind(&committed, &mut seen);
    let mut notifications = Vec::new();
    while let Ok(at) = notified_rx.try_recv() {
        notifications.push(at);
    }
    // Pair each commit with the first notification at or after it.
    let mut baseline: Vec<Duration> = Vec::new();
    let mut next = 0;
    for Commit { committed_at, .. } in &committed {
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
