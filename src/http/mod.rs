//! The REST API: shared state, the route table and the middleware stack.
//!
//! One module per resource; each exposes handlers whose signatures state
//! their authentication floor through an extractor.

pub mod audit;
pub mod auth;
pub mod cmdb;
pub mod compliance;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod projections;
pub mod rejection;
pub mod response;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use sentryops_projections::{LogPosition, ProjectionRuntime};
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::domain::Commands;
use crate::password::Passwords;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateInner>,
}

/// The shared parts of [`AppState`].
pub struct AppStateInner {
    pub config: Config,
    pub pool: PgPool,
    pub commands: Commands,
    pub runtime: ProjectionRuntime,
    pub passwords: Passwords,
    pub keyring: crate::auth::SharedKeyring,
    /// A hash of a random password with the configured parameters: logins
    /// for unknown emails verify against it, so they take as long as others.
    pub dummy_hash: String,
    pub limiter: std::sync::Arc<crate::ratelimit::RateLimiter>,
    /// The cached access check of every authenticated request.
    pub access: crate::auth::access::AccessCache,
    /// The cached current views of assets.
    pub asset_views: cmdb::cache::AssetViewCache,
    /// The compliance rules in force.
    pub rules: crate::compliance::RuleSet,
    /// The public key checkpoints are verified with (from the seal key).
    pub seal_verifier: Option<sentryops_projections::seal::checkpoint::SealVerifier>,
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Read-your-writes (DESIGN D4): waits, bounded, until every read model
    /// has passed `position`. On timeout the answer goes out anyway and the
    /// lag is logged; the client may briefly read stale data.
    pub async fn await_read_models(&self, position: LogPosition) -> bool {
        let caught_up = self
            .runtime
            .wait_for(position, self.config.read_your_writes_timeout)
            .await;
        if !caught_up {
            tracing::warn!(
                position = position.position,
                "read models lag behind a command"
            );
        }
        caught_up
    }

    /// Read-your-writes for a change of who may do what (a revoked session,
    /// a deactivated user, a new role): waits for the read models, then
    /// drops the cached access check here and on every replica, so the very
    /// next request sees the change.
    pub async fn settle_access_change(
        &self,
        position: Option<LogPosition>,
        key: crate::auth::access::AccessKey,
    ) {
        if let Some(position) = position {
            self.await_read_models(position).await;
            self.access.invalidate(&[key]).await;
        }
    }
}

/// Who may call a route (SPEC section 1). The handler's extractor enforces
/// it; [`ROUTE_FLOORS`] states it for every route in one table, which the
/// route × role test walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// No authentication.
    Public,
    /// Any authenticated caller: viewer, operator, admin, auditor.
    Any,
    /// Operators and admins (`op` in API.md).
    Operator,
    /// Admins only.
    Admin,
    /// Auditors and admins (reading the raw log, verifying runs).
    Auditor,
}

