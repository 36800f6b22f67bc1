//! Login flood: does password hashing starve the async runtime?
//!
//! Serves the API in this process on its own multi-threaded runtime with
//! the production Argon2id parameters (19 MiB, t=2, p=1; `ARGON2_*` from the
//! environment override them), measures the hashing capacity (logins/s
//! with the hasher saturated), then probes `GET /api/v1/auth/me` at a steady
//! rate twice: idle, and while logins arrive open-loop at four times that
//! capacity. Reports the probe's p50/p99 in both phases and their ratio
//! (target: the flood moves the p99 by at most 2×).
//!
//! `cargo run --release -p sentryops-bench --bin login_flood [SECONDS] [FLOOD_FACTOR] [FIXED_RATE]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, PasswordHashing, Secret};
use sentryops_bench::{drop_database, fresh_database, quantile, serve};
use serde_json::{json, Value};

const EMAIL: &str = "flood-admin@bench.example.com";
const PASSWORD: &str = "flood admin password";
const PROBE_INTERVAL: Duration = Duration::from_millis(5);

fn env_or(name: &str, default: u32) -> anyhow::Result<u32> {
    Ok(match std::env::var(name) {
        Ok(value) => value.parse()?,
        Err(_) => default,
    })
}

/// The accounts the flood logs in to, in turn: a flood spreads over many
/// accounts (one account is stopped by its own rate limit long before).
const ACCOUNTS: usize = 100;

fn account(n: usize) -> String {
    format!("flood-{}@bench.example.com", n % ACCOUNTS)
}

async fn login(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<(u16, Value)> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Probes `GET /auth/me` every [`PROBE_INTERVAL`] for `length`; returns the
/// sorted latencies and the count of non-200 answers.
async fn probe(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    length: Duration,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + length;
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        let response = client
            .get(format!("{base}{}", probe_path()))
            .bearer_auth(token)
            .send()
            .await?;
        let ok = response.status().is_success();
        let _ = response.bytes().await?;
        latencies.push(started.elapsed());
        if !ok {
            failures += 1;
        }
    }
    latencies.sort();
    Ok((latencies, failures))
}

/// [`probe`] on a thread and runtime of its own, with its own connections:
/// on the flood's runtime the probe would wait behind the load generator's
/// own work, and measure the client instead of the service.
async fn probe_apart(
    base: &str,
    token: &str,
    length: Duration,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let (base, token) = (base.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let client = reqwest::Client::new();
                probe(&client, &base, &token, length).await
            })
    })
    .await?
}

