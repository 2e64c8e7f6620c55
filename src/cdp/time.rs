//! ISO 8601 date-times (RFC 3339, what `Date.toISOString` writes and the
//! Pipelines API takes) to and from unix seconds. Written out rather than
//! taken from chrono, whose parser and formatter cost the wasm several KiB;
//! the tests hold both to chrono on every shape.

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T`/`t`/space, `Z`/`z`), in
/// whole unix seconds (a fraction is dropped); `None` for anything else.
pub fn iso_seconds(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // A leap second counts as the second before the next minute, as chrono reads it.
    let s = s.min(59);
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (years 0 to 9999).
pub fn iso_format(secs: i64) -> Option<String> {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (0..=9999).contains(&y).then(|| {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;

    fn chrono_seconds(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.timestamp())
    }

    #[test]
    fn shapes_the_sdks_send_and_shapes_refused() {
        let cases = [
            ("2026-01-02T03:04:05.000Z", Some(1_767_323_045)),
            ("2026-01-02T03:04:05Z", Some(1_767_323_045)),
            ("2026-01-02t03:04:05z", Some(1_767_323_045)),
            ("2026-01-02 03:04:05.123456789+01:00", Some(1_767_319_445)),
            ("2026-01-02T03:04:05-02:30", Some(1_767_332_045)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-02-29T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-01-02T24:00:00Z", None),
            ("2026-01-02T03:04:05", None),
            ("2026-01-02T03:04:05.Z", None),
            ("2026-01-02", None),
            ("yesterday", None),
            ("", None),
            ("2026-01-02T03:04:05+0100", None),
            ("２０２６-01-02T03:04:05Z", None),
        ];
        for (text, want) in cases {
            assert_eq!(iso_seconds(text), want, "{text}");
            assert_eq!(chrono_seconds(text), want, "chrono: {text}");
        }
    }

    #[test]
    fn formats_as_chrono_does() {
        for secs in [
            0,
            1,
            951_782_400,
            1_709_164_800,
            1_780_000_000,
            253_402_300_799,
        ] {
            let want = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
            assert_eq!(
                iso_format(secs).unwrap(),
                format!("{want}Z").replacen(' ', "T", 1)
            );
            assert_eq!(iso_seconds(&iso_format(secs).unwrap()), Some(secs));
        }
        assert_eq!(iso_format(253_402_300_800), None);
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn agrees_with_chrono(secs in -62_135_596_800i64..253_402_300_799, frac in proptest::option::of(0u32..1_000_000_000), off in -1439i64..1439) {
            let (sign, abs) = if off < 0 { ('-', -off) } else { ('+', off) };
            let base = iso_format(secs).unwrap();
            let stem = base.trim_end_matches('Z');
            let frac = frac.map(|f| format!(".{f:09}")).unwrap_or_default();
            for text in [format!("{stem}{frac}Z"), format!("{stem}{frac}{sign}{:02}:{:02}", abs / 60, abs % 60)] {
                prop_assert_eq!(iso_seconds(&text), chrono_seconds(&text), "{}", text);
            }
        }

        #[test]
        fn never_panics_and_agrees_on_any_text(text in "\\PC{0,40}") {
            prop_assert_eq!(iso_seconds(&text), chrono_seconds(&text));
        }
    }
}
