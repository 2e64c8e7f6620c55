//! ITP-proof ids for the Data Pipelines SDK. The SDK keeps its ids in
//! script-set cookies (`ajs_anonymous_id`, `ajs_user_id`), which Safari caps
//! at 7 days; on document responses the edge sets them again from the
//! server, first-party and not HttpOnly (the SDK reads them), so they live
//! a year. It never replaces a value the browser holds with another.

use percent_encoding::percent_decode_str;

use crate::config::Config;
use crate::core::cookies::{split_cookies, CookiePolicy};

pub const AJS_ANON: &str = "ajs_anonymous_id";
pub const AJS_USER: &str = "ajs_user_id";
/// Longer values are left alone (the SDK's are UUIDs and user ids).
const MAX_RAW_BYTES: usize = 300;

/// An id cookie's value as the SDK reads it: percent-decoded, then a JSON
/// string unquoted (older SDKs wrote `"%22<id>%22"`), else taken as it is.
pub fn read_value(raw: &str) -> Option<String> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    let value = match serde_json::from_str::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::String(s)) => s,
        _ => decoded.into_owned(),
    };
    (!value.is_empty() && !value.chars().any(char::is_control)).then_some(value)
}

/// A value the edge may send back byte for byte in a `Set-Cookie`: cookie
/// octets (RFC 6265), optionally in double quotes.
fn resendable(raw: &str) -> bool {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    !raw.is_empty()
        && raw.len() <= MAX_RAW_BYTES
        && inner
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// Whether a cookie the edge sets is the very cookie the SDK writes. The
/// SDK scopes its cookies to the highest domain the browser lets it set:
/// host-only on an IP address or a one-label host, else a `Domain`. The edge
/// matches it only where it knows that domain: there, or with
/// `COOKIE_DOMAIN`. Otherwise the two would be twins, and the SDK's
/// `reset()` would clear its own and read the edge's back.
pub fn same_scope_as_sdk(host: &str, policy: &CookiePolicy) -> bool {
    if policy.domain.is_some() {
        return true;
    }
    let parts: Vec<&str> = host.split('.').collect();
    let ipv4 = parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok());
    host.starts_with('[') || ipv4 || parts.len() <= 1
}

/// The only raw value of `name` in a `Cookie` header; two different values
/// (twin cookies of two scopes) are ambiguous: none.
fn only_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let mut found: Option<&str> = None;
    for (n, v) in split_cookies(header) {
        if n == name {
            match found {
                Some(f) if f != v => return None,
                _ => found = Some(v),
            }
        }
    }
    found
}

