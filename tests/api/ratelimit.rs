//! Rate limits on login and refresh: shared through Redis across
//! instances, per process while Redis is down, shared again when it is back
//! (DESIGN D6). The outage test runs a private redis-server it can stop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sentryops::config::Secret;
use serde_json::json;

use crate::helpers::{spawn_app_with, TestApp, TestResponse};

async fn attempt(app: &TestApp, email: &str) -> TestResponse {
    attempt_from(app, email, [192, 0, 2, 1]).await
}

/// A failed login from the client address `ip`.
async fn attempt_from(app: &TestApp, email: &str, ip: [u8; 4]) -> TestResponse {
    let mut request = Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "email": email, "password": "wrong password" }).to_string(),
        ))
        .expect("request");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            ip, 40000,
        ))));
    app.send(request).await
}

fn assert_limited(response: &TestResponse, limit: u32) {
    response.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        response.header("ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
    assert_eq!(response.header("ratelimit-remaining"), Some("0"));
    assert!(response.header("ratelimit-reset").is_some());
}

#[tokio::test]
async fn logins_are_limited_per_account_and_shared_between_instances() {
    let prefix = format!("sentryops-test-{}", uuid::Uuid::new_v4().simple());
    let shared = |config: &mut sentryops::config::Config| {
        config.auth_rate_limit_per_minute = 3;
        config.redis_key_prefix = prefix.clone();
    };
    let first = spawn_app_with(shared).await;
    let second = spawn_app_with(shared).await;
    // Three attempts in all, over two instances: the fourth is refused.
    assert_eq!(
        attempt(&first, "target@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt(&second, "target@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt(&first, "target@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_limited(&attempt(&second, "target@example.com").await, 3);
    first.stop().await;
    second.stop().await;
}

struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        Self { port, child }
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("private redis-server did not start");
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

#[tokio::test]
async fn with_redis_down_logins_answer_and_limits_hold_per_process_then_shared_again() {
    let port = free_port();
    let redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let prefix = format!("sentryops-test-{}", uuid::Uuid::new_v4().simple());
    let configure = |config: &mut sentryops::config::Config| {
        config.auth_rate_limit_per_minute = 3;
        config.redis_key_prefix = prefix.clone();
        config.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{port}")));
    };
    let first = spawn_app_with(configure).await;
    let second = spawn_app_with(configure).await;
    assert_eq!(
        attempt(&first, "a@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Redis stops: logins still answer, and each process limits on its own.
    redis.stop();
    for _ in 0..3 {
        assert_eq!(
            attempt(&first, "b@example.com").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(&attempt(&first, "b@example.com").await, 3);
    // The other process has its own count while Redis is away.
    assert_eq!(
        attempt(&second, "b@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Redis returns: the count is shared again across both instances.
    let redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let mut shared = false;
    for round in 0..100u8 {
        // A fresh account and client address each round, so only a count
        // shared between the instances can refuse the fourth attempt.
        let account = format!("c-{}@example.com", uuid::Uuid::new_v4().simple());
        let ip = [198, 51, 100, round];
        let statuses = [
            attempt_from(&first, &account, ip).await.status,
            attempt_from(&second, &account, ip).await.status,
            attempt_from(&first, &account, ip).await.status,
            attempt_from(&second, &account, ip).await.status,
        ];
        if statuses[..3].iter().all(|s| *s == StatusCode::UNAUTHORIZED)
            && statuses[3] == StatusCode::TOO_MANY_REQUESTS
        {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shared, "limits are shared again once Redis is back");
    redis.stop();
    first.stop().await;
    second.stop().await;
}
