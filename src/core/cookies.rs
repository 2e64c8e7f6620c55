//! The edge's two cookies: reading them from a `Cookie` header, validating what
//! a client sent, and building `Set-Cookie` values. Pure; no worker types.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::identifier::Identifier;

/// The companion of `_cioid`: an HMAC of its identifier, HttpOnly.
pub const SIG_COOKIE: &str = "_cioidsig";

pub const ANON_COOKIE: &str = "_cioanonid";
pub const ID_COOKIE: &str = "_cioid";
/// 365 days, as Customer.io's snippet.
pub const COOKIE_MAX_AGE_SECS: i64 = 31_536_000;

/// What `encodeURIComponent` leaves alone; everything else is percent-encoded.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `8-4-4-4-12` hex digits. Customer.io's own snippet issued ids of this shape
/// that are not always v4, so the shape, not the version, is what we accept.
pub fn is_anon_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The identity a request carries in its cookies, already validated: a value
/// the edge could not have issued is dropped here and never travels further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingCookies {
    pub anon_id: Option<String>,
    pub identifier: Option<Identifier>,
}

/// Reads `_cioanonid` and `_cioid` from a `Cookie` header. When a name repeats,
/// the first valid value wins (browsers send the most specific path first).
pub fn read_cookies(header: Option<&str>) -> IncomingCookies {
    let mut found = IncomingCookies::default();
    let Some(header) = header else { return found };
    for (name, value) in split_cookies(header) {
        match name {
            ANON_COOKIE if found.anon_id.is_none() && is_anon_id(value) => {
                found.anon_id = Some(value.to_owned());
            }
            ID_COOKIE if found.identifier.is_none() => {
                found.identifier = decode_id_cookie(value);
            }
            _ => {}
        }
    }
    found
}

/// The `name=value` pairs of a `Cookie` header, trimmed (quotes are part of
/// a value); a piece without `=` or without a name is skipped.
pub fn split_cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|piece| {
        let (name, value) = piece.split_once('=')?;
        let name = name.trim();
        (!name.is_empty()).then(|| (name, value.trim()))
    })
}

/// `encodeURIComponent`, so that any identifier fits in a cookie value.
pub fn encode_id_cookie(identifier: &str) -> String {
    utf8_percent_encode(identifier, URI_COMPONENT).to_string()
}

/// Decodes a `_cioid` value; `None` unless it decodes to a valid identifier.
pub fn decode_id_cookie(raw: &str) -> Option<Identifier> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    Identifier::parse(&decoded).ok()
}

/// When to mark cookies `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureMode {
    /// When the request came over https.
    Auto,
    Always,
    Never,
}

/// How the edge's cookies are scoped: the cookie settings, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookiePolicy {
    pub domain: Option<String>,
    pub secure: SecureMode,
    pub http_only: bool,
    /// `SameSite=None; Secure`, for sites embedded in third-party frames.
    pub cross_site: bool,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        Self {
            domain: None,
            secure: SecureMode::Auto,
            http_only: false,
            cross_site: false,
        }
    }
}

impl CookiePolicy {
    fn build(&self, https: bool, name: &'static str, value: String, max_age: i64) -> String {
        self.build_with(https, name, value, max_age, self.http_only)
    }

    fn build_with(
        &self,
        https: bool,
        name: &'static str,
        value: String,
        max_age: i64,
        http_only: bool,
    ) -> String {
        let secure = self.cross_site
            || match self.secure {
                SecureMode::Auto => https,
                SecureMode::Always => true,
                SecureMode::Never => false,
            };
        // The attribute order of the `cookie` crate, which built these before.
        let mut out = format!("{name}={value}");
        if http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str(if self.cross_site {
            "; SameSite=None"
        } else {
            "; SameSite=Lax"
        });
        if secure {
            out.push_str("; Secure");
        }
        out.push_str("; Path=/");
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        out.push_str("; Max-Age=");
        out.push_str(&max_age.to_string());
        out
    }

