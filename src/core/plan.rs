//! The page-request decision, made in one synchronous call: from the raw
//! inputs (method, URL, a few headers) and the settings, either a *forward*
//! plan that a thin JS driver executes with `fetch` (headers toward the
//! origin, `Set-Cookie` values to append, the snippet to inject), or a reason
//! to hand the request to the full async handler. Pure; no worker types.
//!
//! The plan travels to the driver as text, one item per line (header values
//! and URLs never hold a line break):
//!
//! ```text
//! forward
//! <origin URL>
//! <timeout ms>
//! <snippet HTML, or an empty line: no injection>
//! h<name>:<value>    set a header toward the origin
//! d<name>            drop a header toward the origin
//! c<value>           append a Set-Cookie to the response
//! r<name>            a response header of the origin's to strip; when one is
//!                    present, the driver hands the values, in order, back to
//!                    the async handler (`handle`) for the cookies to set
//! ```
//!
//! A request for the async handler is the single line `rust <reason>`.

use url::Url;

use super::cookies::{read_cookies, IncomingCookies};
use super::form::MAX_FORM_BYTES;
use super::identifier::{is_cio_id, Identifier};
use super::routes::{self, Route};
use super::secure::{origin_id_header, Trust};
use super::snippet::{SNIPPET, SNIPPET_IN_APP};
use crate::config::{Config, ConfigError};

/// The one prefix the edge keeps for itself; everything else is the site's.
pub use super::routes::PREFIX;
/// The link parameter that identifies a visitor (`AUTO_IDENTIFY_LINKS`).
pub const LINK_PARAM: &str = "_cio_id";
pub const ANON_HEADER: &str = "x-cio-anon-id";
pub const ID_HEADER: &str = "x-cio-id";
/// Response headers by which the origin identifies or resets the visitor
/// (docs/API.md section 10); never passed on to the browser.
pub const IDENTIFY_HEADER: &str = "x-cio-identify";
pub const RESET_HEADER: &str = "x-cio-reset";
pub const ORIGIN_HEADERS: [&str; 2] = [IDENTIFY_HEADER, RESET_HEADER];

/// The raw inputs of the decision, as the runtime hands them over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub cookie: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub sec_fetch_mode: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub sec_gpc: Option<&'a str>,
}

impl<'a> Inputs<'a> {
    /// Reads the inputs from the driver's one string: the fields in the order
    /// of the struct, separated by line breaks (none can hold one); an empty
    /// field is an absent header.
    pub fn from_lines(text: &'a str) -> Self {
        let mut fields = text.split('\n');
        let mut next = || fields.next().filter(|f| !f.is_empty());
        Inputs {
            method: next().unwrap_or("GET"),
            url: next().unwrap_or(""),
            cookie: next(),
            accept: next(),
            sec_fetch_mode: next(),
            content_type: next(),
            content_length: next(),
            sec_gpc: next(),
        }
    }
}

/// Why a request goes to the async handler rather than straight to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Under `/_cio/`: an endpoint of ours.
    Reserved,
    /// On `TRACK_API_HOST` under `/api/`.
    TrackApiHost,
    /// A `_cio_id` link to look up.
    Link,
    /// A small form post to read (`AUTO_IDENTIFY_FORMS`).
    Form,
    /// An HTML navigation to record (`EDGE_PAGE_VIEWS`).
    PageView,
    /// A setting is broken: every request answers the error.
    BadSetting,
    /// A URL the runtime should never hand over; the async handler answers it.
    BadUrl,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reserved => "reserved",
            Reason::TrackApiHost => "track-api-host",
            Reason::Link => "link",
            Reason::Form => "form",
            Reason::PageView => "page-view",
            Reason::BadSetting => "bad-setting",
            Reason::BadUrl => "bad-url",
        }
    }
}

