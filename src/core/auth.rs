//! Credential checks that do not leak, through timing, how much of a secret a
//! guess got right.

/// Compares in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an `Authorization: Bearer <token>` header against the token.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

/// Checks an `Authorization: Basic base64(user:password)` header.
pub fn basic_matches(header: Option<&str>, user: &str, password: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = header.and_then(|h| {
        h.strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
    }) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(split) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    // Both halves are always compared, so timing says nothing about which failed.
    let user_ok = constant_time_eq(&decoded[..split], user.as_bytes());
    let password_ok = constant_time_eq(&decoded[split + 1..], password.as_bytes());
    user_ok & password_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        for bad in [
            None,
            Some(""),
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cretX"),
            Some("Basic s3cret"),
        ] {
            assert!(!bearer_matches(bad, "s3cret"), "{bad:?}");
        }
    }

    #[test]
    fn basic() {
        // "site:key" and variants.
        assert!(basic_matches(Some("Basic c2l0ZTprZXk="), "site", "key"));
        for bad in [
            None,
            Some("Basic c2l0ZTprZXk"),
            Some("Basic c2l0ZTpr"),
            Some("Basic !!"),
            Some("Bearer c2l0ZTprZXk="),
            Some("Basic c2l0ZWtleQ=="),
        ] {
            assert!(!basic_matches(bad, "site", "key"), "{bad:?}");
        }
    }
}
