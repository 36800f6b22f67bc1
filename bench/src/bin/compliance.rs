//! Compliance benchmarks (issue 5 targets). The service runs in this
//! process on a runtime of its own, so its memory is this process's.
//!
//! `compliance ASSETS ROUNDS` registers ASSETS assets with posture
//! attributes (events appended in bulk, the real projections build the
//! read models), then ROUNDS times:
//! - `POST /api/v1/compliance/runs`, timed from request to answer: the
//!   answer waits for the compliance read model (read-your-writes), so
//!   this is request to completed read model. Target: under 2 s at 10,000
//!   assets, peak RSS growth (VmHWM after the run minus VmRSS before, with
//!   the high-water mark reset) under 100 MiB.
//! - `POST /api/v1/compliance/runs/{id}/verify`. Target: under 3 s.
//! - the baseline, measured in the same round: folding the CMDB from the
//!   log alone (what every run and verify does first), no evaluation.
//!
//! `cargo build --release -p sentryops-bench && target/release/compliance 10000 3`

use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops::domain::asset::{asset_id_for, draw_short_code};
use sentryops_bench::{drop_database, fresh_database, peak_rss_mib, rss_mib, serve};
use sentryops_events::cmdb::{AssetEvent, AssetType, Environment, LifecycleState};
use sentryops_events::EventMetadata;
use sentryops_projections::LogPosition;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const EMAIL: &str = "compliance-admin@bench.example.com";
const PASSWORD: &str = "compliance admin password";

