//! OTLP export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans reach an
//! OTLP/HTTP collector (a local fake speaking the protocol's HTTP surface).
//! Its own test binary, since it installs the global subscriber.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use sentryops::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http() {
    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let collector = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                sink.lock().expect("lock").push((content_type, body.len()));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let mut config = Config::for_tests("postgres://unused@127.0.0.1/unused");
    config.otlp_endpoint = Some(format!("http://{address}"));
    let guard = sentryops::telemetry::init(&config, "info").expect("telemetry initializes");
    tracing::info_span!("otlp.probe", probe = 1)
        .in_scope(|| tracing::info!("inside the probe span"));
    // Dropping the guard flushes the batch exporter (blocking HTTP).
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .expect("flush");

    let received = received.lock().expect("lock").clone();
    assert!(!received.is_empty(), "no export reached the collector");
    assert!(
        received
            .iter()
            .all(|(content_type, size)| content_type == "application/x-protobuf" && *size > 0),
        "{received:?}"
    );
}
