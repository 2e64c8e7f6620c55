//! Form auto-identify (`AUTO_IDENTIFY_FORMS`), the edge version of
//! Customer.io's custom forms: a form POST carrying an email identifies the
//! visitor, keeping only the fields the site owner listed, and never a field
//! whose name suggests a secret.

use super::body::Object;
use super::identifier::{is_email, normalize_email, Identifier};
use super::profile::{
    Identify, ProfileUpdate, MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTE_VALUE_BYTES,
};

/// Bodies above this pass through uninspected.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Fragments that mark a field as secret anywhere in its name, whatever the
/// settings say.
const SECRET_FRAGMENTS: [&str; 7] = [
    "pass", "card", "token", "secret", "iban", "security", "social",
];
/// Short markers, matched at the start of a word only (`pin` but not `shipping`).
const SECRET_WORDS: [&str; 7] = ["pwd", "cvv", "cvc", "ccv", "ssn", "otp", "pin"];

pub fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|m| lower.contains(m))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| SECRET_WORDS.iter().any(|m| word.starts_with(m)))
}

/// The text fields of a urlencoded or multipart body; `None` for any other
/// content type or a malformed multipart body.
pub fn parse_form(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => Some(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ),
        "multipart/form-data" => parse_multipart(boundary(content_type)?, body),
        _ => None,
    }
}

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        (name.trim().eq_ignore_ascii_case("boundary"))
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// Text parts of a multipart/form-data body (RFC 7578); file parts skipped.
fn parse_multipart(boundary: String, body: &[u8]) -> Option<Vec<(String, String)>> {
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut fields = Vec::new();
    let mut parts = text.split(delimiter.as_str());
    parts.next()?; // preamble
    for part in parts {
        if part.starts_with("--") {
            break; // closing delimiter
        }
        let part = part.strip_prefix("\r\n")?;
        let (head, value) = part.split_once("\r\n\r\n")?;
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let disposition = head.split("\r\n").find(|line| {
            line.to_ascii_lowercase()
                .starts_with("content-disposition:")
        })?;
        if disposition.contains("filename=") {
            continue;
        }
        let name = disposition.split(';').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k == "name").then(|| v.trim_matches('"').to_owned())
        })?;
        fields.push((name, value.to_owned()));
    }
    Some(fields)
}

/// The identify a form makes: by the email in `email_field`, with the
/// `allowed` fields (never secret ones) as attributes. `None` without a valid
/// email.
pub fn form_identify(
    fields: &[(String, String)],
    email_field: &str,
    allowed: &[String],
) -> Option<Identify> {
    let email = fields
        .iter()
        .find(|(k, _)| k == email_field)
        .map(|(_, v)| v.trim())?;
    if !is_email(email) || email.len() > 150 {
        return None;
    }
    let email = normalize_email(email);
    let mut attributes = Object::new();
    for (name, value) in fields {
        let wanted =
            allowed.iter().any(|a| a == name) && name != email_field && !is_secret_field(name);
        if wanted
            && name.len() <= MAX_ATTRIBUTE_NAME_BYTES
            && value.len() + 2 <= MAX_ATTRIBUTE_VALUE_BYTES
        {
            attributes.insert(name.clone(), serde_json::Value::String(value.clone()));
        }
    }
    Some(Identify {
        identifier: Identifier::Email(email.clone()),
        update: ProfileUpdate {
            email: Some(email),
            attributes,
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn urlencoded() {
        let got = parse_form(
            "application/x-www-form-urlencoded; charset=UTF-8",
            b"email=a%40b.co&first_name=J+S&password=x",
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("email", "a@b.co"),
                ("first_name", "J S"),
                ("password", "x")
            ])
        );
        assert!(parse_form("application/json", b"{}").is_none());
    }

    #[test]
    fn multipart_text_fields_across_shapes() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nA@B.co\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"bio\"\r\n\r\nline1\r\nline2\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x01\x02\r\n\
                    --XyZ--\r\n";
        let got = parse_form("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(
            got,
            pairs(&[("email", "A@B.co"), ("bio", "line1\r\nline2")])
        );
        let quoted = parse_form("multipart/form-data; boundary=\"XyZ\"", body.as_bytes()).unwrap();
        assert_eq!(quoted.len(), 2);
        assert!(parse_form("multipart/form-data", body.as_bytes()).is_none());
        assert!(parse_form("multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage").is_none());
    }

    #[test]
    fn secrets_are_never_kept() {
        for secret in [
            "password",
            "Password2",
            "user_pwd",
            "card_number",
            "cvv",
            "cvc",
            "api_token",
            "ssn",
            "client_secret",
            "iban",
            "pin",
            "otp_code",
        ] {
            assert!(is_secret_field(secret), "{secret}");
        }
        for plain in [
            "email",
            "first_name",
            "plan",
            "company",
            "shipping_address",
            "opinion",
        ] {
            assert!(!is_secret_field(plain), "{plain}");
        }
        let fields = pairs(&[
            ("email", " Ann@X.io "),
            ("first_name", "Ann"),
            ("password", "hunter2"),
            ("plan", "pro"),
            ("card", "4111"),
        ]);
        let allowed: Vec<String> = ["first_name", "password", "card"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let identify = form_identify(&fields, "email", &allowed).unwrap();
        assert_eq!(identify.identifier, Identifier::Email("ann@x.io".into()));
        assert_eq!(
            serde_json::Value::Object(identify.update.attributes),
            serde_json::json!({"first_name": "Ann"})
        );
        assert!(form_identify(&pairs(&[("email", "nope")]), "email", &allowed).is_none());
        assert!(form_identify(&pairs(&[("mail", "a@b.co")]), "email", &allowed).is_none());
        assert!(form_identify(&pairs(&[("work_email", "a@b.co")]), "work_email", &[]).is_some());
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn form_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..512), boundary in "[a-zA-Z0-9]{0,12}") {
            let _ = parse_form(&format!("multipart/form-data; boundary={boundary}"), &body);
            let _ = parse_form("application/x-www-form-urlencoded", &body);
            if let Some(fields) = parse_form("application/x-www-form-urlencoded", &body) {
                let _ = form_identify(&fields, "email", &["a".into()]);
            }
        }
    }
}
