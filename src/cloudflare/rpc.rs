//! The Durable Object call path: `POST https://do/call` with a JSON call, a
//! JSON `Result` back. Errors travel as data (`StoreError`, `core::Error`),
//! so every variant arrives as itself; a non-200 answer means the object
//! itself failed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Stub};

use crate::identity::StoreError;

pub fn unavailable(e: worker::Error) -> StoreError {
    StoreError::unavailable(e.to_string())
}

/// Sends `call` to the object named `name` in the namespace bound as `binding`.
pub async fn call<Call: Serialize, Reply: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    call: &Call,
) -> Result<Reply, StoreError> {
    let namespace = env.durable_object(binding).map_err(unavailable)?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(unavailable)?;
    post(&stub, "/call", binding, call).await
}

/// POSTs `body` as JSON to `path` of an object's `stub` and reads its
/// `Result` back; `what` names the object in errors.
pub async fn post<Body: Serialize, Reply: DeserializeOwned>(
    stub: &Stub,
    path: &str,
    what: &str,
    body: &Body,
) -> Result<Reply, StoreError> {
    let body = serde_json::to_string(body)?;
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(unavailable)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(&format!("https://do{path}"), &init).map_err(unavailable)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
    let text = resp.text().await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        return Err(StoreError::unavailable(format!(
            "{what} answered {}: {text}",
            resp.status_code()
        )));
    }
    serde_json::from_str::<Result<Reply, StoreError>>(&text)?
}

/// Inside an object: the parsed call.
pub async fn read_call<T: DeserializeOwned>(mut req: Request) -> worker::Result<T> {
    let body = req.text().await?;
    serde_json::from_str(&body).map_err(|e| worker::Error::RustError(format!("bad call: {e}")))
}

/// Inside an object: the answer to a call, success or error, as data.
pub fn reply<T: Serialize>(result: Result<T, StoreError>) -> worker::Result<Response> {
    Response::from_json(&result)
}

/// SQLite errors inside an object, as the seam's error.
pub trait SqlResult<T> {
    fn or_unavailable(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for worker::Result<T> {
    fn or_unavailable(self) -> Result<T, StoreError> {
        self.map_err(unavailable)
    }
}
