//! What the edge knows about one request to an endpoint before it acts (the
//! visitor's validated identity cookies, how it arrived), and the one place
//! that issues anonymous ids, event ids and reads the clock.

use worker::Request;

use crate::core::cookies::{read_cookies, CookiePolicy, IncomingCookies};
use crate::core::Error as ClientError;

use super::error::EdgeError;

pub struct Visit {
    pub cookies: IncomingCookies,
    pub https: bool,
}

impl Visit {
    pub fn read(req: &Request, url: &url::Url) -> Self {
        let header = req.headers().get("cookie").ok().flatten();
        Visit {
            cookies: read_cookies(header.as_deref()),
            https: url.scheme() == "https",
        }
    }

    /// The visitor's anonymous id, or a new one with the cookie that sets it.
    pub fn anon_id(&self, policy: &CookiePolicy, cookies: &mut Vec<String>) -> String {
        match &self.cookies.anon_id {
            Some(anon) => anon.clone(),
            None => {
                let anon = new_anon_id();
                cookies.push(policy.anon_cookie(self.https, &anon));
                anon
            }
        }
    }
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

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

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