/// A request to pass to the origin, and what the edge adds on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub target: String,
    pub timeout_ms: u32,
    /// Headers toward the origin, in order: `Some` sets, `None` drops.
    pub headers: Vec<(&'static str, Option<String>)>,
    pub set_cookies: Vec<String>,
    /// The snippet to insert when the answer is an HTML page.
    pub snippet: Option<&'static str>,
    /// Origin response headers to strip and hand back to Rust.
    pub watch: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Forward(Forward),
    Rust(Reason),
}

impl Plan {
    /// The plan as the driver reads it (see the module docs).
    pub fn to_text(&self) -> String {
        match self {
            Plan::Rust(reason) => format!("rust {}", reason.as_str()),
            Plan::Forward(f) => f.to_text(),
        }
    }
}

impl Forward {
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("forward\n");
        out.push_str(&self.target);
        out.push('\n');
        out.push_str(&self.timeout_ms.to_string());
        out.push('\n');
        out.push_str(self.snippet.unwrap_or(""));
        for (name, value) in &self.headers {
            out.push('\n');
            match value {
                Some(value) => {
                    out.push('h');
                    out.push_str(name);
                    out.push(':');
                    out.push_str(value);
                }
                None => {
                    out.push('d');
                    out.push_str(name);
                }
            }
        }
        for cookie in &self.set_cookies {
            out.push_str("\nc");
            out.push_str(cookie);
        }
        for name in self.watch {
            out.push_str("\nr");
            out.push_str(name);
        }
        out
    }
}

/// The `Set-Cookie` values of a plan text (for an answer made without the
/// origin, such as a 502).
pub fn set_cookies_of(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .skip(4)
        .filter_map(|line| line.strip_prefix('c'))
}

/// The parts of a request URL the decision reads. The runtime hands over its
/// own serialization (scheme and host lowercase, path and query encoded), so
/// splitting the text is enough; a URL that does not split is handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    /// Without userinfo and port; an IPv6 address keeps its brackets.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    pub fn split(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        if !matches!(scheme, "http" | "https") {
            return None;
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let host = if authority.starts_with('[') {
            &authority[..authority.find(']')? + 1]
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if host.is_empty() || !path.starts_with('/') {
            return None;
        }
        Some(UrlParts {
            scheme,
            host,
            path,
            query,
        })
    }
}

/// What is known of one request to the site before it is forwarded.
pub struct Visit<'a> {
    pub url: UrlParts<'a>,
    pub cookies: IncomingCookies,
    pub https: bool,
    pub html_navigation: bool,
}

impl<'a> Visit<'a> {
    /// The request's URL and cookies; a `_cioid` secure mode cannot vouch
    /// for is dropped here (`Trust::vouch`).
    pub fn read(inputs: &Inputs<'a>, trust: &Trust) -> Option<Self> {
        let url = UrlParts::split(inputs.url)?;
        Some(Visit {
            https: url.scheme == "https",
            cookies: trust.vouch(read_cookies(inputs.cookie), inputs.cookie),
            html_navigation: is_html_navigation(inputs),
            url,
        })
    }
}

/// A top-level HTML navigation: a GET a browser makes for a document.
pub fn is_html_navigation(inputs: &Inputs) -> bool {
    if inputs.method != "GET" {
        return false;
    }
    match inputs.sec_fetch_mode {
        Some(mode) => mode == "navigate",
        None => inputs
            .accept
            .is_some_and(|accept| accept.contains("text/html")),
    }
}

/// The `_cio_id` of a link, when it has the shape of one.
pub fn link_param(url: &UrlParts) -> Option<String> {
    let query = url.query.filter(|q| q.contains(LINK_PARAM))?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == LINK_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| is_cio_id(v))
}

/// A form post small enough to inspect (declared length): its content type.
pub fn small_form<'a>(inputs: &Inputs<'a>) -> Option<&'a str> {
    if inputs.method != "POST" {
        return None;
    }
    let length = inputs.content_length?.trim().parse::<usize>().ok()?;
    let content_type = inputs.content_type?;
    let mime = content_type.to_ascii_lowercase();
    let is_form = mime.starts_with("application/x-www-form-urlencoded")
        || mime.starts_with("multipart/form-data");
    (is_form && length <= MAX_FORM_BYTES).then_some(content_type)
}

