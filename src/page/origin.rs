//! The page path's side facing the origin: the request forwarded to it (what
//! the origin is told, which cookies are set, whether the page gets the
//! snippet) and the origin's answer (the snippet's place, the response
//! headers by which the origin identifies or resets the visitor).

use url::Url;

use crate::config::Config;
use crate::core::secure::origin_id_header;
use crate::core::snippet::{SNIPPET, SNIPPET_IN_APP};

use super::inputs::UrlParts;

pub const ANON_HEADER: &str = "x-cio-anon-id";
pub const ID_HEADER: &str = "x-cio-id";
/// Response headers by which the origin identifies or resets the visitor
/// (docs/API.md section 10); never passed on to the browser.
pub const IDENTIFY_HEADER: &str = "x-cio-identify";
pub const RESET_HEADER: &str = "x-cio-reset";
pub const ORIGIN_HEADERS: [&str; 2] = [IDENTIFY_HEADER, RESET_HEADER];

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

/// The origin's word to the edge on a forwarded page: what its response
/// headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginWord<'a> {
    /// `X-Cio-Identify`: an identify body (wins over a reset).
    Identify(std::borrow::Cow<'a, str>),
    /// `X-Cio-Reset: 1`.
    Reset,
}

impl<'a> OriginWord<'a> {
    /// Reads the watched headers' values; `anon_id` is the id the plan told
    /// the origin (none without consent, and then nothing applies).
    pub fn read(
        anon_id: Option<&str>,
        identify: Option<&'a str>,
        reset: Option<&str>,
    ) -> Result<Self, &'static str> {
        if anon_id.is_none() {
            return Err("X-Cio-Identify or X-Cio-Reset ignored: no consent");
        }
        if let Some(raw) = identify {
            return Ok(OriginWord::Identify(header_text(raw)));
        }
        if reset.map(str::trim) == Some("1") {
            return Ok(OriginWord::Reset);
        }
        Err("X-Cio-Reset ignored: only 1 resets")
    }
}

/// The cookies a page answer gets when the origin's word set `extra`: the
/// plan's, but for one set again by name, then `extra`.
pub fn merge_cookies(plan: &[&str], mut extra: Vec<String>) -> Vec<String> {
    let name = |c: &str| c.split('=').next().map(str::to_owned);
    let mut out: Vec<String> = plan
        .iter()
        .filter(|c| !extra.iter().any(|e| name(c) == name(e)))
        .map(|c| c.to_string())
        .collect();
    out.append(&mut extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn header_text_reads_utf8_bytes_back() {
        assert_eq!(header_text(r#"{"id":"a"}"#), r#"{"id":"a"}"#);
        // "ü" sent as UTF-8 bytes, read by the runtime one byte per character.
        assert_eq!(header_text("\u{c3}\u{bc}"), "ü");
        assert_eq!(header_text("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(header_text("ü€"), "ü€");
    }

    #[test]
    fn the_origins_word() {
        let anon = Some("a");
        assert_eq!(
            OriginWord::read(anon, Some("{}"), Some("1")),
            Ok(OriginWord::Identify("{}".into()))
        );
        assert_eq!(
            OriginWord::read(anon, None, Some(" 1 ")),
            Ok(OriginWord::Reset)
        );
        assert!(OriginWord::read(anon, None, Some("yes")).is_err());
        assert!(OriginWord::read(anon, None, None).is_err());
        assert!(OriginWord::read(None, Some("{}"), Some("1")).is_err());
        // UTF-8 bytes the runtime hands over one per character are read back.
        assert_eq!(
            OriginWord::read(anon, Some("\u{c3}\u{bc}"), None),
            Ok(OriginWord::Identify("ü".into()))
        );
    }

    #[test]
    fn cookies_set_again_replace_the_plans() {
        let plan = ["_cioanonid=a; Path=/", "_cioid=x; Path=/"];
        for (extra, want) in [
            (vec![], vec!["_cioanonid=a; Path=/", "_cioid=x; Path=/"]),
            (
                vec!["_cioid=y; Path=/"],
                vec!["_cioanonid=a; Path=/", "_cioid=y; Path=/"],
            ),
            (
                vec!["_cioidsig=s", "_cioanonid=b"],
                vec!["_cioid=x; Path=/", "_cioidsig=s", "_cioanonid=b"],
            ),
        ] {
            let extra = extra.into_iter().map(String::from).collect();
            assert_eq!(merge_cookies(&plan, extra), want);
        }
    }
}
