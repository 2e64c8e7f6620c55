//! The one mapping from errors to HTTP responses, in each API's shape
//! (docs/API.md section 7), with the logging.

use serde_json::{json, Value};
use worker::Response;

use crate::config::ConfigError;
use crate::core::Error as ClientError;
use crate::identity::StoreError;

/// The rate limiters' period (`edge::limits`), in seconds: what a refused
/// client waits.
pub const RETRY_AFTER_SECS: u32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("missing or wrong credentials")]
    Unauthorized,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NoRoute,
    #[error("storage unavailable")]
    Storage(String),
    #[error("too many requests; retry later")]
    RateLimited,
    /// A runtime failure no handler turned into an answer (logged).
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for EdgeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Client(c) => EdgeError::Client(c),
            StoreError::Unavailable(detail) => EdgeError::Storage(detail),
        }
    }
}

impl From<worker::Error> for EdgeError {
    fn from(e: worker::Error) -> Self {
        EdgeError::Storage(e.to_string())
    }
}

/// Which API an error answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// Browser and admin endpoints: `{"errors":[{reason, field?, message}]}`,
    /// `WWW-Authenticate: Bearer`.
    Browser,
    /// Track API v1: `{"meta":{"errors":["..."]}}`, Basic auth.
    TrackV1,
    /// Track API v2: `{"errors":[{reason, field?, message}]}`, Basic auth.
    TrackV2,
}

impl EdgeError {
    pub fn status_code(&self) -> u16 {
        match self {
            EdgeError::Client(e) => e.status(),
            EdgeError::Unauthorized => 401,
            EdgeError::MethodNotAllowed => 405,
            EdgeError::NoRoute => 404,
            EdgeError::Storage(_) => 503,
            EdgeError::RateLimited => 429,
            EdgeError::Internal => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::Client(e) => e.reason(),
            EdgeError::Unauthorized => "unauthorized",
            EdgeError::MethodNotAllowed => "method_not_allowed",
            EdgeError::NoRoute => "not_found",
            EdgeError::Storage(_) => "storage_unavailable",
            EdgeError::RateLimited => "rate_limited",
            EdgeError::Internal => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            EdgeError::Client(e) => e.field(),
            _ => None,
        }
    }

    /// `{reason, field?, message}`, plus `batch_index` inside a v2 batch.
    pub fn detail(&self, batch_index: Option<usize>) -> Value {
        let mut error = json!({ "reason": self.reason(), "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        if let Some(index) = batch_index {
            error["batch_index"] = json!(index);
        }
        error
    }
}

/// Any error as a response in `shape`; storage failures are logged.
pub fn render(e: &EdgeError, shape: ErrorShape) -> Response {
    if let EdgeError::Storage(detail) = e {
        worker::console_error!("storage failed: {detail}");
    }
    let body = match shape {
        ErrorShape::TrackV1 => json!({ "meta": { "errors": [e.to_string()] } }),
        ErrorShape::Browser | ErrorShape::TrackV2 => json!({ "errors": [e.detail(None)] }),
    };
    let mut response = json_response(&body, e.status_code());
    if matches!(e, EdgeError::RateLimited) {
        let retry = RETRY_AFTER_SECS.to_string();
        let _ = response.headers_mut().set("retry-after", &retry);
    }
    if e.status_code() == 401 {
        let challenge = match shape {
            ErrorShape::Browser => "Bearer",
            ErrorShape::TrackV1 | ErrorShape::TrackV2 => "Basic realm=\"track\"",
        };
        let _ = response.headers_mut().set("www-authenticate", challenge);
    }
    response
}

/// A bad setting: every request answers 500 naming it (and it is logged).
pub fn config_error_response(e: &ConfigError) -> Response {
    worker::console_error!("cio-edge is misconfigured: {e}");
    json_response(
        &json!({ "errors": [{ "reason": "invalid_setting", "field": e.setting, "message": e.to_string() }] }),
        500,
    )
}

/// A JSON response; building one cannot fail.
pub fn json_response(body: &serde_json::Value, status: u16) -> Response {
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json; charset=utf-8");
    let _ = headers.set("cache-control", "no-store");
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.to_string().into_bytes())
}