    pub fn anon_cookie(&self, https: bool, anon_id: &str) -> String {
        self.build(https, ANON_COOKIE, anon_id.to_owned(), COOKIE_MAX_AGE_SECS)
    }

    pub fn id_cookie(&self, https: bool, identifier: &str) -> String {
        self.build(
            https,
            ID_COOKIE,
            encode_id_cookie(identifier),
            COOKIE_MAX_AGE_SECS,
        )
    }

    pub fn clear_id_cookie(&self, https: bool) -> String {
        self.build(https, ID_COOKIE, String::new(), 0)
    }

    /// The companion of `_cioid` (secure mode): always HttpOnly.
    pub fn sig_cookie(&self, https: bool, value: &str) -> String {
        let name = SIG_COOKIE;
        self.build_with(https, name, value.to_owned(), COOKIE_MAX_AGE_SECS, true)
    }

    pub fn clear_sig_cookie(&self, https: bool) -> String {
        self.build_with(https, SIG_COOKIE, String::new(), 0, true)
    }

    /// A cookie a page script reads too (the Data Pipelines SDK's ids):
    /// never HttpOnly, whatever `COOKIE_HTTPONLY` says.
    pub fn script_cookie(&self, https: bool, name: &'static str, value: &str) -> String {
        self.build_with(https, name, value.to_owned(), COOKIE_MAX_AGE_SECS, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_id_shape() {
        let cases = [
            ("0f8fad5b-d9cb-469f-a165-70867728950e", true),
            ("0A1B2C3D-0000-1000-8000-00000000ABCD", true),
            ("0a1b2c3d-0000-1000-8000-00000000abcd", true), // not v4, kept
            ("abc", false),
            ("", false),
            ("zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz", false),
            ("0f8fad5b-d9cb-469f-a165-70867728950", false),
            ("0f8fad5b-d9cb-469f-a165-70867728950e0", false),
            ("0f8fad5bd-9cb-469f-a165-70867728950e", false),
            ("12345678-1234-4123-8123-1234567\r\n90", false),
            ("0f8fad5b-d9cb-469f-a165-70867728950é", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_anon_id(value), expected, "{value:?}");
        }
        assert!(!is_anon_id(&"a".repeat(3000)));
    }

    #[test]
    fn reads_valid_cookies_and_drops_forgeries() {
        let anon = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let cases: Vec<(Option<&str>, Option<&str>, Option<Identifier>)> = vec![
            (None, None, None),
            (Some(""), None, None),
            (Some("_cioanonid=abc"), None, None),
            (
                Some("_cioanonid=12345678-1234-4123-8123-1234567%0d%0a"),
                None,
                None,
            ),
            (
                Some("a=1; _cioanonid=0f8fad5b-d9cb-469f-a165-70867728950e; b=2"),
                Some(anon),
                None,
            ),
            (
                Some("_cioanonid=bad; _cioanonid=0f8fad5b-d9cb-469f-a165-70867728950e"),
                Some(anon),
                None,
            ),
            (
                Some("_cioid=user%201"),
                None,
                Some(Identifier::Id("user 1".into())),
            ),
            (
                Some("_cioid=Bob%40Example.com"),
                None,
                Some(Identifier::Email("bob@example.com".into())),
            ),
            (
                Some("_cioid=cio_a1b2c3"),
                None,
                Some(Identifier::CioId("a1b2c3".into())),
            ),
            (Some("_cioid=%20%20"), None, None),
            (Some("_cioid=%FF%FE"), None, None),
            (Some("_cioid="), None, None),
            (Some("garbage;;;=;"), None, None),
        ];
        for (header, anon_id, identifier) in cases {
            let got = read_cookies(header);
            assert_eq!(got.anon_id.as_deref(), anon_id, "{header:?}");
            assert_eq!(got.identifier, identifier, "{header:?}");
        }
        let long = format!("_cioid={}", "x".repeat(151));
        assert_eq!(read_cookies(Some(&long)).identifier, None);
    }

    #[test]
    fn id_cookie_round_trips_like_encode_uri_component() {
        for id in [
            "plain",
            "user 1",
            "a;b,c=d",
            "ünï©ødé",
            "x'(y)*!~._-",
            "bob@example.com",
        ] {
            let encoded = encode_id_cookie(id);
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b','),
                "{encoded}"
            );
            assert_eq!(percent_decode_str(&encoded).decode_utf8().unwrap(), id);
        }
        assert_eq!(encode_id_cookie("a b@c.d"), "a%20b%40c.d");
    }

