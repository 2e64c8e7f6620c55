//! Page views and track events: parsing, the limits of rule 6.9, and the shape
//! they are stored and read back in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{json_kind, json_len, shape_object, Object};
use super::error::Error;
use super::identifier::integer_text;

pub const MAX_EVENT_NAME_BYTES: usize = 100;
/// A page view's name is usually its URL; marketing URLs with campaign
/// parameters run long, and an automatic page view must never be refused.
pub const MAX_PAGE_NAME_BYTES: usize = 8192;
/// Event ids a browser sends are recorded under this prefix, so a browser can
/// never take (and shadow) an id the backend will use for its own event.
pub const BROWSER_ID_PREFIX: &str = "browser:";
/// Earliest event timestamp accepted: 2000-01-01T00:00:00Z.
pub const MIN_EVENT_TIMESTAMP: i64 = 946_684_800;
/// How far ahead of the edge's clock an event timestamp may be.
pub const MAX_EVENT_FUTURE_SECS: i64 = 86_400;
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
/// Event ids are dedup keys; Customer.io's are ULIDs (26 chars).
pub const MAX_EVENT_ID_BYTES: usize = 150;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Page,
    Event,
    /// A mobile screen view (Track API `type: "screen"`).
    Screen,
}

/// One recorded event, as stored and as the admin API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub name: String,
    pub data: Object,
    /// Unix seconds.
    pub timestamp: i64,
    /// The visitor it was recorded for, while anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// The dedup key: the client's event `id`, else one the edge issued.
    pub id: String,
}

/// What the endpoint contributes beyond the body.
pub struct EventContext<'a> {
    pub kind: EventType,
    /// Whether the body may choose `type` (the Track API does).
    pub type_in_body: bool,
    /// The name when the body has none (a page view's Referer).
    pub default_name: Option<&'a str>,
    pub now: i64,
    pub use_array_params: bool,
    /// Sent by a browser (untrusted): its event ids get their own key space.
    pub from_browser: bool,
}

/// The longest prefix of `s` of at most `max` bytes, cut at a char boundary.
pub fn clamp_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses and validates an event body; `new_id` is called only when the client
/// sent no `id`.
pub fn parse_event(
    body: &Object,
    ctx: &EventContext<'_>,
    new_id: impl FnOnce() -> String,
) -> Result<Event, Error> {
    let kind = match body.get("type") {
        Some(value) if ctx.type_in_body => match value {
            Value::Null => ctx.kind,
            Value::String(s) if s == "event" => EventType::Event,
            Value::String(s) if s == "page" => EventType::Page,
            Value::String(s) if s == "screen" => EventType::Screen,
            _ => {
                return Err(Error::invalid(
                    "type",
                    "must be \"event\", \"page\" or \"screen\"",
                ))
            }
        },
        _ => ctx.kind,
    };

    let max_name = match kind {
        EventType::Page | EventType::Screen => MAX_PAGE_NAME_BYTES,
        EventType::Event => MAX_EVENT_NAME_BYTES,
    };
    let name = match body.get("name") {
        // The default (a Referer) is not the client's choice: cut, never refuse.
        None | Some(Value::Null) => match ctx.default_name {
            Some(name) => clamp_bytes(name, max_name).to_owned(),
            None => return Err(Error::invalid("name", "name is required")),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(Error::invalid(
                "name",
                format!("must be a string, not {}", json_kind(other)),
            ))
        }
    };
    if name.trim().is_empty() || name.len() > max_name {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {max_name} bytes"),
        ));
    }

    let data = match body.get("data") {
        None | Some(Value::Null) => Object::new(),
        Some(value @ Value::Object(map)) => {
            if json_len(value) > MAX_EVENT_DATA_BYTES {
                return Err(Error::invalid(
                    "data",
                    format!("must be at most {MAX_EVENT_DATA_BYTES} bytes of JSON"),
                ));
            }
            shape_object(map.clone(), ctx.use_array_params)
        }
        Some(other) => {
            return Err(Error::invalid(
                "data",
                format!("must be an object, not {}", json_kind(other)),
            ))
        }
    };

    let sent_id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_EVENT_ID_BYTES => {
            Some(s.clone())
        }
        Some(Value::Number(n)) => Some(integer_text(n, "id")?),
        Some(_) => {
            return Err(Error::invalid(
                "id",
                format!("must be a non-empty string of at most {MAX_EVENT_ID_BYTES} bytes"),
            ))
        }
    };
    let id = match sent_id {
        // A browser's events all live in its key space, so the person's cap
        // knows them apart from the backend's (section 8).
        None if ctx.from_browser => format!("{BROWSER_ID_PREFIX}{}", new_id()),
        None => new_id(),
        Some(id) if ctx.from_browser => format!("{BROWSER_ID_PREFIX}{id}"),
        Some(id) if id.starts_with(BROWSER_ID_PREFIX) => {
            return Err(Error::invalid(
                "id",
                format!("the prefix {BROWSER_ID_PREFIX:?} is reserved for events sent by browsers"),
            ))
        }
        Some(id) => id,
    };

    let timestamp = match body.get("timestamp") {
        None | Some(Value::Null) => ctx.now,
        Some(value) => event_timestamp(value, ctx.now)?,
    };

    Ok(Event {
        kind,
        name,
        data,
        timestamp,
        anonymous_id: None,
        id,
    })
}

