//! JSON calls between the worker and its Durable Objects: one request shape
//! (`POST https://do/<op>` with a JSON body), one reply shape, one error path.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::core::Error as ClientError;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input broke a rule only the stored state can check (409, 404, ...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Storage is unbound, unreachable or failed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<worker::Error> for StoreError {
    fn from(e: worker::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// A client error as it crosses from an object back to the worker.
#[derive(Serialize, Deserialize)]
struct WireError {
    status: u16,
    field: Option<String>,
    message: String,
}

impl From<&ClientError> for WireError {
    fn from(e: &ClientError) -> Self {
        WireError {
            status: e.status(),
            field: e.field().map(str::to_owned),
            message: e.to_string(),
        }
    }
}

impl From<WireError> for ClientError {
    fn from(w: WireError) -> Self {
        match (w.status, w.field) {
            (409, Some(field)) => ClientError::Conflict {
                field: field.into(),
                message: w.message,
            },
            (404, _) => ClientError::NotFound { message: w.message },
            (413, _) => ClientError::TooLarge { message: w.message },
            (_, field) => ClientError::Invalid {
                field: field.map(Into::into),
                message: w.message,
            },
        }
    }
}

/// Sends `request` (a tagged call enum) to the object named `name` in the
/// namespace bound as `binding`.
pub async fn call<Req: Serialize, Reply: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    request: &Req,
) -> Result<Reply, StoreError> {
    let op = binding;
    let stub = env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    let body =
        serde_json::to_string(request).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init("https://do/call", &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    let text = resp.text().await?;
    match resp.status_code() {
        200 => serde_json::from_str(&text)
            .map_err(|e| StoreError::Unavailable(format!("bad reply from {op}: {e}"))),
        400..=499 => match serde_json::from_str::<WireError>(&text) {
            Ok(wire) => Err(StoreError::Client(wire.into())),
            Err(_) => Err(StoreError::Unavailable(format!("{op}: {text}"))),
        },
        status => Err(StoreError::Unavailable(format!(
            "{op} answered {status}: {text}"
        ))),
    }
}

/// Inside an object: the parsed call.
pub async fn read_call<T: DeserializeOwned>(mut req: Request) -> worker::Result<T> {
    let body = req.text().await?;
    serde_json::from_str(&body).map_err(|e| worker::Error::RustError(format!("bad call: {e}")))
}

/// Inside an object: the reply to a call.
pub fn reply<T: Serialize>(result: Result<T, ClientError>) -> worker::Result<Response> {
    match result {
        Ok(value) => Response::from_json(&value),
        Err(e) => Ok(Response::from_json(&WireError::from(&e))?.with_status(e.status())),
    }
}

/// Unit reply for calls that answer nothing.
#[derive(Serialize, Deserialize)]
pub struct Done {}
