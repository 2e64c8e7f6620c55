//! The Durable Object call path: `POST https://do/call` with a JSON call, a
//! JSON `Result` back. Errors travel as data (`StoreError`, `core::Error`),
//! so every variant arrives as itself; a non-200 answer means the object
//! itself failed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::class::Incoming;
use crate::identity::StoreError;

pub fn unavailable(e: worker::Error) -> StoreError {
    StoreError::unavailable(e.to_string())
}

fn js_unavailable(e: JsValue) -> StoreError {
    unavailable(worker::Error::from(e))
}

// The runtime's Durable Object namespace and stub, bound directly: a call is
// one `stub.fetch(url, init)` and one `response.text()`, without the `worker`
// crate's Request and Response wrappers (each reads `cf` and the headers, and
// its body is read through a stream reader), which cost more CPU per call
// than the object's own work on a track.
#[wasm_bindgen]
extern "C" {
    type Namespace;
    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &Namespace, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = idFromString)]
    fn id_from_string(this: &Namespace, id: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &Namespace, id: &JsValue) -> Result<ObjectStub, JsValue>;

    pub type ObjectStub;
    #[wasm_bindgen(method, catch)]
    fn fetch(
        this: &ObjectStub,
        url: &str,
        init: &web_sys::RequestInit,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// Which object of a namespace: by name, or by the id string the runtime gave.
pub enum ObjectName<'a> {
    Named(&'a str),
    Id(&'a str),
}

/// The stub of one object in the namespace bound as `binding`.
pub fn stub(env: &Env, binding: &str, name: ObjectName<'_>) -> Result<ObjectStub, StoreError> {
    let namespace: Namespace = super::binding(env, binding)
        .ok_or_else(|| StoreError::unavailable(format!("no binding {binding}")))?;
    let id = match name {
        ObjectName::Named(name) => namespace.id_from_name(name),
        ObjectName::Id(id) => namespace.id_from_string(id),
    }
    .map_err(js_unavailable)?;
    namespace.get(&id).map_err(js_unavailable)
}

/// Sends `call` to the object named `name` in the namespace bound as `binding`.
pub async fn call<Call: Serialize, Reply: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    call: &Call,
) -> Result<Reply, StoreError> {
    let stub = stub(env, binding, ObjectName::Named(name))?;
    post(&stub, "/call", binding, call).await
}

/// POSTs `body` as JSON to `path` of an object's `stub` and reads its
/// `Result` back; `what` names the object in errors.
pub async fn post<Body: Serialize, Reply: DeserializeOwned>(
    stub: &ObjectStub,
    path: &str,
    what: &str,
    body: &Body,
) -> Result<Reply, StoreError> {
    let body = serde_json::to_string(body)?;
    let headers = web_sys::Headers::new().map_err(js_unavailable)?;
    headers
        .set("content-type", "application/json")
        .map_err(js_unavailable)?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(&body));
    let promise = stub
        .fetch(&format!("https://do{path}"), &init)
        .map_err(js_unavailable)?;
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(js_unavailable)?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(js_unavailable)?)
        .await
        .map_err(js_unavailable)?
        .as_string()
        .unwrap_or_default();
    if resp.status() != 200 {
        return Err(StoreError::unavailable(format!(
            "{what} answered {}: {text}",
            resp.status()
        )));
    }
    crate::core::json::from_str::<Result<Reply, StoreError>>(&text)?
}

/// Inside an object: the parsed call.
pub fn read_call<T: DeserializeOwned>(call: &Incoming) -> worker::Result<T> {
    crate::core::json::from_str(&call.body)
        .map_err(|e| worker::Error::RustError(format!("bad call: {e}")))
}

/// Inside an object: the answer to a call, success or error, as data.
pub fn reply<T: Serialize>(result: Result<T, StoreError>) -> worker::Result<String> {
    Ok(serde_json::to_string(&result)?)
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
