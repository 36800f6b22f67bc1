//! Tamper evidence (ADR 0006) against the real database: the sealer keeps
//! the chain and signs checkpoints; `sentryops audit verify` (the binary,
//! online and offline) and `GET /api/v1/audit/verify` verify an untouched
//! log clean and name the first bad position or checkpoint of each
//! tampering done behind the service's back, with the append-only
//! triggers off (`session_replication_role = replica`, as a superuser).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use sentryops_projections::seal::checkpoint::SealKey;
use sentryops_projections::seal::verify::verify_database;
use sentryops_projections::seal::{SealOptions, Sealer};
use sentryops_projections::store::{self, NewEvent};
use serde_json::{json, Value};
use sqlx::Connection;
use time::OffsetDateTime;

use crate::helpers::{spawn_app_with, Caller, TestApp};

/// A service with a seal key that signs a checkpoint at every batch, ten
/// tags in its log, sealed, and its projections stopped (so nothing moves
/// while a test tampers).
struct SealedLog {
    app: TestApp,
    dir: PathBuf,
    key_file: PathBuf,
    pub_file: PathBuf,
    key: SealKey,
    /// The tag events' positions, in log order.
    tags: Vec<i64>,
    /// Callers logged in before the projections stopped.
    callers: std::collections::HashMap<&'static str, Caller>,
}

