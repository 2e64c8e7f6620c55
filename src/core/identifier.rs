//! Who a person is: an `id`, an email, or the never-changing `cio_id`.

use serde_json::Value;

use super::error::Error;

/// Longest `id` (and email) we accept, in bytes (API rule 6.1).
pub const MAX_ID_BYTES: usize = 150;
const CIO_PREFIX: &str = "cio_";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Id(String),
    /// Always lowercased: emails compare case-insensitively.
    Email(String),
    CioId(String),
}

impl Identifier {
    /// Parses an identifier as it appears in a URL path or a `_cioid` cookie:
    /// `cio_<cio_id>`, an email (by shape) or an id.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let value = raw.trim();
        if let Some(cio) = value.strip_prefix(CIO_PREFIX) {
            if is_cio_id(cio) {
                return Ok(Identifier::CioId(cio.to_owned()));
            }
        }
        Self::from_id(value, "id")
    }

    /// The `id` of an identify call: a string, or an integer taken as its
    /// decimal text; an email-shaped id identifies by email (API rule 6.2).
    pub fn from_identify_value(value: Option<&Value>) -> Result<Self, Error> {
        match value {
            None | Some(Value::Null) => Err(Error::invalid("id", "id is required")),
            Some(Value::String(s)) => Self::from_id(s, "id"),
            Some(Value::Number(n)) => Self::from_id(&integer_text(n, "id")?, "id"),
            Some(_) => Err(Error::invalid("id", "id must be a string or a number")),
        }
    }

    fn from_id(raw: &str, field: &'static str) -> Result<Self, Error> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        if looks_like_cio_id(value) {
            return Err(cio_shaped(field));
        }
        // Measured after normalising: lowercasing can lengthen some letters.
        let identifier = if is_email(value) {
            Identifier::Email(normalize_email(value))
        } else {
            Identifier::Id(value.to_owned())
        };
        match &identifier {
            Identifier::Id(v) | Identifier::Email(v) if v.len() > MAX_ID_BYTES => Err(
                Error::invalid(field, format!("must be at most {MAX_ID_BYTES} bytes")),
            ),
            _ => Ok(identifier),
        }
    }

    /// The value as a client would write it (`_cioid` cookie, API path).
    pub fn as_written(&self) -> String {
        match self {
            Identifier::Id(v) | Identifier::Email(v) => v.clone(),
            Identifier::CioId(c) => format!("{CIO_PREFIX}{c}"),
        }
    }
}

