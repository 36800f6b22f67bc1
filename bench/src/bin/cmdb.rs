//! CMDB benchmarks (issue 4 targets), each against a baseline measured in
//! the same run. The service runs in this process on a runtime of its own.
//!
//! - `cmdb read SECONDS`: `wrk -t2 -c64` on loopback against `GET /health`
//!   and an authenticated `GET /api/v1/assets/{id}`, twice each,
//!   alternating. Target: the asset read sustains at least 50% of the
//!   health rate. Needs `wrk` on the PATH (`apt-get install wrk`).
//! - `cmdb list ASSETS REQUESTS`: registers ASSETS assets (events appended
//!   in bulk, the real projection builds the read model), then times
//!   REQUESTS list calls with a filter and `q`, one at a time, against the
//!   same number of unfiltered list calls. Target: p99 under 20 ms at
//!   100,000 assets.
//! - `cmdb create SECONDS`: `POST /api/v1/assets` from 16 concurrent
//!   clients: throughput, p50/p99 and the share of request time spent in
//!   the event append; baseline: the same registrations sent straight to
//!   the command handler (no HTTP, validation or read-your-writes wait).
//!
//! `cargo build --release -p sentryops-bench && target/release/cmdb read 10`

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops::domain::asset::{asset_id_for, draw_short_code, AssetCommand, AssetFields};
use sentryops::http::AppState;
use sentryops_bench::{drop_database, fresh_database, quantile, serve};
use sentryops_events::cmdb::{AssetEvent, AssetType, Environment, LifecycleState};
use sentryops_events::EventMetadata;
use sentryops_projections::store::append_totals;
use sentryops_projections::LogPosition;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::Mutex;

const EMAIL: &str = "cmdb-admin@bench.example.com";
const PASSWORD: &str = "cmdb admin password";

