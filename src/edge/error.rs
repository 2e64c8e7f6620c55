//! The one mapping from errors to HTTP responses for `/_cio/*`.

use serde_json::json;
use worker::Response;

use crate::config::ConfigError;
use crate::core::Error as ClientError;
use crate::store::StoreError;

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

impl EdgeError {
    pub fn status_code(&self) -> u16 {
        match self {
            EdgeError::Client(e) => e.status(),
            EdgeError::Unauthorized => 401,
            EdgeError::MethodNotAllowed => 405,
            EdgeError::NoRoute => 404,
            EdgeError::Storage(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::Client(e) => e.reason(),
            EdgeError::Unauthorized => "unauthorized",
            EdgeError::MethodNotAllowed => "method_not_allowed",
            EdgeError::NoRoute => "not_found",
            EdgeError::Storage(_) => "storage_unavailable",
        }
    }

    /// `{"errors":[{"reason","field"?,"message"}]}` (API section 7).
    pub fn to_response(&self) -> Response {
        if let EdgeError::Storage(detail) = self {
            worker::console_error!("storage failed: {detail}");
        }
        let field = match self {
            EdgeError::Client(e) => e.field(),
            _ => None,
        };
        let mut error = json!({ "reason": self.reason(), "message": self.to_string() });
        if let Some(field) = field {
            error["field"] = json!(field);
        }
        let mut response = json_response(&json!({ "errors": [error] }), self.status_code());
        if matches!(self, EdgeError::Unauthorized) {
            let _ = response.headers_mut().set("www-authenticate", "Bearer");
        }
        response
    }
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