/// An event's `timestamp`: unix seconds from 2000-01-01 to one day past
/// `now`, so a client can neither backdate into nonsense nor pin its event on
/// top of the activity forever.
pub fn event_timestamp(value: &Value, now: i64) -> Result<i64, Error> {
    let latest = now.saturating_add(MAX_EVENT_FUTURE_SECS);
    match unix_seconds(value) {
        Some(ts) if (MIN_EVENT_TIMESTAMP..=latest).contains(&ts) => Ok(ts),
        _ => Err(Error::invalid(
            "timestamp",
            format!(
                "must be unix seconds (a number) from {MIN_EVENT_TIMESTAMP} (2000-01-01) to at most one day after now ({latest})"
            ),
        )),
    }
}

/// A non-negative JSON number as whole unix seconds; strings are refused.
pub fn unix_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i >= 0).then_some(i)
            } else {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    .map(|f| f as i64)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn ctx(kind: EventType) -> EventContext<'static> {
        EventContext {
            kind,
            type_in_body: false,
            default_name: None,
            now: 1_700_000_000,
            use_array_params: true,
            from_browser: false,
        }
    }

    fn parse(body: Value, ctx: &EventContext<'_>) -> Result<Event, Error> {
        parse_event(body.as_object().unwrap(), ctx, || "generated".into())
    }

    #[test]
    fn a_full_event() {
        let e = parse(
            json!({"name": "added", "data": {"sku": [1, 2]}, "id": "ev1", "timestamp": 1600000000}),
            &ctx(EventType::Event),
        )
        .unwrap();
        assert_eq!(e.kind, EventType::Event);
        assert_eq!(e.name, "added");
        assert_eq!(e.data["sku"], json!([1, 2]));
        assert_eq!(e.id, "ev1");
        assert_eq!(e.timestamp, 1_600_000_000);
    }

    #[test]
    fn defaults() {
        let e = parse(json!({"name": "x"}), &ctx(EventType::Event)).unwrap();
        assert_eq!(
            (e.id.as_str(), e.timestamp, e.data.len()),
            ("generated", 1_700_000_000, 0)
        );
        let page = EventContext {
            default_name: Some("https://site/ref"),
            ..ctx(EventType::Page)
        };
        assert_eq!(parse(json!({}), &page).unwrap().name, "https://site/ref");
        assert_eq!(
            parse(json!({}), &ctx(EventType::Page)).unwrap_err().field(),
            Some("name")
        );
    }

    #[test]
    fn arrays_reshaped_when_off() {
        let off = EventContext {
            use_array_params: false,
            ..ctx(EventType::Event)
        };
        let e = parse(json!({"name": "x", "data": {"a": ["p", "q"]}}), &off).unwrap();
        assert_eq!(e.data["a"], json!({"0": "p", "1": "q"}));
    }

    #[test]
    fn type_only_where_allowed() {
        let api = EventContext {
            type_in_body: true,
            ..ctx(EventType::Event)
        };
        assert_eq!(
            parse(json!({"name": "x", "type": "page"}), &api)
                .unwrap()
                .kind,
            EventType::Page
        );
        assert_eq!(
            parse(json!({"name": "x", "type": "bogus"}), &api)
                .unwrap_err()
                .field(),
            Some("type")
        );
        assert_eq!(
            parse(json!({"name": "x", "type": "page"}), &ctx(EventType::Event))
                .unwrap()
                .kind,
            EventType::Event
        );
    }

    #[test]
    fn limits_and_bad_fields() {
        let c = ctx(EventType::Event);
        let cases = [
            (json!({}), "name"),
            (json!({"name": ""}), "name"),
            (json!({"name": " "}), "name"),
            (json!({"name": "x".repeat(101)}), "name"),
            (json!({"name": 5}), "name"),
            (json!({"name": "x", "data": [1]}), "data"),
            (json!({"name": "x", "data": "s"}), "data"),
            (
                json!({"name": "x", "data": {"big": "y".repeat(100_000)}}),
                "data",
            ),
            (json!({"name": "x", "id": {}}), "id"),
            (json!({"name": "x", "id": ""}), "id"),
            (json!({"name": "x", "timestamp": "1600000000"}), "timestamp"),
            (json!({"name": "x", "timestamp": -1}), "timestamp"),
        ];
        for (body, field) in cases {
            assert_eq!(
                parse(body.clone(), &c).unwrap_err().field(),
                Some(field),
                "{body}"
            );
        }
        assert!(parse(json!({"name": "x".repeat(100)}), &c).is_ok());
        assert!(parse(
            json!({"name": "x", "data": {"big": "y".repeat(99_000)}}),
            &c
        )
        .is_ok());
    }

    /// Item: page names take a URL's length; event names keep 100 bytes.
    #[test]
    fn page_names_take_long_urls() {
        let url = "https://shop.example.com/products/blue-widget?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2026";
        assert!(url.len() > MAX_EVENT_NAME_BYTES);
        let page = ctx(EventType::Page);
        assert_eq!(parse(json!({"name": url}), &page).unwrap().name, url);
        let long = format!(
            "https://x.example/?q={}",
            "a".repeat(MAX_PAGE_NAME_BYTES - 21)
        );
        assert_eq!(long.len(), MAX_PAGE_NAME_BYTES);
        assert!(parse(json!({"name": long}), &page).is_ok());
        let over = format!("{long}b");
        assert_eq!(
            parse(json!({"name": over}), &page).unwrap_err().field(),
            Some("name")
        );
        // A Track API event of type "page" is a page view too.
        let api = EventContext {
            type_in_body: true,
            ..ctx(EventType::Event)
        };
        assert!(parse(json!({"name": url, "type": "page"}), &api).is_ok());
        assert_eq!(
            parse(json!({"name": url}), &api).unwrap_err().field(),
            Some("name")
        );
        assert_eq!(
            parse(json!({"name": url}), &ctx(EventType::Event))
                .unwrap_err()
                .field(),
            Some("name")
        );
        // A Referer default is cut at the limit, on a char boundary, never refused.
        let referer = format!("https://x.example/{}", "\u{e9}".repeat(MAX_PAGE_NAME_BYTES));
        let with_referer = EventContext {
            default_name: Some(&referer),
            ..ctx(EventType::Page)
        };
        let name = parse(json!({}), &with_referer).unwrap().name;
        assert!(name.len() <= MAX_PAGE_NAME_BYTES && name.len() > MAX_PAGE_NAME_BYTES - 4);
        assert!(referer.starts_with(&name));
    }

    /// Item: a browser's event ids live apart from the backend's.
    #[test]
    fn browser_event_ids_are_namespaced() {
        let browser = EventContext {
            from_browser: true,
            ..ctx(EventType::Event)
        };
        let api = EventContext {
            type_in_body: true,
            ..ctx(EventType::Event)
        };
        let b = parse(json!({"name": "x", "id": "order-1001"}), &browser).unwrap();
        let a = parse(json!({"name": "x", "id": "order-1001"}), &api).unwrap();
        assert_eq!(b.id, "browser:order-1001");
        assert_eq!(a.id, "order-1001");
        assert_ne!(a.id, b.id);
        assert_eq!(
            parse(json!({"name": "x", "id": 42}), &browser).unwrap().id,
            "browser:42"
        );
        assert_eq!(
            parse(json!({"name": "x", "id": 42}), &api).unwrap().id,
            "42"
        );
        // The backend cannot name an id in the browser's space.
        let err = parse(json!({"name": "x", "id": "browser:order-1001"}), &api).unwrap_err();
        assert_eq!(err.field(), Some("id"));
        // A browser's generated ids are in its space too (the person's cap
        // tells them apart); the backend's are left alone.
        assert_eq!(
            parse(json!({"name": "x"}), &browser).unwrap().id,
            "browser:generated"
        );
        assert_eq!(parse(json!({"name": "x"}), &api).unwrap().id, "generated");
        for bad in [json!(42.5), json!(1e2), json!(-0.0)] {
            let err = parse(json!({"name": "x", "id": bad}), &api).unwrap_err();
            assert_eq!(err.field(), Some("id"), "{bad}");
        }
    }

    /// Item: timestamps from 2000-01-01 to one day ahead, else 400.
    #[test]
    fn timestamps_are_bounded() {
        let now = 1_700_000_000;
        for (ts, ok) in [
            (json!(946_684_800), true),
            (json!(946_684_799), false),
            (json!(0), false),
            (json!(now + 86_400), true),
            (json!(now + 86_401), false),
            (json!(9_223_372_036_854_775_807i64), false),
            (json!(u64::MAX), false),
            (json!(1.7e9), true),
            (json!(1e300), false),
            (json!(-1), false),
            (json!("1700000000"), false),
        ] {
            for browser in [true, false] {
                let c = EventContext {
                    from_browser: browser,
                    ..ctx(EventType::Event)
                };
                let got = parse(json!({"name": "x", "timestamp": ts}), &c);
                match got {
                    Ok(e) => assert!(ok, "{ts} accepted as {}", e.timestamp),
                    Err(e) => {
                        assert!(!ok, "{ts} refused");
                        assert_eq!(e.field(), Some("timestamp"));
                    }
                }
            }
        }
        assert_eq!(event_timestamp(&json!(now), i64::MAX).unwrap(), now);
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn clamp_is_a_prefix_within_the_limit(s in "\\PC{0,64}", max in 0usize..80) {
            let c = clamp_bytes(&s, max);
            prop_assert!(c.len() <= max && s.starts_with(c));
            prop_assert!(c.len() == s.len() || c.len() + 4 > max);
        }

        #[test]
        fn timestamp_never_panics(ts in any::<i64>(), f in any::<f64>(), now in any::<i64>()) {
            for v in [json!(ts), json!(f)] {
                if let Ok(t) = event_timestamp(&v, now) {
                    prop_assert!(t >= MIN_EVENT_TIMESTAMP && t <= now.saturating_add(MAX_EVENT_FUTURE_SECS));
                }
            }
        }

        #[test]
        fn parser_never_panics(v in arb_json()) {
            if let Value::Object(map) = v {
                for kind in [EventType::Event, EventType::Page] {
                    for from_browser in [true, false] {
                        let c = EventContext { type_in_body: true, use_array_params: false, from_browser, ..ctx(kind) };
                        if let Ok(e) = parse_event(&map, &c, || "g".into()) {
                            prop_assert!(e.name.len() <= MAX_PAGE_NAME_BYTES);
                            prop_assert!(from_browser || !e.id.starts_with(BROWSER_ID_PREFIX));
                        }
                    }
                }
            }
        }
    }
}
