//! Secure mode (docs/API.md section 10): identity the site vouches for, and
//! consent. `IDENTIFY_SECRET` signs identifiers with HMAC-SHA256: the site's
//! backend computes `user_hash` for a browser identify, and the edge keeps a
//! companion cookie beside `_cioid` so a hand-set `_cioid` is worth nothing.
//! `CONSENT` decides whether a request may be tracked at all. Pure, CPU only:
//! the page path verifies without storage.

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use sha2::Sha256;

pub use super::cookies::SIG_COOKIE;
use super::cookies::{split_cookies, CookiePolicy, IncomingCookies};
use super::error::Error;
use super::identifier::Identifier;
use super::profile::Identify;

/// Domain separation: a companion is never a valid `user_hash`, nor back.
const SIG_CONTEXT: &[u8] = b"cio-edge _cioid\n";

/// `IDENTIFY_SECRET`. Its bytes never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: &str) -> Self {
        Secret(value.as_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: the error cannot happen.
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!(),
        }
    }

    /// The lowercase hex HMAC-SHA256 of `message`: what a site's backend
    /// computes as `user_hash`.
    pub fn user_hash(&self, message: &str) -> String {
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `given` is the `user_hash` of `message` (constant time).
    pub fn verify_user_hash(&self, message: &str, given: &str) -> bool {
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        unhex(given).is_some_and(|bytes| mac.verify_slice(&bytes).is_ok())
    }

    fn companion_mac(&self, identifier: &Identifier) -> Hmac<Sha256> {
        let mut mac = self.mac();
        mac.update(SIG_CONTEXT);
        mac.update(identifier.as_written().as_bytes());
        mac
    }

    /// The companion cookie's value for an identifier.
    pub fn companion(&self, identifier: &Identifier) -> String {
        hex(&self.companion_mac(identifier).finalize().into_bytes())
    }

    /// Whether a companion value signs this identifier (constant time).
    pub fn verify_companion(&self, identifier: &Identifier, given: &str) -> bool {
        unhex(given)
            .is_some_and(|bytes| self.companion_mac(identifier).verify_slice(&bytes).is_ok())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Lowercase hex only (the documented form); anything else is `None`.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `ID_COOKIE`: what `_cioid` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdCookie {
    /// The identifier used to identify (the email when it was the id).
    #[default]
    Identifier,
    /// Always `cio_<cio_id>`: no email in any cookie or origin header.
    Cio,
}

/// `CONSENT`: when a request may be tracked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Consent {
    /// Always (as without the setting).
    #[default]
    None,
    /// Unless the browser sends `Sec-GPC: 1`.
    Gpc,
    /// Only once the site's own cookie `name` has `value`.
    Cookie { name: String, value: String },
}

impl Consent {
    /// Parses `none`, `gpc` or `cookie:<name>=<value>`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(Consent::None),
            "gpc" => Some(Consent::Gpc),
            _ => {
                let (name, value) = raw.strip_prefix("cookie:")?.split_once('=')?;
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"'))
                };
                (token(name) && token(value) && !name.contains('=')).then(|| Consent::Cookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                })
            }
        }
    }

    /// Whether a request with these headers may be tracked.
    pub fn allows(&self, cookie_header: Option<&str>, sec_gpc: Option<&str>) -> bool {
        match self {
            Consent::None => true,
            Consent::Gpc => sec_gpc.map(str::trim) != Some("1"),
            Consent::Cookie { name, value } => cookie_header
                .is_some_and(|header| split_cookies(header).any(|(n, v)| n == name && v == value)),
        }
    }
}

/// The identity settings the edge applies to cookies, read once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    pub secret: Option<Secret>,
    pub id_cookie: IdCookie,
}

impl Trust {
    /// Keeps the `_cioid` of `cookies` only when it can be trusted: with a
    /// secret, when the companion in the `Cookie` header signs it; with
    /// `ID_COOKIE=cio`, only a `cio_<cio_id>` (an older cookie holding an
    /// email is never forwarded).
    pub fn vouch(&self, mut cookies: IncomingCookies, header: Option<&str>) -> IncomingCookies {
        let Some(identifier) = &cookies.identifier else {
            return cookies;
        };
        let signed = match &self.secret {
            None => true,
            Some(secret) => {
                companion_of(header).is_some_and(|value| secret.verify_companion(identifier, value))
            }
        };
        let shaped =
            self.id_cookie == IdCookie::Identifier || matches!(identifier, Identifier::CioId(_));
        if !(signed && shaped) {
            cookies.identifier = None;
        }
        cookies
    }

