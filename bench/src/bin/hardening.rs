//! Issue 11's three operational figures, each against a baseline measured
//! in the same run:
//!
//! - `idle-tx [N]`: `PATCH /assets/{id}` p50 idle, then with an idle write
//!   transaction open in another database of the server (target: within
//!   2×), and whether every write is read back at once from the list.
//! - `redis [N]`: login p50 with a private Redis up, then stopped (target:
//!   within 20 ms).
//! - `ready-import`: `/ready` polled every 50 ms during a 1 MiB CSV import
//!   (55,184 rows) until its events are projected (target: 200 throughout).
//!
//! `cargo run --release -p sentryops-bench --bin hardening -- idle-tx|redis|ready-import [N]`

use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops_bench::{admin_url, drop_database, fresh_database, quantile, serve};
use serde_json::{json, Value};
use sqlx::Connection;

const EMAIL: &str = "hardening-admin@bench.example.com";
const PASSWORD: &str = "hardening admin password";

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "login: {}", response.status());
    let body: Value = response.json().await?;
    Ok(body["data"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn config(url: &str, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::for_tests(url);
    config.database_max_connections = 20;
    config.auth_rate_limit_per_minute = u32::MAX / 2;
    config.read_your_writes_timeout = Duration::from_secs(2);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    adjust(&mut config);
    config
}

/// `n` renames of one asset: sorted latencies, and how many were not read
/// back from the list right after.
async fn patches(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    label: &str,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(n);
    let mut stale = 0;
    for round in 0..n {
        let name = format!("{label}-{round}");
        let started = Instant::now();
        let response = client
            .patch(format!("{base}/api/v1/assets/{id}"))
            .bearer_auth(token)
            .json(&json!({ "name": name }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "patch: {}", response.status());
        let _ = response.bytes().await?;
        latencies.push(started.elapsed());
        let listed: Value = client
            .get(format!("{base}/api/v1/assets?q={name}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if listed["data"]["total"] != 1 {
            stale += 1;
        }
    }
    latencies.sort();
    Ok((latencies, stale))
}

async fn idle_transaction(n: usize) -> anyhow::Result<()> {
    let (url, pool) = fresh_database("hardening_idle", 2).await?;
    pool.close().await;
    let (addr, _state, stop) = serve(config(&url, |_| {}))?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let token = login(&client, &base).await?;
    let created: Value = client
        .post(format!("{base}/api/v1/assets"))
        .bearer_auth(&token)
        .json(&json!({ "name": "bench-asset", "asset_type": "host" }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (idle, idle_stale) = patches(&client, &base, &token, &id, "idle", n).await?;
    // `begin; select pg_current_xact_id();` left open in another database.
    let mut elsewhere = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query("begin").execute(&mut elsewhere).await?;
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut elsewhere)
        .await?;
    let (held, held_stale) = patches(&client, &base, &token, &id, "held", n).await?;
    sqlx::query("rollback").execute(&mut elsewhere).await?;
    let (p50_idle, p50_held) = (quantile(&idle, 0.5), quantile(&held, 0.5));
    println!(
        "PATCH p50 idle {:.2} ms (p99 {:.2}), with an idle write transaction in another database \
         {:.2} ms (p99 {:.2}): ratio {:.2}x (target <= 2x); writes not read back at once: \
         {idle_stale}/{n} idle, {held_stale}/{n} held",
        ms(p50_idle),
        ms(quantile(&idle, 0.99)),
        ms(p50_held),
        ms(quantile(&held, 0.99)),
        p50_held.as_secs_f64() / p50_idle.as_secs_f64().max(1e-9),
    );
    let _ = stop.send(());
    drop_database("hardening_idle").await?;
    Ok(())
}

/// `n` sequential logins: sorted latencies.
async fn logins(client: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        login(client, base).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn redis_outage(n: usize) -> anyhow::Result<()> {
    let port = free_port()?;
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (url, pool) = fresh_database("hardening_redis", 2).await?;
    pool.close().await;
    let (addr, state, stop) = serve(config(&url, |config| {
        config.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{port}")));
    }))?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    logins(&client, &base, 5).await?;
    let up = logins(&client, &base, n).await?;
    anyhow::ensure!(
        !state.limiter.is_local(),
        "limits are shared while Redis is up"
    );
    redis.kill()?;
    redis.wait()?;
    let down = logins(&client, &base, n).await?;
    let (p50_up, p50_down) = (quantile(&up, 0.5), quantile(&down, 0.5));
    println!(
        "login p50 with Redis up {:.2} ms (p99 {:.2}), stopped {:.2} ms (p99 {:.2}, max {:.2}): \
         difference {:+.2} ms (target within 20 ms)",
        ms(p50_up),
        ms(quantile(&up, 0.99)),
        ms(p50_down),
        ms(quantile(&down, 0.99)),
        ms(*down.last().unwrap_or(&Duration::ZERO)),
        ms(p50_down) - ms(p50_up),
    );
    let _ = stop.send(());
    drop_database("hardening_redis").await?;
    Ok(())
}

async fn ready_during_import() -> anyhow::Result<()> {
    let (url, pool) = fresh_database("hardening_ready", 2).await?;
    let (addr, _state, stop) = serve(config(&url, |_| {}))?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let token = login(&client, &base).await?;
    let mut csv = String::from("name,asset_type\n");
    let mut rows = 0;
    while csv.len() + 20 < 1024 * 1024 {
        csv.push_str(&format!("imp-{rows:06},host\n"));
        rows += 1;
    }
    let before: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await?;
    // /ready asked from a thread of its own, every 50 ms.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (base, done) = (base.clone(), done.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let (mut asked, mut refused) = (0u32, 0u32);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = client
                        .get(format!("{base}/ready"))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    asked += 1;
                    if status != 200 {
                        refused += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (asked, refused)
            })
        })
    };
    let started = Instant::now();
    let imported = client
        .post(format!("{base}/api/v1/assets/import"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await?;
    anyhow::ensure!(imported.status() == 200, "import: {}", imported.status());
    let answered = started.elapsed();
    // Until every projection passed the import's events.
    loop {
        let behind: i64 = sqlx::query_scalar(
            "select count(*) from projection_checkpoints c \
             where exists (select 1 from events e \
                 where (e.transaction_id, e.global_position) > \
                       (c.last_transaction_id::text::xid8, c.last_position))",
        )
        .fetch_one(&pool)
        .await?;
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let projected = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, refused) = poller.join().map_err(|_| anyhow::anyhow!("poller"))?;
    let after: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await?;
    println!(
        "import of {} bytes ({rows} rows, {} events): answered in {:.2} s, projected in {:.2} s; \
         /ready asked {asked} times, {refused} not 200 (target 0)",
        csv.len(),
        after - before,
        answered.as_secs_f64(),
        projected.as_secs_f64(),
    );
    pool.close().await;
    let _ = stop.send(());
    drop_database("hardening_ready").await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).map_or(Ok(200), |s| s.parse())?;
    match which.as_str() {
        "idle-tx" => idle_transaction(n).await,
        "redis" => redis_outage(n).await,
        "ready-import" => ready_during_import().await,
        _ => anyhow::bail!("usage: hardening idle-tx|redis|ready-import [N]"),
    }
}
