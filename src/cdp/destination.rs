//! Customer.io's Pipelines API as the forwarding destination
//! (`CIO_DESTINATION=pipelines`): the outbox keeps Track API v2 operations
//! (`crate::cio::ops`), and this turns each into the Pipelines calls it
//! means when it is delivered. Each rule cites Customer.io's published
//! OpenAPI file of the Pipelines API (`components.schemas.<name>`,
//! `paths./<name>`).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub use crate::cio::delivery::pipelines_base;

/// `paths./batch`: "32KB per call in the request".
pub const MAX_CALL_BYTES: usize = 32 * 1024;

/// Where a call is posted: `paths./batch` takes identify, group, track, page
/// and screen calls; `alias` has its own path (`paths./alias`).
#[derive(Debug, Clone, PartialEq)]
pub enum Post {
    Batch(Value),
    Alias(Value),
}

impl Post {
    pub fn call(&self) -> &Value {
        match self {
            Post::Batch(v) | Post::Alias(v) => v,
        }
    }
}

/// The Pipelines calls a v2 operation means, or why it has none (the
/// operation is then a dead letter).
pub fn calls_of(op: &Value) -> Result<Vec<Post>, String> {
    let action = op.get("action").and_then(Value::as_str).unwrap_or_default();
    let mut calls = match action {
        // An in-app metric (`inapp::metric_op`):
        // `components.schemas.report_delivery_event`.
        _ if crate::inapp::metrics_body(op).is_some() => vec![Post::Batch(delivery_event(op)?)],
        "identify" => vec![Post::Batch(identify(op)?)],
        "event" | "page" | "screen" => vec![Post::Batch(event(op, action)?)],
        // `components.schemas.create_update_device` / `.delete_device`: the
        // semantic events with `context.device.token` (and `type`).
        "add_device" => vec![Post::Batch(device(op, "Device Created or Updated")?)],
        "delete_device" => vec![Post::Batch(device(op, "Device Deleted")?)],
        // `components.schemas.suppress_person` / `.unsuppress_person`.
        "suppress" | "unsuppress" => vec![Post::Batch(json!({
            "type": "track",
            "userId": user_id(op.get("identifiers"))?,
            "event": if action == "suppress" { "User Suppressed" } else { "User Unsuppressed" },
        }))],
        "add_relationships" => relationships(op)?
            .into_iter()
            .map(|(user, rel)| Post::Batch(group(user, rel)))
            .collect(),
        "delete_relationships" => relationships(op)?
            .into_iter()
            .map(|(user, rel)| relationship_deleted(user, rel).map(Post::Batch))
            .collect::<Result<_, _>>()?,
        // `components.schemas.delete_person`: the semantic event "User Deleted".
        "delete" => vec![Post::Batch(json!({
            "type": "track",
            "userId": user_id(op.get("identifiers"))?,
            "event": "User Deleted",
        }))],
        // `components.schemas.alias`: `previousId` joins `userId`.
        "merge" => vec![Post::Alias(json!({
            "type": "alias",
            "userId": user_id(op.get("primary"))?,
            "previousId": user_id(op.get("secondary"))?,
        }))],
        other => return Err(format!("no Pipelines call for the operation {other:?}")),
    };
    // `components.schemas.common_fields.messageId`: one id per call, the same
    // every time the operation is delivered (events keep their own).
    for (i, post) in calls.iter_mut().enumerate() {
        let (Post::Batch(call) | Post::Alias(call)) = post;
        if call.get("messageId").is_none() {
            let id = stable_id(op, i);
            call["messageId"] = json!(id);
        }
        let len = call.to_string().len();
        if len > MAX_CALL_BYTES {
            return Err(format!(
                "{len} bytes as a Pipelines call, over its limit of {MAX_CALL_BYTES}"
            ));
        }
    }
    Ok(calls)
}

/// A person's `userId` from a v2 address (`components.schemas.userId`): the
/// `id`, else the email (Customer.io's destination identifies by email when
/// there is no id). A person known only by a Customer.io cio_id has no
/// Pipelines address.
fn user_id(address: Option<&Value>) -> Result<String, String> {
    let address = address.ok_or("no identifiers")?;
    for key in ["id", "email"] {
        if let Some(v) = address.get(key).and_then(Value::as_str) {
            return Ok(v.to_owned());
        }
    }
    Err("a person known only by its cio_id has no Pipelines userId".into())
}

