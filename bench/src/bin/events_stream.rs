//! `GET /api/v1/events` as NDJSON over N stored events (default 1,000,000):
//! events/s and how much the process's resident memory grows while the
//! whole log streams, beside the baseline of the in-process `events export`
//! of the same log to a sink, measured in the same run.
//!
//! `cargo run --release -p sentryops-bench --bin events_stream [EVENTS]`
//!
//! The service runs in this process (its own runtime), with a seal key, so
//! every line carries its chain hash and the checkpoints; the client counts
//! lines chunk by chunk and keeps nothing. A sampler thread reads `VmRSS`
//! every 10 ms; the growth is its peak minus the RSS just before the
//! request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops_bench::{
    drop_database, export_log, fresh_database, rss_mib, seed_user_registered_events, serve,
};
use sentryops_projections::seal::checkpoint::SealKey;
use sentryops_projections::LogPosition;

const EMAIL: &str = "bench-admin@sentryops.example";
const PASSWORD: &str = "bench-admin-password-1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let (url, pool) = fresh_database("events_stream", 2).await?;
    seed_user_registered_events(&pool, events).await?;

    let key_file = std::env::temp_dir().join(format!(
        "sentryops-events-stream-bench-{}.key",
        std::process::id()
    ));
    let (private, _) = SealKey::generate("bench.sentryops/log")?;
    std::fs::write(&key_file, private)?;
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let mut config = Config::for_tests(&url);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    config.seal_key_file = Some(key_file.clone());
    let (addr, state, stop) = serve(config)?;
    let base = format!("http://{addr}");

    // Every projection (the sealer among them) catches up with the seeded
    // log first, so the stream competes with nothing.
    let last: (i64, i64) = sqlx::query_as(
        "select transaction_id::text::bigint, global_position from events \
         order by transaction_id desc, global_position desc limit 1",
    )
    .fetch_one(&pool)
    .await?;
    let target = LogPosition {
        transaction_id: last.0,
        position: last.1,
    };
    let started = Instant::now();
    anyhow::ensure!(
        state
            .runtime
            .wait_for(target, Duration::from_secs(900))
            .await,
        "projections did not catch up"
    );
    eprintln!(
        "projections caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: the export, to a sink. The service appended its own events
    // at start (the bootstrap admin), so the log holds more than the seed.
    let stored_for_export = stored_events(&pool).await?;
    let mut conn = pool.acquire().await?.detach();
    let started = Instant::now();
    let exported = export_log(&mut conn, &mut std::io::sink()).await?;
    let export_seconds = started.elapsed().as_secs_f64();
    drop(conn);

    let client = reqwest::Client::new();
    let token = sentryops_bench::login(&client, &base, EMAIL, PASSWORD).await?;

    let stored_for_stream = stored_events(&pool).await?;
    let rss_before = rss_mib().unwrap_or(0.0);
    let peak_kib = Arc::new(AtomicU64::new((rss_before * 1024.0) as u64));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak_kib, sampling) = (peak_kib.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(mib) = rss_mib() {
                    peak_kib.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let mut response = client
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(&token)
        .header("accept", "application/x-ndjson")
        .send()
        .await?
        .error_for_status()?;
    let mut lines = 0u64;
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        bytes += chunk.len() as u64;
    }
    let stream_seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    anyhow::ensure!(
        lines == stored_for_stream && exported == stored_for_export,
        "streamed {lines} of {stored_for_stream}, exported {exported} of {stored_for_export}"
    );

    let export_rate = exported as f64 / export_seconds;
    let stream_rate = lines as f64 / stream_seconds;
    println!("events                 {stored_for_stream} ({events} seeded)");
    println!("baseline export        {export_rate:>10.0} events/s ({export_seconds:.1} s)");
    println!(
        "GET /events NDJSON     {stream_rate:>10.0} events/s ({stream_seconds:.1} s, {:.0} MiB), {:.2}x the export",
        bytes as f64 / (1024.0 * 1024.0),
        stream_rate / export_rate
    );
    println!(
        "RSS                    {rss_before:>10.1} MiB before, {peak:.1} MiB peak: growth {:.1} MiB",
        peak - rss_before
    );
    let _ = stop.send(());
    pool.close().await;
    std::fs::remove_file(&key_file)?;
    drop_database("events_stream").await?;
    Ok(())
}

async fn stored_events(pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await?;
    Ok(count as u64)
}