/// Decides a request. `new_anon_id` is called only when the visitor needs one.
pub fn plan(
    config: Result<&Config, &ConfigError>,
    inputs: &Inputs,
    new_anon_id: impl FnOnce() -> String,
) -> Plan {
    let Ok(config) = config else {
        return Plan::Rust(Reason::BadSetting);
    };
    let Some(visit) = Visit::read(inputs, &config.trust) else {
        return Plan::Rust(Reason::BadUrl);
    };
    // The route table decides what is ours; everything else is the site's.
    let on_track_host = config.track_api_host.as_deref() == Some(visit.url.host);
    match routes::route(inputs.method, visit.url.path, on_track_host) {
        Route::Proxy => {}
        Route::TrackApi(_) if on_track_host && !visit.url.path.starts_with(PREFIX) => {
            return Plan::Rust(Reason::TrackApiHost)
        }
        _ => return Plan::Rust(Reason::Reserved),
    }
    if !config.consent.allows(inputs.cookie, inputs.sec_gpc) {
        return Plan::Forward(untracked(config, visit.url));
    }
    if config.auto_identify_links
        && config.trust.honours_links()
        && link_param(&visit.url).is_some()
    {
        return Plan::Rust(Reason::Link);
    }
    if config.auto_identify_forms && small_form(inputs).is_some() {
        return Plan::Rust(Reason::Form);
    }
    if config.edge_page_views && visit.html_navigation {
        return Plan::Rust(Reason::PageView);
    }
    let (anon_id, anon_changed) = match &visit.cookies.anon_id {
        Some(anon) => (anon.clone(), false),
        None => (new_anon_id(), true),
    };
    let identifier = visit
        .cookies
        .identifier
        .as_ref()
        .map(Identifier::as_written);
    let mut set_cookies = Vec::new();
    if anon_changed || visit.html_navigation {
        set_cookies.push(config.cookies.anon_cookie(visit.https, &anon_id));
    }
    if visit.html_navigation {
        set_cookies.extend(crate::cdp::ids::document_cookies(
            config,
            inputs.cookie,
            visit.url.host,
            visit.https,
            &anon_id,
            identifier.as_deref(),
        ));
    }
    Plan::Forward(forward(
        config,
        visit.url,
        inputs.method,
        &anon_id,
        identifier.as_deref(),
        set_cookies,
    ))
}

/// The forward plan for a visitor whose ids are settled: what the origin is
/// told, which cookies are set, whether the page gets the snippet.
pub fn forward(
    config: &Config,
    url: UrlParts,
    method: &str,
    anon_id: &str,
    identifier: Option<&str>,
    set_cookies: Vec<String>,
) -> Forward {
    // A client-sent X-Cio-* header never reaches the origin.
    let headers = vec![
        ("host", None),
        ("x-forwarded-host", Some(url.host.to_owned())),
        ("x-forwarded-proto", Some(url.scheme.to_owned())),
        (ANON_HEADER, Some(anon_id.to_owned())),
        (ID_HEADER, identifier.map(origin_id_header)),
    ];
    Forward {
        target: origin_url(&config.origin, url),
        timeout_ms: config.origin_timeout_ms,
        headers,
        set_cookies,
        snippet: (config.inject_snippet && method != "HEAD").then_some(if config.in_app.on {
            SNIPPET_IN_APP
        } else {
            SNIPPET
        }),
        watch: &ORIGIN_HEADERS,
    }
}