/// `components.schemas.identify` (Known User): `userId`, `traits` with
/// `email`; `anonymousId` with it joins that visitor's events to the person.
fn identify(op: &Value) -> Result<Value, String> {
    let mut traits: Map<String, Value> = op
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let traits_anon = traits.remove("anonymous_id");
    // A person that got its id in this very write is that id from now on.
    let id = traits
        .remove("id")
        .and_then(|v| v.as_str().map(str::to_owned))
        .or_else(|| {
            op.pointer("/identifiers/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let email = op.pointer("/identifiers/email");
    if id.is_none() && email.is_none() {
        return Err("a person known only by its cio_id has no Pipelines userId".into());
    }
    if let Some(email) = email {
        traits.entry("email").or_insert_with(|| email.clone());
    }
    // `paths./identify`: "you can pass an empty userId ... and identify
    // people by their email trait": a person without an id is sent so.
    let mut call = json!({ "type": "identify", "traits": traits });
    if let Some(id) = id {
        call["userId"] = json!(id);
    }
    // The join rides on the identify as the `anonymous_id` attribute
    // (Track API); here it is the call's `anonymousId`.
    if let Some(anon) = traits_anon.or_else(|| op.get("anonymous_id").cloned()) {
        call["anonymousId"] = anon;
    }
    Ok(call)
}

/// The anonymous visitor an operation is addressed to, if any
/// (`identifiers.anonymous_id`).
fn anonymous_of(op: &Value) -> Option<&Value> {
    op.pointer("/identifiers/anonymous_id")
        .or_else(|| op.get("anonymous_id"))
}

/// "Report Delivery Event" with `deliveryId`, `metric`, `recipient`, `href`.
fn delivery_event(op: &Value) -> Result<Value, String> {
    let m = crate::inapp::metrics_body(op).ok_or("no metric")?;
    let mut properties = json!({
        "deliveryId": m.get("delivery_id").ok_or("no delivery_id")?,
        "metric": m.get("metric").ok_or("no metric")?,
    });
    for (from, to) in [("recipient", "recipient"), ("href", "href")] {
        if let Some(v) = m.get(from) {
            properties[to] = v.clone();
        }
    }
    let mut call =
        json!({ "type": "track", "event": "Report Delivery Event", "properties": properties });
    if let Some(secs) = m.get("timestamp").and_then(Value::as_i64) {
        call["timestamp"] = json!(super::time::iso_format(secs).ok_or("a timestamp out of range")?);
    }
    Ok(call)
}

fn device(op: &Value, name: &str) -> Result<Value, String> {
    let dev = op.get("device").ok_or("no device")?;
    let mut device = json!({ "token": dev.get("token").ok_or("no device token")? });
    if let Some(kind) = dev.get("platform").and_then(Value::as_str) {
        if matches!(kind, "ios" | "android") {
            device["type"] = json!(kind);
        }
    }
    Ok(json!({
        "type": "track",
        "userId": user_id(op.get("identifiers"))?,
        "event": name,
        "context": { "device": device },
    }))
}

/// `components.schemas.track` and `.page`: `event` (a page's `name`),
/// `properties`, `timestamp` as an ISO 8601 date-time
/// (`components.schemas.common_fields.timestamp`), by `userId` or
/// `anonymousId`; the event's stable id gives its `messageId`.
fn event(op: &Value, action: &str) -> Result<Value, String> {
    let mut call = if action == "page" || action == "screen" {
        json!({ "type": action, "name": op.get("name") })
    } else {
        json!({ "type": "track", "event": op.get("name") })
    };
    call["properties"] = op.get("attributes").cloned().unwrap_or_else(|| json!({}));
    match anonymous_of(op) {
        Some(anon) => call["anonymousId"] = anon.clone(),
        None => call["userId"] = json!(user_id(op.get("identifiers"))?),
    }
    if let Some(secs) = op.get("timestamp").and_then(Value::as_i64) {
        call["timestamp"] = json!(super::time::iso_format(secs).ok_or("a timestamp out of range")?);
    }
    // The event's stable id (`cio::event_ulid`), shortened: the same
    // event always has the same messageId.
    if let Some(id) = op.get("id").and_then(Value::as_str) {
        call["messageId"] = json!(short_hash(id));
    }
    Ok(call)
}

fn relationships(op: &Value) -> Result<Vec<(String, &Value)>, String> {
    let user = user_id(op.get("identifiers"))?;
    let rels = op
        .get("cio_relationships")
        .and_then(Value::as_array)
        .ok_or("no cio_relationships")?;
    Ok(rels.iter().map(|r| (user.clone(), r)).collect())
}

/// `components.schemas.group`: `groupId` the object, `traits.object_type_id`
/// its type (`components.schemas.objectTypeId`, a string), and
/// `traits.relationshipAttributes`.
fn group(user: String, rel: &Value) -> Value {
    let mut traits = json!({ "object_type_id": rel.pointer("/identifiers/object_type_id") });
    if let Some(attrs) = rel.get("relationship_attributes") {
        traits["relationshipAttributes"] = attrs.clone();
    }
    json!({
        "type": "group",
        "userId": user,
        "groupId": rel.pointer("/identifiers/object_id"),
        "traits": traits,
    })
}

/// `components.schemas.relationship_deleted`: the semantic event
/// "Relationship Deleted" with `objectId` and an integer `objectTypeId`.
fn relationship_deleted(user: String, rel: &Value) -> Result<Value, String> {
    let type_id = rel
        .pointer("/identifiers/object_type_id")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or("a relationship whose object_type_id is not an integer")?;
    Ok(json!({
        "type": "track",
        "userId": user,
        "event": "Relationship Deleted",
        "properties": { "objectId": rel.pointer("/identifiers/object_id"), "objectTypeId": type_id },
    }))
}

/// 16 hex digits of SHA-256 over the operation and the call's place in it
/// (short, so a call stays no larger than its operation).
fn stable_id(op: &Value, index: usize) -> String {
    short_hash(&format!("{index}\n{op}"))
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cio::ops;
    use crate::core::event::{Event, EventType};
    use crate::core::profile::{parse_update, Profile, RelationshipChange};

    fn profile(id: Option<&str>, email: Option<&str>) -> Profile {
        let mut p = Profile::new("0123456789abcdef0123", Some(1_700_000_000), 1_700_000_100);
        p.id = id.map(str::to_owned);
        p.email = email.map(str::to_owned);
        p
    }

    fn event(kind: EventType) -> Event {
        Event {
            kind,
            name: "Signed Up".into(),
            data: json!({"plan": "pro"}).as_object().cloned().unwrap(),
            timestamp: 1_780_000_000,
            anonymous_id: None,
            id: "browser:m-1".into(),
        }
    }

    fn one(op: &Value) -> Value {
        let calls = calls_of(op).unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        calls[0].call().clone()
    }

    #[test]
    fn the_destination_settings() {
        use crate::config::CioWorkspace;
        use std::collections::HashMap;
        let read = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            CioWorkspace::from_lookup(|n| map.get(n).cloned())
        };
        let eu = read(&[
            ("CIO_DESTINATION", "Pipelines"),
            ("CIO_CDP_API_KEY", "k"),
            ("CIO_REGION", "eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (eu.base_url.as_str(), eu.pipelines_key.as_deref()),
            ("https://cdp-eu.customer.io", Some("k"))
        );
        let us = read(&[("CIO_DESTINATION", "pipelines"), ("CIO_CDP_API_KEY", "k")])
            .unwrap()
            .unwrap();
        assert_eq!(us.base_url, "https://cdp.customer.io");
        // No key: off, even with Track API credentials.
        let off = read(&[
            ("CIO_DESTINATION", "pipelines"),
            ("CIO_SITE_ID", "s"),
            ("CIO_API_KEY", "a"),
        ]);
        assert_eq!(off, Ok(None));
        let track = read(&[
            ("CIO_SITE_ID", "s"),
            ("CIO_API_KEY", "a"),
            ("CIO_CDP_API_KEY", "k"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(track.pipelines_key, None);
        assert_eq!(
            read(&[("CIO_DESTINATION", "kafka")]).unwrap_err().setting,
            "CIO_DESTINATION"
        );
        let bad = read(&[
            ("CIO_DESTINATION", "pipelines"),
            ("CIO_CDP_API_KEY", "k"),
            ("CIO_CDP_URL", "nope"),
        ]);
        assert_eq!(bad.unwrap_err().setting, "CIO_CDP_URL");
    }

    #[test]
    fn regions() {
        assert_eq!(pipelines_base("us", None), "https://cdp.customer.io");
        assert_eq!(pipelines_base("eu", None), "https://cdp-eu.customer.io");
        assert_eq!(
            pipelines_base("eu", Some("http://127.0.0.1:9/")),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn identify_and_the_anonymous_merge() {
        let after = profile(Some("u1"), Some("a@x.co"));
        let update = parse_update(json!({"plan": "pro"}).as_object().unwrap(), true).unwrap();
        let call = one(&ops::identify_op(None, &after, &update).unwrap());
        assert_eq!(call["type"], "identify");
        assert_eq!(call["userId"], "u1");
        assert_eq!(call["traits"]["plan"], "pro");
        assert_eq!(call["traits"]["email"], "a@x.co");
        assert_eq!(call["messageId"].as_str().unwrap().len(), 16);
        let merge = one(&ops::anonymous_merge_op(&after, "anon-1"));
        assert_eq!(
            (merge["userId"].as_str(), merge["anonymousId"].as_str()),
            (Some("u1"), Some("anon-1"))
        );
        // By email until it has an id; the id it gets is its userId.
        let before = profile(None, Some("a@x.co"));
        let call = one(&ops::identify_op(Some(&before), &after, &update).unwrap());
        assert_eq!(call["userId"], "u1");
        assert_eq!(call["traits"]["email"], "a@x.co");
        assert!(call["traits"].get("id").is_none());
        let call = one(&ops::identify_op(None, &before, &update).unwrap());
        assert!(call.get("userId").is_none());
        assert_eq!(call["traits"]["email"], "a@x.co");
    }

    #[test]
    fn an_in_app_metric_is_a_report_delivery_event() {
        let op = json!({"v1_metrics": {"delivery_id": "d1", "metric": "clicked", "timestamp": 1_780_000_000, "recipient": "u1", "href": "https://x"}});
        let call = one(&op);
        assert_eq!(call["event"], "Report Delivery Event");
        assert_eq!(
            call["properties"],
            json!({"deliveryId": "d1", "metric": "clicked", "recipient": "u1", "href": "https://x"})
        );
        assert_eq!(call["timestamp"], "2026-05-28T20:26:40Z");
    }

    #[test]
    fn events_keep_their_stable_id_and_get_an_iso_timestamp() {
        let p = profile(Some("u1"), None);
        let call = one(&ops::person_event_op(&p, &event(EventType::Event)));
        assert_eq!(call["type"], "track");
        assert_eq!(call["event"], "Signed Up");
        assert_eq!(call["userId"], "u1");
        assert_eq!(call["properties"]["plan"], "pro");
        assert_eq!(call["timestamp"], "2026-05-28T20:26:40Z");
        assert_eq!(
            call["messageId"],
            json!(short_hash(&ops::event_ulid(
                &p.cio_id,
                "browser:m-1",
                1_780_000_000
            )))
        );
        let page = one(&ops::anonymous_event_op("anon-1", &event(EventType::Page)));
        assert_eq!(
            (page["type"].as_str(), page["name"].as_str()),
            (Some("page"), Some("Signed Up"))
        );
        assert_eq!(page["anonymousId"], "anon-1");
        assert!(page.get("userId").is_none());
    }

    #[test]
    fn relationships_delete_merge() {
        let p = profile(Some("u1"), None);
        let add = RelationshipChange::parse(
            &json!({"action": "add_relationships", "relationships": [
                {"identifiers": {"object_type_id": "2", "object_id": "acme"}, "relationship_attributes": {"role": "owner"}},
                {"identifiers": {"object_type_id": "1", "object_id": "beta"}}]}),
            true,
        )
        .unwrap();
        let calls = calls_of(&ops::relationships_op(&p, &add).unwrap()).unwrap();
        assert_eq!(calls.len(), 2);
        let g = calls[0].call();
        assert_eq!(
            (g["type"].as_str(), g["groupId"].as_str()),
            (Some("group"), Some("acme"))
        );
        assert_eq!(g["traits"]["object_type_id"], "2");
        assert_eq!(g["traits"]["relationshipAttributes"]["role"], "owner");
        assert_ne!(calls[0].call()["messageId"], calls[1].call()["messageId"]);
        let mut delete = add.clone();
        delete.action = crate::core::profile::RelationshipAction::Delete;
        let calls = calls_of(&ops::relationships_op(&p, &delete).unwrap()).unwrap();
        assert_eq!(calls[0].call()["event"], "Relationship Deleted");
        assert_eq!(
            calls[0].call()["properties"],
            json!({"objectId": "acme", "objectTypeId": 2})
        );

        let gone = one(&ops::delete_op(&p));
        assert_eq!(
            (gone["event"].as_str(), gone["userId"].as_str()),
            (Some("User Deleted"), Some("u1"))
        );
        let merge = calls_of(&ops::merge_op(&p, &profile(None, Some("b@x.co")))).unwrap();
        assert_eq!(
            merge,
            vec![Post::Alias(
                json!({"type": "alias", "userId": "u1", "previousId": "b@x.co", "messageId": merge[0].call()["messageId"]})
            )]
        );
    }

    #[test]
    fn the_same_operation_always_gives_the_same_message_ids() {
        let p = profile(Some("u1"), None);
        let op = ops::delete_op(&p);
        assert_eq!(calls_of(&op).unwrap(), calls_of(&op.clone()).unwrap());
        assert_ne!(
            one(&op)["messageId"],
            one(&ops::delete_op(&profile(Some("u2"), None)))["messageId"]
        );
    }

    #[test]
    fn what_has_no_pipelines_call_is_refused_with_a_reason() {
        let linked = profile(None, None);
        assert!(calls_of(&ops::delete_op(&linked))
            .unwrap_err()
            .contains("cio_id"));
        assert!(calls_of(&json!({"action": "nope"})).is_err());
        let big = json!({"action": "event", "name": "e", "identifiers": {"id": "u"}, "attributes": {"x": "y".repeat(40_000)}});
        assert!(calls_of(&big).unwrap_err().contains("over its limit"));
    }

    #[test]
    fn a_call_is_never_larger_than_its_checked_operation() {
        // The outbox refuses operations over 32 KB before storing them
        // (`cio::checked`); the Pipelines call is no larger, so nothing
        // stored can be over the Pipelines limit.
        let p = profile(Some("u1"), Some("a@x.co"));
        for size in [0, 100, 10_000, 32_000] {
            let data = json!({ "blob": "z".repeat(size) });
            let mut e = event(EventType::Event);
            e.data = data.as_object().cloned().unwrap();
            for op in [
                ops::person_event_op(&p, &e),
                ops::anonymous_event_op("0f8fad5b-d9cb-469f-a165-70867728950e", &e),
            ] {
                let call = calls_of(&op).map(|c| c[0].call().to_string().len());
                if let Ok(len) = call {
                    assert!(
                        len <= op.to_string().len(),
                        "{len} > {}",
                        op.to_string().len()
                    );
                }
            }
            // Attributes of at most 1000 bytes each, as many as the size.
            let attributes: Map<String, Value> = (0..=size / 900)
                .map(|i| (format!("a{i}"), json!("z".repeat(900))))
                .collect();
            let update = parse_update(&attributes, true).unwrap();
            let op = ops::identify_op(None, &p, &update).unwrap();
            if let Ok(c) = calls_of(&op) {
                assert!(c[0].call().to_string().len() <= op.to_string().len());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn pipelines_calls_of_any_operation_never_panic(v in crate::core::body::tests::arb_json(), action in 0usize..8) {
            let actions = ["identify", "event", "page", "add_relationships", "delete_relationships", "delete", "merge", "x"];
            let mut op = v;
            if let Some(map) = op.as_object_mut() {
                map.insert("action".into(), json!(actions[action]));
            }
            let _ = calls_of(&op);
        }
    }
}
