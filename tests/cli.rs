//! The `sentryops` command line against a fresh database: migrate, users
//! create, projections status and rebuild, events export.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sentryops(
    database_url: &str,
    args: &[&str],
    stdin: Option<&str>,
    password: Option<&str>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentryops"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("ARGON2_MEMORY_KIB", "1024")
        .env("ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("SENTRYOPS_NEW_USER_PASSWORD", password);
    }
    let mut child = command.spawn().expect("the binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("the binary exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_command_line_manages_users_projections_and_exports() {
    let url = sentryops_projections::testing::create_database().await;
    let migrate = sentryops(&url, &["migrate"], None, None);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));

    // users create: password from the environment, then from stdin.
    let created = sentryops(
        &url,
        &[
            "users",
            "create",
            "--email",
            "Cli@Example.com",
            "--full-name",
            "Cli User",
            "--role",
            "operator",
        ],
        None,
        Some("a long enough password"),
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let user_id = text(&created.stdout).trim().to_string();
    assert!(uuid::Uuid::parse_str(&user_id).is_ok(), "{user_id}");
    let from_stdin = sentryops(
        &url,
        &[
            "users",
            "create",
            "--email",
            "stdin@example.com",
            "--full-name",
            "Stdin User",
        ],
        Some("another long password\n"),
        None,
    );
    assert!(from_stdin.status.success(), "{}", text(&from_stdin.stderr));
    let duplicate = sentryops(
        &url,
        &[
            "users",
            "create",
            "--email",
            "cli@example.com",
            "--full-name",
            "Again",
        ],
        None,
        Some("a long enough password"),
    );
    assert!(!duplicate.status.success());
    assert!(
        text(&duplicate.stderr).contains("already exists"),
        "{}",
        text(&duplicate.stderr)
    );
    let short = sentryops(
        &url,
        &[
            "users",
            "create",
            "--email",
            "short@example.com",
            "--full-name",
            "Short",
        ],
        None,
        Some("short"),
    );
    assert!(!short.status.success());

    // No server runs: the projections have not started.
    let status = sentryops(&url, &["projections", "status", "--json"], None, None);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    for projection in status["projections"].as_array().expect("list") {
        assert_eq!(projection["lag_events"], 2, "{projection}");
    }

    // Nobody leads, so the tool rebuilds directly.
    let rebuilt = sentryops(&url, &["projections", "rebuild", "--all"], None, None);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let status = sentryops(&url, &["projections", "status", "--json"], None, None);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    for projection in status["projections"].as_array().expect("list") {
        assert_eq!(projection["lag_events"], 0, "{projection}");
        assert_eq!(
            projection["stored_version"], projection["code_version"],
            "{projection}"
        );
    }
    let unknown = sentryops(&url, &["projections", "rebuild", "nonesuch"], None, None);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no projection named"),
        "{}",
        text(&unknown.stderr)
    );

    // Export: global order, secrets as digests, both formats.
    let ndjson = sentryops(&url, &["events", "export"], None, None);
    assert!(ndjson.status.success(), "{}", text(&ndjson.stderr));
    let lines: Vec<serde_json::Value> = text(&ndjson.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["aggregate_id"], user_id.as_str());
    assert!(lines[0]["payload"]["UserRegistered"]["password_hash"]
        .as_str()
        .is_some_and(|sealed| sealed.starts_with("sha256:")));
    assert!(!text(&ndjson.stdout).contains("argon2"));
    let first = lines[0]["global_position"]
        .as_i64()
        .expect("position")
        .to_string();
    let after = sentryops(&url, &["events", "export", "--after", &first], None, None);
    assert_eq!(text(&after.stdout).lines().count(), 1);
    let csv = sentryops(&url, &["events", "export", "--format", "csv"], None, None);
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    assert!(
        csv.starts_with("global_position,transaction_id,recorded_at,aggregate_type"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(!csv.contains("argon2"));
}
