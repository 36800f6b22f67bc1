//! `POST /api/v1/users` and `GET /api/v1/users` with the static admin token.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn creating_a_user_returns_201_with_the_event_position_and_reads_back() {
    let app = spawn_app().await;
    let created = app.create_user("Ada@Example.com", "operator").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let position: i64 = created
        .header("x-event-position")
        .expect("X-Event-Position on a mutation")
        .parse()
        .expect("a number");
    assert!(position > 0);
    let body = created.json();
    assert_eq!(body["success"], true);
    let user = &body["data"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "operator");
    assert_eq!(user["is_active"], true);
    assert_eq!(user["mfa_enabled"], false);
    assert!(user.get("password_hash").is_none());
    assert!(!created.text.contains("argon2"));

    // Read-your-writes: the list shows it at once.
    let list = app.get("/api/v1/users", true).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["items"][0]["id"], user["id"]);
    assert_eq!(list["data"]["limit"], 50);
    assert_eq!(list["data"]["offset"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_email_is_a_409_whatever_its_case() {
    let app = spawn_app().await;
    assert_eq!(
        app.create_user("grace@example.com", "viewer").await.status,
        StatusCode::CREATED
    );
    app.create_user("GRACE@example.com", "admin")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_user() {
    let app = spawn_app().await;
    let (first, second) = tokio::join!(
        app.create_user("race@example.com", "viewer"),
        app.create_user("race@example.com", "viewer")
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let events: i64 =
        sqlx::query_scalar("select count(*) from events where aggregate_type = 'user'")
            .fetch_one(&app.app.state().pool)
            .await
            .expect("count");
    assert_eq!(events, 1);
    app.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_naming_each_field() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/users",
            &json!({ "email": "not-an-email", "full_name": " ", "password": "short", "role": "root" }),
        )
        .await;
    let body = response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .expect("field list")
        .iter()
        .map(|field| field["field"].as_str().expect("name"))
        .collect();
    assert_eq!(fields, ["email", "full_name", "password", "role"]);
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.app.state().pool)
        .await
        .expect("count");
    assert_eq!(events, 0, "nothing half-written");
    app.stop().await;
}

#[tokio::test]
async fn users_require_the_admin_token() {
    let app = spawn_app().await;
    app.get("/api/v1/users", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = app
        .send(
            axum::http::Request::get("/api/v1/users")
                .header("authorization", "Bearer not-the-token-at-all-000000")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    let body = wrong.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(body["error"]["message"], "authentication required");
    app.stop().await;
}

#[tokio::test]
async fn list_bounds_are_validated() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=201",
        "offset=-1",
        "limit=abc",
        "unknown=1",
    ] {
        app.get(&format!("/api/v1/users?{query}"), true)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    app.stop().await;
}
