//! Append throughput through the command path (cqrs-es execute with
//! metadata, then the position lookup the API does for `X-Event-Position`)
//! at 1, 4 and 16 concurrent clients, each beside pgbench doing the
//! same-shaped single-row insert into the same `events` table in the same
//! run. Prints commands/s, pgbench's tps and their ratio.
//!
//! Measurements alternate (command path, then pgbench) for several rounds
//! and the median ratio is reported, since single runs on a 2-core machine
//! vary by ±10%.
//!
//! `cargo run --release -p sentryops-bench --bin append [SECONDS] [ROUNDS]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sentryops::domain::user::{Email, FullName, UserCommand};
use sentryops::domain::Commands;
use sentryops_bench::{drop_database, fresh_database};
use sentryops_events::{EventMetadata, Role};

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0123456789abcdef0123456789abcdef0123456789a";

async fn command_path(clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let (_, pool) = fresh_database("append", clients as u32 + 2).await?;
    let commands = Arc::new(Commands::new(pool));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let commands = Arc::clone(&commands);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let email = Email::parse(&format!("c{client}-{n}@bench.example")).expect("valid");
                let mut metadata = EventMetadata::system();
                metadata.request_id = Some(format!("bench-{client}-{n}"));
                metadata.ip = Some("127.0.0.1".into());
                metadata.user_agent = Some("sentryops-bench".into());
                let command = UserCommand::RegisterUser {
                    email: email.clone(),
                    full_name: FullName::parse("Bench User").expect("valid"),
                    role: Role::Viewer,
                    password_hash: HASH.into(),
                    mfa_enabled: false,
                };
                commands
                    .user(email.user_id(), command, metadata)
                    .await
                    .expect("append succeeds");
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn pgbench(clients: usize, seconds: u64, url: &str) -> anyhow::Result<f64> {
    let payload = sentryops_bench::user_registered_payload(1)
        .to_string()
        .replace('\'', "''");
    let mut metadata = EventMetadata::system();
    metadata.request_id = Some("bench-0-0".into());
    metadata.ip = Some("127.0.0.1".into());
    metadata.user_agent = Some("sentryops-bench".into());
    let metadata = serde_json::to_string(&metadata.to_map())?.replace('\'', "''");
    let script = format!(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         values ('user', gen_random_uuid()::text, 1, 'UserRegistered', '1.0', '{payload}', '{metadata}');\n"
    );
    let path = std::env::temp_dir().join("sentryops-bench-append.sql");
    std::fs::write(&path, script)?;
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", &clients.to_string()])
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&path)
        .arg(url)
        .output()
        .context("pgbench must be installed (Debian: postgresql-client)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .with_context(|| {
            format!(
                "no tps in pgbench output: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(10), |s| s.parse())?;
    let rounds: usize = std::env::args().nth(2).map_or(Ok(3), |s| s.parse())?;
    println!("append throughput, {seconds} s per measurement, {rounds} alternating rounds");
    println!(
        "{:>8} {:>6} {:>14} {:>14} {:>8}",
        "clients", "round", "commands/s", "pgbench tps", "ratio"
    );
    let mut summary = Vec::new();
    for clients in [1usize, 4, 16] {
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let commands = command_path(clients, seconds).await?;
            let (url, pool) = fresh_database("append", 2).await?;
            pool.close().await;
            let tps = pgbench(clients, seconds, &url)?;
            let ratio = 100.0 * commands / tps;
            println!("{clients:>8} {round:>6} {commands:>14.0} {tps:>14.0} {ratio:>7.1}%");
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        summary.push((
            clients,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        ));
    }
    println!("median ratio (min..max):");
    for (clients, median, min, max) in summary {
        println!("{clients:>8} clients: {median:.1}% ({min:.1}..{max:.1}%)");
    }
    drop_database("append").await?;
    Ok(())
}
