//! Data Pipelines calls (the bodies of Customer.io's browser and node SDKs
//! and of the Pipelines API: `identify`, `track`, `page`, `screen`, `group`,
//! `alias`, `batch`) read into the edge's own identify and event rules, so a
//! Pipelines call is held to exactly the limits of a classic one. Errors name
//! the Pipelines field (`userId`, `traits.email`, `event`, `properties`, ..).

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::core::body::{json_kind, object_from, Object};
use crate::core::error::Error;
use crate::core::event::{event_timestamp, parse_event, Event, EventContext, EventType};
use crate::core::identifier::Identifier;
use crate::core::profile::{parse_identify, Identify};
use crate::core::track_api::parse_anonymous_id;

use super::time::iso_seconds;

/// The most calls one batch may carry (as a Track API v2 batch): what one
/// invocation finishes well inside a Worker's limits.
pub const MAX_BATCH_CALLS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl Kind {
    /// A call's `type` (batch items) or its endpoint's name: the browser SDK
    /// posts to `/v1/{i,t,p,s,g,a}`, the node SDK and the API use the words.
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "i" | "identify" => Kind::Identify,
            "t" | "track" => Kind::Track,
            "p" | "page" => Kind::Page,
            "s" | "screen" => Kind::Screen,
            "g" | "group" => Kind::Group,
            "a" | "alias" => Kind::Alias,
            _ => return None,
        })
    }
}

/// One call, validated: what the edge does with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Create or update the person and merge `anonymous_id`'s visitor into it
    /// (an identify with `userId` or `traits.email`; a group call, whose
    /// update holds only the relationship).
    Identify {
        identify: Identify,
        anonymous_id: Option<String>,
        /// `traits.user_hash` and `traits.email_hash` (secure mode,
        /// `core::secure::verify_identify`); `vouch`: whether this call
        /// must be vouched for by them (an identify) or only by the signed
        /// cookie (a group call).
        user_hash: Option<String>,
        email_hash: Option<String>,
        vouch: bool,
    },
    /// A track, page or screen call.
    Event {
        user: Option<Identifier>,
        anonymous_id: Option<String>,
        event: Event,
    },
    /// `alias`: the visitor `previous` joins `user`.
    Alias { user: Identify, previous: String },
    /// Valid, but nothing to store: an identify or group without a person
    /// (the edge keeps no traits for anonymous visitors).
    Nothing,
}

/// What the edge adds to a body.
pub struct Context {
    /// Unix seconds when the edge received the call.
    pub now: i64,
    pub use_array_params: bool,
}

/// Reads one call of `kind` (from the path, or a batch item's `type`).
pub fn parse_call(
    kind: Kind,
    body: &Object,
    ctx: &Context,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Call, Error> {
    let user = user_id(body)?;
    let anonymous_id = parse_anonymous_id(body.get("anonymousId"), "anonymousId")?;
    match kind {
        Kind::Identify => identify(body, user, anonymous_id, ctx),
        Kind::Group => group(body, user, ctx),
        Kind::Alias => alias(body, user, ctx),
        Kind::Track | Kind::Page | Kind::Screen => {
            if user.is_none() && anonymous_id.is_none() {
                return Err(Error::invalid(
                    "anonymousId",
                    "userId or anonymousId is required",
                ));
            }
            let event = event(kind, body, ctx, new_id)?;
            Ok(Call::Event {
                user,
                anonymous_id,
                event,
            })
        }
    }
}

/// `userId`: a string or an integer, as an identify `id` (rule 6.1); an empty
/// string is no user (the SDKs send `null` or leave it out).
fn user_id(body: &Object) -> Result<Option<Identifier>, Error> {
    match body.get("userId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        value => Identifier::from_identify_value(value)
            .map(Some)
            .map_err(|e| rename(e, &|_| "userId".into())),
    }
}

fn object<'a>(body: &'a Object, field: &'static str) -> Result<Option<&'a Object>, Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(Error::invalid(
            field,
            format!("must be an object, not {}", json_kind(other)),
        )),
    }
}

