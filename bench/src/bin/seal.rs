//! Tamper evidence over N stored events (default 1,000,000): how fast the
//! sealer chains and checkpoints them, and how fast `audit verify` checks
//! them online and offline, beside the baseline of an `events export` of
//! the same log to a sink, measured in the same run.
//!
//! `cargo run --release -p sentryops-bench --bin seal [EVENTS]`

use std::time::Instant;

use sentryops_bench::{
    drop_database, export_log, fresh_database, peak_rss_mib, seed_user_registered_events,
};
use sentryops_projections::runtime::{catch_up, ensure_checkpoint};
use sentryops_projections::seal::checkpoint::SealKey;
use sentryops_projections::seal::verify::{verify_database, verify_export};
use sentryops_projections::seal::{SealOptions, Sealer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let (_, pool) = fresh_database("seal", 4).await?;

    seed_user_registered_events(&pool, events).await?;

    // Sealing: the projection's own catch-up, batches of 1,000, a signed
    // checkpoint every 1,000 events.
    let (_, key) = SealKey::generate("bench.sentryops/log")?;
    let verifier = key.verifier();
    let sealer = Sealer::new(SealOptions {
        key: Some(key),
        every_events: 1000,
        ..SealOptions::default()
    });
    let mut conn = pool.acquire().await?.detach();
    ensure_checkpoint(&mut conn, &sealer).await?;
    let started = Instant::now();
    let pass = catch_up(&mut conn, &sealer, 1000, |_, _| {}).await?;
    let seal_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        pass.applied == events,
        "sealed {} of {events}",
        pass.applied
    );

    // Baseline: the export, to a sink.
    let export_file = std::env::temp_dir().join(format!(
        "sentryops-seal-bench-{}.ndjson",
        std::process::id()
    ));
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&export_file)?);
    let exported = export_log(&mut conn, &mut out).await?;
    drop(out);
    let export_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let online = verify_database(&mut conn, Some(verifier.clone()), false, &[]).await?;
    let online_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        online.ok && online.events_checked == events,
        "online: {online:?}"
    );

    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(&export_file)?);
    let offline = verify_export(file, Some(verifier), &[])?;
    let offline_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        offline.ok && offline.head == online.head,
        "offline: {offline:?}"
    );
    std::fs::remove_file(&export_file)?;

    let rate = |count: u64, seconds: f64| count as f64 / seconds;
    let export_rate = rate(exported, export_seconds);
    println!("events                 {events}");
    println!(
        "seal (chain + sign)    {:>10.0} events/s ({seal_seconds:.1} s), {} checkpoints",
        rate(events, seal_seconds),
        online.checkpoints_valid
    );
    println!("baseline export        {export_rate:>10.0} events/s ({export_seconds:.1} s)");
    for (name, seconds) in [
        ("verify online", online_seconds),
        ("verify offline", offline_seconds),
    ] {
        let verify_rate = rate(events, seconds);
        println!(
            "{name:<22} {verify_rate:>10.0} events/s ({seconds:.1} s), {:.2}x the export",
            verify_rate / export_rate
        );
    }
    println!(
        "peak RSS               {:>10.1} MiB",
        peak_rss_mib().unwrap_or(0.0)
    );
    drop(conn);
    pool.close().await;
    drop_database("seal").await?;
    Ok(())
}
