//! Login, refresh rotation with reuse detection, logout, and access tokens
//! on protected routes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, TestResponse};

const PASSWORD: &str = "correct horse battery";

/// The client address every anonymous test request comes from.
const CLIENT: [u8; 4] = [203, 0, 113, 9];

async fn post_anonymous(app: &TestApp, path: &str, body: &Value, request_id: &str) -> TestResponse {
    let mut request = Request::post(path)
        .header("content-type", "application/json")
        .header("user-agent", "auth-tests/1.0")
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .expect("request");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            CLIENT, 50000,
        ))));
    app.send(request).await
}

async fn get_with(app: &TestApp, path: &str, token: &str) -> TestResponse {
    app.send(
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

async fn login(app: &TestApp, email: &str) -> Value {
    let response = post_anonymous(
        app,
        "/api/v1/auth/login",
        &json!({ "email": email, "password": PASSWORD }),
        "req-login",
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json()["data"].clone()
}

async fn refresh(app: &TestApp, token: &str) -> TestResponse {
    post_anonymous(
        app,
        "/api/v1/auth/refresh",
        &json!({ "refresh_token": token }),
        "req-refresh",
    )
    .await
}

async fn user(app: &TestApp, email: &str, role: &str) -> String {
    app.created_user_id(email, role).await
}

#[tokio::test]
async fn login_issues_a_token_pair_that_authenticates() {
    let app = spawn_app().await;
    let id = user(&app, "op@example.com", "operator").await;
    let pair = login(&app, "OP@example.com").await;
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 14 * 24 * 3600);
    let access = pair["access_token"].as_str().expect("access");
    assert!(access.starts_with("v4.public."));
    assert!(pair["refresh_token"]
        .as_str()
        .expect("refresh")
        .starts_with("sor1."));

    let me = get_with(&app, "/api/v1/auth/me", access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json()["data"]["id"], id.as_str());
    assert_eq!(me.json()["data"]["role"], "operator");

    // An operator is below the floor of admin routes.
    get_with(&app, "/api/v1/users", access)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn unknown_email_wrong_password_and_inactive_give_identical_answers() {
    let app = spawn_app().await;
    let id = user(&app, "gone@example.com", "viewer").await;
    let deactivated = app
        .send_json(
            "POST",
            &format!("/api/v1/users/{id}/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK);
    user(&app, "here@example.com", "viewer").await;

    let attempts = [
        json!({ "email": "nobody@example.com", "password": PASSWORD }),
        json!({ "email": "here@example.com", "password": "wrong password!" }),
        json!({ "email": "gone@example.com", "password": PASSWORD }),
        json!({ "email": "not an email", "password": PASSWORD }),
    ];
    let mut bodies = Vec::new();
    for attempt in &attempts {
        let response = post_anonymous(&app, "/api/v1/auth/login", attempt, "req-same").await;
        response.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        bodies.push(response.text);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "{bodies:#?}"
    );

    // The reasons are in the audit timeline, with the request's metadata
    // (failed logins answer without waiting for the read models).
    let mut audit = Value::Null;
    for _ in 0..500 {
        audit = app
            .get("/api/v1/audit?action=auth.login_failed", true)
            .await
            .json();
        if audit["data"]["items"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reasons: Vec<&str> = audit["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|entry| {
            assert_eq!(entry["request_id"], "req-same");
            assert_eq!(entry["source_ip"], "203.0.113.9");
            assert_eq!(entry["user_agent"], "auth-tests/1.0");
            assert_eq!(entry["actor_id"], Value::Null);
            assert_eq!(entry["actor"], "anonymous");
            entry["after"]["reason"].as_str().expect("reason")
        })
        .collect();
    assert_eq!(reasons, ["inactive", "wrong_password", "unknown_email"]);
    app.stop().await;
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_session() {
    // No grace: any replay after the rotation committed is reuse.
    let app = spawn_app_with(|config| config.refresh_reuse_grace = std::time::Duration::ZERO).await;
    user(&app, "rot@example.com", "viewer").await;
    let first = login(&app, "rot@example.com").await;
    let first_refresh = first["refresh_token"].as_str().expect("refresh");

    let rotated = refresh(&app, first_refresh).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let second = rotated.json()["data"].clone();
    let second_access = second["access_token"].as_str().expect("access");
    assert_eq!(
        get_with(&app, "/api/v1/auth/me", second_access)
            .await
            .status,
        StatusCode::OK
    );

    // Reuse of the consumed token: 401, and the family is revoked.
    refresh(&app, first_refresh)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    refresh(&app, second["refresh_token"].as_str().expect("refresh"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    get_with(&app, "/api/v1/auth/me", second_access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    get_with(
        &app,
        "/api/v1/auth/me",
        first["access_token"].as_str().expect("access"),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let audit = app
        .get("/api/v1/audit?action=session.refresh_reuse_detected", true)
        .await
        .json();
    assert_eq!(audit["data"]["total"], 1);
    app.stop().await;
}

#[tokio::test]
async fn sixteen_concurrent_refreshes_of_one_token_yield_exactly_one_pair() {
    let app = spawn_app().await;
    user(&app, "race@example.com", "viewer").await;
    let pair = login(&app, "race@example.com").await;
    let token = pair["refresh_token"].as_str().expect("refresh").to_string();
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let router = app.router.clone();
        let body = json!({ "refresh_token": token }).to_string();
        attempts.spawn(async move {
            let request = Request::post("/api/v1/auth/refresh")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request");
            tower::ServiceExt::oneshot(router, request)
                .await
                .expect("infallible")
                .status()
        });
    }
    let statuses: Vec<StatusCode> = attempts.join_all().await;
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|status| *status == StatusCode::OK || *status == StatusCode::UNAUTHORIZED));
    app.stop().await;
}

#[tokio::test]
async fn logout_revokes_at_once_and_is_idempotent() {
    let app = spawn_app().await;
    user(&app, "bye@example.com", "viewer").await;
    let pair = login(&app, "bye@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    let refresh_token = pair["refresh_token"].as_str().expect("refresh");
    // Warm the access cache: the logout must drop the cached answer.
    assert_eq!(
        get_with(&app, "/api/v1/auth/me", access).await.status,
        StatusCode::OK
    );
    for body in [
        json!({ "refresh_token": refresh_token }),
        json!({ "refresh_token": refresh_token }),
        json!({ "refresh_token": "garbage" }),
    ] {
        let response = post_anonymous(&app, "/api/v1/auth/logout", &body, "req-out").await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(response.json()["data"], json!({ "revoked": true }));
    }
    get_with(&app, "/api/v1/auth/me", access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    refresh(&app, refresh_token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_only_accepted_where_they_belong() {
    let app = spawn_app().await;
    user(&app, "mix@example.com", "admin").await;
    let pair = login(&app, "mix@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    let refresh_token = pair["refresh_token"].as_str().expect("refresh");
    // A refresh token is no bearer credential; an access token no refresh token.
    get_with(&app, "/api/v1/auth/me", refresh_token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    refresh(&app, access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Tampered token.
    let mut tampered = access.to_string();
    let middle = tampered.len() / 2;
    let replacement = if &tampered[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(middle..=middle, replacement);
    get_with(&app, "/api/v1/auth/me", &tampered)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The admin's token opens admin routes.
    assert_eq!(
        get_with(&app, "/api/v1/users", access).await.status,
        StatusCode::OK
    );
    // The static admin token of the first increments is gone for good.
    get_with(&app, "/api/v1/users", "test-admin-token-0123456789abcdef")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn a_deactivated_users_tokens_stop_working() {
    let app = spawn_app().await;
    let id = user(&app, "fired@example.com", "viewer").await;
    let pair = login(&app, "fired@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    assert_eq!(
        get_with(&app, "/api/v1/auth/me", access).await.status,
        StatusCode::OK
    );
    let deactivated = app
        .send_json(
            "POST",
            &format!("/api/v1/users/{id}/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK);
    get_with(&app, "/api/v1/auth/me", access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    refresh(&app, pair["refresh_token"].as_str().expect("refresh"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}

async fn post_with(app: &TestApp, path: &str, token: &str, body: &Value) -> TestResponse {
    app.send(
        Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_user_lists_and_revokes_all_own_sessions() {
    let app = spawn_app().await;
    user(&app, "multi@example.com", "viewer").await;
    let laptop = login(&app, "multi@example.com").await;
    let phone = login(&app, "multi@example.com").await;
    let laptop_access = laptop["access_token"].as_str().expect("access");
    let listed = get_with(&app, "/api/v1/auth/sessions", laptop_access).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let items = listed.json()["data"]["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items.iter().filter(|item| item["current"] == true).count(),
        1
    );
    // Warm the access cache for the other session too.
    assert_eq!(
        get_with(
            &app,
            "/api/v1/auth/me",
            phone["access_token"].as_str().expect("access")
        )
        .await
        .status,
        StatusCode::OK
    );

    let revoked = post_with(
        &app,
        "/api/v1/auth/sessions/revoke-all",
        laptop_access,
        &json!({}),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.json()["data"]["revoked"], 2);
    for token in [
        laptop_access,
        phone["access_token"].as_str().expect("access"),
    ] {
        get_with(&app, "/api/v1/auth/me", token)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    app.stop().await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let app = spawn_app().await;
    user(&app, "pw@example.com", "viewer").await;
    let here = login(&app, "pw@example.com").await;
    let elsewhere = login(&app, "pw@example.com").await;
    let here_access = here["access_token"].as_str().expect("access");

    post_with(
        &app,
        "/api/v1/users/me/password",
        here_access,
        &json!({ "current_password": "not it at all", "new_password": "a brand new password" }),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    post_with(
        &app,
        "/api/v1/users/me/password",
        here_access,
        &json!({ "current_password": PASSWORD, "new_password": "short" }),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let changed = post_with(
        &app,
        "/api/v1/users/me/password",
        here_access,
        &json!({ "current_password": PASSWORD, "new_password": "a brand new password" }),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(
        get_with(&app, "/api/v1/auth/me", here_access).await.status,
        StatusCode::OK
    );
    get_with(
        &app,
        "/api/v1/auth/me",
        elsewhere["access_token"].as_str().expect("access"),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    post_anonymous(
        &app,
        "/api/v1/auth/login",
        &json!({ "email": "pw@example.com", "password": PASSWORD }),
        "req-old",
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let fresh = post_anonymous(
        &app,
        "/api/v1/auth/login",
        &json!({ "email": "pw@example.com", "password": "a brand new password" }),
        "req-new",
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    app.stop().await;
}

#[tokio::test]
async fn deactivation_revokes_the_users_sessions() {
    let app = spawn_app().await;
    let id = user(&app, "out@example.com", "viewer").await;
    login(&app, "out@example.com").await;
    login(&app, "out@example.com").await;
    let deactivated = app
        .send_json(
            "POST",
            &format!("/api/v1/users/{id}/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK);
    let reasons: Vec<String> = sqlx::query_scalar(
        "select coalesce(revoked_reason, 'open') from sessions where user_id = $1::uuid",
    )
    .bind(&id)
    .fetch_all(&app.app.state().pool)
    .await
    .expect("sessions");
    assert_eq!(reasons, ["user_deactivated", "user_deactivated"]);
    app.stop().await;
}

/// A login's success and its session are one append: never one recorded
/// without the other.
#[tokio::test]
async fn each_login_and_its_session_are_recorded_in_one_transaction() {
    let app = spawn_app().await;
    user(&app, "atomic@example.com", "viewer").await;
    login(&app, "atomic@example.com").await;
    login(&app, "atomic@example.com").await;
    let recorded = app
        .transactions_of(&["LoginSucceeded", "SessionStarted"])
        .await;
    assert!(recorded.len() >= 4, "{recorded:?}");
    for pair in recorded.chunks(2) {
        let [(first, first_tx), (second, second_tx)] = pair else {
            panic!("a login without its session: {recorded:?}");
        };
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("LoginSucceeded", "SessionStarted")
        );
        assert_eq!(first_tx, second_tx, "{recorded:?}");
    }
    let transactions: std::collections::HashSet<i64> = recorded.iter().map(|(_, tx)| *tx).collect();
    assert_eq!(transactions.len() * 2, recorded.len(), "one per login");
    app.stop().await;
}

#[tokio::test]
async fn every_auth_event_carries_ip_user_agent_and_request_id() {
    let app = spawn_app().await;
    user(&app, "trail@example.com", "viewer").await;
    let pair = login(&app, "trail@example.com").await;
    let rotated = refresh(&app, pair["refresh_token"].as_str().expect("refresh")).await;
    let token = rotated.json()["data"]["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    post_anonymous(
        &app,
        "/api/v1/auth/logout",
        &json!({ "refresh_token": token }),
        "req-logout",
    )
    .await;
    let audit = app.get("/api/v1/audit?limit=100", true).await.json();
    let entries: Vec<&Value> = audit["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|entry| entry["user_agent"] == "auth-tests/1.0")
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .rev()
        .map(|entry| entry["event_type"].as_str().expect("event type"))
        .collect();
    assert_eq!(
        actions,
        [
            "auth.login_succeeded",
            "session.started",
            "session.refresh_rotated",
            "session.revoked"
        ]
    );
    for entry in entries {
        assert_eq!(entry["source_ip"], "203.0.113.9", "{entry}");
        assert!(
            entry["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("req-")),
            "{entry}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn after_logout_the_access_token_is_refused_on_every_instance() {
    // Two instances on one database, sharing the token key file, as
    // replicas do.
    let keys =
        std::env::temp_dir().join(format!("sentryops-replicas-{}.json", uuid::Uuid::new_v4()));
    // Cache entries outlive the test: only an invalidation can make the
    // second instance refuse in time.
    let long_ttl = std::time::Duration::from_secs(600);
    let first = crate::helpers::spawn_app_with(|config| {
        config.token_keys_file = Some(keys.clone());
        config.auth_cache_ttl = long_ttl;
    })
    .await;
    let shared_database = first.database_url.clone();
    let shared_prefix = first.app.state().config.redis_key_prefix.clone();
    let second = crate::helpers::spawn_app_on(&shared_database, |config| {
        config.token_keys_file = Some(keys.clone());
        config.redis_key_prefix = shared_prefix;
        config.auth_cache_ttl = long_ttl;
    })
    .await;
    user(&first, "two@example.com", "viewer").await;
    let pair = login(&first, "two@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    for instance in [&first, &second] {
        assert_eq!(
            get_with(instance, "/api/v1/auth/me", access).await.status,
            StatusCode::OK
        );
    }
    post_anonymous(
        &first,
        "/api/v1/auth/logout",
        &json!({ "refresh_token": pair["refresh_token"] }),
        "req-two",
    )
    .await;
    get_with(&first, "/api/v1/auth/me", access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The second instance hears of it over Redis: refused within 1 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let status = get_with(&second, "/api/v1/auth/me", access).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    second.stop().await;
    first.stop().await;
    std::fs::remove_file(&keys).expect("cleanup");
}

#[tokio::test]
async fn without_redis_a_replica_refuses_a_revoked_session_once_its_cache_entry_expires() {
    let keys =
        std::env::temp_dir().join(format!("sentryops-no-redis-{}.json", uuid::Uuid::new_v4()));
    let first =
        crate::helpers::spawn_app_with(|config| config.token_keys_file = Some(keys.clone())).await;
    let ttl = std::time::Duration::from_millis(800);
    let second = crate::helpers::spawn_app_on(&first.database_url, |config| {
        config.token_keys_file = Some(keys.clone());
        // Nothing listens there: no invalidation can arrive.
        config.redis_url = Some(sentryops::config::Secret::new("redis://127.0.0.1:1"));
        config.auth_cache_ttl = ttl;
    })
    .await;
    user(&first, "lonely@example.com", "viewer").await;
    let pair = login(&first, "lonely@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    assert_eq!(
        get_with(&second, "/api/v1/auth/me", access).await.status,
        StatusCode::OK
    );
    let logged_out = std::time::Instant::now();
    post_anonymous(
        &first,
        "/api/v1/auth/logout",
        &json!({ "refresh_token": pair["refresh_token"] }),
        "req-lonely",
    )
    .await;
    get_with(&first, "/api/v1/auth/me", access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The TTL bounds the staleness: refused at the latest once it passed.
    let bound = ttl + std::time::Duration::from_millis(500);
    loop {
        let status = get_with(&second, "/api/v1/auth/me", access).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            logged_out.elapsed() < bound,
            "still accepted {:?} after logout (cache TTL {ttl:?})",
            logged_out.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    second.stop().await;
    first.stop().await;
    std::fs::remove_file(&keys).expect("cleanup");
}

#[tokio::test]
async fn a_role_change_applies_to_the_very_next_request() {
    let app = spawn_app().await;
    let id = user(&app, "promoted@example.com", "viewer").await;
    let pair = login(&app, "promoted@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    get_with(&app, "/api/v1/users", access)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let promoted = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}/role"),
            &json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text);
    assert_eq!(
        get_with(&app, "/api/v1/users", access).await.status,
        StatusCode::OK
    );
    let demoted = app
        .send_json(
            "PATCH",
            &format!("/api/v1/users/{id}/role"),
            &json!({ "role": "viewer" }),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.text);
    get_with(&app, "/api/v1/users", access)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_logins_of_one_account_all_succeed() {
    let app = spawn_app().await;
    user(&app, "busy@example.com", "viewer").await;
    let attempts = (0..8).map(|n| {
        let app = &app;
        async move {
            let good = post_anonymous(
                app,
                "/api/v1/auth/login",
                &json!({ "email": "busy@example.com", "password": PASSWORD }),
                &format!("req-good-{n}"),
            )
            .await;
            let bad = post_anonymous(
                app,
                "/api/v1/auth/login",
                &json!({ "email": "busy@example.com", "password": "wrong password" }),
                &format!("req-bad-{n}"),
            )
            .await;
            (good.status, bad.status)
        }
    });
    for (good, bad) in futures_util::future::join_all(attempts).await {
        assert_eq!(good, StatusCode::OK, "a good login of a busy account");
        assert_eq!(
            bad,
            StatusCode::UNAUTHORIZED,
            "a bad login of a busy account"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_queue_is_shed_with_503_and_retry_after() {
    // One hashing thread, no queue, and hashes slow enough to overlap.
    let app = crate::helpers::spawn_app_with(|config| {
        config.password_hashing.memory_kib = 32 * 1024;
        config.password_hashing.iterations = 4;
        config.password_hashing.max_concurrent = 1;
        config.password_hashing.max_queued = 0;
    })
    .await;
    user(&app, "crowd@example.com", "viewer").await;
    let attempts = (0..6).map(|n| {
        let app = &app;
        async move {
            post_anonymous(
                app,
                "/api/v1/auth/login",
                &json!({ "email": "crowd@example.com", "password": PASSWORD }),
                &format!("req-crowd-{n}"),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let shed: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        answers.iter().any(|answer| answer.status == StatusCode::OK),
        "someone gets in"
    );
    assert!(!shed.is_empty(), "the overflow is shed");
    for answer in shed {
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    // Once the crowd is gone, logins are admitted again.
    login(&app, "crowd@example.com").await;
    app.stop().await;
}

#[tokio::test]
async fn an_access_token_accepted_before_is_refused_once_it_expires() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.access_token_ttl = std::time::Duration::from_secs(2);
    })
    .await;
    user(&app, "brief@example.com", "viewer").await;
    let pair = login(&app, "brief@example.com").await;
    let access = pair["access_token"].as_str().expect("access");
    // Verified once: from now on it is served from the verified-token cache.
    assert_eq!(
        get_with(&app, "/api/v1/auth/me", access).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    get_with(&app, "/api/v1/auth/me", access)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.stop().await;
}
