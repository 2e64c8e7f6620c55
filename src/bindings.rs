//! Every Cloudflare binding the code names, in one place: the Durable
//! Objects, the KV cache, the queues, the rate limiters. A test checks them
//! against `wrangler.toml`, both ways.

/// Durable Objects (SQLite): one per person, per anonymous visitor, per
/// identifier value, and the one forwarding object.
pub const PERSON: &str = "PERSON";
pub const VISITOR: &str = "VISITOR";
pub const IDENTITY_INDEX: &str = "IDENTITY_INDEX";
pub const FORWARDING: &str = "FORWARDING";

/// The edge read cache (KV).
pub const CIO_KV: &str = "CIO_KV";

/// The outbox queue's producer binding and its queue's name.
pub const CIO_OUTBOX: &str = "CIO_OUTBOX";
pub const CIO_OUTBOX_QUEUE: &str = "cio-outbox";
/// The dead-letter queue's producer binding and its queue's name.
pub const CIO_DEADLETTER: &str = "CIO_DEADLETTER";
pub const CIO_DEADLETTER_QUEUE: &str = "cio-deadletter";

/// Rate limiters: browser writes per anonymous visitor; browser writes and
/// `_cio_id` lookups per client address; browser writes naming one person.
pub const VISITOR_RATE_LIMIT: &str = "VISITOR_RATE_LIMIT";
pub const CLIENT_RATE_LIMIT: &str = "CLIENT_RATE_LIMIT";
pub const PERSON_RATE_LIMIT: &str = "PERSON_RATE_LIMIT";

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::{DocumentMut, Item};

    fn names(doc: &DocumentMut, path: &[&str], key: &str) -> Vec<String> {
        let mut item: &Item = doc.as_item();
        for part in path {
            item = &item[part];
        }
        item.as_array_of_tables()
            .map(|tables| {
                tables
                    .iter()
                    .filter_map(|t| t.get(key)?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn every_binding_is_in_wrangler_toml_and_back() {
        let doc: DocumentMut = include_str!("../wrangler.toml").parse().unwrap();
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let owned = |v: &[&str]| sorted(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            sorted(names(&doc, &["durable_objects", "bindings"], "name")),
            owned(&[PERSON, VISITOR, IDENTITY_INDEX, FORWARDING])
        );
        assert_eq!(names(&doc, &["kv_namespaces"], "binding"), owned(&[CIO_KV]));
        assert_eq!(
            sorted(names(&doc, &["ratelimits"], "name")),
            owned(&[VISITOR_RATE_LIMIT, CLIENT_RATE_LIMIT, PERSON_RATE_LIMIT])
        );
        let producers: Vec<(String, String)> = doc["queues"]["producers"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap().to_owned();
                (s("binding"), s("queue"))
            })
            .collect();
        assert_eq!(
            producers,
            [
                (CIO_OUTBOX.to_owned(), CIO_OUTBOX_QUEUE.to_owned()),
                (CIO_DEADLETTER.to_owned(), CIO_DEADLETTER_QUEUE.to_owned())
            ]
        );
        assert_eq!(
            sorted(names(&doc, &["queues", "consumers"], "queue")),
            owned(&[CIO_OUTBOX_QUEUE, CIO_DEADLETTER_QUEUE])
        );
    }
}
