//! No password, hash or token ever reaches a log line (SPEC section 2):
//! the logs of a whole identity flow, at debug level, are captured and
//! searched. Its own test binary, since it installs the global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops::startup::Application;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN_EMAIL: &str = "admin@logs.example.com";
const ADMIN_PASSWORD: &str = "admin-Secret-passphrase-555";
const PASSWORD: &str = "first-Secret-passphrase-771";
const NEW_PASSWORD: &str = "second-Secret-passphrase-993";
const WRONG_PASSWORD: &str = "wrong-Secret-passphrase-404";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let database_url = sentryops_projections::testing::create_database().await;
    let mut config = Config::for_tests(&database_url);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: ADMIN_EMAIL.into(),
        password: Secret::new(ADMIN_PASSWORD),
    });
    let _telemetry = sentryops::telemetry::init_with_writer(&config, "debug", move || sink.clone())
        .expect("telemetry");
    let app = Application::build(config).await.expect("builds");
    let router = sentryops::http::router(app.state().clone());

    let admin = call(
        &router,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }),
    )
    .await;
    let admin_token = admin["data"]["access_token"]
        .as_str()
        .expect("admin token")
        .to_string();
    let created = call(
        &router,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        json!({ "email": "logs@example.com", "full_name": "Log Test", "password": PASSWORD }),
    )
    .await;
    assert_eq!(created["success"], true, "{created}");
    call(
        &router,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({ "email": "logs@example.com", "password": WRONG_PASSWORD }),
    )
    .await;
    call(
        &router,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({ "email": "nobody@example.com", "password": WRONG_PASSWORD }),
    )
    .await;
    let login = call(
        &router,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({ "email": "logs@example.com", "password": PASSWORD }),
    )
    .await;
    let access = login["data"]["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let first_refresh = login["data"]["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let rotated = call(
        &router,
        "POST",
        "/api/v1/auth/refresh",
        None,
        json!({ "refresh_token": first_refresh }),
    )
    .await;
    let second_refresh = rotated["data"]["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let second_access = rotated["data"]["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    call(
        &router,
        "GET",
        "/api/v1/auth/me",
        Some(&second_access),
        Value::Null,
    )
    .await;
    call(
        &router,
        "POST",
        "/api/v1/users/me/password",
        Some(&second_access),
        json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
    )
    .await;
    // Reuse of a consumed token, then logout with garbage and with the real one.
    call(
        &router,
        "POST",
        "/api/v1/auth/refresh",
        None,
        json!({ "refresh_token": first_refresh }),
    )
    .await;
    call(
        &router,
        "POST",
        "/api/v1/auth/logout",
        None,
        json!({ "refresh_token": "garbage" }),
    )
    .await;
    call(
        &router,
        "POST",
        "/api/v1/auth/logout",
        None,
        json!({ "refresh_token": second_refresh }),
    )
    .await;
    call(
        &router,
        "GET",
        "/api/v1/auth/me",
        Some("v4.public.not-a-token"),
        Value::Null,
    )
    .await;

    let hashes: Vec<String> = sqlx::query_scalar(
        "select payload #>> '{UserRegistered,password_hash}' from events where event_type = 'UserRegistered' \
         union all select payload #>> '{PasswordChanged,password_hash}' from events where event_type = 'PasswordChanged'",
    )
    .fetch_all(&app.state().pool)
    .await
    .expect("hashes");
    assert_eq!(hashes.len(), 3);
    app.state().runtime.stop().await;

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logs.contains("took projection leadership"),
        "the capture works"
    );
    assert!(
        logs.lines().count() > 20,
        "debug logs were captured: {}",
        logs.lines().count()
    );
    let mut secrets = vec![
        ("password", PASSWORD.to_string()),
        ("new password", NEW_PASSWORD.to_string()),
        ("wrong password", WRONG_PASSWORD.to_string()),
        ("admin password", ADMIN_PASSWORD.to_string()),
        ("admin token", admin_token),
        ("access token", access),
        ("second access token", second_access),
        ("refresh token", first_refresh),
        ("second refresh token", second_refresh),
    ];
    secrets.extend(hashes.into_iter().map(|hash| ("password hash", hash)));
    for (what, secret) in secrets {
        // The distinctive middle of the secret, so a truncated copy counts too.
        let probe = &secret[secret.len() / 4..secret.len() * 3 / 4];
        assert!(!logs.contains(probe), "a {what} appears in the logs");
    }
}
