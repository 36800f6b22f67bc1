//! Sealing under a steady load: how far the sealer lags behind the log
//! (from a commit returning to the sealer's checkpoint passing its event)
//! at a steady 2,000 single-event transactions a second, and what running
//! it adds to append latency. Baseline, in the same run: the same load
//! with every projection but the sealer. Rounds alternate (without, with)
//! on fresh databases, 8 writer connections, since one run on a 2-core machine varies by ±10%;
//! the medians over rounds are reported.
//!
//! `cargo run --release -p sentryops-bench --bin seal_lag [EVENTS_PER_S] [SECONDS] [ROUNDS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryops_bench::{
    drop_database, fresh_database, lags_behind, quantile, record_checkpoints, steady_appends,
};
use sentryops_projections::seal::checkpoint::SealKey;
use sentryops_projections::seal::{SealOptions, Sealer};
use sentryops_projections::{Projection, ProjectionRuntime, RuntimeOptions};

/// Connections the load is spread over (one alone cannot commit 2,000
/// transactions a second: each waits for its WAL flush).
const WRITERS: u64 = 8;

/// One phase's figures.
struct Phase {
    append_p50: Duration,
    append_p99: Duration,
    rate: f64,
}

async fn phase(
    rate: u64,
    seconds: u64,
    with_sealer: bool,
    lags: &mut Vec<Duration>,
) -> anyhow::Result<Phase> {
    let (url, pool) = fresh_database("seal_lag", 12).await?;
    let (_, key) = SealKey::generate("bench.sentryops/log")?;
    let sealer = Sealer::new(SealOptions {
        key: Some(key),
        ..SealOptions::default()
    });
    let projections: Vec<Arc<dyn Projection>> = sentryops_projections::all(sealer)
        .into_iter()
        .filter(|projection| with_sealer || projection.name() != "seal")
        .collect();
    let runtime = ProjectionRuntime::new(pool.clone(), projections, RuntimeOptions::default());
    runtime.start().await;
    let mut seen = if with_sealer {
        Some(record_checkpoints(&runtime, "seal")?)
    } else {
        None
    };
    let started = Instant::now();
    let commits = steady_appends(&url, rate, seconds, WRITERS).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let last = commits
        .iter()
        .map(|commit| commit.position)
        .max()
        .expect("events");
    anyhow::ensure!(
        runtime.wait_for(last, Duration::from_secs(60)).await,
        "the projections did not catch up"
    );
    runtime.stop().await;
    if let Some(seen) = seen.as_mut() {
        let phase_lags = lags_behind(&commits, seen);
        anyhow::ensure!(
            phase_lags.len() == commits.len(),
            "{} of {} commits were seen sealed",
            phase_lags.len(),
            commits.len()
        );
        lags.extend(phase_lags);
    }
    let mut latencies: Vec<Duration> = commits.iter().map(|commit| commit.latency).collect();
    latencies.sort();
    pool.close().await;
    drop_database("seal_lag").await?;
    Ok(Phase {
        append_p50: quantile(&latencies, 0.5),
        append_p99: quantile(&latencies, 0.99),
        rate: commits.len() as f64 / elapsed,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate: u64 = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    let seconds: u64 = std::env::args().nth(2).map_or(Ok(15), |s| s.parse())?;
    let rounds: usize = std::env::args().nth(3).map_or(Ok(3), |s| s.parse())?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut lags = Vec::new();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for with_sealer in [false, true] {
            let phase = phase(rate, seconds, with_sealer, &mut lags).await?;
            println!(
                "round {round} {:<15} append p50 {:>6.3} ms  p99 {:>6.3} ms  at {:>6.0} events/s",
                if with_sealer {
                    "with sealer"
                } else {
                    "without sealer"
                },
                ms(phase.append_p50),
                ms(phase.append_p99),
                phase.rate
            );
            if with_sealer {
                with.push(phase);
            } else {
                without.push(phase);
            }
        }
    }
    let medians = |phases: &[Phase]| {
        (
            median(phases.iter().map(|p| ms(p.append_p50)).collect()),
            median(phases.iter().map(|p| ms(p.append_p99)).collect()),
        )
    };
    let (base_p50, base_p99) = medians(&without);
    let (seal_p50, seal_p99) = medians(&with);
    lags.sort();
    println!(
        "append latency, median of {rounds} rounds: without sealer p50 {base_p50:.3} ms p99 {base_p99:.3} ms; \
         with sealer p50 {seal_p50:.3} ms ({:.2}x) p99 {seal_p99:.3} ms ({:.2}x)",
        seal_p50 / base_p50,
        seal_p99 / base_p99
    );
    println!(
        "seal lag over {} events: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        lags.len(),
        ms(quantile(&lags, 0.5)),
        ms(quantile(&lags, 0.99)),
        ms(quantile(&lags, 1.0))
    );
    Ok(())
}
