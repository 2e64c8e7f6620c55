//! Page views and track events: parsing, the limits of rule 6.9, and the shape
//! they are stored and read back in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{json_kind, json_len, shape_object, Object};
use super::error::Error;

pub const MAX_EVENT_NAME_BYTES: usize = 100;
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
/// Event ids are dedup keys; Customer.io's are ULIDs (26 chars).
pub const MAX_EVENT_ID_BYTES: usize = 150;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Page,
    Event,
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
            _ => return Err(Error::invalid("type", "must be \"event\" or \"page\"")),
        },
        _ => ctx.kind,
    };

    let name = match body.get("name") {
        None | Some(Value::Null) => match ctx.default_name {
            Some(name) => name.to_owned(),
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
    if name.trim().is_empty() || name.len() > MAX_EVENT_NAME_BYTES {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_EVENT_NAME_BYTES} bytes"),
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

    let id = match body.get("id") {
        None | Some(Value::Null) => new_id(),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_EVENT_ID_BYTES => {
            s.clone()
        }
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(Error::invalid(
                "id",
                format!("must be a non-empty string of at most {MAX_EVENT_ID_BYTES} bytes"),
            ))
        }
    };

    let timestamp = match body.get("timestamp") {
        None | Some(Value::Null) => ctx.now,
        Some(value) => unix_seconds(value).ok_or_else(|| {
            Error::invalid("timestamp", "must be unix seconds (a non-negative number)")
        })?,
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

    proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn parser_never_panics(v in arb_json()) {
            if let Value::Object(map) = v {
                for kind in [EventType::Event, EventType::Page] {
                    let c = EventContext { type_in_body: true, use_array_params: false, ..ctx(kind) };
                    let _ = parse_event(&map, &c, || "g".into());
                }
            }
        }
    }
}
