//! Admin user management: create, list, read, update, role, deactivate.

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
    assert_eq!(
        list["data"]["total"], 2,
        "the bootstrap admin and the new user"
    );
    assert!(list["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|item| item["id"] == user["id"]));
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
    let events: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type = 'UserRegistered' \
         and payload #>> '{UserRegistered,email}' = 'race@example.com'",
    )
    .fetch_one(&app.app.state().pool)
    .await
    .expect("count");
    assert_eq!(events, 1);
    app.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_naming_each_field() {
    let app = spawn_app().await;
    let before = app.event_count().await;
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
    assert_eq!(app.event_count().await, before, "nothing half-written");
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

async fn created_id(app: &crate::helpers::TestApp, email: &str) -> String {
    app.created_user_id(email, "viewer").await
}

#[tokio::test]
async fn an_admin_reads_updates_promotes_and_deactivates_a_user() {
    let app = spawn_app().await;
    let id = created_id(&app, "lin@example.com").await;

    let read = app.get(&format!("/api/v1/users/{id}"), true).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["data"]["email"], "lin@example.com");

    let patched = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &json!({ "full_name": "Lin Chen", "mfa_enabled": true }),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert!(patched.header("x-event-position").is_some());
    let user = &patched.json()["data"];
    assert_eq!(user["full_name"], "Lin Chen");
    assert_eq!(user["mfa_enabled"], true);
    assert_ne!(user["updated_at"], user["created_at"]);

    // The same values again change nothing and append nothing.
    let unchanged = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &json!({ "full_name": "Lin Chen", "mfa_enabled": true }),
        )
        .await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.header("x-event-position"), None);

    let promoted = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}/role"),
            &json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text);
    assert_eq!(promoted.json()["data"]["role"], "admin");

    let deactivated = app
        .send_json(
            "POST",
            &format!("/api/v1/users/{id}/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.text);
    assert_eq!(deactivated.json()["data"]["is_active"], false);
    let again = app
        .send_json(
            "POST",
            &format!("/api/v1/users/{id}/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-event-position"), None, "idempotent");

    let reactivated = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &json!({ "is_active": true }),
        )
        .await;
    assert_eq!(reactivated.json()["data"]["is_active"], true);

    // Every change is in the entity's audit trail, with before and after.
    let audit = app
        .get(&format!("/api/v1/audit/user/{id}?limit=20"), true)
        .await
        .json();
    let actions: Vec<&str> = audit["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .rev()
        .map(|entry| entry["event_type"].as_str().expect("event type"))
        .collect();
    assert_eq!(
        actions,
        [
            "user.registered",
            "user.profile_updated",
            "user.mfa_changed",
            "user.role_changed",
            "user.deactivated",
            "user.reactivated"
        ]
    );
    let role_change = audit["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["event_type"] == "user.role_changed")
        .expect("role change");
    assert_eq!(role_change["before"], json!({ "role": "viewer" }));
    assert_eq!(role_change["after"], json!({ "role": "admin" }));

    // A rebuild of the users read model reproduces it row for row.
    let pool = app.app.state().pool.clone();
    let digest = || async {
        sqlx::query_scalar::<_, String>(
            "select md5(string_agg(u::text, '|' order by id)) from users u",
        )
        .fetch_one(&pool)
        .await
        .expect("digest")
    };
    let before = digest().await;
    let outcome = sentryops_projections::rebuild::rebuild_now(
        &pool,
        &sentryops_projections::users::UsersProjection,
        &sentryops_projections::RuntimeOptions::default(),
        &mut |_, _| {},
    )
    .await
    .expect("rebuilt");
    assert!(matches!(
        outcome,
        sentryops_projections::rebuild::RebuildOutcome::Completed { .. }
    ));
    assert_eq!(digest().await, before);
    app.stop().await;
}

#[tokio::test]
async fn user_changes_refuse_bad_input_and_unknown_users() {
    let app = spawn_app().await;
    let id = created_id(&app, "err@example.com").await;
    let before = app.event_count().await;
    let missing = uuid::Uuid::new_v4();
    app.get(&format!("/api/v1/users/{missing}"), true)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.send_json(
        "PATCH",
        &format!("/api/v1/users/{missing}"),
        &json!({ "full_name": "X" }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.send_json(
        "PATCH",
        &format!("/api/v1/users/{missing}/role"),
        &json!({ "role": "admin" }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.send_json(
        "POST",
        &format!("/api/v1/users/{missing}/deactivate"),
        &json!({}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/users/not-a-uuid", true)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    for body in [
        json!({ "full_name": "" }),
        json!({ "full_name": "x".repeat(201) }),
        json!({ "email": "new@example.com" }),
        json!({ "is_active": "yes" }),
    ] {
        app.send_json("PATCH", &format!("/api/v1/users/{id}"), &body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    app.send_json(
        "PATCH",
        &format!("/api/v1/users/{id}/role"),
        &json!({ "role": "root" }),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    for (method, path) in [
        ("GET", format!("/api/v1/users/{id}")),
        ("PATCH", format!("/api/v1/users/{id}")),
        ("PATCH", format!("/api/v1/users/{id}/role")),
        ("POST", format!("/api/v1/users/{id}/deactivate")),
    ] {
        let response = app
            .send(
                axum::http::Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from("{}"))
                    .expect("request"),
            )
            .await;
        response.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(app.event_count().await, before, "nothing half-written");
    app.stop().await;
}
