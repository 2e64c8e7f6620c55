//! Abuse limits with Cloudflare's rate limiting bindings (docs/API.md
//! section 8): browser writes per visitor, per person and per client
//! address (an IPv6 address counts as its /64), tracked link lookups per
//! client address. A limiter that is not bound, or fails,
//! lets the request through: limits protect storage, they never break a page.

use wasm_bindgen::JsValue;

use super::error::EdgeError;
use super::request::Request;
use super::Edge;
use crate::core::abuse::{address_key, person_key};
use crate::core::identifier::Identifier;

/// Browser writes (identify, track, page) per anonymous visitor.
pub const VISITOR_LIMITER: &str = crate::bindings::VISITOR_RATE_LIMIT;
/// Browser writes and `_cio_id` lookups per client address.
pub const CLIENT_LIMITER: &str = crate::bindings::CLIENT_RATE_LIMIT;
/// Browser writes naming one person (its `_cioid`), from any visitor or
/// address: a forged `_cioid` from many places fills no one's history fast.
pub const PERSON_LIMITER: &str = crate::bindings::PERSON_RATE_LIMIT;

/// The client's address as Cloudflare reports it, as a limit key (an IPv6
/// address as its /64).
pub fn client_address(req: &Request) -> String {
    let raw = req.headers().get("cf-connecting-ip").ok().flatten();
    address_key(raw.as_deref().unwrap_or("unknown"))
}

// The runtime's rate limiting binding, bound directly: one `limit({key})`,
// its `success` read back. The `worker` crate's limiter serializes the
// options and reads the outcome through serde on each call, and a browser
// write asks up to three limiters.
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    type Limiter;
    #[wasm_bindgen(method, catch)]
    fn limit(this: &Limiter, options: &js_sys::Object) -> Result<js_sys::Promise, JsValue>;
}

async fn allowed(edge: &Edge, binding: &str, key: String) -> bool {
    let Some(limiter) = crate::cloudflare::binding::<Limiter>(&edge.env, binding) else {
        return true;
    };
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(
        &options,
        &JsValue::from_str("key"),
        &JsValue::from_str(&key),
    );
    let outcome = match limiter.limit(&options) {
        Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(outcome) => crate::cloudflare::field(&outcome, "success")
            .as_bool()
            .unwrap_or(true),
        Err(e) => {
            worker::console_warn!(
                "rate limiter {binding} failed, allowing: {}",
                worker::Error::from(e)
            );
            true
        }
    }
}

/// A browser write: limited per visitor (its cookie's id, else its address),
/// per address, and per person when the cookies name one.
pub async fn browser_write(
    edge: &Edge,
    req: &Request,
    anon: Option<&str>,
    identifier: Option<&Identifier>,
) -> Result<(), EdgeError> {
    let address = client_address(req);
    let visitor = anon.map_or_else(|| format!("addr:{address}"), str::to_owned);
    if !allowed(edge, VISITOR_LIMITER, visitor).await
        || !allowed(edge, CLIENT_LIMITER, address).await
    {
        return Err(EdgeError::RateLimited);
    }
    if let Some(identifier) = identifier {
        if !allowed(edge, PERSON_LIMITER, person_key(identifier)).await {
            return Err(EdgeError::RateLimited);
        }
    }
    Ok(())
}

/// A `_cio_id` lookup: limited per address (a page is served either way).
pub async fn link_lookup(edge: &Edge, req: &Request) -> bool {
    allowed(edge, CLIENT_LIMITER, client_address(req)).await
}