/// The `Set-Cookie` values for a document response, with the Data
/// Pipelines source on (`CIO_CDP_WRITE_KEY`): an existing `ajs_anonymous_id`
/// re-set as it is; `ajs_anonymous_id` created equal to `_cioanonid` when
/// absent; an existing `ajs_user_id` re-set when it names the identity the
/// edge holds (`identifier`, as `_cioid` writes it).
pub fn document_cookies(
    config: &Config,
    cookie_header: Option<&str>,
    host: &str,
    https: bool,
    anon_id: &str,
    identifier: Option<&str>,
) -> Vec<String> {
    let policy = &config.cookies;
    if config.cdp_write_key.is_none() || !same_scope_as_sdk(host, policy) {
        return Vec::new();
    }
    let header = cookie_header.unwrap_or_default();
    let mut out = Vec::new();
    let has_anon = split_cookies(header).any(|(n, _)| n == AJS_ANON);
    match only_value(header, AJS_ANON) {
        Some(raw) if resendable(raw) && read_value(raw).is_some() => {
            out.push(policy.script_cookie(https, AJS_ANON, raw));
        }
        None if !has_anon => out.push(policy.script_cookie(https, AJS_ANON, anon_id)),
        _ => {}
    }
    if let (Some(raw), Some(identifier)) = (only_value(header, AJS_USER), identifier) {
        if resendable(raw) && read_value(raw).as_deref() == Some(identifier) {
            out.push(policy.script_cookie(https, AJS_USER, raw));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ANON: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("ORIGIN_URL".into(), "http://127.0.0.1:9000".into());
        Config::from_lookup(|n| map.get(n).cloned()).unwrap()
    }

    fn on() -> Config {
        config(&[("CIO_CDP_WRITE_KEY", "wk")])
    }

    fn doc(c: &Config, header: &str, host: &str, identifier: Option<&str>) -> Vec<String> {
        document_cookies(c, Some(header), host, false, ANON, identifier)
    }

    #[test]
    fn values_as_the_sdk_reads_them() {
        assert_eq!(read_value("abc").as_deref(), Some("abc"));
        assert_eq!(read_value("%22abc%22").as_deref(), Some("abc"));
        assert_eq!(read_value("\"abc\"").as_deref(), Some("abc"));
        assert_eq!(read_value("ann%40x.co").as_deref(), Some("ann@x.co"));
        assert_eq!(read_value("%22ann%40x.co%22").as_deref(), Some("ann@x.co"));
        assert_eq!(read_value("42").as_deref(), Some("42"));
        assert_eq!(read_value(""), None);
        assert_eq!(read_value("%22%22"), None);
        assert_eq!(read_value("%0A"), None);
        assert_eq!(read_value("%FF"), None);
    }

    #[test]
    fn off_without_a_write_key() {
        assert!(doc(&config(&[]), "", "127.0.0.1", None).is_empty());
    }

    #[test]
    fn created_equal_to_the_visitor_when_absent() {
        let got = doc(&on(), "a=1", "127.0.0.1", None);
        assert_eq!(
            got,
            vec![format!(
                "ajs_anonymous_id={ANON}; SameSite=Lax; Path=/; Max-Age=31536000"
            )]
        );
    }

    #[test]
    fn an_existing_value_is_set_again_exactly_never_replaced() {
        for raw in ["other-id", "%22other-id%22", "\"other-id\""] {
            let got = doc(&on(), &format!("ajs_anonymous_id={raw}"), "localhost", None);
            assert_eq!(
                got,
                vec![format!(
                    "ajs_anonymous_id={raw}; SameSite=Lax; Path=/; Max-Age=31536000"
                )],
                "{raw}"
            );
        }
        // Unreadable, too long, or twins with two values: left alone.
        for header in [
            "ajs_anonymous_id=%FF".to_owned(),
            format!("ajs_anonymous_id={}", "a".repeat(400)),
            "ajs_anonymous_id=a; ajs_anonymous_id=b".to_owned(),
            "ajs_anonymous_id=".to_owned(),
        ] {
            assert!(
                doc(&on(), &header, "localhost", None).is_empty(),
                "{header}"
            );
        }
        // The same twice (two scopes agreeing) is one value.
        assert_eq!(
            doc(
                &on(),
                "ajs_anonymous_id=a; ajs_anonymous_id=a",
                "localhost",
                None
            )
            .len(),
            1
        );
    }

    #[test]
    fn the_user_id_only_when_the_edge_holds_that_identity() {
        let header = "ajs_anonymous_id=x; ajs_user_id=%22u-1%22";
        let got = doc(&on(), header, "localhost", Some("u-1"));
        assert_eq!(got.len(), 2);
        assert!(got[1].starts_with("ajs_user_id=%22u-1%22;"), "{got:?}");
        assert_eq!(doc(&on(), header, "localhost", Some("u-2")).len(), 1);
        assert_eq!(doc(&on(), header, "localhost", None).len(), 1);
        assert_eq!(
            doc(
                &on(),
                "ajs_anonymous_id=x; ajs_user_id=ann%40x.co",
                "localhost",
                Some("ann@x.co")
            )
            .len(),
            2
        );
    }

    #[test]
    fn never_http_only_and_scoped_as_the_sdk_scopes_them() {
        let c = config(&[
            ("CIO_CDP_WRITE_KEY", "wk"),
            ("COOKIE_HTTPONLY", "true"),
            ("COOKIE_DOMAIN", "example.com"),
        ]);
        let got = document_cookies(&c, None, "www.example.com", true, ANON, None);
        assert_eq!(got, vec![format!("ajs_anonymous_id={ANON}; SameSite=Lax; Secure; Path=/; Domain=example.com; Max-Age=31536000")]);
        // A dotted host name without COOKIE_DOMAIN: the SDK's cookie has a
        // Domain the edge does not know, so it sets none.
        assert!(doc(&on(), "", "www.example.com", None).is_empty());
        assert!(doc(&on(), "", "example.com", None).is_empty());
        assert_eq!(doc(&on(), "", "192.168.0.10", None).len(), 1);
        assert_eq!(doc(&on(), "", "[::1]", None).len(), 1);
        assert_eq!(doc(&on(), "", "intranet", None).len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn document_cookies_never_panic(header in "\\PC{0,200}", host in "\\PC{0,30}", id in proptest::option::of("\\PC{0,20}")) {
            let header = format!("{header}; ajs_user_id={}", id.clone().unwrap_or_default());
            let _ = document_cookies(&on(), Some(&header), &host, true, ANON, id.as_deref());
            for (_, v) in split_cookies(&header) {
                let _ = read_value(v);
            }
        }
    }
}