    /// Whether a `_cio_id` link may identify a browser. Not in secure mode:
    /// a link's `_cio_id` is signed by no one (anyone who knows or sees a
    /// person's cio_id can write it), so it cannot become an identity the
    /// origin trusts, and an unsigned one would be ignored on the next
    /// request anyway. Secure mode identifies only by `user_hash` or the
    /// origin's `X-Cio-Identify` (rule 10.3).
    pub fn honours_links(&self) -> bool {
        self.secret.is_none()
    }

    /// What `_cioid` holds for a person identified as `identifier`.
    pub fn cookie_identifier(&self, identifier: &Identifier, cio_id: &str) -> Identifier {
        match self.id_cookie {
            IdCookie::Identifier => identifier.clone(),
            IdCookie::Cio => Identifier::CioId(cio_id.to_owned()),
        }
    }

    /// The `Set-Cookie` values that identify a browser: `_cioid`, and with a
    /// secret its HttpOnly companion.
    pub fn id_cookies(
        &self,
        policy: &CookiePolicy,
        https: bool,
        identifier: &Identifier,
    ) -> Vec<String> {
        let mut out = vec![policy.id_cookie(https, &identifier.as_written())];
        if let Some(secret) = &self.secret {
            out.push(policy.sig_cookie(https, &secret.companion(identifier)));
        }
        out
    }

    /// The `Set-Cookie` values that forget the identity (reset).
    pub fn clear_id_cookies(&self, policy: &CookiePolicy, https: bool) -> Vec<String> {
        let mut out = vec![policy.clear_id_cookie(https)];
        if self.secret.is_some() {
            out.push(policy.clear_sig_cookie(https));
        }
        out
    }
}

/// The first companion value of a `Cookie` header.
fn companion_of(header: Option<&str>) -> Option<&str> {
    split_cookies(header?).find_map(|(name, value)| (name == SIG_COOKIE).then_some(value))
}

/// What `X-Cio-Id` carries toward the origin: the identifier with every
/// byte outside printable ASCII, and `%` itself, percent-encoded, so a header
/// never holds raw UTF-8 and decoding gives the identifier back exactly.
pub fn origin_id_header(written: &str) -> String {
    const HEADER: &AsciiSet = &CONTROLS.add(b'%');
    utf8_percent_encode(written, HEADER).to_string()
}

/// The body field that vouches for the identifier of a browser identify.
pub const USER_HASH: &str = "user_hash";
/// The body field that vouches for an `email` given beside an `id`.
pub const EMAIL_HASH: &str = "email_hash";

/// Rule 10.2: what a verified browser identify may claim. `user_hash` signs
/// the identifier as the edge keeps it (`Identifier::as_written`: the id
/// trimmed, an email NFC-lowercased), the one string that becomes `_cioid`
/// and `X-Cio-Id`, so no other spelling of someone else's identity passes
/// with the attacker's own hash. It vouches for that identifier only: an
/// `email` beside an `id` is a second identity (it finds, joins or claims
/// the person holding that address), so it needs its own proof, `email_hash`
/// (the same HMAC of the email as the edge keeps it), or the origin's
/// `X-Cio-Identify`. Attributes and relationships are the person's own data
/// and need nothing more.
pub fn verify_identify(
    secret: &Secret,
    identify: &Identify,
    user_hash: Option<&serde_json::Value>,
    email_hash: Option<&serde_json::Value>,
) -> Result<(), Error> {
    let kept = identify.identifier.as_written();
    check_hash(secret, USER_HASH, &kept, user_hash)?;
    let beside = match (&identify.update.email, &identify.identifier) {
        (Some(email), Identifier::Email(id)) if email == id => None,
        (email, _) => email.as_deref(),
    };
    if let Some(email) = beside {
        if email_hash.is_none() {
            return Err(Error::Unverified {
                field: "email".into(),
                message: format!(
                    "email: in secure mode an email beside the id needs {EMAIL_HASH}, the HMAC-SHA256 of {email:?} (as the edge keeps it), or the origin's X-Cio-Identify"
                ),
            });
        }
        check_hash(secret, EMAIL_HASH, email, email_hash)?;
    }
    Ok(())
}