async fn sealed_log() -> SealedLog {
    let dir = std::env::temp_dir().join(format!("sentryops-seal-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (private, key) = SealKey::generate("sentryops.test/log").expect("a key");
    let key_file = dir.join("seal.key");
    let pub_file = dir.join("seal.key.pub");
    std::fs::write(&key_file, &private).expect("key file");
    std::fs::write(&pub_file, key.verifier_key()).expect("pub file");
    let app = spawn_app_with(|config| {
        config.seal_key_file = Some(key_file.clone());
        config.seal_checkpoint_events = 1;
        config.seal_publish_dir = Some(dir.clone());
    })
    .await;
    let mut callers = std::collections::HashMap::new();
    for role in ["viewer", "operator", "auditor"] {
        callers.insert(role, app.caller(role).await);
    }
    let operator = callers["operator"].clone();
    for index in 0..10 {
        let created = app
            .call(
                &operator,
                "POST",
                "/api/v1/tags",
                Some(&json!({ "name": format!("tag-{index}") })),
                &[],
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let state = app.app.state();
    let mut conn = state.pool.acquire().await.expect("conn");
    let newest = store::newest_committed(&mut conn)
        .await
        .expect("read")
        .expect("events");
    assert!(
        state
            .runtime
            .wait_for(newest, Duration::from_secs(30))
            .await,
        "the sealer catches up"
    );
    state.runtime.stop().await;
    let tags = sqlx::query_scalar(
        "select global_position from events where aggregate_type = 'tag' \
         order by transaction_id, global_position",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("tags");
    SealedLog {
        app,
        dir,
        key_file,
        pub_file,
        key,
        tags,
        callers,
    }
}

impl SealedLog {
    /// Runs `sql` as a superuser with every trigger off.
    async fn tamper(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.app.database_url)
            .await
            .expect("connect");
        sqlx::raw_sql(&format!(
            "set session_replication_role = replica; {sql}; set session_replication_role = origin;"
        ))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("tampering failed: {error}"));
    }

    /// `sentryops audit verify --json ARGS`: whether it exited 0, and the report.
    fn verify(&self, args: &[&str]) -> (bool, Value) {
        let output = Command::new(env!("CARGO_BIN_EXE_sentryops"))
            .args(["audit", "verify", "--json"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.app.database_url)
            .env("SENTRYOPS_SEAL_KEY_FILE", &self.key_file)
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "a JSON report ({error}): {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.success(), report)
    }

    /// `sentryops events export` into a file of the temp dir.
    fn export(&self, name: &str) -> PathBuf {
        let output = Command::new(env!("CARGO_BIN_EXE_sentryops"))
            .args(["events", "export"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.app.database_url)
            .output()
            .expect("the binary runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = self.dir.join(name);
        std::fs::write(&path, &output.stdout).expect("export file");
        path
    }

    fn verify_offline(&self, export: &std::path::Path, extra: &[&str]) -> (bool, Value) {
        let mut args = vec![
            "--file".to_string(),
            export.display().to_string(),
            "--key".to_string(),
            self.pub_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.verify(&args)
    }

    /// The stored checkpoint notes, by tree size.
    async fn checkpoints(&self) -> Vec<(i64, String)> {
        sqlx::query_as("select tree_size, note from seal_checkpoints order by tree_size")
            .fetch_all(&self.app.app.state().pool)
            .await
            .expect("checkpoints")
    }
}

fn assert_first_bad(report: &Value, position: i64, problem: &str) {
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(
        report["first_bad_event"]["position"], position,
        "{report:#}"
    );
    assert_eq!(report["first_bad_event"]["problem"], problem, "{report:#}");
}

/// Runs the sealer until every committed event is sealed. Tests share one
/// cluster: another test's open transaction can hold new events below the
/// settled horizon for a moment, and a pass then applies nothing yet.
async fn seal_settled(
    conn: &mut sqlx::PgConnection,
    sealer: &Sealer,
) -> anyhow::Result<sentryops_projections::runtime::CatchUp> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pass = sentryops_projections::runtime::catch_up(conn, sealer, 1000, |_, _| {}).await?;
        if !pass.unsettled {
            return Ok(pass);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new events never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_untouched_log_verifies_clean_online_offline_and_from_a_checkpoint() {
    let log = sealed_log().await;
    let events = log.app.event_count().await;
    let (ok, online) = log.verify(&[]);
    assert!(ok, "{online:#}");
    assert_eq!(online["ok"], true);
    assert_eq!(online["events_checked"], events);
    assert_eq!(online["sealed_events"], events, "everything was sealed");
    assert_eq!(online["tree_size"], events);
    let checkpoints = log.checkpoints().await;
    assert!(checkpoints.len() >= 2, "a checkpoint per batch");
    assert_eq!(online["checkpoints_checked"], checkpoints.len());
    assert_eq!(online["checkpoints_valid"], checkpoints.len());
    assert_eq!(
        online["last_good_checkpoint"]["tree_size"], events,
        "the head is checkpointed"
    );
    assert_eq!(online["first_bad_event"], Value::Null);

    // The published checkpoint is the newest, and the log reaches it.
    let published = log.dir.join("checkpoint");
    assert_eq!(
        std::fs::read_to_string(&published).expect("published"),
        checkpoints.last().expect("one").1
    );
    let (ok, with_published) = log.verify(&["--checkpoint", &published.display().to_string()]);
    assert!(ok, "{with_published:#}");

    // Offline, from the export and the public key alone: the same verdict.
    let export = log.export("clean.ndjson");
    let (ok, offline) = log.verify_offline(&export, &[]);
    assert!(ok, "{offline:#}");
    for field in [
        "ok",
        "events_checked",
        "tree_size",
        "head",
        "checkpoints_valid",
        "last_good_checkpoint",
    ] {
        assert_eq!(offline[field], online[field], "{field}");
    }

    // From the newest checkpoint: nothing after it, every signature checked.
    let (ok, incremental) = log.verify(&["--from-checkpoint"]);
    assert!(ok, "{incremental:#}");
    assert_eq!(incremental["verified_from"]["tree_size"], events);
    assert_eq!(incremental["events_checked"], 0);
    assert_eq!(incremental["head"], online["head"]);
    assert_eq!(incremental["checkpoints_valid"], checkpoints.len());
}

#[tokio::test]
async fn a_changed_payload_byte_is_named_online_and_offline() {
    let log = sealed_log().await;
    let target = log.tags[4];
    log.tamper(&format!(
        "update events set payload = jsonb_set(payload, '{{TagCreated,name}}', '\"tag-X\"') \
         where global_position = {target}"
    ))
    .await;
    let (ok, online) = log.verify(&[]);
    assert!(!ok, "a non-zero exit");
    assert_first_bad(&online, target, "altered");
    // The checkpoints after it no longer match the log.
    assert_eq!(
        online["first_bad_checkpoint"]["problem"], "contradicted_by_log",
        "{online:#}"
    );

    let export = log.export("altered.ndjson");
    let (ok, offline) = log.verify_offline(&export, &[]);
    assert!(!ok);
    assert_eq!(offline["first_bad_event"], online["first_bad_event"]);
    assert_eq!(
        offline["last_good_checkpoint"],
        online["last_good_checkpoint"]
    );

    // An auditor asks the API the same question.
    let answer = log
        .app
        .call(
            &log.callers["auditor"],
            "GET",
            "/api/v1/audit/verify",
            None,
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let api = &answer.json()["data"];
    assert_eq!(api["ok"], false);
    assert_eq!(api["first_bad_event"], online["first_bad_event"]);
}

#[tokio::test]
async fn a_deleted_event_is_named_missing() {
    let log = sealed_log().await;
    let target = log.tags[5];
    log.tamper(&format!(
        "delete from events where global_position = {target}"
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    assert_first_bad(&report, target, "missing");
}

#[tokio::test]
async fn two_swapped_positions_are_named_at_the_first() {
    let log = sealed_log().await;
    let (first, second) = (log.tags[3], log.tags[6]);
    // The identity column cannot be updated: out and back in, swapped.
    log.tamper(&format!(
        "create temporary table swapped as select * from events \
           where global_position in ({first}, {second}); \
         delete from events where global_position in ({first}, {second}); \
         insert into events overriding system value \
           select aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                  metadata, {first} + {second} - global_position, transaction_id, recorded_at \
           from swapped"
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    // The sealed place of the first is no longer what holds it.
    assert_first_bad(&report, first, "missing");
}

#[tokio::test]
async fn a_forged_event_is_named_inserted() {
    let log = sealed_log().await;
    let after = log.tags[2];
    let forged = log.tags.last().expect("tags") + 1000;
    // A copy of a real tag event, slipped into that event's transaction.
    log.tamper(&format!(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, global_position, transaction_id, recorded_at) \
         overriding system value \
         select aggregate_type, 'forged', sequence, event_type, event_version, payload, metadata, \
                {forged}, transaction_id, recorded_at \
         from events where global_position = {after}"
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    assert_first_bad(&report, forged, "inserted");
}

#[tokio::test]
async fn a_cut_tail_is_named_and_a_published_checkpoint_still_shows_it() {
    let log = sealed_log().await;
    let cut_from = log.tags[7];
    log.tamper(&format!(
        "delete from events where (transaction_id, global_position) >= \
         (select transaction_id, global_position from events where global_position = {cut_from})"
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    assert_first_bad(&report, cut_from, "missing");

    // A thorough forger also cuts the seals and the checkpoints: only a
    // checkpoint kept outside the database still covers the lost events.
    let remaining = log.app.event_count().await;
    log.tamper(&format!(
        "delete from event_seals where chain_index > {remaining}; \
         delete from seal_checkpoints where tree_size > {remaining}"
    ))
    .await;
    let published = log.dir.join("checkpoint").display().to_string();
    let (ok, report) = log.verify(&["--checkpoint", &published]);
    assert!(!ok, "{report:#}");
    assert_eq!(report["first_bad_checkpoint"]["problem"], "beyond_log");
    assert_eq!(report["first_bad_event"]["problem"], "missing");
    assert_eq!(report["first_bad_event"]["chain_index"], remaining + 1);
}

#[tokio::test]
async fn an_altered_checkpoint_and_one_signed_by_another_key_are_named() {
    let log = sealed_log().await;
    let checkpoints = log.checkpoints().await;
    let (altered_size, note) = checkpoints[checkpoints.len() / 2].clone();
    // One character of the head hash line.
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    let flipped = if lines[2].starts_with('A') { "B" } else { "A" };
    lines[2].replace_range(0..1, flipped);
    log.tamper(&format!(
        "update seal_checkpoints set note = '{}' where tree_size = {altered_size}",
        lines.join("\n")
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    assert_eq!(
        report["first_bad_event"],
        Value::Null,
        "the events are intact"
    );
    assert_eq!(report["first_bad_checkpoint"]["problem"], "bad_signature");
    assert_eq!(report["first_bad_checkpoint"]["tree_size"], altered_size);

    // Re-signed with a key that is not the log's.
    let log = sealed_log().await;
    let checkpoints = log.checkpoints().await;
    let (size, note) = checkpoints[1].clone();
    let opened = log.key.verifier().open(&note).expect("a good checkpoint");
    let (_, other) = SealKey::generate("sentryops.test/log").expect("a key");
    let forged = other
        .sign(
            opened.tree_size,
            &opened.head,
            opened.last,
            opened.signed_at,
        )
        .expect("signed");
    log.tamper(&format!(
        "update seal_checkpoints set note = '{forged}' where tree_size = {size}"
    ))
    .await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok);
    assert_eq!(report["first_bad_checkpoint"]["problem"], "unknown_key");
    assert_eq!(report["first_bad_checkpoint"]["tree_size"], size);
}

#[tokio::test]
async fn only_auditors_and_admins_verify_over_the_api() {
    let log = sealed_log().await;
    for role in ["viewer", "operator"] {
        log.app
            .call(&log.callers[role], "GET", "/api/v1/audit/verify", None, &[])
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    let anonymous = log.app.get("/api/v1/audit/verify", false).await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let answer = log.app.get("/api/v1/audit/verify", true).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["data"]["ok"], true, "{}", answer.text);
    let incremental = log
        .app
        .get("/api/v1/audit/verify?from_checkpoint=true", true)
        .await;
    assert_eq!(incremental.json()["data"]["ok"], true);
    log.app
        .get("/api/v1/audit/verify?from_checkpoint=maybe", true)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
}

async fn sizes(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("select tree_size from seal_checkpoints order by 1")
        .fetch_all(pool)
        .await
        .expect("sizes")
}

fn tag_event(aggregate_id: &str) -> NewEvent {
    NewEvent {
        aggregate_type: "tag".to_string(),
        aggregate_id: aggregate_id.to_string(),
        sequence: 1,
        event_type: "TagDeleted".to_string(),
        event_version: "1.0".to_string(),
        payload: r#""TagDeleted""#.to_string(),
    }
}

#[tokio::test]
async fn checkpoints_come_every_n_events_and_every_t_seconds_on_the_injected_clock() {
    use sentryops_projections::runtime::ensure_checkpoint;
    use sentryops_projections::Projection;

    let database = sentryops_projections::testing::fresh_database().await;
    let (_, key) = SealKey::generate("sentryops.test/log").expect("a key");
    let now = Arc::new(Mutex::new(
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time"),
    ));
    let clock = Arc::clone(&now);
    let sealer = Sealer::with_clock(
        SealOptions {
            key: Some(key.clone()),
            every_events: 4,
            every: Duration::from_secs(60),
            publish_dir: None,
        },
        Arc::new(move || *clock.lock().expect("clock")),
    );
    let mut conn = database.pool.acquire().await.expect("conn");
    ensure_checkpoint(&mut conn, &sealer).await.expect("row");
    let append = |count: usize, prefix: &'static str| {
        let pool = database.pool.clone();
        async move {
            let events: Vec<NewEvent> = (0..count)
                .map(|index| tag_event(&format!("{prefix}-{index}")))
                .collect();
            for event in events {
                store::append(&pool, &[event], &json!({"actor": "system"}))
                    .await
                    .expect("append");
            }
        }
    };

    append(3, "a").await;
    seal_settled(&mut conn, &sealer).await.expect("sealed");
    assert_eq!(
        sizes(&database.pool).await,
        Vec::<i64>::new(),
        "3 < 4 events"
    );
    sealer.tick(&mut conn).await.expect("tick");
    assert_eq!(
        sizes(&database.pool).await,
        vec![3],
        "the first is due at once"
    );

    append(2, "b").await;
    seal_settled(&mut conn, &sealer).await.expect("sealed");
    sealer.tick(&mut conn).await.expect("tick");
    assert_eq!(
        sizes(&database.pool).await,
        vec![3],
        "neither 4 events nor 60 s yet"
    );
    *now.lock().expect("clock") += Duration::from_secs(59);
    sealer.tick(&mut conn).await.expect("tick");
    assert_eq!(sizes(&database.pool).await, vec![3], "59 s");
    *now.lock().expect("clock") += Duration::from_secs(1);
    sealer.tick(&mut conn).await.expect("tick");
    assert_eq!(sizes(&database.pool).await, vec![3, 5], "60 s: due by time");
    sealer.tick(&mut conn).await.expect("tick");
    assert_eq!(
        sizes(&database.pool).await,
        vec![3, 5],
        "nothing new, nothing signed"
    );

    append(4, "c").await;
    seal_settled(&mut conn, &sealer).await.expect("sealed");
    assert_eq!(
        sizes(&database.pool).await,
        vec![3, 5, 9],
        "4 events: due by count"
    );

    let report = verify_database(&mut conn, Some(key.verifier()), false, &[])
        .await
        .expect("verified");
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.checkpoints_valid, 3);
    assert_eq!(report.tree_size, 9);
    let signed_at = report.last_good_checkpoint.expect("one").signed_at;
    assert_eq!(
        signed_at,
        OffsetDateTime::from_unix_timestamp(1_800_000_060).expect("time"),
        "checkpoint times come from the injected clock"
    );
}

/// Every stored seal rewritten to match the log, as a forger who knows
/// the public formula would: (tx, position, hash) by chain index.
async fn reseal_everything(log: &SealedLog) {
    let pool = &log.app.app.state().pool;
    let mut conn = pool.acquire().await.expect("conn");
    let events = store::read_settled(&mut conn, sentryops_projections::LogPosition::START, 10_000)
        .await
        .expect("events");
    let mut head = sentryops_projections::seal::GENESIS;
    let mut statements = vec!["delete from event_seals".to_string()];
    for (index, event) in events.iter().enumerate() {
        head = sentryops_projections::seal::chain_next(
            &head,
            &sentryops_projections::seal::canonical_of(event).expect("canonical"),
        );
        let hex: String = head.iter().map(|byte| format!("{byte:02x}")).collect();
        statements.push(format!(
            "insert into event_seals values ({}, {}, {}, '\\x{hex}')",
            index + 1,
            event.transaction_id,
            event.global_position
        ));
    }
    log.tamper(&statements.join("; ")).await;
}

#[tokio::test]
async fn a_forger_who_rewrites_the_seals_too_is_caught_by_the_signatures() {
    let log = sealed_log().await;
    let target = log.tags[4];
    log.tamper(&format!(
        "update events set payload = jsonb_set(payload, '{{TagCreated,name}}', '\"tag-X\"') \
         where global_position = {target}"
    ))
    .await;
    reseal_everything(&log).await;
    let (ok, report) = log.verify(&[]);
    assert!(!ok, "{report:#}");
    assert_eq!(
        report["first_bad_checkpoint"]["problem"],
        "contradicted_by_log"
    );
    // The stored seals agree with the forgery; the signed heads do not:
    // the first bad place lies after the last checkpoint that still holds.
    let last_good = report["last_good_checkpoint"]["tree_size"]
        .as_i64()
        .expect("a good checkpoint before the forgery");
    let target_index: i64 =
        sqlx::query_scalar("select chain_index from event_seals where global_position = $1")
            .bind(target)
            .fetch_one(&log.app.app.state().pool)
            .await
            .expect("index");
    assert_eq!(report["first_bad_event"]["chain_index"], last_good + 1);
    assert!(last_good < target_index, "{report:#}");

    // And the sealer refuses to sign the forged head when the log grows.
    let pool = log.app.app.state().pool.clone();
    store::append(
        &pool,
        &[tag_event("after-the-forgery")],
        &json!({"actor": "system"}),
    )
    .await
    .expect("append");
    let sealer = Sealer::new(SealOptions {
        key: Some(log.key.clone()),
        every_events: 1,
        every: Duration::from_secs(60),
        publish_dir: None,
    });
    let mut conn = pool.acquire().await.expect("conn");
    let refused = seal_settled(&mut conn, &sealer)
        .await
        .expect_err("no signature over a forged chain");
    assert!(
        format!("{refused:#}").contains("refusing to sign"),
        "{refused:#}"
    );
}

#[tokio::test]
async fn an_export_stripped_of_or_with_moved_checkpoints_does_not_verify() {
    let log = sealed_log().await;
    let export = log.export("full.ndjson");
    let text = std::fs::read_to_string(&export).expect("export");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let write = |name: &str, lines: &[Value]| {
        let path = log.dir.join(name);
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(&path, body).expect("write");
        path
    };

    // Without any checkpoint, stored hashes alone prove nothing.
    let stripped: Vec<Value> = lines
        .iter()
        .cloned()
        .map(|mut line| {
            line.as_object_mut().expect("object").remove("checkpoint");
            line
        })
        .collect();
    let (ok, report) = log.verify_offline(&write("stripped.ndjson", &stripped), &[]);
    assert!(!ok, "{report:#}");
    assert_eq!(report["first_bad_checkpoint"]["problem"], "missing");

    // A checkpoint moved one line down, past its own event, can no longer
    // be compared with the chain (a forger would move each one down after
    // recomputing the hashes of an altered line).
    let at = lines
        .iter()
        .position(|line| line.get("checkpoint").is_some())
        .expect("a checkpoint");
    assert!(at + 1 < lines.len());
    let mut moved = lines.clone();
    let note = moved[at]
        .as_object_mut()
        .expect("object")
        .remove("checkpoint")
        .expect("note");
    moved[at + 1]["checkpoint"] = note;
    let (ok, report) = log.verify_offline(&write("moved.ndjson", &moved), &[]);
    assert!(!ok, "{report:#}");
    assert_eq!(report["first_bad_checkpoint"]["problem"], "misplaced");
}

#[tokio::test]
async fn from_a_checkpoint_a_cut_tail_is_still_seen() {
    let log = sealed_log().await;
    let last = *log.tags.last().expect("tags");
    log.tamper(&format!(
        "delete from events where global_position = {last}"
    ))
    .await;
    let (ok, report) = log.verify(&["--from-checkpoint"]);
    assert!(!ok, "{report:#}");
    assert_eq!(
        report["verified_from"],
        Value::Null,
        "the newest checkpoint is not reached: the walk starts at the log's start"
    );
    assert_first_bad(&report, last, "missing");
}
