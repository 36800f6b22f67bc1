//! `GET /api/v1/events`: the raw log for auditors and admins, filtered,
//! paged by cursor without gaps or repeats while writers append, and
//! streamed as NDJSON.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Caller, TestApp};

async fn tag(app: &TestApp, operator: &Caller, name: &str) -> String {
    let created = app
        .call(
            operator,
            "POST",
            "/api/v1/tags",
            Some(&json!({"name": name})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.json()["data"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn page(app: &TestApp, caller: &Caller, query: &str) -> Value {
    let answer = app
        .call(caller, "GET", &format!("/api/v1/events?{query}"), None, &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
    answer.json()
}

fn positions(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|event| event["global_position"].as_i64().expect("position"))
        .collect()
}

async fn all_positions(app: &TestApp) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>("select global_position from events")
        .fetch_all(&app.app.state().pool)
        .await
        .expect("positions")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn only_auditors_and_admins_read_the_raw_log() {
    let app = spawn_app().await;
    for role in ["viewer", "operator"] {
        let caller = app.caller(role).await;
        app.call(&caller, "GET", "/api/v1/events", None, &[])
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        app.call(
            &caller,
            "GET",
            "/api/v1/events",
            None,
            &[("accept", "application/x-ndjson")],
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    for role in ["auditor", "admin"] {
        let caller = app.caller(role).await;
        let answer = page(&app, &caller, "").await;
        assert!(!positions(&answer).is_empty(), "{role}");
    }
    app.get("/api/v1/events", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn each_filter_narrows_the_log_and_bad_input_is_refused() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let auditor = app.caller("auditor").await;
    let first = tag(&app, &operator, "alpha").await;
    tag(&app, &operator, "beta").await;

    let tags = page(&app, &auditor, "aggregate_type=tag").await;
    let items = tags["data"].as_array().expect("list");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|event| event["aggregate_type"] == "tag"));
    let one = page(
        &app,
        &auditor,
        &format!("aggregate_type=tag&aggregate_id={first}"),
    )
    .await;
    assert_eq!(one["data"].as_array().expect("list").len(), 1);
    assert_eq!(one["data"][0]["event_type"], "TagCreated");
    assert_eq!(one["data"][0]["event_version"], "1.0");
    assert_eq!(one["data"][0]["payload"]["TagCreated"]["name"], "alpha");
    assert!(
        one["data"][0]["metadata"]["request_id"].is_string(),
        "{one}"
    );
    let registrations = page(&app, &auditor, "event_type=UserRegistered").await;
    let registered = registrations["data"].as_array().expect("list");
    assert!(!registered.is_empty());
    for event in registered {
        assert_eq!(event["event_type"], "UserRegistered");
        // Secrets never leave; their digests do, so the chain covers them.
        let sealed = event["payload"]["UserRegistered"]["password_hash"]
            .as_str()
            .expect("a string");
        assert!(sealed.starts_with("sha256:"), "{sealed}");
        assert_eq!(sealed.len(), "sha256:".len() + 64);
        assert!(!event.to_string().contains("argon2"), "{event}");
    }
    let later = "2999-01-01T00:00:00Z";
    assert!(positions(&page(&app, &auditor, &format!("from={later}")).await).is_empty());
    assert!(positions(&page(&app, &auditor, "to=2000-01-01T00:00:00Z").await).is_empty());
    let everything = positions(&page(&app, &auditor, &format!("to={later}&limit=1000")).await);
    assert_eq!(
        everything.iter().copied().collect::<BTreeSet<_>>(),
        all_positions(&app).await
    );

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-5",
        "after=abc",
        "after=99999999",
        "after=1:-2",
        "from=yesterday",
        &format!("from={later}&to=2000-01-01T00:00:00Z"),
        "colour=red",
        &format!("aggregate_id={}", "x".repeat(201)),
    ] {
        app.call(&auditor, "GET", &format!("/api/v1/events?{bad}"), None, &[])
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    // NUL is refused before any filter is read.
    app.call(
        &auditor,
        "GET",
        "/api/v1/events?event_type=Tag%00Created",
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.stop().await;
}

#[tokio::test]
async fn the_cursor_walks_the_log_without_gaps_or_repeats_while_writers_append() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let auditor = app.caller("auditor").await;
    let writer = {
        let token = operator.token.clone();
        let router = app.router.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                let request = axum::http::Request::builder()
                    .method("POST")
                    .uri("/api/v1/tags")
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        json!({"name": format!("t{n}")}).to_string(),
                    ))
                    .expect("request");
                let answer = tower::ServiceExt::oneshot(router.clone(), request)
                    .await
                    .expect("answer");
                assert_eq!(answer.status(), StatusCode::CREATED);
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut writer = Some(writer);
    loop {
        let query = match &cursor {
            Some(cursor) => format!("limit=3&after={cursor}"),
            None => "limit=3".to_string(),
        };
        let answer = page(&app, &auditor, &query).await;
        let items = answer["data"].as_array().expect("list").clone();
        seen.extend(positions(&answer));
        if let Some(last) = items.last() {
            cursor = Some(last["cursor"].as_str().expect("cursor").to_string());
        }
        if answer["meta"]["next_cursor"].is_null() {
            // At the end for now: once the writer is done, one more pass
            // reads what it appended since.
            match writer.take() {
                Some(writer) => writer.await.expect("writer"),
                None => break,
            }
        } else {
            assert_eq!(
                answer["meta"]["next_cursor"],
                items.last().expect("last")["cursor"]
            );
        }
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert_eq!(unique, all_positions(&app).await, "no event missed");
    app.stop().await;
}

#[tokio::test]
async fn ndjson_streams_the_whole_log_in_the_order_of_the_pages() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let admin = app.caller("admin").await;
    for n in 0..5 {
        tag(&app, &operator, &format!("n{n}")).await;
    }
    let streamed = app
        .call(
            &admin,
            "GET",
            "/api/v1/events",
            None,
            &[("accept", "application/x-ndjson")],
        )
        .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(
        streamed.header("content-type"),
        Some("application/x-ndjson")
    );
    let lines: Vec<Value> = streamed
        .text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let paged = page(&app, &admin, "limit=1000").await;
    assert_eq!(
        Value::Array(lines.clone()),
        paged["data"],
        "one shape, one order"
    );
    assert_eq!(
        lines
            .iter()
            .map(|line| line["global_position"].as_i64().expect("p"))
            .collect::<BTreeSet<_>>(),
        all_positions(&app).await
    );
    // Filters and `after` apply to the stream too; `after` may be a plain
    // position.
    let third = lines[2]["global_position"].as_i64().expect("position");
    let rest = app
        .call(
            &admin,
            "GET",
            &format!("/api/v1/events?after={third}&aggregate_type=tag"),
            None,
            &[("accept", "application/x-ndjson")],
        )
        .await;
    let rest: Vec<Value> = rest
        .text
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|line| line["aggregate_type"] == "tag"
        && line["global_position"].as_i64().expect("p") > third));
    app.stop().await;
}

/// The stream reads one batch ahead of what it sends: across many batches
/// it still sends every event once, in order, and stops at `limit` exactly
/// (at most one batch: a limit above the page maximum of 1,000 is refused).
#[tokio::test]
async fn ndjson_across_many_batches_sends_each_event_once_and_stops_at_the_limit() {
    use sentryops_projections::store::{self, NewEvent};
    let app = spawn_app().await;
    let admin = app.caller("admin").await;
    let events: Vec<NewEvent> = (0..10_500)
        .map(|index| {
            let id = format!("00000000-0000-4000-8000-{index:012}");
            NewEvent {
                aggregate_type: "tag".to_string(),
                aggregate_id: id.clone(),
                sequence: 1,
                event_type: "TagCreated".to_string(),
                event_version: "1.0".to_string(),
                payload: json!({"TagCreated": {"tag_id": id, "name": format!("bulk-{index}"), "color": "#00ff00"}})
                    .to_string(),
            }
        })
        .collect();
    let appended = store::append(&app.app.state().pool, &events, &json!({"actor": "system"}))
        .await
        .expect("append");
    let state = app.app.state();
    assert!(
        state
            .await_read_models(appended.last_position().expect("position"))
            .await
    );
    let all = all_positions(&app).await;
    assert!(all.len() > 10_500, "more than two batches of 5,000");
    let stream = |query: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let answer = app
                .call(
                    admin,
                    "GET",
                    &format!("/api/v1/events{query}"),
                    None,
                    &[("accept", "application/x-ndjson")],
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK);
            answer
                .text
                .lines()
                .map(|line| {
                    let line: Value = serde_json::from_str(line).expect("a JSON line");
                    line["global_position"].as_i64().expect("position")
                })
                .collect::<Vec<_>>()
        }
    };
    // Settled once is not settled for every later read: the horizon sits
    // lower for a moment when an older transaction elsewhere ends while it
    // is computed, so a short stream is read again (never a long one).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let whole = loop {
        let whole = stream("").await;
        if whole.len() >= all.len() || std::time::Instant::now() > deadline {
            break whole;
        }
    };
    assert_eq!(whole.len(), all.len(), "each event once");
    assert_eq!(whole.iter().copied().collect::<BTreeSet<_>>(), all);
    let limited = stream("?limit=7").await;
    assert_eq!(limited, whole[..7], "the first 7, in the same order");
    let limited = stream("?limit=1000").await;
    assert_eq!(limited, whole[..1000], "a limit of exactly one batch");
    app.stop().await;
}
