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

    /// The `id` of an identify call: a string, or a number taken as its decimal
    /// string; an email-shaped id identifies by email (API rule 6.2).
    pub fn from_identify_value(value: Option<&Value>) -> Result<Self, Error> {
        match value {
            None | Some(Value::Null) => Err(Error::invalid("id", "id is required")),
            Some(Value::String(s)) => Self::from_id(s, "id"),
            Some(Value::Number(n)) => Self::from_id(&n.to_string(), "id"),
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

    /// The name of the identity-index object that owns this value; `None` for a
    /// cio_id, which names its person directly.
    pub fn index_key(&self) -> Option<String> {
        match self {
            Identifier::Id(id) => Some(format!("id:{id}")),
            Identifier::Email(email) => Some(format!("email:{email}")),
            Identifier::CioId(_) => None,
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

pub fn normalize_email(value: &str) -> String {
    value.trim().to_lowercase()
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
    fn index_keys_and_cio_ids() {
        assert_eq!(
            Identifier::Id("7".into()).index_key().as_deref(),
            Some("id:7")
        );
        assert_eq!(
            Identifier::Email("a@b.co".into()).index_key().as_deref(),
            Some("email:a@b.co")
        );
        assert_eq!(Identifier::CioId("ab".into()).index_key(), None);
        let id = new_cio_id();
        assert_eq!(id.len(), 20);
        assert!(is_cio_id(&id));
        assert_ne!(id, new_cio_id());
    }
}