/// Every route with its floor: `(method, path, floor)`.
pub const ROUTE_FLOORS: &[(&str, &str, Floor)] = &[
    ("GET", "/health", Floor::Public),
    ("GET", "/ready", Floor::Public),
    ("GET", "/api/v1/auth/keys", Floor::Public),
    ("POST", "/api/v1/auth/login", Floor::Public),
    ("POST", "/api/v1/auth/refresh", Floor::Public),
    ("POST", "/api/v1/auth/logout", Floor::Public),
    ("GET", "/api/v1/auth/me", Floor::Any),
    ("GET", "/api/v1/auth/sessions", Floor::Any),
    ("POST", "/api/v1/auth/sessions/revoke-all", Floor::Any),
    ("POST", "/api/v1/users/me/password", Floor::Any),
    ("GET", "/api/v1/audit", Floor::Any),
    ("GET", "/api/v1/audit/{entity_type}/{entity_id}", Floor::Any),
    ("GET", "/api/v1/events", Floor::Auditor),
    ("GET", "/api/v1/audit/verify", Floor::Auditor),
    ("GET", "/api/v1/users", Floor::Admin),
    ("POST", "/api/v1/users", Floor::Admin),
    ("GET", "/api/v1/users/{id}", Floor::Admin),
    ("PATCH", "/api/v1/users/{id}", Floor::Admin),
    ("PATCH", "/api/v1/users/{id}/role", Floor::Admin),
    ("POST", "/api/v1/users/{id}/deactivate", Floor::Admin),
    ("GET", "/api/v1/projections", Floor::Admin),
    ("GET", "/api/v1/assets", Floor::Any),
    ("POST", "/api/v1/assets", Floor::Operator),
    ("GET", "/api/v1/assets/export", Floor::Any),
    ("POST", "/api/v1/assets/import", Floor::Operator),
    ("GET", "/api/v1/assets/{id}", Floor::Any),
    ("PATCH", "/api/v1/assets/{id}", Floor::Operator),
    ("DELETE", "/api/v1/assets/{id}", Floor::Admin),
    ("POST", "/api/v1/assets/{id}/state", Floor::Operator),
    ("GET", "/api/v1/assets/{id}/history", Floor::Any),
    ("GET", "/api/v1/assets/{id}/qr.png", Floor::Any),
    ("GET", "/api/v1/assets/{id}/qr.svg", Floor::Any),
    ("GET", "/api/v1/tags", Floor::Any),
    ("POST", "/api/v1/tags", Floor::Operator),
    ("DELETE", "/api/v1/tags/{id}", Floor::Operator),
    (
        "POST",
        "/api/v1/tags/{tag_id}/assets/{asset_id}",
        Floor::Operator,
    ),
    (
        "DELETE",
        "/api/v1/tags/{tag_id}/assets/{asset_id}",
        Floor::Operator,
    ),
    ("POST", "/api/v1/dependencies", Floor::Operator),
    ("DELETE", "/api/v1/dependencies/{id}", Floor::Operator),
    (
        "GET",
        "/api/v1/dependencies/upstream/{asset_id}",
        Floor::Any,
    ),
    (
        "GET",
        "/api/v1/dependencies/downstream/{asset_id}",
        Floor::Any,
    ),
    ("GET", "/api/v1/dependencies/graph/{asset_id}", Floor::Any),
    (
        "POST",
        "/api/v1/checkouts/{asset_id}/check-out",
        Floor::Operator,
    ),
    (
        "POST",
        "/api/v1/checkouts/{asset_id}/check-in",
        Floor::Operator,
    ),
    ("GET", "/api/v1/checkouts/{asset_id}/holder", Floor::Any),
    ("GET", "/api/v1/checkouts/{asset_id}/history", Floor::Any),
    ("GET", "/api/v1/compliance/rules", Floor::Any),
    ("POST", "/api/v1/compliance/runs", Floor::Operator),
    ("GET", "/api/v1/compliance/runs", Floor::Any),
    ("GET", "/api/v1/compliance/runs/latest", Floor::Any),
    (
        "POST",
        "/api/v1/compliance/runs/{id}/verify",
        Floor::Auditor,
    ),
    ("GET", "/api/v1/compliance/score", Floor::Any),
    ("GET", "/api/v1/compliance/drift", Floor::Any),
    ("GET", "/api/v1/compliance/newly-failing", Floor::Any),
    (
        "GET",
        "/api/v1/compliance/assets/{asset_id}/results",
        Floor::Any,
    ),
    ("GET", "/api/v1/compliance/report", Floor::Any),
];

/// The API routes, without middleware.
fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/v1/audit", get(audit::list_all))
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/audit/verify", get(events::verify))
        .route(
            "/api/v1/audit/{entity_type}/{entity_id}",
            get(audit::list_entity),
        )
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{id}", get(users::get).patch(users::update))
        .route("/api/v1/users/{id}/role", patch(users::change_role))
        .route("/api/v1/users/{id}/deactivate", post(users::deactivate))
        .route("/api/v1/projections", get(projections::list))
        .route("/api/v1/auth/keys", get(auth::keys))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/sessions", get(auth::sessions))
        .route("/api/v1/auth/sessions/revoke-all", post(auth::revoke_all))
        .route("/api/v1/users/me/password", post(auth::change_password))
        .merge(cmdb_routes())
        .merge(compliance_routes())
}

