//! The keys the abuse limits count by (docs/API.md section 8). One client
//! holds a whole IPv6 /64 (a host picks any of its 2^64 addresses), so an
//! IPv6 address counts as its /64; an IPv4 address (and an IPv4-mapped IPv6
//! one) as itself. Writes naming a person count per person, whatever
//! visitor or address they come from.

use url::Host;

use super::identifier::Identifier;

/// The client-address key of `CF-Connecting-IP`: `v4:<address>`,
/// `v6:<first four groups>::/64`, or the text itself when it is no address
/// (Cloudflare always sends one; a local run may not). Parsed by the `url`
/// crate the edge already carries, not a second address parser.
pub fn address_key(raw: &str) -> String {
    let raw = raw.trim();
    if raw.contains(':') {
        if let Ok(Host::Ipv6(v6)) = Host::parse(&format!("[{raw}]")) {
            return match v6.to_ipv4_mapped() {
                Some(v4) => format!("v4:{v4}"),
                None => {
                    let s = v6.segments();
                    format!("v6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            };
        }
    } else if let Ok(Host::Ipv4(v4)) = Host::parse(raw) {
        return format!("v4:{v4}");
    }
    format!("raw:{raw}")
}

/// The per-person key of a browser write naming `identifier` (its
/// `_cioid`): one count per identifier as the edge keeps it, so no spelling
/// of it (case, Unicode form, spaces) counts apart.
pub fn person_key(identifier: &Identifier) -> String {
    format!("person:{}", identifier.as_written())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item: one IPv6 /64 is one client.
    #[test]
    fn ipv6_counts_by_its_64() {
        let a = address_key("2001:db8:1:2:aaaa::1");
        assert_eq!(a, "v6:2001:db8:1:2::/64");
        assert_eq!(address_key("2001:0db8:0001:0002:ffff:ffff:ffff:ffff"), a);
        assert_eq!(address_key(" 2001:DB8:1:2::9 "), a);
        assert_ne!(address_key("2001:db8:1:3::1"), a);
        assert_eq!(address_key("203.0.113.9"), "v4:203.0.113.9");
        assert_eq!(address_key("::ffff:203.0.113.9"), "v4:203.0.113.9");
        assert_ne!(address_key("203.0.113.9"), address_key("203.0.113.10"));
        assert_eq!(address_key("unknown"), "raw:unknown");
    }

    #[test]
    fn one_key_per_person_whatever_the_spelling() {
        let key = |raw: &str| person_key(&Identifier::parse(raw).unwrap());
        assert_eq!(key("Bob@Example.com"), key("bob@example.com "));
        assert_ne!(key("bob@example.com"), key("42"));
        assert_eq!(key("cio_abc"), "person:cio_abc");
    }
}
