//! Tamper evidence over N stored events (default 1,000,000): how fast the
//! sealer chains and checkpoints them, and how fast `audit verify` checks
//! them online and offline, beside the baseline of an `events export` of
//! the same log to a sink, measured in the same run.
//!
//! `cargo run --release -p sentryops-bench --bin seal [EVENTS]`

use std::io::Write;
use std::time::Instant;

use sentryops_bench::{drop_database, fresh_database, peak_rss_mib, user_registered_payload};
use sentryops_events::EventMetadata;
use sentryops_projections::runtime::{catch_up, ensure_checkpoint};
use sentryops_projections::seal::checkpoint::SealKey;
use sentryops_projections::seal::verify::{verify_database, verify_export};
use sentryops_projections::seal::{exported_line, SealOptions, Sealer};
use sentryops_projections::store::{read_settled_filtered, LogFilter};
use sentryops_projections::LogPosition;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let (_, pool) = fresh_database("seal", 4).await?;

    // Seed as the rebuild benchmark does: UserRegistered payloads (each
    // with a password hash to seal as a digest) and full metadata.
    let payload = user_registered_payload(0);
    let metadata = serde_json::to_value(EventMetadata::system().to_map())?;
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
        .execute(&pool)
        .await?;
        seeded += chunk;
    }
    sqlx::query("vacuum analyze events").execute(&pool).await?;

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
    let mut cursor = LogPosition::START;
    let mut exported = 0u64;
    loop {
        let batch = read_settled_filtered(&mut conn, cursor, 5000, &LogFilter::default()).await?;
        let Some(last) = batch.last().map(|sealed| sealed.event.log_position()) else {
            break;
        };
        for sealed in &batch {
            serde_json::to_writer(&mut out, &exported_line(sealed)?)?;
            out.write_all(b"\n")?;
        }
        exported += batch.len() as u64;
        cursor = last;
    }
    out.flush()?;
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