/// What the probe reads: `GET /api/v1/auth/me`, or `PROBE_PATH` (for
/// example `/health`, to tell the runtime's share from the database's).
fn probe_path() -> String {
    std::env::var("PROBE_PATH").unwrap_or_else(|_| "/api/v1/auth/me".into())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(10), |s| s.parse())?;
    let factor: f64 = std::env::args().nth(2).map_or(Ok(4.0), |s| s.parse())?;
    // A fixed login rate instead of factor × capacity: to tell the cost of
    // hashing from the cost of the login traffic itself (run once with
    // cheap hashing parameters at the rate of a normal run).
    let fixed_rate: Option<f64> = std::env::args().nth(3).map(|s| s.parse()).transpose()?;
    let (url, pool) = fresh_database("flood", 2).await?;
    pool.close().await;
    let hashing = PasswordHashing {
        memory_kib: env_or("ARGON2_MEMORY_KIB", 19 * 1024)?,
        iterations: env_or("ARGON2_ITERATIONS", 2)?,
        parallelism: env_or("ARGON2_PARALLELISM", 1)?,
        max_concurrent: env_or("ARGON2_MAX_CONCURRENT", 2)? as usize,
        max_queued: env_or("ARGON2_MAX_QUEUED", 32)? as usize,
    };
    let mut config = Config::for_tests(&url);
    config.password_hashing = hashing;
    config.database_max_connections = 20;
    config.auth_rate_limit_per_minute = u32::MAX / 2;
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    let (addr, _state, stop) = serve(config)?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (status, body) = login(&client, &base, EMAIL).await?;
    anyhow::ensure!(status == 200, "login failed: {status} {body}");
    let admin_token = body["data"]["access_token"].as_str().unwrap_or_default();
    for n in 0..ACCOUNTS {
        let created = client
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(admin_token)
            .json(&json!({
                "email": account(n),
                "full_name": format!("Flood {n}"),
                "password": PASSWORD,
                "role": "viewer",
            }))
            .send()
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "user creation failed: {}",
            created.status()
        );
    }
    let token = body["data"]["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access token"))?
        .to_string();

    // Hashing capacity: the hasher kept saturated by twice as many
    // closed-loop clients as it has permits.
    let calibration = Duration::from_secs(5);
    let completed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + calibration;
    let workers: Vec<_> = (0..hashing.max_concurrent * 2)
        .map(|worker| {
            let client = client.clone();
            let base = base.clone();
            let completed = Arc::clone(&completed);
            tokio::spawn(async move {
                let mut n = worker;
                while Instant::now() < end {
                    n += hashing.max_concurrent * 2;
                    if let Ok((200, _)) = login(&client, &base, &account(n)).await {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let capacity = completed.load(Ordering::Relaxed) as f64 / calibration.as_secs_f64();
    println!(
        "hashing capacity: {capacity:.1} logins/s (m={} KiB, t={}, p={}, {} permits)",
        hashing.memory_kib, hashing.iterations, hashing.parallelism, hashing.max_concurrent
    );

    let length = Duration::from_secs(seconds);
    let (idle, idle_failures) = probe_apart(&base, &token, length).await?;

    // The flood: logins arrive open-loop at `factor` × capacity.
    let offered_rate = fixed_rate.unwrap_or(capacity * factor);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let login_latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let flood = {
        let client = client.clone();
        let base = base.clone();
        let statuses = Arc::clone(&statuses);
        let login_latencies = Arc::clone(&login_latencies);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / offered_rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + length;
            let mut inflight = Vec::new();
            while Instant::now() < end {
                tick.tick().await;
                let email = account(inflight.len());
                let client = client.clone();
                let base = base.clone();
                let statuses = Arc::clone(&statuses);
                let login_latencies = Arc::clone(&login_latencies);
                inflight.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let key = match login(&client, &base, &email).await {
                        Ok((status, _)) => status.to_string(),
                        Err(_) => "error".to_string(),
                    };
                    login_latencies
                        .lock()
                        .expect("latencies")
                        .push(started.elapsed());
                    *statuses.lock().expect("statuses").entry(key).or_default() += 1;
                }));
            }
            inflight
        })
    };
    let (flooded, flood_failures) = probe_apart(&base, &token, length).await?;
    let inflight = flood.await?;
    let offered = inflight.len();
    for request in inflight {
        request.await?;
    }
    let mut login_latencies = std::mem::take(&mut *login_latencies.lock().expect("latencies"));
    login_latencies.sort();

    let idle_p50 = quantile(&idle, 0.5);
    let idle_p99 = quantile(&idle, 0.99);
    let flood_p50 = quantile(&flooded, 0.5);
    let flood_p99 = quantile(&flooded, 0.99);
    println!(
        "GET /auth/me idle:  {} requests, p50 {:.2} ms, p99 {:.2} ms, {idle_failures} non-200",
        idle.len(),
        ms(idle_p50),
        ms(idle_p99)
    );
    println!(
        "GET /auth/me flood: {} requests, p50 {:.2} ms, p99 {:.2} ms, {flood_failures} non-200",
        flooded.len(),
        ms(flood_p50),
        ms(flood_p99)
    );
    println!(
        "flood: {offered} logins offered at {offered_rate:.1}/s ({:.1}x capacity); answers {:?}; \
         login p50 {:.0} ms, p99 {:.0} ms",
        offered_rate / capacity,
        statuses.lock().expect("statuses"),
        ms(quantile(&login_latencies, 0.5)),
        ms(quantile(&login_latencies, 0.99))
    );
    println!(
        "p99 ratio flood/idle: {:.2}x (target <= 2x)",
        flood_p99.as_secs_f64() / idle_p99.as_secs_f64()
    );
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop_database("flood").await?;
    Ok(())
}
