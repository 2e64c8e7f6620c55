//! What the edge reads of a request before it acts (the visitor, consent,
//! authorization), and the one source of new ids and of the clock.

use crate::core::secure::{Consent, Trust};
use crate::core::Error as ClientError;
use crate::page::visit::Visit;

use super::error::EdgeError;
use super::request::Request;

/// The visitor of an endpoint request: its cookies (`page::visit::Visit`).
pub fn read(req: &Request, url: &url::Url, trust: &Trust) -> Visit {
    let header = req.headers().get("cookie").ok().flatten();
    Visit::read(header.as_deref(), url.scheme() == "https", trust)
}

/// Whether `CONSENT` lets this request be tracked.
pub fn consented(req: &Request, consent: &Consent) -> bool {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    consent.allows(header("cookie").as_deref(), header("sec-gpc").as_deref())
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The runtime's `crypto.randomUUID()`: one call, where building a UUID
    /// from `getRandomValues` takes several.
    #[wasm_bindgen(js_namespace = crypto, js_name = randomUUID)]
    fn random_uuid() -> String;
}

/// A new anonymous id: a lowercase UUID v4 from the runtime's crypto source.
pub fn new_anon_id() -> String {
    random_uuid()
}

/// A new event id, for an event the client sent without one.
pub fn new_event_id() -> String {
    random_uuid()
}

/// Unix seconds now (the objects read the same clock).
pub use crate::cloudflare::now_secs;

/// The one auth gate: `Authorization` checked by `matches`; without a
/// credential configured the endpoint does not exist (404), never open.
pub fn authorize(
    req: &Request,
    configured: bool,
    matches: impl FnOnce(Option<&str>) -> bool,
) -> Result<(), EdgeError> {
    if !configured {
        return Err(EdgeError::NoRoute);
    }
    let auth = req.headers().get("authorization").ok().flatten();
    if matches(auth.as_deref()) {
        Ok(())
    } else {
        Err(EdgeError::Unauthorized)
    }
}

/// A client error as the edge's, for `?` in handlers.
pub fn invalid(field: &'static str, message: impl Into<String>) -> EdgeError {
    ClientError::invalid(field, message).into()
}