    fn attrs(set_cookie: &str) -> Vec<String> {
        let mut parts: Vec<String> = set_cookie.split("; ").map(str::to_owned).collect();
        parts.sort();
        parts
    }

    #[test]
    fn set_cookie_attributes() {
        let anon = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let default = CookiePolicy::default();
        let expected = |extra: &[&str]| {
            let mut v: Vec<String> = [&format!("_cioanonid={anon}"), "Path=/", "Max-Age=31536000"]
                .iter()
                .map(|s| s.to_string())
                .chain(extra.iter().map(|s| s.to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            attrs(&default.anon_cookie(false, anon)),
            expected(&["SameSite=Lax"])
        );
        assert_eq!(
            attrs(&default.anon_cookie(true, anon)),
            expected(&["SameSite=Lax", "Secure"])
        );

        let never = CookiePolicy {
            secure: SecureMode::Never,
            ..CookiePolicy::default()
        };
        assert_eq!(
            attrs(&never.anon_cookie(true, anon)),
            expected(&["SameSite=Lax"])
        );
        let always = CookiePolicy {
            secure: SecureMode::Always,
            ..CookiePolicy::default()
        };
        assert_eq!(
            attrs(&always.anon_cookie(false, anon)),
            expected(&["SameSite=Lax", "Secure"])
        );

        let domain = CookiePolicy {
            domain: Some("example.com".into()),
            ..CookiePolicy::default()
        };
        assert_eq!(
            attrs(&domain.anon_cookie(false, anon)),
            expected(&["SameSite=Lax", "Domain=example.com"])
        );
        let cross = CookiePolicy {
            cross_site: true,
            ..CookiePolicy::default()
        };
        assert_eq!(
            attrs(&cross.anon_cookie(false, anon)),
            expected(&["SameSite=None", "Secure"])
        );
        let http_only = CookiePolicy {
            http_only: true,
            ..CookiePolicy::default()
        };
        assert_eq!(
            attrs(&http_only.anon_cookie(false, anon)),
            expected(&["SameSite=Lax", "HttpOnly"])
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn cookie_parser_never_panics_and_never_passes_a_forgery(header in ".{0,300}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for h in [header.clone(), String::from_utf8_lossy(&raw).into_owned(), format!("_cioanonid={header}; _cioid={header}")] {
                let got = read_cookies(Some(&h));
                if let Some(anon) = &got.anon_id {
                    proptest::prop_assert!(is_anon_id(anon));
                }
                if let Some(identifier) = &got.identifier {
                    let written = identifier.as_written();
                    proptest::prop_assert!(!written.is_empty() && written.len() <= 150 + 4);
                    proptest::prop_assert!(!written.chars().any(char::is_control));
                }
            }
        }
    }

    #[test]
    fn splits_cookie_headers_like_browsers_send_them() {
        let pairs: Vec<_> =
            split_cookies(" a=1;b = 2 ;; novalue; =x; c=\"q\"; d=\"; e=f=g").collect();
        assert_eq!(
            pairs,
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "\"q\""),
                ("d", "\""),
                ("e", "f=g")
            ]
        );
    }

    #[test]
    fn id_cookie_and_its_clearing() {
        let p = CookiePolicy::default();
        assert!(p.id_cookie(false, "a b").starts_with("_cioid=a%20b;"));
        let cleared = p.clear_id_cookie(false);
        assert!(cleared.starts_with("_cioid=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}
