//! The Pipelines source the edge stands in for: its paths under
//! `/_cio/cdp/`, the write key check, and the settings the browser SDK loads
//! from `{cdnURL}/v1/projects/<writeKey>/settings`.

use serde_json::{json, Value};

use super::call::Kind;
use crate::core::auth::constant_time_eq;
use crate::core::body::Object;
use crate::core::error::Error;

/// The name of the SDK's own destination in its settings.
pub const INTEGRATION: &str = "Customer.io Data Pipelines";

/// What a path under `/_cio/cdp/` asks for (`segments`: the path after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `GET v1/projects/<writeKey>/settings`
    Settings(String),
    /// `GET v1/analytics-js/snippet/<writeKey>/analytics.min.js`: the SDK
    /// bundle the Pipelines snippet loads.
    Bundle(String),
    /// `GET v1/analytics-js/<chunk>.js`: a part the bundle loads later.
    Chunk(String),
    /// `POST v1/{i,t,p,s,g,a}` or `v1/{identify,track,..}`
    Call(Kind),
    /// `POST v1/b` or `v1/batch`
    Batch,
    /// A known path with the wrong method.
    WrongMethod,
    NotFound,
}

pub fn path(method: &str, segments: &[&str]) -> Path {
    let get = matches!(method, "GET" | "HEAD");
    let post = method == "POST";
    match segments {
        ["v1", "projects", key, "settings"] if get => Path::Settings((*key).to_owned()),
        ["v1", "analytics-js", "snippet", key, "analytics.min.js"] if get => {
            Path::Bundle((*key).to_owned())
        }
        ["v1", "analytics-js", chunk] if get && is_chunk_name(chunk) => {
            Path::Chunk((*chunk).to_owned())
        }
        ["v1", "b" | "batch"] if post => Path::Batch,
        ["v1", name] if post && Kind::parse(name).is_some() => {
            Kind::parse(name).map_or(Path::NotFound, Path::Call)
        }
        ["v1", "projects", _, "settings"]
        | ["v1", "analytics-js", "snippet", _, "analytics.min.js"] => Path::WrongMethod,
        ["v1", name] if Kind::parse(name).is_some() || matches!(*name, "b" | "batch") => {
            Path::WrongMethod
        }
        _ => Path::NotFound,
    }
}