/// A request without consent (`CONSENT`): forwarded with no id, no cookie
/// and no snippet, so the page is the origin's byte for byte; an identify
/// header of the origin's is still stripped, and applies nothing.
pub fn untracked(config: &Config, url: UrlParts) -> Forward {
    Forward {
        target: origin_url(&config.origin, url),
        timeout_ms: config.origin_timeout_ms,
        headers: vec![
            ("host", None),
            ("x-forwarded-host", Some(url.host.to_owned())),
            ("x-forwarded-proto", Some(url.scheme.to_owned())),
            (ANON_HEADER, None),
            (ID_HEADER, None),
        ],
        set_cookies: Vec::new(),
        snippet: None,
        watch: &ORIGIN_HEADERS,
    }
}

/// A response header's value as the runtime hands it over (each byte one
/// character, as `Headers` reads them), read back as UTF-8 when it is.
pub fn header_text(value: &str) -> std::borrow::Cow<'_, str> {
    let bytes: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
    match bytes.and_then(|b| String::from_utf8(b).ok()) {
        Some(text) if text != value => std::borrow::Cow::Owned(text),
        _ => std::borrow::Cow::Borrowed(value),
    }
}

/// The anonymous id a plan text tells the origin (none without consent).
pub fn anon_id_of(text: &str) -> Option<&str> {
    text.split('\n')
        .find_map(|line| line.strip_prefix("hx-cio-anon-id:"))
}

/// Whether an origin answer gets the snippet: a 200 HTML page.
pub fn injects(status: u16, content_type: Option<&str>) -> bool {
    status == 200
        && content_type.is_some_and(|ct| {
            ct.trim_start()
                .get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case("text/html"))
        })
}

