//! Rebuild of `audit_timeline` over N stored events (default 1,000,000):
//! events/s and peak RSS, beside a baseline that only reads the same
//! events in the same batches, measured in the same run.
//!
//! `cargo run --release -p sentryops-bench --bin rebuild [EVENTS]`

use std::time::Instant;

use sentryops_bench::{
    drop_database, fresh_database, peak_rss_mib, rss_mib, seed_user_registered_events,
};
use sentryops_projections::audit_timeline::AuditTimeline;
use sentryops_projections::rebuild::{rebuild_on, RebuildOutcome};
use sentryops_projections::runtime::try_lead;
use sentryops_projections::store::read_settled;
use sentryops_projections::{LogPosition, RuntimeOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The rebuild logs its phases (fill, index build, swap) at info.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let (_, pool) = fresh_database("rebuild", 4).await?;

    let seed_started = Instant::now();
    seed_user_registered_events(&pool, events).await?;
    eprintln!(
        "seeded {events} events in {:.1} s",
        seed_started.elapsed().as_secs_f64()
    );

    let options = RuntimeOptions {
        rebuild_batch_size: std::env::var("REBUILD_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RuntimeOptions::default().rebuild_batch_size),
        ..RuntimeOptions::default()
    };
    let mut conn = pool.acquire().await?.detach();

    // Baseline: read every event in the same batches, apply nothing.
    let read_started = Instant::now();
    let mut cursor = LogPosition::START;
    let mut read = 0u64;
    loop {
        let batch = read_settled(&mut conn, cursor, options.rebuild_batch_size).await?;
        let Some(last) = batch.last().map(|event| event.log_position()) else {
            break;
        };
        read += batch.len() as u64;
        cursor = last;
    }
    let read_seconds = read_started.elapsed().as_secs_f64();
    let rss_before = rss_mib().unwrap_or(0.0);

    let projection = AuditTimeline;
    anyhow::ensure!(try_lead(&mut conn, "audit_timeline").await?, "lock taken");
    let started = Instant::now();
    let outcome = rebuild_on(
        &mut conn,
        &pool,
        &projection,
        &options,
        &mut |_, _| {},
        None,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let RebuildOutcome::Completed { events: folded } = outcome else {
        anyhow::bail!("rebuild stopped");
    };
    let read_rate = read as f64 / read_seconds;
    let rate = folded as f64 / seconds;
    println!("events                 {folded}");
    println!("baseline read          {read_rate:>10.0} events/s ({read_seconds:.1} s)");
    println!(
        "rebuild audit_timeline {rate:>10.0} events/s ({seconds:.1} s), {:.0}% of the read rate",
        100.0 * rate / read_rate
    );
    println!(
        "peak RSS               {:>10.1} MiB (RSS before rebuild {rss_before:.1} MiB)",
        peak_rss_mib().unwrap_or(0.0)
    );
    drop(conn);
    pool.close().await;
    drop_database("rebuild").await?;
    Ok(())
}
