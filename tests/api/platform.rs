//! Health, readiness, the error envelope for every kind of framework
//! rejection, request ids, security headers and CORS.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_ready_answer_without_auth() {
    let app = spawn_app().await;
    let health = app.get("/health", false).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({ "status": "ok" }));
    let ready = app.get("/ready", false).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json(), json!({ "status": "ready" }));
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_is_a_404_envelope() {
    let app = spawn_app().await;
    app.get("/api/v1/nothing-here", true)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn wrong_method_is_a_405_envelope_with_allow() {
    let app = spawn_app().await;
    let response = app
        .send(
            Request::delete("/api/v1/audit")
                .header("authorization", format!("Bearer {}", app.admin_token))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    response.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(response
        .header("allow")
        .is_some_and(|allow| allow.contains("GET")));
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_a_422_envelope() {
    let app = spawn_app().await;
    let response = app
        .send(
            Request::post("/api/v1/users")
                .header("authorization", format!("Bearer {}", app.admin_token))
                .header("content-type", "application/json")
                .body(Body::from("{\"email\": "))
                .expect("request"),
        )
        .await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415_envelope() {
    let app = spawn_app().await;
    let response = app
        .send(
            Request::post("/api/v1/users")
                .header("authorization", format!("Bearer {}", app.admin_token))
                .header("content-type", "text/plain")
                .body(Body::from("email=a@b.io"))
                .expect("request"),
        )
        .await;
    response.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.stop().await;
}

#[tokio::test]
async fn oversized_body_is_a_413_envelope_and_writes_nothing() {
    let app = spawn_app().await;
    let huge = json!({
        "email": "big@example.com",
        "full_name": "x".repeat(2 * 1024 * 1024),
        "password": "correct horse battery",
    });
    let before = app.event_count().await;
    let response = app.post_json("/api/v1/users", &huge).await;
    response.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_a_422_envelope() {
    let app = spawn_app().await;
    let response = app
        .post_json("/api/v1/users", &json!({ "email": 42, "full_name": "A" }))
        .await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.stop().await;
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let app = spawn_app().await;
    let generated = app.get("/health", false).await;
    let id = generated.header("x-request-id").expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let echoed = app
        .send(
            Request::get("/api/v1/missing")
                .header("x-request-id", "req-from-client-1")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("req-from-client-1"));
    let body = echoed.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(body["meta"]["request_id"], "req-from-client-1");
    app.stop().await;
}

#[tokio::test]
async fn security_headers_are_on_success_and_error_responses() {
    let app = spawn_app().await;
    for response in [
        app.get("/health", false).await,
        app.get("/nope", false).await,
    ] {
        assert_eq!(
            response.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert!(response.header("permissions-policy").is_some());
        assert_eq!(
            response.header("strict-transport-security"),
            None,
            "HSTS only in production"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        Request::options("/api/v1/audit")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .expect("request")
    };
    let allowed = app.send(preflight("https://console.example.test")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://console.example.test")
    );
    let refused = app.send(preflight("https://evil.example")).await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    app.stop().await;
}

#[tokio::test]
async fn with_the_database_gone_ready_fails_and_requests_get_a_503_envelope() {
    let app = spawn_app().await;
    app.app.state().pool.close().await;
    let ready = app.get("/ready", false).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "not_ready");
    app.get("/api/v1/audit", true)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    app.create_user("down@example.com", "viewer")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn the_token_verification_keys_are_published_without_auth() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/auth/keys", false).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = response.json();
    let keys = body["data"]["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["kid"].as_str().expect("kid").starts_with("k4.pid."));
    assert!(keys[0]["public_key"]
        .as_str()
        .expect("key")
        .starts_with("k4.public."));
    assert_eq!(keys[0]["status"], "active");
    assert!(
        !response.text.contains("k4.secret"),
        "no secret key is ever published"
    );
    app.stop().await;
}
