//! Login latency against the length of the user's stream (ADR 0002).
//!
//! Each login appends `LoginSucceeded` to the user's stream through
//! cqrs-es, which loads the whole stream first. This grows one account's
//! stream to each length in turn (login events appended in bulk, shaped as
//! the command handler writes them), then times ROUNDS logins of that
//! account, one at a time; the baseline is the same logins on a fresh
//! stream, measured in the same run. Cheap password hashing, so the
//! figures show the stream's cost, not Argon2's.
//!
//! `cargo build --release -p sentryops-bench && target/release/user_stream 50`

use std::time::{Duration, Instant};

use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops_bench::{drop_database, fresh_database, quantile, serve};
use sentryops_events::EventMetadata;
use serde_json::json;

const EMAIL: &str = "stream-admin@bench.example.com";
const PASSWORD: &str = "stream admin password";

async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "login: {}",
        response.status()
    );
    let _ = response.bytes().await?;
    Ok(started.elapsed())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50);
    let (url, pool) = fresh_database("user_stream", 2).await?;
    let mut config = Config::for_tests(&url);
    config.auth_rate_limit_per_minute = 1_000_000;
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    let (addr, state, stop) = serve(config)?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let user_id: String = sqlx::query_scalar("select id::text from users where email = $1")
        .bind(EMAIL)
        .fetch_one(&pool)
        .await?;
    let metadata = serde_json::to_value(EventMetadata::system().to_map())?;
    let mut baseline_p50 = None;
    for target in [0i64, 1_000, 10_000, 100_000] {
        let length: i64 = sqlx::query_scalar(
            "select coalesce(max(sequence), 0) from events \
             where aggregate_type = 'user' and aggregate_id = $1",
        )
        .bind(&user_id)
        .fetch_one(&pool)
        .await?;
        if target > length {
            let last: (i64, i64) = sqlx::query_as(
                "with appended as ( \
                     insert into events (aggregate_type, aggregate_id, sequence, event_type, \
                         event_version, payload, metadata) \
                     select 'user', $1, s, 'LoginSucceeded', '1.0', '\"LoginSucceeded\"'::jsonb, $3 \
                     from generate_series($2::bigint + 1, $4::bigint) as s \
                     returning transaction_id::text::bigint as transaction_id, global_position) \
                 select transaction_id, global_position from appended \
                 order by transaction_id desc, global_position desc limit 1",
            )
            .bind(&user_id)
            .bind(length)
            .bind(&metadata)
            .bind(target)
            .fetch_one(&pool)
            .await?;
            // A stream grows over months, with autovacuum keeping the
            // planner's statistics current; a bulk insert does not wait
            // for it, so analyze as it would have.
            sqlx::query("analyze events").execute(&pool).await?;
            // Every login waits for the read models (read-your-writes):
            // let them project the bulk first, so it is not timed.
            let position = sentryops_projections::LogPosition {
                transaction_id: last.0,
                position: last.1,
            };
            anyhow::ensure!(
                state
                    .runtime
                    .wait_for(position, Duration::from_secs(600))
                    .await,
                "the read models did not catch up"
            );
        }
        let mut latencies = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            latencies.push(login(&client, &base).await?);
        }
        latencies.sort();
        let p50 = quantile(&latencies, 0.5);
        let baseline = *baseline_p50.get_or_insert(p50);
        println!(
            "stream of {:>6}+ events: login p50 {:.2} ms, p99 {:.2} ms ({:.1}x the fresh stream)",
            target.max(length),
            p50.as_secs_f64() * 1000.0,
            quantile(&latencies, 0.99).as_secs_f64() * 1000.0,
            p50.as_secs_f64() / baseline.as_secs_f64(),
        );
    }
    let _ = stop.send(());
    pool.close().await;
    drop_database("user_stream").await?;
    Ok(())
}