/// Whether `given` is the lowercase hex HMAC of `kept`, as a refusal naming
/// `field` otherwise.
fn check_hash(
    secret: &Secret,
    field: &'static str,
    kept: &str,
    given: Option<&serde_json::Value>,
) -> Result<(), Error> {
    let ok = match given {
        Some(serde_json::Value::String(hash)) => secret.verify_user_hash(kept, hash),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Error::Unverified {
        field: field.into(),
        message: format!(
            "{field}: must be the lowercase hex HMAC-SHA256 of {kept:?}, the identifier as the edge keeps it (trimmed; an email lowercased in Unicode NFC)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cookies::read_cookies;

    #[test]
    fn user_hash_is_rfc_4231_hmac_sha256_in_lowercase_hex() {
        // RFC 4231 test case 2.
        let secret = Secret::new("Jefe");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(secret.user_hash("what do ya want for nothing?"), want);
        assert!(secret.verify_user_hash("what do ya want for nothing?", want));
        assert!(!secret.verify_user_hash("what do ya want for nothing?", &want.to_uppercase()));
        assert!(!secret.verify_user_hash("what do ya want for nothing!", want));
        assert!(!secret.verify_user_hash("x", ""));
        assert!(!secret.verify_user_hash("x", "zz"));
        assert!(!Secret::new("other").verify_user_hash("what do ya want for nothing?", want));
    }

    #[test]
    fn a_companion_signs_one_identifier_and_is_no_user_hash() {
        let secret = Secret::new("s3cret");
        let bob = Identifier::parse("Bob@Example.com").unwrap();
        let sig = secret.companion(&bob);
        assert!(secret.verify_companion(&bob, &sig));
        assert!(!secret.verify_companion(&Identifier::parse("alice@example.com").unwrap(), &sig));
        assert!(!Secret::new("other").verify_companion(&bob, &sig));
        assert_ne!(sig, secret.user_hash("bob@example.com"));
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }

    #[test]
    fn vouch_keeps_only_signed_identities() {
        let secret = Secret::new("k");
        let trust = Trust {
            secret: Some(secret.clone()),
            id_cookie: IdCookie::Identifier,
        };
        let user = Identifier::Id("user 1".into());
        let good = format!("_cioid=user%201; {SIG_COOKIE}={}", secret.companion(&user));
        let other = format!(
            "_cioid=user%201; {SIG_COOKIE}={}",
            secret.companion(&Identifier::Id("user 2".into()))
        );
        for (header, kept) in [
            (good.as_str(), true),
            ("_cioid=user%201", false),
            (other.as_str(), false),
            ("_cioid=user%201; _cioidsig=garbage", false),
        ] {
            let got = trust.vouch(read_cookies(Some(header)), Some(header));
            assert_eq!(got.identifier.is_some(), kept, "{header}");
        }
        // Without a secret, as before.
        let open = Trust::default();
        let c = open.vouch(read_cookies(Some("_cioid=x")), Some("_cioid=x"));
        assert_eq!(c.identifier, Some(Identifier::Id("x".into())));
        // ID_COOKIE=cio: only cio ids are forwarded.
        let cio = Trust {
            secret: None,
            id_cookie: IdCookie::Cio,
        };
        let h = "_cioid=bob%40example.com";
        assert_eq!(cio.vouch(read_cookies(Some(h)), Some(h)).identifier, None);
        let h = "_cioid=cio_abc123";
        assert!(cio
            .vouch(read_cookies(Some(h)), Some(h))
            .identifier
            .is_some());
    }

    /// Item: links identify no one in secure mode.
    #[test]
    fn links_are_off_in_secure_mode() {
        assert!(Trust::default().honours_links());
        let secure = Trust {
            secret: Some(Secret::new("k")),
            id_cookie: IdCookie::Identifier,
        };
        assert!(!secure.honours_links());
    }

    #[test]
    fn id_cookies_carry_an_httponly_companion_with_a_secret() {
        let policy = CookiePolicy::default();
        let user = Identifier::Id("u".into());
        assert_eq!(Trust::default().id_cookies(&policy, true, &user).len(), 1);
        let trust = Trust {
            secret: Some(Secret::new("k")),
            id_cookie: IdCookie::Identifier,
        };
        let cookies = trust.id_cookies(&policy, true, &user);
        assert_eq!(cookies.len(), 2);
        assert!(cookies[0].starts_with("_cioid=u;"));
        assert!(cookies[1].starts_with(&format!(
            "{SIG_COOKIE}={};",
            Secret::new("k").companion(&user)
        )));
        assert!(cookies[1].contains("HttpOnly"));
        let cleared = trust.clear_id_cookies(&policy, false);
        assert!(cleared.iter().all(|c| c.ends_with("Max-Age=0")));
        assert_eq!(cleared.len(), 2);
        let cio = Trust {
            secret: None,
            id_cookie: IdCookie::Cio,
        };
        let email = Identifier::Email("a@b.co".into());
        assert_eq!(
            cio.cookie_identifier(&email, "abc"),
            Identifier::CioId("abc".into())
        );
    }

    #[test]
    fn consent_modes() {
        assert_eq!(Consent::parse("none"), Some(Consent::None));
        assert_eq!(Consent::parse("gpc"), Some(Consent::Gpc));
        let c = Consent::parse("cookie:cc=yes").unwrap();
        assert_eq!(
            c,
            Consent::Cookie {
                name: "cc".into(),
                value: "yes".into()
            }
        );
        for bad in [
            "",
            "GPC",
            "cookie:",
            "cookie:=x",
            "cookie:a=",
            "cookie:a b=c",
            "cookie:a=b;c",
        ] {
            assert_eq!(Consent::parse(bad), None, "{bad:?}");
        }
        assert!(Consent::None.allows(None, Some("1")));
        assert!(!Consent::Gpc.allows(None, Some("1")));
        assert!(Consent::Gpc.allows(None, Some("0")));
        assert!(Consent::Gpc.allows(None, None));
        assert!(!c.allows(None, None));
        assert!(!c.allows(Some("cc=no; x=yes"), None));
        assert!(c.allows(Some("a=1; cc=yes"), None));
        assert!(!c.allows(Some("xcc=yes"), None));
    }

    #[test]
    fn the_origin_header_never_holds_raw_utf8() {
        assert_eq!(origin_id_header("bob@example.com"), "bob@example.com");
        assert_eq!(origin_id_header("user 1"), "user 1");
        assert_eq!(origin_id_header("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(origin_id_header("50%"), "50%25");
        let header = origin_id_header("a%b ü");
        let decoded = percent_encoding::percent_decode_str(&header)
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, "a%b ü");
    }

    fn identify(body: serde_json::Value) -> Identify {
        crate::core::profile::parse_identify(body.as_object().unwrap(), true).unwrap()
    }

    /// Item: the hash signs the identifier as kept, never as sent.
    #[test]
    fn a_user_hash_signs_the_identifier_as_the_edge_keeps_it() {
        let secret = Secret::new("k");
        let h = |m: &str| serde_json::Value::String(secret.user_hash(m));
        let nfd = "Jose\u{301}@Example.com";
        for (sent, kept) in [
            (
                serde_json::json!("VICTIM@EXAMPLE.COM"),
                "victim@example.com",
            ),
            (serde_json::json!(nfd), "jos\u{e9}@example.com"),
            (serde_json::json!(" 42 "), "42"),
            (serde_json::json!(42), "42"),
            (serde_json::json!("user 1"), "user 1"),
        ] {
            let call = identify(serde_json::json!({ "id": sent }));
            assert_eq!(
                verify_identify(&secret, &call, Some(&h(kept)), None),
                Ok(()),
                "{sent}"
            );
            if let Some(as_sent) = sent.as_str().filter(|s| *s != kept) {
                let err = verify_identify(&secret, &call, Some(&h(as_sent)), None).unwrap_err();
                assert_eq!(
                    (err.status(), err.field()),
                    (401, Some(USER_HASH)),
                    "{sent}"
                );
            }
        }
        let call = identify(serde_json::json!({ "id": "a" }));
        for bad in [
            None,
            Some(serde_json::json!(1)),
            Some(serde_json::json!("zz")),
        ] {
            let err = verify_identify(&secret, &call, bad.as_ref(), None).unwrap_err();
            assert_eq!(err.field(), Some(USER_HASH));
        }
    }

    /// Item: a user_hash vouches for the id, not for an email beside it.
    #[test]
    fn an_email_beside_the_id_needs_its_own_proof() {
        let secret = Secret::new("k");
        let h = |m: &str| serde_json::Value::String(secret.user_hash(m));
        let call = identify(serde_json::json!({ "id": "att", "email": "Lead@X.co" }));
        let err = verify_identify(&secret, &call, Some(&h("att")), None).unwrap_err();
        assert_eq!((err.status(), err.field()), (401, Some("email")));
        for wrong in [h("att"), h("Lead@X.co"), h("other@x.co")] {
            let err = verify_identify(&secret, &call, Some(&h("att")), Some(&wrong)).unwrap_err();
            assert_eq!(err.field(), Some(EMAIL_HASH));
        }
        assert_eq!(
            verify_identify(&secret, &call, Some(&h("att")), Some(&h("lead@x.co"))),
            Ok(())
        );
        // An email that is the id is vouched for by the user_hash itself.
        let call = identify(serde_json::json!({ "id": "A@x.co", "email": "a@X.co" }));
        assert_eq!(
            verify_identify(&secret, &call, Some(&h("a@x.co")), None),
            Ok(())
        );
        // Attributes need nothing more.
        let call = identify(serde_json::json!({ "id": "u", "plan": "vip" }));
        assert_eq!(verify_identify(&secret, &call, Some(&h("u")), None), Ok(()));
    }
}