/// The origin URL for a request: the origin's scheme, host and port, its path
/// as a prefix, then the request's own path and query, untouched.
pub fn origin_url(origin: &Url, url: UrlParts) -> String {
    // Both are serialized already: join the strings (an origin carries no
    // query or fragment, so its text ends with its path).
    let base = origin.as_str().trim_end_matches('/');
    let mut target = String::with_capacity(base.len() + url.path.len() + 64);
    target.push_str(base);
    target.push_str(url.path);
    if let Some(query) = url.query {
        target.push('?');
        target.push_str(query);
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ANON: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const NEW: &str = "11111111-2222-4333-8444-555555555555";

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("ORIGIN_URL".into())
            .or_insert_with(|| "http://127.0.0.1:9000/base".into());
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn get(url: &str) -> Inputs<'_> {
        Inputs {
            method: "GET",
            url,
            ..Default::default()
        }
    }

    fn decide(config: &Result<Config, ConfigError>, inputs: &Inputs) -> Plan {
        plan(config.as_ref(), inputs, || NEW.to_owned())
    }

    fn forwarded(plan: Plan) -> Forward {
        match plan {
            Plan::Forward(f) => f,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn header<'f>(f: &'f Forward, name: &str) -> Option<Option<&'f str>> {
        f.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref())
    }

    #[test]
    fn returning_visitor_is_forwarded_without_a_cookie() {
        let c = config(&[]);
        let cookie = format!("a=1; _cioanonid={ANON}");
        let inputs = Inputs {
            cookie: Some(&cookie),
            ..get("https://shop.example.com/p/1?q=2")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(f.target, "http://127.0.0.1:9000/base/p/1?q=2");
        assert_eq!(f.timeout_ms, 15_000);
        assert!(f.set_cookies.is_empty());
        assert_eq!(header(&f, ANON_HEADER), Some(Some(ANON)));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert_eq!(header(&f, "host"), Some(None));
        assert_eq!(
            header(&f, "x-forwarded-host"),
            Some(Some("shop.example.com"))
        );
        assert_eq!(header(&f, "x-forwarded-proto"), Some(Some("https")));
        assert_eq!(f.snippet, None);
    }

    #[test]
    fn first_visit_gets_a_new_id_and_its_cookie() {
        let c = config(&[]);
        let f = forwarded(decide(&c, &get("http://x.test/")));
        assert_eq!(header(&f, ANON_HEADER), Some(Some(NEW)));
        assert_eq!(f.set_cookies.len(), 1);
        assert!(f.set_cookies[0].starts_with(&format!("_cioanonid={NEW};")));
        assert!(!f.set_cookies[0].contains("Secure"));
        // A forged value is replaced, never echoed.
        let inputs = Inputs {
            cookie: Some("_cioanonid=not-an-id"),
            ..get("https://x.test/")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(header(&f, ANON_HEADER), Some(Some(NEW)));
        assert!(f.set_cookies[0].contains("Secure"));
        assert!(!f.to_text().contains("not-an-id"));
    }

    #[test]
    fn identified_visitor_tells_the_origin() {
        let c = config(&[]);
        let cookie = format!("_cioanonid={ANON}; _cioid=Bob%40Example.com");
        let inputs = Inputs {
            cookie: Some(&cookie),
            ..get("http://x.test/")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(header(&f, ID_HEADER), Some(Some("bob@example.com")));
        assert!(f.set_cookies.is_empty());
    }

    #[test]
    fn navigation_refreshes_the_anonymous_cookie() {
        let c = config(&[]);
        let cookie = format!("_cioanonid={ANON}");
        for (mode, accept, refresh) in [
            (Some("navigate"), None, true),
            (Some("cors"), Some("text/html"), false),
            (None, Some("text/html,application/xhtml+xml"), true),
            (None, Some("*/*"), false),
            (None, None, false),
        ] {
            let inputs = Inputs {
                cookie: Some(&cookie),
                sec_fetch_mode: mode,
                accept,
                ..get("http://x.test/")
            };
            let f = forwarded(decide(&c, &inputs));
            assert_eq!(f.set_cookies.len(), refresh as usize, "{mode:?} {accept:?}");
            if refresh {
                assert!(f.set_cookies[0].starts_with(&format!("_cioanonid={ANON};")));
            }
        }
        // A POST is never a navigation.
        let inputs = Inputs {
            method: "POST",
            cookie: Some(&cookie),
            sec_fetch_mode: Some("navigate"),
            ..get("http://x.test/")
        };
        assert!(forwarded(decide(&c, &inputs)).set_cookies.is_empty());
    }

    #[test]
    fn hands_to_rust_for_each_reason() {
        let c = config(&[]);
        let cases = [
            ("http://x.test/_cio/track.js", Reason::Reserved),
            ("http://x.test/_cio/api/v1/customers/a", Reason::Reserved),
            ("http://x.test/page?_cio_id=abc123", Reason::Link),
            ("http://x.test/page?a=1&_cio_id=abc123", Reason::Link),
        ];
        for (url, reason) in cases {
            assert_eq!(decide(&c, &get(url)), Plan::Rust(reason), "{url}");
        }
        // Not ours: a look-alike path, a malformed link id, links switched off.
        for url in [
            "http://x.test/_cio",
            "http://x.test/x/_cio/",
            "http://x.test/?_cio_id=a-b",
        ] {
            forwarded(decide(&c, &get(url)));
        }
        let off = config(&[("AUTO_IDENTIFY_LINKS", "false")]);
        forwarded(decide(&off, &get("http://x.test/page?_cio_id=abc123")));

        let host = config(&[("TRACK_API_HOST", "track.example.com")]);
        assert_eq!(
            decide(&host, &get("https://track.example.com/api/v1/customers/a")),
            Plan::Rust(Reason::TrackApiHost)
        );
        forwarded(decide(&host, &get("https://track.example.com/other")));
        forwarded(decide(&host, &get("https://www.example.com/api/v1/x")));

        let views = config(&[("EDGE_PAGE_VIEWS", "true")]);
        let nav = Inputs {
            sec_fetch_mode: Some("navigate"),
            ..get("http://x.test/")
        };
        assert_eq!(decide(&views, &nav), Plan::Rust(Reason::PageView));
        forwarded(decide(&views, &get("http://x.test/api/data")));
    }

    #[test]
    fn small_form_posts_go_to_rust_when_forms_identify() {
        let forms = config(&[("AUTO_IDENTIFY_FORMS", "true")]);
        let post = |ct: &'static str, len: &'static str| Inputs {
            method: "POST",
            content_type: Some(ct),
            content_length: Some(len),
            ..get("http://x.test/signup")
        };
        assert_eq!(
            decide(&forms, &post("application/x-www-form-urlencoded", "20")),
            Plan::Rust(Reason::Form)
        );
        assert_eq!(
            decide(&forms, &post("multipart/form-data; boundary=x", "200")),
            Plan::Rust(Reason::Form)
        );
        forwarded(decide(&forms, &post("application/json", "20")));
        forwarded(decide(
            &forms,
            &post("application/x-www-form-urlencoded", "9999999"),
        ));
        forwarded(decide(
            &forms,
            &post("application/x-www-form-urlencoded", "many"),
        ));
        let off = config(&[]);
        forwarded(decide(
            &off,
            &post("application/x-www-form-urlencoded", "20"),
        ));
    }

    #[test]
    fn a_bad_setting_or_url_goes_to_rust() {
        let bad = config(&[("COOKIE_SECURE", "maybe")]);
        assert!(bad.is_err());
        assert_eq!(
            decide(&bad, &get("http://x.test/")),
            Plan::Rust(Reason::BadSetting)
        );
        let c = config(&[]);
        assert_eq!(decide(&c, &get("not a url")), Plan::Rust(Reason::BadUrl));
        assert_eq!(decide(&c, &Inputs::default()), Plan::Rust(Reason::BadUrl));
    }

    #[test]
    fn host_names_are_ascii() {
        // idna_adapter 1.0: no Unicode back end; punycode is taken as written.
        let bad = config(&[("ORIGIN_URL", "http://bücher.example")]);
        assert_eq!(bad.unwrap_err().setting, "ORIGIN_URL");
        let ok = config(&[("ORIGIN_URL", "http://xn--bcher-kva.example")]);
        assert_eq!(ok.unwrap().origin.host_str(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn injection_on_and_off() {
        let on = config(&[("INJECT_SNIPPET", "true")]);
        assert_eq!(
            forwarded(decide(&on, &get("http://x.test/"))).snippet,
            Some(SNIPPET)
        );
        let head = Inputs {
            method: "HEAD",
            ..get("http://x.test/")
        };
        assert_eq!(forwarded(decide(&on, &head)).snippet, None);
        let off = config(&[]);
        assert_eq!(
            forwarded(decide(&off, &get("http://x.test/"))).snippet,
            None
        );
        let in_app = config(&[("INJECT_SNIPPET", "true"), ("IN_APP", "true")]);
        assert_eq!(
            forwarded(decide(&in_app, &get("http://x.test/"))).snippet,
            Some(SNIPPET_IN_APP)
        );

        assert!(injects(200, Some("text/html; charset=utf-8")));
        assert!(injects(200, Some("TEXT/HTML")));
        assert!(!injects(404, Some("text/html")));
        assert!(!injects(200, Some("application/json")));
        assert!(!injects(200, Some("text/htm")));
        assert!(!injects(200, None));
    }

    #[test]
    fn plan_text_round_trip() {
        let c = config(&[("INJECT_SNIPPET", "true")]);
        let cookie = "_cioid=user%201";
        let inputs = Inputs {
            cookie: Some(cookie),
            ..get("http://x.test/a?b=c")
        };
        let f = forwarded(decide(&c, &inputs));
        let text = f.to_text();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "forward");
        assert_eq!(lines[1], "http://127.0.0.1:9000/base/a?b=c");
        assert_eq!(lines[2], "15000");
        assert_eq!(lines[3], SNIPPET);
        assert!(!SNIPPET.contains('\n'));
        assert!(lines.contains(&"dhost"));
        assert!(lines.contains(&"hx-forwarded-proto:http"));
        assert!(lines.contains(&format!("h{ID_HEADER}:user 1").as_str()));
        assert!(lines.contains(&format!("h{ANON_HEADER}:{NEW}").as_str()));
        let cookies: Vec<&str> = set_cookies_of(&text).collect();
        assert_eq!(
            cookies,
            f.set_cookies.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(cookies.len(), 1);
        assert_eq!(Plan::Rust(Reason::Link).to_text(), "rust link");
    }

    #[test]
    fn url_parts_match_the_url_parser() {
        for url in [
            "http://x.test/",
            "https://Shop.Example.com:8443/a/b?c=d&e#frag",
            "http://user:pw@x.test:81/p?q",
            "http://[::1]:8787/x?y=1",
            "http://127.0.0.1:8787/_cio/track.js",
            "https://x.test/p%20q?",
            "https://xn--bcher-kva.example/",
        ] {
            let parsed = Url::parse(url).unwrap();
            let parts = UrlParts::split(parsed.as_str()).unwrap();
            assert_eq!(parts.scheme, parsed.scheme(), "{url}");
            assert_eq!(Some(parts.host), parsed.host_str(), "{url}");
            assert_eq!(parts.path, parsed.path(), "{url}");
            assert_eq!(parts.query, parsed.query(), "{url}");
        }
        for bad in [
            "",
            "not a url",
            "ftp://x.test/",
            "http://",
            "http:///p",
            "http://x.test",
            "http://[::1/",
        ] {
            assert_eq!(UrlParts::split(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_urls() {
        let cases = [
            (
                "http://127.0.0.1:9000",
                "https://x.test/a/b?c=d&e",
                "http://127.0.0.1:9000/a/b?c=d&e",
            ),
            (
                "http://127.0.0.1:9000/",
                "https://x.test/",
                "http://127.0.0.1:9000/",
            ),
            (
                "https://o.test/base/",
                "https://x.test/p%20q?",
                "https://o.test/base/p%20q?",
            ),
            (
                "https://o.test/base",
                "https://x.test/?x=%2F",
                "https://o.test/base/?x=%2F",
            ),
        ];
        for (origin, url, want) in cases {
            let got = origin_url(&Url::parse(origin).unwrap(), UrlParts::split(url).unwrap());
            assert_eq!(got, want, "{origin} {url}");
            // The same as setting the joined path and the query on the origin.
            let (o, u) = (Url::parse(origin).unwrap(), Url::parse(url).unwrap());
            let mut old = o.clone();
            old.set_path(&format!("{}{}", o.path().trim_end_matches('/'), u.path()));
            old.set_query(u.query());
            assert_eq!(got, old.as_str());
        }
    }

    #[test]
    fn secure_mode_ignores_an_unsigned_cioid_and_encodes_the_header() {
        use crate::core::secure::{Secret, SIG_COOKIE};
        let c = config(&[("IDENTIFY_SECRET", "k")]);
        let signed = Secret::new("k").companion(&Identifier::Id("ünï".into()));
        for (cookie, want) in [
            (format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF"), None),
            (
                format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF; {SIG_COOKIE}=00"),
                None,
            ),
            (
                format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF; {SIG_COOKIE}={signed}"),
                Some("%C3%BCn%C3%AF"),
            ),
        ] {
            let inputs = Inputs {
                cookie: Some(&cookie),
                ..get("http://x.test/")
            };
            let f = forwarded(decide(&c, &inputs));
            assert_eq!(header(&f, ID_HEADER), Some(want), "{cookie}");
            assert_eq!(header(&f, ANON_HEADER), Some(Some(ANON)));
        }
    }

    /// Item: in secure mode a link is no identity, so the page needs no
    /// lookup: it is forwarded as any other, with no `_cioid`.
    #[test]
    fn secure_mode_ignores_links() {
        let link = get("http://x.test/p?_cio_id=abc123");
        assert_eq!(decide(&config(&[]), &link), Plan::Rust(Reason::Link));
        let secure = config(&[("IDENTIFY_SECRET", "k")]);
        let f = forwarded(decide(&secure, &link));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert!(f.set_cookies.iter().all(|c| !c.starts_with("_cioid=")));
    }

    #[test]
    fn without_consent_the_page_is_the_origins() {
        let gpc = config(&[
            ("CONSENT", "gpc"),
            ("INJECT_SNIPPET", "true"),
            ("EDGE_PAGE_VIEWS", "true"),
        ]);
        let nav = Inputs {
            sec_fetch_mode: Some("navigate"),
            sec_gpc: Some("1"),
            cookie: Some("_cioid=bob"),
            ..get("http://x.test/p?_cio_id=abc123")
        };
        let f = forwarded(decide(&gpc, &nav));
        assert!(f.set_cookies.is_empty());
        assert_eq!(f.snippet, None);
        assert_eq!(header(&f, ANON_HEADER), Some(None));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert_eq!(anon_id_of(&f.to_text()), None);
        // Without the signal: as today (here, an edge page view and a link).
        let nav = Inputs {
            sec_gpc: None,
            ..nav
        };
        assert_eq!(decide(&gpc, &nav), Plan::Rust(Reason::Link));
        let cookie = config(&[("CONSENT", "cookie:ok=1")]);
        let before = forwarded(decide(&cookie, &get("http://x.test/")));
        assert!(before.set_cookies.is_empty());
        let consented = Inputs {
            cookie: Some("ok=1"),
            ..get("http://x.test/")
        };
        let after = forwarded(decide(&cookie, &consented));
        assert_eq!(after.set_cookies.len(), 1);
        assert_eq!(anon_id_of(&after.to_text()), Some(NEW));
        assert!(after.to_text().ends_with("\nrx-cio-identify\nrx-cio-reset"));
    }

    #[test]
    fn header_text_reads_utf8_bytes_back() {
        assert_eq!(header_text(r#"{"id":"a"}"#), r#"{"id":"a"}"#);
        // "ü" sent as UTF-8 bytes, read by the runtime one byte per character.
        assert_eq!(header_text("\u{c3}\u{bc}"), "ü");
        assert_eq!(header_text("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(header_text("ü€"), "ü€");
    }

    #[test]
    fn inputs_from_lines() {
        let i = Inputs::from_lines("POST\nhttp://x.test/\n\ntext/html\n\napplication/json\n12\n1");
        assert_eq!(i.sec_gpc, Some("1"));
        assert_eq!(i.method, "POST");
        assert_eq!(i.url, "http://x.test/");
        assert_eq!(
            (i.cookie, i.accept, i.sec_fetch_mode),
            (None, Some("text/html"), None)
        );
        assert_eq!(
            (i.content_type, i.content_length),
            (Some("application/json"), Some("12"))
        );
        assert_eq!(
            Inputs::from_lines(""),
            Inputs {
                method: "GET",
                ..Default::default()
            }
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn plan_never_panics_and_never_breaks_a_line(text in ".{0,400}") {
            let open = config(&[("INJECT_SNIPPET", "true")]);
            let secure = config(&[
                ("INJECT_SNIPPET", "true"),
                ("IDENTIFY_SECRET", "k"),
                ("CONSENT", "cookie:ok=1"),
                ("ID_COOKIE", "cio"),
            ]);
            let inputs = Inputs::from_lines(&text);
            for c in [&open, &secure] {
                if let Plan::Forward(f) = &decide(c, &inputs) {
                    for (name, v) in &f.headers {
                        let v = v.as_deref().unwrap_or("");
                        proptest::prop_assert!(!v.contains(['\n', '\r']));
                        // The identifier never reaches the origin as raw UTF-8.
                        proptest::prop_assert!(*name != ID_HEADER || v.is_ascii());
                    }
                    proptest::prop_assert!(!f.target.contains(['\n', '\r']));
                }
            }
        }
    }
}
