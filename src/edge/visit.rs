//! What the edge knows about one incoming request before it acts: the
//! visitor's validated identity cookies and how the request arrived.

use worker::{Headers, Method, Request};

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

/// A top-level HTML navigation: a GET a browser makes for a document.
pub fn is_html_navigation(method: &Method, headers: &Headers) -> bool {
    if *method != Method::Get {
        return false;
    }
    let header = |name: &str| headers.get(name).ok().flatten();
    match header("sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => header("accept").is_some_and(|accept| accept.contains("text/html")),
    }
}

/// A new anonymous id: a lowercase UUID v4 from the runtime's crypto source.
pub fn new_anon_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}