/// Trait names the classic identify body keeps for itself: never attributes.
const NOT_ATTRIBUTES: [&str; 7] = [
    "id",
    "anonymous_id",
    "_update",
    "cio_relationships",
    "user_hash",
    "email_hash",
    "createdAt",
];

fn identify(
    body: &Object,
    user: Option<Identifier>,
    anonymous_id: Option<String>,
    ctx: &Context,
) -> Result<Call, Error> {
    let traits = object(body, "traits")?.cloned().unwrap_or_default();
    let email = traits
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.trim().is_empty());
    // A person is named by userId, else by traits.email (as Pipelines does).
    let id = match (&user, email) {
        (Some(user), _) => Value::String(user.as_written()),
        (None, Some(email)) => Value::String(email.to_owned()),
        (None, None) => return Ok(Call::Nothing),
    };
    let hash = |key: &str, field: &'static str| match traits.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(field, "must be a string")),
    };
    let user_hash = hash("user_hash", "traits.user_hash")?;
    let email_hash = hash("email_hash", "traits.email_hash")?;
    let mut classic = object_from(
        traits
            .iter()
            .filter(|(k, _)| !NOT_ATTRIBUTES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    // `createdAt` (ISO 8601, as the SDKs send dates) or `created_at`.
    let created = traits.get("createdAt").or_else(|| traits.get("created_at"));
    classic.remove("created_at");
    if let Some(created) = created.filter(|v| !v.is_null()) {
        let secs = match created {
            Value::String(s) => iso_seconds(s),
            other => other.as_i64().filter(|n| *n >= 0),
        }
        .ok_or_else(|| {
            Error::invalid(
                "traits.createdAt",
                "must be an ISO 8601 date-time or unix seconds",
            )
        })?;
        classic.insert("created_at".into(), json!(secs));
    }
    classic.insert("id".into(), id);
    let identify = parse_identify(&classic, ctx.use_array_params).map_err(|e| {
        rename(e, &|field| match field {
            "id" if user.is_some() => "userId".into(),
            "id" | "email" => "traits.email".into(),
            "created_at" => "traits.createdAt".into(),
            other => format!("traits.{}", other.trim_start_matches("attributes.")).into(),
        })
    })?;
    Ok(Call::Identify {
        identify,
        anonymous_id,
        user_hash,
        email_hash,
        vouch: true,
    })
}

/// `group`: the person (by `userId`) gets a relationship to the object
/// `groupId` of type `traits.object_type_id` (default `"1"`, as Customer.io
/// assumes), with `traits.relationshipAttributes` on it.
fn group(body: &Object, user: Option<Identifier>, ctx: &Context) -> Result<Call, Error> {
    let group_id = match body.get("groupId") {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::Number(n.clone()),
        _ => return Err(Error::invalid("groupId", "is required: a non-empty string")),
    };
    let traits = object(body, "traits")?.cloned().unwrap_or_default();
    let Some(user) = user else {
        return Ok(Call::Nothing);
    };
    let object_type_id = match traits
        .get("object_type_id")
        .or_else(|| traits.get("objectTypeId"))
    {
        None | Some(Value::Null) => json!("1"),
        Some(v) => v.clone(),
    };
    let mut relationship =
        json!({ "identifiers": { "object_type_id": object_type_id, "object_id": group_id } });
    if let Some(attributes) = traits
        .get("relationshipAttributes")
        .filter(|v| !v.is_null())
    {
        relationship["relationship_attributes"] = attributes.clone();
    }
    let classic: Object = json!({
        "id": user.as_written(),
        "cio_relationships": { "action": "add_relationships", "relationships": [relationship] },
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let identify = parse_identify(&classic, ctx.use_array_params).map_err(|e| {
        rename(e, &|field| match field {
            "id" => "userId".into(),
            f if f.ends_with("object_type_id") => "traits.object_type_id".into(),
            f if f.ends_with("object_id") => "groupId".into(),
            _ => "traits.relationshipAttributes".into(),
        })
    })?;
    Ok(Call::Identify {
        identify,
        anonymous_id: None,
        user_hash: None,
        email_hash: None,
        vouch: false,
    })
}

fn alias(body: &Object, user: Option<Identifier>, ctx: &Context) -> Result<Call, Error> {
    let user = user.ok_or_else(|| Error::invalid("userId", "is required"))?;
    let previous = parse_anonymous_id(body.get("previousId"), "previousId")?
        .ok_or_else(|| Error::invalid("previousId", "is required"))?;
    let classic = object_from([("id".to_owned(), Value::String(user.as_written()))]);
    let user = parse_identify(&classic, ctx.use_array_params)
        .map_err(|e| rename(e, &|_| "userId".into()))?;
    Ok(Call::Alias { user, previous })
}

/// A track, page or screen call as the edge's event: `event` / the page's
/// URL / the screen's name is the name, `properties` the data, `messageId`
/// the id (in the browser key space: a write key is public), `timestamp`
/// corrected for the sender's clock by `sentAt`, as Pipelines does.
fn event(
    kind: Kind,
    body: &Object,
    ctx: &Context,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Event, Error> {
    let properties = object(body, "properties")?;
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    let mut classic = Object::new();
    let (event_type, default_name) = match kind {
        Kind::Track => {
            match body.get("event") {
                Some(name @ Value::String(_)) => classic.insert("name".into(), name.clone()),
                None | Some(Value::Null) => return Err(Error::invalid("event", "is required")),
                Some(other) => {
                    return Err(Error::invalid(
                        "event",
                        format!("must be a string, not {}", json_kind(other)),
                    ))
                }
            };
            (EventType::Event, None)
        }
        // A page view is named by its URL (as the classic snippet's are),
        // never refused for its length; a screen by its name.
        _ => {
            let url = text(properties.and_then(|p| p.get("url"))).or_else(|| {
                text(
                    body.get("context")
                        .and_then(|c| c.get("page"))
                        .and_then(|p| p.get("url")),
                )
            });
            let name = text(body.get("name"));
            let fallback = if kind == Kind::Screen {
                "screen"
            } else {
                "page"
            };
            let chosen = match kind {
                Kind::Screen => name.clone().or(url),
                _ => url.or_else(|| name.clone()),
            };
            (
                EventType::Page,
                Some(chosen.unwrap_or_else(|| fallback.to_owned())),
            )
        }
    };
    let mut data = properties.cloned().unwrap_or_default();
    if kind != Kind::Track {
        for key in ["name", "category"] {
            if let Some(v) = body.get(key).filter(|v| v.is_string()) {
                data.entry(key).or_insert_with(|| v.clone());
            }
        }
    }
    classic.insert("data".into(), Value::Object(data));
    if let Some(id) = body.get("messageId").filter(|v| !v.is_null()) {
        classic.insert("id".into(), id.clone());
    }
    let ectx = EventContext {
        kind: event_type,
        type_in_body: false,
        default_name: default_name.as_deref(),
        now: ctx.now,
        use_array_params: ctx.use_array_params,
        from_browser: true,
    };
    let mut event = parse_event(&classic, &ectx, new_id).map_err(|e| {
        rename(e, &|field| match field {
            "name" => "event".into(),
            "data" => "properties".into(),
            "id" => "messageId".into(),
            other => other.to_owned().into(),
        })
    })?;
    if let Some(ts) = timestamp(body, ctx.now)? {
        event.timestamp = ts;
    }
    Ok(event)
}

/// `timestamp` (ISO 8601) in unix seconds, moved by the sender's clock error
/// (`sentAt` against the edge's clock) as Pipelines does; within rule 6.10's
/// window, else 400 naming `timestamp`.
pub fn timestamp(body: &Object, now: i64) -> Result<Option<i64>, Error> {
    let read = |field: &'static str| -> Result<Option<i64>, Error> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => iso_seconds(s)
                .map(Some)
                .ok_or_else(|| Error::invalid(field, "must be an ISO 8601 date-time")),
            Some(other) => Err(Error::invalid(
                field,
                format!(
                    "must be an ISO 8601 date-time string, not {}",
                    json_kind(other)
                ),
            )),
        }
    };
    let Some(ts) = read("timestamp")? else {
        return Ok(None);
    };
    let skew = read("sentAt")?.map_or(0, |sent| sent.saturating_sub(now));
    event_timestamp(&json!(ts.saturating_sub(skew)), now).map(Some)
}

/// The same error naming the Pipelines field instead of the classic one.
fn rename(e: Error, to: &dyn Fn(&str) -> Cow<'static, str>) -> Error {
    match e {
        Error::Invalid {
            field: Some(field),
            message,
        } => {
            let detail = message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&message)
                .to_owned();
            Error::invalid(to(&field), detail)
        }
        Error::Conflict { field, message } => Error::conflict(to(&field), message),
        other => other,
    }
}

/// The calls of a batch body (`{"batch": [..]}`), each by its `type`; any
/// invalid item refuses the whole batch, naming `batch[i].<field>`, so
/// nothing of a refused batch is applied.
pub fn parse_batch(
    body: &Object,
    ctx: &Context,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<Call>, Error> {
    let items = body
        .get("batch")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("batch", "must be an array of calls"))?;
    if items.len() > MAX_BATCH_CALLS {
        return Err(Error::invalid(
            "batch",
            format!("at most {MAX_BATCH_CALLS} calls per request; send the rest in another"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: Error| rename(e, &|field| format!("batch[{i}].{field}").into());
            let item = item
                .as_object()
                .ok_or_else(|| Error::invalid(format!("batch[{i}]"), "must be an object"))?;
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .and_then(Kind::parse)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("batch[{i}].type"),
                        "must be identify, track, page, screen, group or alias",
                    )
                })?;
            parse_call(kind, item, ctx, new_id).map_err(at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn body(v: Value) -> Object {
        v.as_object().cloned().unwrap()
    }

    fn ctx() -> Context {
        Context {
            now: NOW,
            use_array_params: true,
        }
    }

    fn call(kind: Kind, v: Value) -> Result<Call, Error> {
        parse_call(kind, &body(v), &ctx(), &mut || "edge-id".into())
    }

    fn field(e: Error) -> String {
        e.field().unwrap_or_default().to_owned()
    }

    #[test]
    fn endpoint_names_short_and_long() {
        for (name, kind) in [
            ("i", Kind::Identify),
            ("identify", Kind::Identify),
            ("t", Kind::Track),
            ("p", Kind::Page),
            ("s", Kind::Screen),
            ("g", Kind::Group),
            ("a", Kind::Alias),
            ("alias", Kind::Alias),
        ] {
            assert_eq!(Kind::parse(name), Some(kind), "{name}");
        }
        assert_eq!(Kind::parse("b"), None);
        assert_eq!(Kind::parse("x"), None);
    }

    #[test]
    fn identify_reads_user_id_and_traits() {
        let c = call(
            Kind::Identify,
            json!({"userId": "u1", "anonymousId": "a-1", "traits": {"email": "Ann@X.co", "plan": "pro", "createdAt": "2026-01-02T03:04:05.000Z", "id": "ignored"}}),
        )
        .unwrap();
        let Call::Identify {
            identify,
            anonymous_id,
            ..
        } = c
        else {
            panic!("{c:?}")
        };
        assert_eq!(identify.identifier, Identifier::Id("u1".into()));
        assert_eq!(identify.update.email.as_deref(), Some("ann@x.co"));
        assert_eq!(identify.update.created_at, Some(1_767_323_045));
        assert_eq!(identify.update.attributes.get("plan"), Some(&json!("pro")));
        assert!(!identify.update.attributes.contains_key("id"));
        assert!(!identify.update.attributes.contains_key("createdAt"));
        assert_eq!(anonymous_id.as_deref(), Some("a-1"));
    }

    #[test]
    fn identify_by_email_and_anonymous_identify() {
        let c = call(
            Kind::Identify,
            json!({"anonymousId": "a", "traits": {"email": "b@x.co"}}),
        )
        .unwrap();
        let Call::Identify { identify, .. } = c else {
            panic!()
        };
        assert_eq!(identify.identifier, Identifier::Email("b@x.co".into()));
        assert_eq!(
            call(
                Kind::Identify,
                json!({"anonymousId": "a", "traits": {"plan": 1}})
            )
            .unwrap(),
            Call::Nothing
        );
        assert_eq!(
            call(Kind::Identify, json!({"userId": "", "anonymousId": "a"})).unwrap(),
            Call::Nothing
        );
    }

    #[test]
    fn identify_errors_name_the_pipelines_field() {
        let cases = [
            (json!({"userId": 4.5}), "userId"),
            (json!({"userId": "cio_abc123"}), "userId"),
            (
                json!({"userId": "u", "traits": {"email": "nope"}}),
                "traits.email",
            ),
            (
                json!({"userId": "u", "traits": {"createdAt": "yesterday"}}),
                "traits.createdAt",
            ),
            (
                json!({"userId": "u", "traits": {"big": "x".repeat(2000)}}),
                "traits.big",
            ),
            (json!({"userId": "u", "traits": "x"}), "traits"),
            (
                json!({"userId": "u", "traits": {"user_hash": 5}}),
                "traits.user_hash",
            ),
        ];
        for (b, want) in cases {
            let got = call(Kind::Identify, b.clone()).unwrap_err();
            assert_eq!(field(got.clone()), want, "{b} -> {got}");
            assert_eq!(got.status(), 400);
        }
    }

    #[test]
    fn user_hash_is_kept_apart_and_signs_the_user_id() {
        let c = call(
            Kind::Identify,
            json!({"userId": 42, "traits": {"user_hash": "ab", "email_hash": "cd", "x": 1}}),
        )
        .unwrap();
        let Call::Identify {
            identify,
            user_hash,
            email_hash,
            vouch,
            ..
        } = c
        else {
            panic!()
        };
        assert_eq!(user_hash.as_deref(), Some("ab"));
        assert_eq!(email_hash.as_deref(), Some("cd"));
        assert!(vouch);
        // The hash signs the identifier as kept (`core::secure::verify_identify`).
        assert_eq!(identify.identifier.as_written(), "42");
        assert!(!identify.update.attributes.contains_key("user_hash"));
        assert!(!identify.update.attributes.contains_key("email_hash"));
    }

    #[test]
    fn track_page_screen_become_events() {
        let c = call(
            Kind::Track,
            json!({"anonymousId": "a", "event": "Signed Up", "properties": {"plan": "pro"}, "messageId": "m-1", "timestamp": "2026-05-28T20:26:40.000Z", "sentAt": "2026-05-28T20:26:40.000Z"}),
        )
        .unwrap();
        let Call::Event {
            user,
            anonymous_id,
            event,
        } = c
        else {
            panic!()
        };
        assert_eq!(user, None);
        assert_eq!(anonymous_id.as_deref(), Some("a"));
        assert_eq!(event.kind, EventType::Event);
        assert_eq!(event.name, "Signed Up");
        assert_eq!(event.id, "browser:m-1");
        assert_eq!(event.data.get("plan"), Some(&json!("pro")));
        assert_eq!(event.timestamp, 1_780_000_000);

        let c = call(Kind::Page, json!({"userId": "u", "name": "Home", "properties": {"url": "http://s/x?y", "title": "T"}})).unwrap();
        let Call::Event { user, event, .. } = c else {
            panic!()
        };
        assert_eq!(user, Some(Identifier::Id("u".into())));
        assert_eq!(
            (event.kind, event.name.as_str()),
            (EventType::Page, "http://s/x?y")
        );
        assert_eq!(event.data.get("name"), Some(&json!("Home")));
        // A browser event without an id gets a browser-space id (the cap drops
        // browser events first).
        assert_eq!(event.id, "browser:edge-id");
        assert_eq!(event.timestamp, NOW);

        let long = format!("http://s/{}", "a".repeat(9000));
        let Call::Event { event, .. } = call(
            Kind::Page,
            json!({"anonymousId": "a", "properties": {"url": long}}),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(event.name.len(), 8192);
        let Call::Event { event, .. } = call(Kind::Page, json!({"anonymousId": "a"})).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.name, "page");
        let Call::Event { event, .. } =
            call(Kind::Screen, json!({"anonymousId": "a", "name": "Feed"})).unwrap()
        else {
            panic!()
        };
        assert_eq!((event.kind, event.name.as_str()), (EventType::Page, "Feed"));
    }

    #[test]
    fn event_errors_name_the_pipelines_field() {
        let cases = [
            (Kind::Track, json!({"anonymousId": "a"}), "event"),
            (
                Kind::Track,
                json!({"anonymousId": "a", "event": 3}),
                "event",
            ),
            (
                Kind::Track,
                json!({"anonymousId": "a", "event": "x".repeat(101)}),
                "event",
            ),
            (
                Kind::Track,
                json!({"anonymousId": "a", "event": "e", "properties": [1]}),
                "properties",
            ),
            (
                Kind::Track,
                json!({"anonymousId": "a", "event": "e", "messageId": {}}),
                "messageId",
            ),
            (Kind::Track, json!({"event": "e"}), "anonymousId"),
            (
                Kind::Track,
                json!({"anonymousId": 7, "event": "e"}),
                "anonymousId",
            ),
            (
                Kind::Page,
                json!({"anonymousId": "a", "timestamp": "soon"}),
                "timestamp",
            ),
            (
                Kind::Page,
                json!({"anonymousId": "a", "timestamp": 12}),
                "timestamp",
            ),
            (
                Kind::Page,
                json!({"anonymousId": "a", "timestamp": "1990-01-01T00:00:00Z"}),
                "timestamp",
            ),
        ];
        for (kind, b, want) in cases {
            let got = call(kind, b.clone()).unwrap_err();
            assert_eq!(field(got), want, "{b}");
        }
    }

    #[test]
    fn a_sender_clock_off_by_days_is_corrected_by_sent_at() {
        // The device thinks it is three days later; its event happened 5 s
        // before it sent it.
        let ahead = NOW + 3 * 86_400;
        let iso = |s: i64| super::super::time::iso_format(s).unwrap();
        let b = body(json!({"timestamp": iso(ahead - 5), "sentAt": iso(ahead)}));
        assert_eq!(timestamp(&b, NOW).unwrap(), Some(NOW - 5));
        let b = body(json!({"timestamp": iso(ahead - 5)}));
        assert_eq!(field(timestamp(&b, NOW).unwrap_err()), "timestamp");
    }

    #[test]
    fn group_and_alias() {
        let c = call(Kind::Group, json!({"userId": "u", "groupId": "acme", "traits": {"object_type_id": "2", "relationshipAttributes": {"role": "admin"}}})).unwrap();
        let Call::Identify { identify, .. } = c else {
            panic!()
        };
        let rel = identify.update.relationships.unwrap();
        assert_eq!(rel.relationships[0].object_type_id, "2");
        assert_eq!(rel.relationships[0].object_id, "acme");
        assert_eq!(
            rel.relationships[0]
                .attributes
                .as_ref()
                .unwrap()
                .get("role"),
            Some(&json!("admin"))
        );
        let c = call(Kind::Group, json!({"userId": "u", "groupId": 7})).unwrap();
        let Call::Identify { identify, .. } = c else {
            panic!()
        };
        assert_eq!(
            identify.update.relationships.unwrap().relationships[0].object_type_id,
            "1"
        );
        assert_eq!(
            call(Kind::Group, json!({"anonymousId": "a", "groupId": "g"})).unwrap(),
            Call::Nothing
        );
        assert_eq!(
            field(call(Kind::Group, json!({"userId": "u"})).unwrap_err()),
            "groupId"
        );

        let c = call(Kind::Alias, json!({"userId": "u", "previousId": "anon-1"})).unwrap();
        let Call::Alias { user, previous } = c else {
            panic!()
        };
        assert_eq!(
            (user.identifier, previous.as_str()),
            (Identifier::Id("u".into()), "anon-1")
        );
        assert_eq!(
            field(call(Kind::Alias, json!({"previousId": "p"})).unwrap_err()),
            "userId"
        );
        assert_eq!(
            field(call(Kind::Alias, json!({"userId": "u"})).unwrap_err()),
            "previousId"
        );
    }

    #[test]
    fn batch_is_all_or_nothing_and_names_the_item() {
        let ok = body(json!({"batch": [
            {"type": "identify", "userId": "u", "anonymousId": "a"},
            {"type": "track", "userId": "u", "event": "e"},
            {"type": "page", "anonymousId": "a"}
        ]}));
        assert_eq!(
            parse_batch(&ok, &ctx(), &mut || "x".into()).unwrap().len(),
            3
        );
        let bad = body(
            json!({"batch": [{"type": "track", "userId": "u", "event": "e"}, {"type": "track", "userId": "u"}]}),
        );
        assert_eq!(
            field(parse_batch(&bad, &ctx(), &mut || "x".into()).unwrap_err()),
            "batch[1].event"
        );
        let bad = body(json!({"batch": [{"type": "nope"}]}));
        assert_eq!(
            field(parse_batch(&bad, &ctx(), &mut || "x".into()).unwrap_err()),
            "batch[0].type"
        );
        let bad = body(json!({"batch": {}}));
        assert_eq!(
            field(parse_batch(&bad, &ctx(), &mut || "x".into()).unwrap_err()),
            "batch"
        );
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"type": "page", "anonymousId": "a"}))
            .collect();
        let bad = body(json!({ "batch": many }));
        assert_eq!(
            field(parse_batch(&bad, &ctx(), &mut || "x".into()).unwrap_err()),
            "batch"
        );
    }

    /// A body whose Pipelines keys hold arbitrary JSON.
    fn arb_body() -> impl proptest::strategy::Strategy<Value = Value> {
        use crate::core::body::tests::arb_json;
        use proptest::prelude::*;
        let keys = [
            "type",
            "userId",
            "anonymousId",
            "traits",
            "event",
            "properties",
            "name",
            "messageId",
            "timestamp",
            "sentAt",
            "groupId",
            "previousId",
            "context",
            "batch",
        ];
        prop::collection::vec((0..keys.len(), arb_json()), 0..8).prop_map(move |pairs| {
            Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (keys[k].to_owned(), v))
                    .collect(),
            )
        })
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn pipelines_calls_never_panic(body in arb_body(), kind in 0usize..6, items in proptest::collection::vec(arb_body(), 0..4)) {
            let kinds = [Kind::Identify, Kind::Track, Kind::Page, Kind::Screen, Kind::Group, Kind::Alias];
            let object = body.as_object().cloned().unwrap_or_default();
            let _ = parse_call(kinds[kind], &object, &ctx(), &mut || "id".into());
            let batch = json!({ "batch": items });
            let _ = parse_batch(batch.as_object().unwrap(), &ctx(), &mut || "id".into());
        }
    }
}