/// Posture attributes for asset `n`: a mix of passing, failing, odd and
/// missing values, so every rule has work of each kind.
fn posture(n: u64) -> Map<String, Value> {
    let days_ago = |days: i64| {
        (OffsetDateTime::now_utc() - time::Duration::days(days))
            .format(&Rfc3339)
            .unwrap_or_default()
    };
    let attributes = json!({
        "disk_encrypted": n % 7 != 0,
        "encryption_in_transit": if n % 5 == 0 { json!("no") } else { json!("yes") },
        "edr_installed": n % 11 != 0,
        "antivirus_installed": "enabled",
        "has_default_credentials": n % 13 == 0,
        "password_max_age_days": 30 + (n % 120),
        "logging_enabled": n % 9 != 0,
        "log_retention_days": (n % 60).to_string(),
        "last_backup_at": days_ago((n % 10) as i64),
        "firewall_enabled": if n % 6 == 0 { "off" } else { "on" },
        "open_ports": if n % 8 == 0 { json!([22, 3389]) } else { json!([22, 443]) },
        "tls_cert_expires_at": days_ago(-((n % 90) as i64)),
        "last_patched_at": (OffsetDateTime::now_utc().unix_timestamp() - (n % 60) as i64 * 86_400),
        "os_supported": n % 17 != 0,
    });
    match attributes {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Appends `count` registrations in bulk, shaped as the command handler
/// writes them; returns the last position.
async fn seed(pool: &sqlx::PgPool, count: u64) -> anyhow::Result<LogPosition> {
    let metadata = serde_json::to_value(EventMetadata::system().to_map())?;
    let mut drawn = std::collections::HashSet::new();
    let mut last = None;
    let chunk = 2_000;
    let mut n = 0;
    while n < count {
        let end = (n + chunk).min(count);
        let mut ids = Vec::new();
        let mut payloads = Vec::new();
        for i in n..end {
            let asset_type = AssetType::ALL[(i % 5) as usize];
            let short_code = loop {
                let code = draw_short_code(asset_type);
                if drawn.insert(code.clone()) {
                    break code;
                }
            };
            let id = asset_id_for(&short_code);
            let event = AssetEvent::AssetRegistered {
                asset_id: id,
                short_code,
                name: format!("bench-{i:06}"),
                asset_type,
                // Every 25th is retired: not evaluated.
                lifecycle_state: if i % 25 == 0 {
                    LifecycleState::Retired
                } else {
                    LifecycleState::Active
                },
                environment: Environment::ALL[(i % 3) as usize],
                location: Some("dc-1".into()),
                description: None,
                owner_id: None,
                attributes: posture(i),
                custom_fields: Map::new(),
                registered_at: OffsetDateTime::now_utc(),
            };
            ids.push(id.to_string());
            payloads.push(serde_json::to_value(&event)?);
        }
        let positions: Vec<(i64, i64)> = sqlx::query_as(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) \
             select 'asset', id, 1, 'AssetRegistered', '1.0', payload, $3 \
             from unnest($1::text[], $2::jsonb[]) as t(id, payload) \
             returning transaction_id::text::bigint, global_position",
        )
        .bind(&ids)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(pool)
        .await?;
        last = positions
            .into_iter()
            .map(|(transaction_id, position)| LogPosition {
                transaction_id,
                position,
            })
            .max()
            .max(last);
        n = end;
    }
    last.ok_or_else(|| anyhow::anyhow!("nothing seeded"))
}

/// Resets this process's peak-RSS mark (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

async fn bench(assets: u64, rounds: u32) -> anyhow::Result<()> {
    let (url, pool) = fresh_database("compliance", 4).await?;
    let mut config = Config::for_tests(&url);
    config.database_max_connections = 20;
    config.compliance_runs_per_minute = 1_000;
    config.read_your_writes_timeout = Duration::from_secs(30);
    config.request_timeout = Duration::from_secs(120);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    let (addr, state, stop) = serve(config)?;
    let base = format!("http://{addr}");
    let seeded = Instant::now();
    let last = seed(&pool, assets).await?;
    anyhow::ensure!(
        state.runtime.wait_for(last, Duration::from_secs(600)).await,
        "the read models did not catch up"
    );
    println!("seeded {assets} assets in {:.1} s", secs(seeded.elapsed()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let token = sentryops_bench::login(&client, &base, EMAIL, PASSWORD).await?;

    for round in 1..=rounds {
        // Baseline: the fold alone.
        let folding = Instant::now();
        let cut = sentryops::compliance::snapshot::settled_cut(&state.pool, Duration::from_secs(2))
            .await?;
        let mut folded = 0u64;
        sentryops::compliance::snapshot::fold_cmdb(&state.pool, cut, |_, _| {
            folded += 1;
            Ok(())
        })
        .await?;
        let fold = folding.elapsed();

        // Where the time goes: the run's own work (fold, evaluation,
        // append), then the compliance projection catching up.
        let (appends_before, append_time_before) = sentryops_projections::store::append_totals();
        let direct = Instant::now();
        let recorded = sentryops::compliance::run::run(
            &state.pool,
            &state.commands,
            &state.rules,
            uuid::Uuid::nil(),
            EventMetadata::system(),
        )
        .await?;
        let recording = direct.elapsed();
        let (_, append_time_after) = sentryops_projections::store::append_totals();
        let append = append_time_after.saturating_sub(append_time_before);
        if let Some(position) = recorded.position {
            state
                .runtime
                .wait_for(position, Duration::from_secs(60))
                .await;
        }
        let projected = direct.elapsed() - recording;
        let _ = appends_before;
        println!(
            "round {round} split: fold + evaluate + serialize {:.3} s, append {:.3} s, \
             projection catch-up {:.3} s",
            secs(recording.saturating_sub(append)),
            secs(append),
            secs(projected)
        );

        reset_peak_rss();
        let before = rss_mib().unwrap_or(0.0);
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/compliance/runs"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        let run = started.elapsed();
        let growth = peak_rss_mib().unwrap_or(0.0) - before;
        anyhow::ensure!(status.as_u16() == 201, "run: {status} {body}");
        let run_id = body["data"]["id"].as_str().unwrap_or_default().to_string();

        reset_peak_rss();
        let before_verify = rss_mib().unwrap_or(0.0);
        let verifying = Instant::now();
        let verified: Value = client
            .post(format!("{base}/api/v1/compliance/runs/{run_id}/verify"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let verify = verifying.elapsed();
        let verify_growth = peak_rss_mib().unwrap_or(0.0) - before_verify;
        anyhow::ensure!(
            verified["data"]["matches"] == json!(true),
            "verify: {verified}"
        );
        println!(
            "round {round}: fold of {folded} assets {:.3} s (baseline); run over {} assets \
             {:.3} s ({:.1}x the fold), peak RSS growth {growth:.1} MiB; verify {:.3} s \
             ({:.1}x the fold), peak RSS growth {verify_growth:.1} MiB; org score {}",
            secs(fold),
            body["data"]["total_assets"],
            secs(run),
            secs(run) / secs(fold),
            secs(verify),
            secs(verify) / secs(fold),
            body["data"]["org_score"],
        );
    }
    let size: (i64, i64) = sqlx::query_as(
        "select count(*), coalesce(max(pg_column_size(payload)), 0)::bigint from events \
         where event_type = 'ComplianceResultsRecorded'",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "results events: {} in all, the largest {:.0} KiB",
        size.0,
        size.1 as f64 / 1024.0
    );
    let _ = stop.send(());
    pool.close().await;
    drop_database("compliance").await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let assets: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rounds: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    bench(assets, rounds).await
}
