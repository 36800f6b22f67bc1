//! The audit timeline over the API: every event, with metadata, filters,
//! pagination and cursors.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_registration_appears_in_the_audit_timeline_with_its_metadata() {
    let app = spawn_app().await;
    let created = app
        .send(
            Request::post("/api/v1/users")
                .header("authorization", format!("Bearer {}", app.admin_token))
                .header("content-type", "application/json")
                .header("user-agent", "audit-test/2.0")
                .header("x-request-id", "req-audit-1")
                .body(Body::from(
                    serde_json::json!({
                        "email": "hopper@example.com",
                        "full_name": "Grace Hopper",
                        "password": "correct horse battery",
                    })
                    .to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let user_id = created.json()["data"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let position: i64 = created
        .header("x-event-position")
        .expect("position")
        .parse()
        .expect("number");

    let audit = app
        .get(&format!("/api/v1/audit/user/{user_id}"), true)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let body = audit.json();
    let entry = &body["data"]["items"][0];
    assert_eq!(body["data"]["total"], 1);
    assert_eq!(entry["event_type"], "user.registered");
    assert_eq!(entry["action"], "create");
    assert_eq!(entry["entity_type"], "user");
    assert_eq!(entry["entity_id"], user_id.as_str());
    let admin = app.get("/api/v1/auth/me", true).await.json();
    assert_eq!(
        entry["actor_id"], admin["data"]["id"],
        "the admin who created it"
    );
    assert_eq!(entry["request_id"], "req-audit-1");
    assert_eq!(entry["user_agent"], "audit-test/2.0");
    assert_eq!(entry["event_position"], position);
    assert_eq!(entry["before"], Value::Null);
    assert_eq!(entry["after"]["email"], "hopper@example.com");
    assert!(
        !audit.text.contains("argon2"),
        "no hash in the audit: {}",
        audit.text
    );
    app.stop().await;
}

#[tokio::test]
async fn the_timeline_filters_and_pages_by_cursor() {
    let app = spawn_app().await;
    // The bootstrap admin's registration, login and session come first.
    let baseline = app.get("/api/v1/audit?limit=1", true).await.json()["data"]["total"]
        .as_i64()
        .expect("total");
    for n in 0..5 {
        let response = app
            .create_user(&format!("user{n}@example.com"), "viewer")
            .await;
        assert_eq!(response.status, StatusCode::CREATED);
    }
    let first = app.get("/api/v1/audit?limit=2", true).await.json();
    assert_eq!(first["data"]["total"].as_i64(), Some(baseline + 5));
    let items = first["data"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(
        items[0]["event_position"].as_i64() > items[1]["event_position"].as_i64(),
        "newest first"
    );
    let cursor = first["meta"]["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_string();

    let mut seen: Vec<i64> = items
        .iter()
        .map(|i| i["event_position"].as_i64().expect("n"))
        .collect();
    let mut cursor = Some(cursor);
    while let Some(next) = cursor {
        let page = app
            .get(&format!("/api/v1/audit?limit=2&cursor={next}"), true)
            .await
            .json();
        seen.extend(
            page["data"]["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["event_position"].as_i64().expect("n")),
        );
        cursor = page["meta"]["next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len() as i64, baseline + 5);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let filtered = app
        .get(
            "/api/v1/audit?action=user.registered&limit=1&offset=4",
            true,
        )
        .await
        .json();
    assert_eq!(filtered["data"]["total"], 6, "five users and the admin");
    assert_eq!(
        filtered["data"]["items"].as_array().expect("items").len(),
        1
    );
    let none = app.get("/api/v1/audit?actor_id=nobody", true).await.json();
    assert_eq!(none["data"]["total"], 0);
    let future = app
        .get("/api/v1/audit?from=2999-01-01T00:00:00Z", true)
        .await
        .json();
    assert_eq!(future["data"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_audit_queries_are_422_and_anonymous_is_401() {
    let app = spawn_app().await;
    for query in [
        "cursor=abc",
        "cursor=-5",
        "from=yesterday",
        "limit=500",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
    ] {
        app.get(&format!("/api/v1/audit?{query}"), true)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    app.get("/api/v1/audit", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/v1/audit/user/x", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn projection_status_lists_every_read_model_for_the_admin() {
    let app = spawn_app().await;
    let created = app.create_user("status@example.com", "viewer").await;
    assert_eq!(created.status, StatusCode::CREATED);
    let response = app.get("/api/v1/projections", true).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = response.json();
    let items = body["data"]["items"].as_array().expect("items");
    let names: Vec<&str> = items
        .iter()
        .map(|item| item["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "audit_timeline",
            "users",
            "sessions",
            "assets",
            "tags",
            "dependencies",
            "checkouts",
            "compliance",
            "seal"
        ]
    );
    for item in items {
        assert_eq!(item["code_version"], item["stored_version"], "{item}");
        assert_eq!(
            item["lag_events"], 0,
            "caught up after read-your-writes: {item}"
        );
        assert!(item["checkpoint"]["position"].as_i64() >= Some(1), "{item}");
    }
    assert!(body["meta"].get("oldest_open_transaction").is_some());
    app.get("/api/v1/projections", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}