struct Service {
    base: String,
    state: AppState,
    token: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(label: &str) -> anyhow::Result<Service> {
    let (url, pool) = fresh_database(label, 2).await?;
    pool.close().await;
    let mut config = Config::for_tests(&url);
    config.database_max_connections = 20;
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    let (addr, state, stop) = serve(config)?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let token = sentryops_bench::login(&client, &base, EMAIL, PASSWORD).await?;
    Ok(Service {
        base,
        state,
        token,
        client,
        stop,
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A realistic registration body for asset `n`.
fn asset_body(n: u64) -> Value {
    let environment = ["prod", "staging", "dev"][(n % 3) as usize];
    json!({
        "name": format!("bench-host-{n:06}"),
        "asset_type": "host",
        "environment": environment,
        "location": "dc-1 rack 4",
        "attributes": {
            "disk_encrypted": true, "edr_installed": true, "firewall_enabled": true,
            "open_ports": [22, 443], "os_supported": true, "logging_enabled": true,
            "log_retention_days": 90, "password_max_age_days": 60,
        },
    })
}

/// Requests/s and non-2xx count from `wrk` output.
fn wrk(url: &str, token: Option<&str>, seconds: u64) -> anyhow::Result<(f64, u64)> {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c64", &format!("-d{seconds}s"), url]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "wrk failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(|rest| rest.trim().to_string())
    };
    let rate = field("Requests/sec:")
        .ok_or_else(|| anyhow::anyhow!("no rate in wrk output:\n{text}"))?
        .parse()?;
    let errors = field("Non-2xx or 3xx responses:").map_or(Ok(0), |n| n.parse())?;
    Ok((rate, errors))
}

async fn read(seconds: u64) -> anyhow::Result<()> {
    let service = start("cmdb_read").await?;
    let created: Value = service
        .client
        .post(format!("{}/api/v1/assets", service.base))
        .bearer_auth(&service.token)
        .json(&asset_body(1))
        .send()
        .await?
        .json()
        .await?;
    let id = created["data"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("asset not created: {created}"))?;
    let health = format!("{}/health", service.base);
    let asset = format!("{}/api/v1/assets/{id}", service.base);
    // Where the time goes: an authenticated read of one indexed row of
    // another table (the caller's user), same auth, same envelope.
    let (me_rate, _) = wrk(
        &format!("{}/api/v1/auth/me", service.base),
        Some(&service.token),
        seconds,
    )?;
    println!("reference: GET /api/v1/auth/me {me_rate:.0} req/s");
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let (health_rate, health_errors) = wrk(&health, None, seconds)?;
        let (asset_rate, asset_errors) = wrk(&asset, Some(&service.token), seconds)?;
        anyhow::ensure!(
            health_errors == 0 && asset_errors == 0,
            "non-2xx answers: health {health_errors}, asset {asset_errors}"
        );
        let ratio = asset_rate / health_rate;
        ratios.push(ratio);
        println!(
            "round {round}: GET /health {health_rate:.0} req/s, GET /api/v1/assets/{{id}} \
             {asset_rate:.0} req/s, ratio {:.1}%",
            ratio * 100.0
        );
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!("asset read / health: {:.1}% (target >= 50%)", mean * 100.0);
    let _ = service.stop.send(());
    drop_database("cmdb_read").await
}

const WORDS: [&str; 8] = [
    "web", "db", "cache", "queue", "edge", "auth", "search", "batch",
];

/// Appends `count` registrations in bulk (chunks of one statement each),
/// shaped exactly as the command handler writes them; returns the last
/// position.
async fn seed(state: &AppState, count: u64) -> anyhow::Result<LogPosition> {
    let metadata = serde_json::to_value(EventMetadata::system().to_map())?;
    let mut last = None;
    // 32^5 codes per type: 20,000 draws of one type collide a few times,
    // which the API's registration answers by drawing again; so here.
    let mut drawn = std::collections::HashSet::new();
    let chunk = 5_000;
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
                name: format!("{}-{i:06}", WORDS[(i % 8) as usize]),
                asset_type,
                lifecycle_state: LifecycleState::ALL[(i % 4) as usize],
                environment: Environment::ALL[(i % 3) as usize],
                location: Some("dc-1".into()),
                description: None,
                owner_id: None,
                attributes: Map::new(),
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
        .fetch_all(&state.pool)
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

/// Times `paths` one at a time; sorted latencies.
async fn time_gets(service: &Service, paths: &[String]) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(paths.len());
    for path in paths {
        let started = Instant::now();
        let response = service
            .client
            .get(format!("{}{path}", service.base))
            .bearer_auth(&service.token)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let _ = response.bytes().await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

async fn list(assets: u64, requests: usize) -> anyhow::Result<()> {
    let service = start("cmdb_list").await?;
    let started = Instant::now();
    let last = seed(&service.state, assets).await?;
    let appended = started.elapsed();
    anyhow::ensure!(
        service
            .state
            .runtime
            .wait_for(last, Duration::from_secs(600))
            .await,
        "the assets projection did not catch up"
    );
    println!(
        "seeded {assets} assets: appended in {:.1} s, projected after {:.1} s",
        appended.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // As autovacuum would after such a load.
    sqlx::query("vacuum analyze assets")
        .execute(&service.state.pool)
        .await?;
    let filters = [
        "asset_type=host",
        "environment=prod",
        "lifecycle_state=active",
        "asset_type=service&environment=staging",
    ];
    let filtered: Vec<String> = (0..requests)
        .map(|n| {
            let word = WORDS[n % WORDS.len()];
            let q = match n % 3 {
                // Broad: one word, an eighth of all assets.
                0 => word.to_string(),
                // Narrow: a word and a number prefix.
                1 => format!("{word}-{:03}", (n * 7919) % 1000),
                // A number anywhere in the name.
                _ => format!("{:04}", (n * 104_729) % 10_000),
            };
            format!("/api/v1/assets?{}&q={q}", filters[n % filters.len()])
        })
        .collect();
    let plain: Vec<String> = (0..requests)
        .map(|n| format!("/api/v1/assets?offset={}", (n % 10) * 50))
        .collect();
    // Warm both paths, then measure alternately in halves.
    time_gets(&service, &filtered[..requests.min(50)]).await?;
    time_gets(&service, &plain[..requests.min(50)]).await?;
    let mut with_q = time_gets(&service, &filtered[..requests / 2]).await?;
    let mut without = time_gets(&service, &plain[..requests / 2]).await?;
    with_q.extend(time_gets(&service, &filtered[requests / 2..]).await?);
    without.extend(time_gets(&service, &plain[requests / 2..]).await?);
    with_q.sort();
    without.sort();
    println!(
        "filter + q over {assets} assets ({} requests): p50 {:.2} ms, p99 {:.2} ms (target p99 < 20 ms)",
        with_q.len(),
        ms(quantile(&with_q, 0.5)),
        ms(quantile(&with_q, 0.99)),
    );
    println!(
        "baseline, newest-first page without filters: p50 {:.2} ms, p99 {:.2} ms; p99 ratio {:.2}x",
        ms(quantile(&without, 0.5)),
        ms(quantile(&without, 0.99)),
        quantile(&with_q, 0.99).as_secs_f64() / quantile(&without, 0.99).as_secs_f64()
    );
    let _ = service.stop.send(());
    if std::env::var_os("BENCH_KEEP_DATABASE").is_some() {
        return Ok(());
    }
    drop_database("cmdb_list").await
}

const CLIENTS: u64 = 16;

async fn create(seconds: u64) -> anyhow::Result<()> {
    let service = Arc::new(start("cmdb_create").await?);
    let length = Duration::from_secs(seconds);

    // Baseline: the command handler alone, 16 at a time.
    let (appends_before, append_time_before) = append_totals();
    let end = Instant::now() + length;
    let counted = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let service = Arc::clone(&service);
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let short_code = draw_short_code(AssetType::Host);
                    let started = Instant::now();
                    let outcome = service
                        .state
                        .commands
                        .asset(
                            asset_id_for(&short_code),
                            AssetCommand::Register {
                                short_code,
                                asset_type: AssetType::Host,
                                lifecycle_state: LifecycleState::Active,
                                environment: Environment::Prod,
                                fields: AssetFields {
                                    name: "bench-host".into(),
                                    ..AssetFields::default()
                                },
                                tag_ids: Vec::new(),
                            },
                            EventMetadata::system(),
                        )
                        .await;
                    if outcome.is_ok() {
                        latencies.push(started.elapsed());
                    }
                }
                counted.lock().await.extend(latencies);
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let mut direct = std::mem::take(&mut *counted.lock().await);
    direct.sort();
    let (appends_after, append_time_after) = append_totals();
    let direct_rate = direct.len() as f64 / length.as_secs_f64();
    let direct_share = (append_time_after - append_time_before).as_secs_f64()
        / direct.iter().sum::<Duration>().as_secs_f64();
    println!(
        "baseline, command handler only: {direct_rate:.0} registrations/s, p50 {:.2} ms, \
         p99 {:.2} ms, append share {:.0}% ({} appends)",
        ms(quantile(&direct, 0.5)),
        ms(quantile(&direct, 0.99)),
        direct_share * 100.0,
        appends_after - appends_before,
    );

    // Through the API.
    let (appends_before, append_time_before) = append_totals();
    let end = Instant::now() + length;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let service = Arc::clone(&service);
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = worker;
                while Instant::now() < end {
                    n += CLIENTS;
                    let started = Instant::now();
                    let response = service
                        .client
                        .post(format!("{}/api/v1/assets", service.base))
                        .bearer_auth(&service.token)
                        .json(&asset_body(n))
                        .send()
                        .await;
                    if let Ok(response) = response {
                        let created = response.status().as_u16() == 201;
                        let _ = response.bytes().await;
                        if created {
                            latencies.push(started.elapsed());
                        }
                    }
                }
                counted.lock().await.extend(latencies);
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let mut api = std::mem::take(&mut *counted.lock().await);
    api.sort();
    let (appends_after, append_time_after) = append_totals();
    let api_rate = api.len() as f64 / length.as_secs_f64();
    let api_share = (append_time_after - append_time_before).as_secs_f64()
        / api.iter().sum::<Duration>().as_secs_f64();
    println!(
        "POST /api/v1/assets, 16 connections: {api_rate:.0} registrations/s, p50 {:.2} ms, \
         p99 {:.2} ms, append share {:.0}% ({} appends); {:.0}% of the baseline's rate",
        ms(quantile(&api, 0.5)),
        ms(quantile(&api, 0.99)),
        api_share * 100.0,
        appends_after - appends_before,
        api_rate / direct_rate * 100.0,
    );
    if let Ok(service) = Arc::try_unwrap(service) {
        let _ = service.stop.send(());
    }
    drop_database("cmdb_create").await
}

/// One import of the largest body API.md allows (1 MiB of rows): how
/// long it takes against the request timeout.
async fn import() -> anyhow::Result<()> {
    let service = start("cmdb_import").await?;
    let mut csv = String::from("name,asset_type,environment,lifecycle_state,location\n");
    let mut rows = 0;
    loop {
        let row = format!("imported-host-{rows:06},host,prod,active,dc-1 rack 4\n");
        if csv.len() + row.len() > 1024 * 1024 - 1024 {
            break;
        }
        csv.push_str(&row);
        rows += 1;
    }
    let bytes = csv.len();
    let started = Instant::now();
    let response = service
        .client
        .post(format!("{}/api/v1/assets/import", service.base))
        .bearer_auth(&service.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let elapsed = started.elapsed();
    println!(
        "import of {rows} rows ({bytes} bytes): {status} in {:.1} s ({:.0} rows/s), created {}",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        body["data"]["created"]
    );
    let _ = service.stop.send(());
    drop_database("cmdb_import").await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let first: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
    let second: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    match mode.as_str() {
        "read" => read(first.unwrap_or(10)).await,
        "list" => list(first.unwrap_or(100_000), second.unwrap_or(1_000)).await,
        "create" => create(first.unwrap_or(10)).await,
        "import" => import().await,
        _ => anyhow::bail!(
            "usage: cmdb read SECONDS | list ASSETS REQUESTS | create SECONDS | import"
        ),
    }
}