/// A bundle part's file name: letters, digits and `-`, then `.js`.
fn is_chunk_name(name: &str) -> bool {
    name.strip_suffix(".js").is_some_and(|stem| {
        !stem.is_empty()
            && stem.len() <= 64
            && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The write key a call carries: `writeKey` in its body (the browser SDK),
/// else the user of HTTP Basic auth (the node SDK and the Pipelines API).
pub fn write_key_of(body: &Object, authorization: Option<&str>) -> Option<String> {
    if let Some(key) = body.get("writeKey").and_then(Value::as_str) {
        return Some(key.to_owned());
    }
    use base64::Engine;
    let encoded = authorization?.trim();
    let encoded = encoded
        .strip_prefix("Basic ")
        .or_else(|| encoded.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(user, _)| user)
            .to_owned(),
    )
}

/// The call's write key against `CIO_CDP_WRITE_KEY`: missing or another
/// source's is a clear 400 naming `writeKey`.
pub fn check_write_key(given: Option<&str>, configured: &str) -> Result<(), Error> {
    match given {
        None => Err(Error::invalid(
            "writeKey",
            "is required: in the body or as the user of Basic auth",
        )),
        Some(key) if constant_time_eq(key.as_bytes(), configured.as_bytes()) => Ok(()),
        Some(_) => Err(Error::invalid(
            "writeKey",
            "is not the write key of this edge's Data Pipelines source (CIO_CDP_WRITE_KEY)",
        )),
    }
}

/// The source settings the browser SDK loads: its calls go to this edge
/// (`apiHost`, by the protocol the page came over), its metrics are off (they
/// would go to Customer.io), and no other destination or plugin is loaded.
pub fn settings(write_key: &str, authority: &str, https: bool) -> Value {
    let api_host = format!("{authority}/_cio/cdp/v1");
    json!({
        "integrations": {
            INTEGRATION: {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": if https { "https" } else { "http" },
            }
        },
        "plan": {},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": { "sampleRate": 0, "host": api_host },
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let cases: &[(&str, &[&str], Path)] = &[
            (
                "GET",
                &["v1", "projects", "wk", "settings"],
                Path::Settings("wk".into()),
            ),
            (
                "HEAD",
                &["v1", "projects", "wk", "settings"],
                Path::Settings("wk".into()),
            ),
            (
                "POST",
                &["v1", "projects", "wk", "settings"],
                Path::WrongMethod,
            ),
            (
                "GET",
                &["v1", "analytics-js", "snippet", "wk", "analytics.min.js"],
                Path::Bundle("wk".into()),
            ),
            (
                "GET",
                &["v1", "analytics-js", "573.js"],
                Path::Chunk("573.js".into()),
            ),
            (
                "GET",
                &["v1", "analytics-js", "ajs-destination.js"],
                Path::Chunk("ajs-destination.js".into()),
            ),
            ("GET", &["v1", "analytics-js", "../x.js"], Path::NotFound),
            ("GET", &["v1", "analytics-js", ".js"], Path::NotFound),
            ("POST", &["v1", "t"], Path::Call(Kind::Track)),
            ("POST", &["v1", "identify"], Path::Call(Kind::Identify)),
            ("POST", &["v1", "screen"], Path::Call(Kind::Screen)),
            ("POST", &["v1", "b"], Path::Batch),
            ("POST", &["v1", "batch"], Path::Batch),
            ("GET", &["v1", "t"], Path::WrongMethod),
            ("GET", &["v1", "batch"], Path::WrongMethod),
            ("POST", &["v1", "x"], Path::NotFound),
            ("GET", &[""], Path::NotFound),
        ];
        for (method, segments, want) in cases {
            assert_eq!(&path(method, segments), want, "{method} {segments:?}");
        }
    }

    #[test]
    fn write_key_from_body_or_basic_auth() {
        let body: Object = serde_json::from_value(json!({"writeKey": "wk"})).unwrap();
        assert_eq!(
            write_key_of(&body, Some("Basic b3RoZXI6")).as_deref(),
            Some("wk")
        );
        let empty = Object::new();
        // base64("wk:") as the node SDK sends it.
        assert_eq!(
            write_key_of(&empty, Some("Basic d2s6")).as_deref(),
            Some("wk")
        );
        assert_eq!(
            write_key_of(&empty, Some("Basic d2s=")).as_deref(),
            Some("wk")
        );
        assert_eq!(write_key_of(&empty, Some("Bearer wk")), None);
        assert_eq!(write_key_of(&empty, Some("Basic !!")), None);
        assert_eq!(write_key_of(&empty, None), None);
    }

    #[test]
    fn write_key_check_names_the_field() {
        assert!(check_write_key(Some("wk"), "wk").is_ok());
        for given in [None, Some("other"), Some("")] {
            let e = check_write_key(given, "wk").unwrap_err();
            assert_eq!((e.status(), e.field()), (400, Some("writeKey")));
        }
    }

    #[test]
    fn settings_point_the_sdk_at_the_edge() {
        let s = settings("wk", "shop.example.com", true);
        let cio = &s["integrations"][INTEGRATION];
        assert_eq!(cio["apiKey"], "wk");
        assert_eq!(cio["apiHost"], "shop.example.com/_cio/cdp/v1");
        assert_eq!(cio["protocol"], "https");
        assert_eq!(s["metrics"]["sampleRate"], 0);
        let s = settings("wk", "127.0.0.1:8787", false);
        assert_eq!(s["integrations"][INTEGRATION]["protocol"], "http");
        assert_eq!(
            s["integrations"][INTEGRATION]["apiHost"],
            "127.0.0.1:8787/_cio/cdp/v1"
        );
    }
}
