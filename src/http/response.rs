//! The success envelope of API.md and the `X-Event-Position` header.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sentryops_projections::LogPosition;
use serde::Serialize;
use serde_json::Value;

/// Header naming the global position of the last event a mutation appended.
pub static X_EVENT_POSITION: HeaderName = HeaderName::from_static("x-event-position");

/// `{"success": true, "data": …, "error": null, "meta": …}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    success: bool,
    data: T,
    error: Option<()>,
    meta: Option<Value>,
}

/// The success envelope around `data`, serialized: what a cache of
/// answers keeps.
pub fn envelope_bytes<T: Serialize>(data: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Envelope {
        success: true,
        data,
        error: None,
        meta: None,
    })
}

/// A success answer: status, data, optional meta and event position.
pub struct Answer<T> {
    status: StatusCode,
    envelope: Envelope<T>,
    position: Option<LogPosition>,
}

impl<T: Serialize> Answer<T> {
    /// 200 with `data`.
    pub fn ok(data: T) -> Self {
        Self {
            status: StatusCode::OK,
            envelope: Envelope {
                success: true,
                data,
                error: None,
                meta: None,
            },
            position: None,
        }
    }

    /// 201 with `data`, created by the events ending at `position`.
    pub fn created(data: T, position: Option<LogPosition>) -> Self {
        let mut answer = Self::ok(data);
        answer.status = StatusCode::CREATED;
        answer.position = position;
        answer
    }

    /// Names the position of the last event the request appended (a
    /// mutation that changed nothing appends none and sends no header).
    pub fn with_position(mut self, position: Option<LogPosition>) -> Self {
        self.position = position;
        self
    }

    /// Adds `meta`.
    pub fn with_meta(mut self, meta: Value) -> Self {
        self.envelope.meta = Some(meta);
        self
    }
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.envelope)).into_response();
        if let Some(position) = self.position {
            response.headers_mut().insert(
                X_EVENT_POSITION.clone(),
                HeaderValue::from(position.position),
            );
        }
        response
    }
}

/// A list page: `{"items", "total", "limit", "offset"}`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}
