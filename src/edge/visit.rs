//! What the edge knows about one request to an endpoint before it acts: the
//! visitor's validated identity cookies and how the request arrived.

use worker::Request;

use crate::core::cookies::{read_cookies, IncomingCookies};

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

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}