/// A number given as an id (or event id): only an integer, as its exact
/// decimal text. serde_json keeps integers of the i64/u64 range exact and
/// turns every other number (a fraction, an exponent, `-0`, a larger integer)
/// into a float, whose text would be lossy or differ from what was sent, so
/// those are refused: such ids travel as strings.
pub fn integer_text(
    n: &serde_json::Number,
    field: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<String, Error> {
    if let Some(i) = n.as_i64() {
        Ok(i.to_string())
    } else if let Some(u) = n.as_u64() {
        Ok(u.to_string())
    } else {
        Err(Error::invalid(
            field,
            "a number must be an integer from -2^63 to 2^64-1 written without a fraction or exponent; send other ids as strings",
        ))
    }
}

/// `cio_<cio_id>` is how a path or cookie names a person by cio_id, so an id
/// of that shape would be read back as a cio_id (API rule 6.1).
pub fn looks_like_cio_id(value: &str) -> bool {
    value.strip_prefix(CIO_PREFIX).is_some_and(is_cio_id)
}

pub(crate) fn cio_shaped(field: &'static str) -> Error {
    Error::invalid(
        field,
        "must not have the form cio_<letters and digits>, which names a person by cio_id",
    )
}

/// An email address by shape: one `@`, a non-empty local part, a dotted domain,
/// no spaces. Deliverability is not our business; uniqueness is.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

/// Unicode NFC, lowercase, NFC again: the precomposed and the decomposed
/// spelling of one address are one person (API rule 6.2). The second pass
/// because lowercasing can make a pair composable ("J\u{30c}" -> "\u{1f0}").
pub fn normalize_email(value: &str) -> String {
    nfc(&lowercase(&nfc(value.trim())))
}

/// Unicode lowercase (full mappings, final sigma). ASCII never leaves Rust.
pub(crate) fn lowercase(value: &str) -> String {
    if value.is_ascii() {
        return value.to_ascii_lowercase();
    }
    lowercase_of_non_ascii(value)
}

#[cfg(not(target_arch = "wasm32"))]
fn lowercase_of_non_ascii(value: &str) -> String {
    value.to_lowercase()
}

/// The runtime's own case mapping (`toLowerCase`: the same Unicode default
/// case conversion, with the runtime's tables), so the wasm carries no case
/// tables (about 16 KB); `edge::wasm_tests` checks it against Rust's.
#[cfg(target_arch = "wasm32")]
fn lowercase_of_non_ascii(value: &str) -> String {
    js_sys::JsString::from(value)
        .to_lower_case()
        .as_string()
        .unwrap_or_else(|| value.to_owned())
}

/// Unicode NFC. ASCII is always in NFC, so most emails never leave Rust.
fn nfc(value: &str) -> String {
    if value.is_ascii() {
        return value.to_owned();
    }
    nfc_of_non_ascii(value)
}

#[cfg(not(target_arch = "wasm32"))]
fn nfc_of_non_ascii(value: &str) -> String {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(value)
        .into_owned()
}

/// The runtime's own normaliser (the same Unicode data the runtime's ICU
/// holds), so the wasm carries no tables; `edge::wasm_tests` checks it.
#[cfg(target_arch = "wasm32")]
fn nfc_of_non_ascii(value: &str) -> String {
    js_sys::JsString::from(value)
        .normalize("NFC")
        .as_string()
        .unwrap_or_else(|| value.to_owned())
}

/// A cio_id as we issue them (lowercase hex) or Customer.io does (alphanumeric).
pub fn is_cio_id(value: &str) -> bool {
    (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new cio_id: 20 lowercase hex digits from a v4 UUID (80 random bits).
pub fn new_cio_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    hex[..20].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_path_and_cookie_identifiers() {
        let cases: Vec<(&str, Result<Identifier, &str>)> = vec![
            ("user-1", Ok(Identifier::Id("user-1".into()))),
            ("  user-1 ", Ok(Identifier::Id("user-1".into()))),
            (
                "Bob@Example.COM",
                Ok(Identifier::Email("bob@example.com".into())),
            ),
            ("cio_03a1", Ok(Identifier::CioId("03a1".into()))),
            ("cio_", Ok(Identifier::Id("cio_".into()))),
            ("cio_a-b", Ok(Identifier::Id("cio_a-b".into()))),
            ("", Err("id")),
            ("   ", Err("id")),
            ("a\u{0}b", Err("id")),
        ];
        for (raw, expected) in cases {
            match (Identifier::parse(raw), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{raw:?}"),
                (Err(e), Err(field)) => assert_eq!(e.field(), Some(field), "{raw:?}"),
                (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(Identifier::parse(&"x".repeat(150)).is_ok());
        // "İ" is 2 bytes but lowercases to 3: the limit holds for the stored form.
        let grows = format!("{}@x.co", "İ".repeat(72));
        assert!(grows.len() <= 150);
        assert!(Identifier::parse(&grows).is_err());
        assert!(Identifier::parse(&"x".repeat(151)).is_err());
    }

    #[test]
    fn identify_id_values() {
        let ok = |v: Value, want: Identifier| {
            assert_eq!(
                Identifier::from_identify_value(Some(&v)).unwrap(),
                want,
                "{v}"
            )
        };
        ok(json!("42"), Identifier::Id("42".into()));
        ok(json!(42), Identifier::Id("42".into()));
        ok(json!(" A@B.co "), Identifier::Email("a@b.co".into()));
        for bad in [
            json!(null),
            json!({}),
            json!([]),
            json!(true),
            json!(""),
            json!(" "),
        ] {
            let err = Identifier::from_identify_value(Some(&bad)).unwrap_err();
            assert_eq!(err.field(), Some("id"), "{bad}");
        }
        assert!(Identifier::from_identify_value(None).is_err());
    }

    /// Item: numbers as ids are exact integers or refused, never lossy floats.
    #[test]
    fn numeric_ids_are_exact_integer_text() {
        let from = |text: &str| {
            let v: Value = serde_json::from_str(text).unwrap();
            Identifier::from_identify_value(Some(&v))
        };
        for (text, want) in [
            ("42", "42"),
            ("0", "0"),
            ("-7", "-7"),
            ("9007199254740993", "9007199254740993"),
            ("9223372036854775807", "9223372036854775807"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("18446744073709551615", "18446744073709551615"),
        ] {
            assert_eq!(from(text).unwrap(), Identifier::Id(want.into()), "{text}");
        }
        for text in [
            "42.0",
            "42.5",
            "1e2",
            "1E2",
            "-0",
            "-0.0",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
        ] {
            let err = from(text).unwrap_err();
            assert_eq!((err.status(), err.field()), (400, Some("id")), "{text}");
        }
        // Two large ids that a float would fold into one stay two people.
        assert_ne!(
            from("9007199254740993").unwrap(),
            from("9007199254740992").unwrap()
        );
    }

    /// Item: an id of the form cio_<cio_id> would be read back as a cio_id.
    #[test]
    fn cio_shaped_ids_are_refused() {
        for bad in ["cio_abc123", " cio_abc123 ", "cio_0", "cio_ABCdef"] {
            let err = Identifier::from_identify_value(Some(&json!(bad))).unwrap_err();
            assert_eq!((err.status(), err.field()), (400, Some("id")), "{bad}");
        }
        for fine in ["cio_", "cio_a-b", "CIO_abc", "xcio_abc", "cio__x"] {
            assert_eq!(
                Identifier::from_identify_value(Some(&json!(fine))).unwrap(),
                Identifier::Id(fine.into())
            );
        }
        assert_eq!(
            Identifier::parse("cio_abc123").unwrap(),
            Identifier::CioId("abc123".into())
        );
        assert!(looks_like_cio_id("cio_abc123") && !looks_like_cio_id("cio_a.b"));
    }

    /// Item: NFC before lowercasing, so both spellings are one person.
    #[test]
    fn emails_are_nfc_then_lowercase() {
        let nfc = "Jos\u{e9}@Caf\u{e9}.example";
        let nfd = "Jose\u{301}@Cafe\u{301}.example";
        assert_ne!(nfc, nfd);
        let want = Identifier::Email("jos\u{e9}@caf\u{e9}.example".into());
        assert_eq!(Identifier::parse(nfc).unwrap(), want);
        assert_eq!(Identifier::parse(nfd).unwrap(), want);
        assert_eq!(
            normalize_email("\u{c5}ngstr\u{f6}m@x.co"),
            normalize_email("A\u{30a}ngstro\u{308}m@X.CO")
        );
        assert_eq!(normalize_email(" A@B.co "), "a@b.co");
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn email_spellings_are_one_person(
            local in "[a-zA-Z\u{c0}-\u{17f}\u{300}-\u{36f}\u{1e00}-\u{1eff}\u{ac00}-\u{ac20}]{1,20}",
        ) {
            let email = format!("{local}@example.com");
            let nfd: String = icu_normalizer::DecomposingNormalizerBorrowed::new_nfd().normalize(&email).into_owned();
            let nfc: String = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(&email).into_owned();
            let n = normalize_email(&email);
            proptest::prop_assert_eq!(&normalize_email(&nfd), &n);
            proptest::prop_assert_eq!(&normalize_email(&nfc), &n);
            proptest::prop_assert_eq!(&normalize_email(&n), &n);
        }
    }

    #[test]
    fn email_shape() {
        for yes in ["a@b.co", "first.last+tag@sub.example.org", "X@Y.Z"] {
            assert!(is_email(yes), "{yes}");
        }
        for no in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.", "a b@c.co", "a@b@c.co", "a@b..co",
        ] {
            assert!(!is_email(no), "{no}");
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn parse_never_panics_and_round_trips(raw in "\\PC{0,200}") {
            if let Ok(identifier) = Identifier::parse(&raw) {
                proptest::prop_assert_eq!(Identifier::parse(&identifier.as_written()).unwrap(), identifier);
            }
        }
    }

    #[test]
    fn new_cio_ids() {
        let id = new_cio_id();
        assert_eq!(id.len(), 20);
        assert!(is_cio_id(&id));
        assert_ne!(id, new_cio_id());
    }
}
