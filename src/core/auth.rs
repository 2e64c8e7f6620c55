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
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        for bad in [None, Some(""), Some("s3cret"), Some("Bearer s3cre"), Some("Bearer s3cretX"), Some("Basic s3cret")] {
            assert!(!bearer_matches(bad, "s3cret"), "{bad:?}");
        }
    }
}
