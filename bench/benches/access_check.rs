//! The per-request cost of authentication (issue 3 target: under 50 µs):
//! PASETO v4.public verification of the access token plus the revocation
//! check (session open, user active, role), as the `Authenticated`
//! extractor does it. Also, for comparison in the same run: verification
//! alone, and the check on a cache miss (one read-model query).
//!
//! `cargo bench -p sentryops-bench --bench access_check`
//! (needs PostgreSQL and Redis as for the tests).

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{header, Request};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sentryops::auth::access::AccessKey;
use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops::http::extract::Authenticated;
use sentryops::startup::Application;
use tower::ServiceExt;

const EMAIL: &str = "bench-admin@bench.example.com";
const PASSWORD: &str = "bench admin password";

fn parts(token: &str) -> axum::http::request::Parts {
    Request::get("/api/v1/auth/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .expect("request")
        .into_parts()
        .0
}

async fn set_up() -> (Application, String) {
    let (url, pool) = sentryops_bench::fresh_database("access_check", 2)
        .await
        .expect("bench database");
    pool.close().await;
    let mut config = Config::for_tests(&url);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: EMAIL.into(),
        password: Secret::new(PASSWORD),
    });
    let app = Application::build(config).await.expect("service");
    let login = sentryops::http::router(app.state().clone())
        .oneshot(
            Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({ "email": EMAIL, "password": PASSWORD }).to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let body = axum::body::to_bytes(login.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let token = body["data"]["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    (app, token)
}

fn access_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (app, token) = runtime.block_on(set_up());
    let state = app.state().clone();
    let mut group = c.benchmark_group("authentication");
    group.bench_function("verify token signature only (uncached)", |b| {
        b.iter(|| {
            state
                .keyring
                .current()
                .verify_access(&token)
                .expect("valid")
        })
    });
    group.bench_function("verify + revocation check (cached)", |b| {
        b.to_async(&runtime).iter_batched(
            || parts(&token),
            |mut parts| {
                let state = state.clone();
                async move {
                    Authenticated::from_request_parts(&mut parts, &state)
                        .await
                        .expect("authenticated")
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify + revocation check (both caches cold)", |b| {
        b.to_async(&runtime).iter_batched(
            || parts(&token),
            |mut parts| {
                let state = state.clone();
                async move {
                    state.access.invalidate_locally(&[AccessKey::All]).await;
                    state.keyring.forget_verified();
                    Authenticated::from_request_parts(&mut parts, &state)
                        .await
                        .expect("authenticated")
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    runtime.block_on(async {
        drop(app);
        sentryops_bench::drop_database("access_check")
            .await
            .expect("drop");
    });
}

criterion_group!(benches, access_check);
criterion_main!(benches);