/// The compliance routes (API.md "Compliance").
fn compliance_routes() -> Router<AppState> {
    use compliance as c;
    Router::new()
        .route("/api/v1/compliance/rules", get(c::rules))
        .route(
            "/api/v1/compliance/runs",
            get(c::list_runs).post(c::start_run),
        )
        .route("/api/v1/compliance/runs/latest", get(c::latest_run))
        .route("/api/v1/compliance/runs/{id}/verify", post(c::verify))
        .route("/api/v1/compliance/score", get(c::score))
        .route("/api/v1/compliance/drift", get(c::drift))
        .route("/api/v1/compliance/newly-failing", get(c::newly_failing))
        .route(
            "/api/v1/compliance/assets/{asset_id}/results",
            get(c::asset_results),
        )
        .route("/api/v1/compliance/report", get(c::report))
}

/// The CMDB routes (API.md "CMDB").
fn cmdb_routes() -> Router<AppState> {
    use cmdb::{assets, checkouts, dependencies, tags, transfer};
    Router::new()
        .route("/api/v1/assets", get(assets::list).post(assets::create))
        .route("/api/v1/assets/export", get(transfer::export))
        .route(
            "/api/v1/assets/import",
            post(transfer::import).layer(DefaultBodyLimit::max(transfer::IMPORT_MAX_BYTES)),
        )
        .route(
            "/api/v1/assets/{id}",
            get(assets::get)
                .patch(assets::update)
                .delete(assets::delete),
        )
        .route("/api/v1/assets/{id}/state", post(assets::change_state))
        .route("/api/v1/assets/{id}/history", get(assets::history))
        .route("/api/v1/assets/{id}/qr.png", get(transfer::qr_png))
        .route("/api/v1/assets/{id}/qr.svg", get(transfer::qr_svg))
        .route("/api/v1/tags", get(tags::list).post(tags::create))
        .route("/api/v1/tags/{id}", delete(tags::delete))
        .route(
            "/api/v1/tags/{tag_id}/assets/{asset_id}",
            post(tags::attach).delete(tags::detach),
        )
        .route("/api/v1/dependencies", post(dependencies::create))
        .route("/api/v1/dependencies/{id}", delete(dependencies::delete))
        .route(
            "/api/v1/dependencies/upstream/{asset_id}",
            get(dependencies::upstream),
        )
        .route(
            "/api/v1/dependencies/downstream/{asset_id}",
            get(dependencies::downstream),
        )
        .route(
            "/api/v1/dependencies/graph/{asset_id}",
            get(dependencies::graph),
        )
        .route(
            "/api/v1/checkouts/{asset_id}/check-out",
            post(checkouts::check_out),
        )
        .route(
            "/api/v1/checkouts/{asset_id}/check-in",
            post(checkouts::check_in),
        )
        .route(
            "/api/v1/checkouts/{asset_id}/holder",
            get(checkouts::holder),
        )
        .route(
            "/api/v1/checkouts/{asset_id}/history",
            get(checkouts::history),
        )
}

/// The full application: routes plus the middleware stack, outermost first:
/// request id, tracing, security headers, CORS, the error envelope, panic
/// catching, timeout, body limit.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    let request_id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "http.request",
            http.method = %request.method(),
            http.path = %request.uri().path(),
            request_id = %request_id,
        )
    });
    let mut security_headers = vec![
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
        ),
    ];
    // Nothing the API answers may be kept by a browser or a proxy: token
    // pairs, secrets, and every authenticated view. A route that wants
    // caching sets its own header, which these leave alone.
    let no_store = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ];
    if config.production {
        security_headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    let origins: Vec<HeaderValue> = config
        .cors_allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            request_id.clone(),
        ])
        .expose_headers([
            header::ETAG,
            request_id.clone(),
            HeaderName::from_static("x-event-position"),
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(Duration::from_secs(600));

    let mut app = routes()
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(axum::middleware::from_fn(rejection::refuse_unsafe_text))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(error::render_error_envelope))
        .layer(cors);
    for (name, value) in security_headers {
        app = app.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    for (name, value) in no_store {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    app.layer(trace)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
