//! The API test harness: a fresh database per test, the real service built
//! on it (migrations, projections), and requests sent through the router
//! without a socket.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use sentryops::config::{BootstrapAdmin, Config, Secret};
use sentryops::startup::Application;
use serde_json::Value;
use tower::ServiceExt;

/// The bootstrap admin every test app creates at start.
pub const ADMIN_EMAIL: &str = "admin@tests.example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap admin password";

/// A running service on its own database.
pub struct TestApp {
    /// An access token of the bootstrap admin.
    pub admin_token: String,
    pub app: Application,
    pub router: Router,
    pub database_url: String,
}

/// What a request answered.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub bytes: Vec<u8>,
}

impl TestResponse {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the error envelope of API.md with `status` and `code`.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        let body = self.json();
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["data"], Value::Null, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(body["error"].get("details").is_some(), "{body}");
        let request_id = body["meta"]["request_id"]
            .as_str()
            .expect("request_id in meta");
        assert_eq!(Some(request_id), self.header("x-request-id"));
        body
    }
}

/// Builds the service on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Builds the service on a fresh database with an adjusted configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database_url = sentryops_projections::testing::create_database().await;
    spawn_on(database_url, adjust).await
}

/// Another instance on the database of a first one (a replica).
pub async fn spawn_app_on(database_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_on(database_url.to_string(), adjust).await
}

async fn spawn_on(database_url: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::for_tests(&database_url);
    config.bootstrap_admin = Some(BootstrapAdmin {
        email: ADMIN_EMAIL.into(),
        password: Secret::new(ADMIN_PASSWORD),
    });
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .expect("the service builds");
    let router = sentryops::http::router(app.state().clone());
    let login = router
        .clone()
        .oneshot(
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })
                        .to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let body = axum::body::to_bytes(login.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&body).expect("login answers JSON");
    let admin_token = body["data"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the bootstrap admin logs in: {body}"))
        .to_string();
    TestApp {
        admin_token,
        app,
        router,
        database_url,
    }
}

impl TestApp {
    /// Sends a request through the full middleware stack.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .expect("body");
        TestResponse {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    /// `GET path`, with the admin token when `authorized`.
    pub async fn get(&self, path: &str, authorized: bool) -> TestResponse {
        let mut request = Request::get(path);
        if authorized {
            request = request.header("authorization", format!("Bearer {}", self.admin_token));
        }
        self.send(request.body(Body::empty()).expect("request"))
            .await
    }

    /// `POST path` with a JSON body and the admin token.
    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.send(
            Request::post(path)
                .header("authorization", format!("Bearer {}", self.admin_token))
                .header("content-type", "application/json")
                .header("user-agent", "sentryops-tests/1.0")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// Creates a user through the API.
    pub async fn create_user(&self, email: &str, role: &str) -> TestResponse {
        self.post_json(
            "/api/v1/users",
            &serde_json::json!({
                "email": email,
                "full_name": "Test User",
                "password": "correct horse battery",
                "role": role,
            }),
        )
        .await
    }

    /// Creates a user through the API (asserting the 201) and returns its id.
    pub async fn created_user_id(&self, email: &str, role: &str) -> String {
        let created = self.create_user(email, role).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.json()["data"]["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Stops the projections.
    pub async fn stop(self) {
        self.app.state().runtime.stop().await;
    }
}

impl TestApp {
    /// A request with a JSON body and the admin token.
    pub async fn send_json(&self, method: &str, path: &str, body: &Value) -> TestResponse {
        self.send(
            Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {}", self.admin_token))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }
}

impl TestApp {
    /// The event type and transaction of each event of `event_types`, in
    /// log order.
    pub async fn transactions_of(&self, event_types: &[&str]) -> Vec<(String, i64)> {
        sqlx::query_as(
            "select event_type, transaction_id::text::bigint from events \
             where event_type = any($1) order by transaction_id, global_position",
        )
        .bind(event_types)
        .fetch_all(&self.app.state().pool)
        .await
        .expect("events")
    }

    /// How many events the log holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&self.app.state().pool)
            .await
            .expect("count")
    }
}

/// A caller of the API: a user of some role with a fresh access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub token: String,
}

impl TestApp {
    /// Creates a user with `role` (a fresh email each time) and logs in.
    pub async fn caller(&self, role: &str) -> Caller {
        let email = format!("{role}-{}@tests.example.com", uuid::Uuid::new_v4().simple());
        let user_id = self.created_user_id(&email, role).await;
        let login = self
            .send(
                Request::post("/api/v1/auth/login")
                    .header("content-type", "application/json")
                    .body(Body::from(
                        serde_json::json!({ "email": email, "password": "correct horse battery" })
                            .to_string(),
                    ))
                    .expect("request"),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        let token = login.json()["data"]["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        Caller { user_id, token }
    }

    /// `method path` as `caller`, with an optional JSON body and extra
    /// headers.
    pub async fn call(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", caller.token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("request")).await
    }
}
