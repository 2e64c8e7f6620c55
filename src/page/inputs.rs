//! What the page path reads of a request: the raw inputs as the runtime hands
//! them over, the parts of the URL, and what they say (a navigation, a
//! `_cio_id` link, a small form post).

use crate::core::form::MAX_FORM_BYTES;
use crate::core::identifier::is_cio_id;

/// The link parameter that identifies a visitor (`AUTO_IDENTIFY_LINKS`).
pub const LINK_PARAM: &str = "_cio_id";

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

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

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
}
