//! The admin listing's page cursor. KV list cursors are opaque and a garbage
//! one reads as an empty last page, so the edge hands out its own: the KV
//! cursor, base64url, and a check of it. Anything else is refused (400 naming
//! `cursor`) instead of silently answering nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::error::Error;

/// Longest cursor accepted (KV's own are a few hundred bytes).
pub const MAX_CURSOR_BYTES: usize = 2048;
const SEPARATOR: char = '.';

/// Wraps a KV cursor for a client.
pub fn encode(kv_cursor: &str) -> String {
    format!(
        "{}{SEPARATOR}{:016x}",
        URL_SAFE_NO_PAD.encode(kv_cursor),
        check(kv_cursor.as_bytes())
    )
}

/// The KV cursor inside a cursor this edge handed out; `None` for an absent or
/// empty one (the first page).
pub fn decode(cursor: Option<&str>) -> Result<Option<String>, Error> {
    let cursor = match cursor {
        None | Some("") => return Ok(None),
        Some(c) => c,
    };
    let invalid = || {
        Error::invalid(
            "cursor",
            "must be a cursor exactly as a previous page returned it",
        )
    };
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(invalid());
    }
    let (body, sum) = cursor.rsplit_once(SEPARATOR).ok_or_else(invalid)?;
    let sum = (sum.len() == 16)
        .then(|| u64::from_str_radix(sum, 16).ok())
        .flatten()
        .ok_or_else(invalid)?;
    let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
    if raw.is_empty() || check(&raw) != sum {
        return Err(invalid());
    }
    String::from_utf8(raw).map(Some).map_err(|_| invalid())
}

/// FNV-1a: catches a mistyped or made-up cursor, not a forged one (a forged
/// cursor only reaches KV, which answers it with some page of cio_ids).
fn check(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        for kv in [
            "AAAAAN5x",
            "a",
            "eyJrIjoicGVyc29uOmFiYyJ9",
            "with spaces/and+plus==",
        ] {
            assert_eq!(decode(Some(&encode(kv))).unwrap().as_deref(), Some(kv));
        }
        assert_eq!(decode(None).unwrap(), None);
        assert_eq!(decode(Some("")).unwrap(), None);
        let good = encode("AAAAAN5x");
        let tampered = format!("R{}", &good[1..]);
        assert_ne!(tampered, good);
        let long = "a".repeat(MAX_CURSOR_BYTES + 1);
        for bad in [
            "garbage",
            "garbage.0000000000000000",
            ".0000000000000000",
            "YQ.zz",
            "YQ.",
            "!!!.0123456789abcdef",
            tampered.as_str(),
            &good[..good.len() - 1],
            long.as_str(),
        ] {
            let err = decode(Some(bad)).unwrap_err();
            assert_eq!(
                (err.status(), err.field()),
                (400, Some("cursor")),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn decode_never_panics_and_only_accepts_its_own(raw in "\\PC{0,80}", kv in "[ -~]{1,60}") {
            if let Ok(Some(inner)) = decode(Some(&raw)) {
                prop_assert_eq!(encode(&inner), raw);
            }
            prop_assert_eq!(decode(Some(&encode(&kv))).unwrap(), Some(kv));
        }
    }
}
