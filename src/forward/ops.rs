//! Track API v2 operations (`POST /api/v2/batch` items) built from what an
//! object committed. People are addressed by `id`, else `email`; a person
//! with neither was made for a Customer.io cio_id from a tracked link and is
//! addressed by that `cio_id`. An edge-issued cio_id is never sent.

use serde_json::{json, Map, Value};

use crate::core::event::{Event, EventType, BROWSER_ID_PREFIX};
use crate::core::profile::{
    Profile, ProfileUpdate, Relationship, RelationshipAction, RelationshipChange,
};
use crate::core::Error as ClientError;

/// Customer.io's limit on one operation (serialized JSON).
pub const MAX_OP_BYTES: usize = 32 * 1024;

/// How an operation names its person: `{"id"}`, `{"email"}`, else `{"cio_id"}`.
pub fn identifiers(id: Option<&str>, email: Option<&str>, cio_id: &str) -> Value {
    match (id, email) {
        (Some(id), _) => json!({ "id": id }),
        (None, Some(email)) => json!({ "email": email }),
        (None, None) => json!({ "cio_id": cio_id }),
    }
}

fn identifiers_of(profile: &Profile) -> Value {
    identifiers(
        profile.id.as_deref(),
        profile.email.as_deref(),
        &profile.cio_id,
    )
}

/// An operation within Customer.io's size limit, else a clear 413.
pub fn checked(op: Value) -> Result<Value, ClientError> {
    let len = op.to_string().len();
    if len > MAX_OP_BYTES {
        return Err(ClientError::TooLarge {
            message: format!(
                "this write would be forwarded to Customer.io as {len} bytes, over its limit of {MAX_OP_BYTES} per operation"
            ),
        });
    }
    Ok(op)
}

/// The identify after `update` was applied: addressed as the person was
/// before it (a changed email is sent as an attribute), carrying the sent
/// attributes, the identifiers the address does not carry, and `created_at`.
/// `None` when the update only changes relationships.
pub fn identify_op(
    before: Option<&Profile>,
    after: &Profile,
    update: &ProfileUpdate,
) -> Option<Value> {
    let only_relationships = update.id.is_none()
        && update.email.is_none()
        && update.created_at.is_none()
        && update.attributes.is_empty()
        && before.is_some();
    if only_relationships {
        return None;
    }
    let address = identifiers_of(before.unwrap_or(after));
    let mut attributes: Map<String, Value> = update.attributes.clone();
    if address.get("id").is_none() {
        if let Some(id) = &after.id {
            attributes.insert("id".into(), json!(id));
        }
    }
    if let Some(email) = &after.email {
        if address.get("email").and_then(Value::as_str) != Some(email) {
            attributes.insert("email".into(), json!(email));
        }
    }
    // A person known by Customer.io's cio_id only has its creation time there.
    if address.get("cio_id").is_none() {
        attributes.insert("created_at".into(), json!(after.created_at));
    }
    Some(json!({
        "type": "person",
        "action": "identify",
        "identifiers": address,
        "attributes": attributes,
    }))
}

/// The visitor `anonymous_id` merged into the person: Customer.io joins its
/// anonymous events to the person.
pub fn anonymous_merge_op(profile: &Profile, anonymous_id: &str) -> Value {
    json!({
        "type": "person",
        "action": "identify",
        "identifiers": identifiers_of(profile),
        "anonymous_id": anonymous_id,
    })
}

/// Relationships added or deleted.
pub fn relationships_op(profile: &Profile, change: &RelationshipChange) -> Option<Value> {
    if change.relationships.is_empty() {
        return None;
    }
    let action = match change.action {
        RelationshipAction::Add => "add_relationships",
        RelationshipAction::Delete => "delete_relationships",
    };
    let rels: Vec<Value> = change.relationships.iter().map(relationship).collect();
    Some(json!({
        "type": "person",
        "action": action,
        "identifiers": identifiers_of(profile),
        "cio_relationships": rels,
    }))
}

fn relationship(rel: &Relationship) -> Value {
    let mut out = json!({
        "identifiers": {"object_type_id": rel.object_type_id, "object_id": rel.object_id}
    });
    if let Some(attrs) = &rel.attributes {
        out["relationship_attributes"] = Value::Object(attrs.clone());
    }
    out
}

fn event_fields(event: &Event) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("type".into(), json!("person"));
    let action = match event.kind {
        EventType::Page => "page",
        EventType::Event => "event",
    };
    op.insert("action".into(), json!(action));
    op.insert("name".into(), json!(event.name));
    op.insert("id".into(), json!(event_ulid(&event.id, event.timestamp)));
    op.insert("timestamp".into(), json!(event.timestamp));
    op.insert("attributes".into(), Value::Object(event.data.clone()));
    op
}

/// An event or page view of a person (an in-app metric goes to the metrics
/// endpoint instead: `inapp::metric_op`).
pub fn person_event_op(profile: &Profile, event: &Event) -> Value {
    let recipient = profile.id.as_deref().or(profile.email.as_deref());
    if let Some(op) = crate::inapp::metric_op(event, recipient) {
        return op;
    }
    let mut op = event_fields(event);
    op.insert("identifiers".into(), identifiers_of(profile));
    Value::Object(op)
}

/// An event or page view of an anonymous visitor.
pub fn anonymous_event_op(anonymous_id: &str, event: &Event) -> Value {
    if let Some(op) = crate::inapp::metric_op(event, None) {
        return op;
    }
    let mut op = event_fields(event);
    op.insert("anonymous_id".into(), json!(anonymous_id));
    Value::Object(op)
}

pub fn delete_op(profile: &Profile) -> Value {
    json!({"type": "person", "action": "delete", "identifiers": identifiers_of(profile)})
}

pub fn merge_op(primary: &Profile, secondary: &Profile) -> Value {
    json!({
        "type": "person",
        "action": "merge",
        "primary": identifiers_of(primary),
        "secondary": identifiers_of(secondary),
    })
}

/// Customer.io deduplicates events by a ULID `id`. The stored id (a client's,
/// `browser:<hex>`, or the edge's UUID) maps to one ULID, always the same, so
/// a redelivery is recognised: the event's time in milliseconds, then 80 bits
/// of a hash of the stored id, in Crockford base32.
pub fn event_ulid(stored_id: &str, timestamp: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let id = stored_id.strip_prefix(BROWSER_ID_PREFIX).map_or_else(
        || format!("api:{stored_id}"),
        |rest| format!("browser:{rest}"),
    );
    let hash = |seed: u64| {
        id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x6c62_272e_07bb_0142));
    let millis = (timestamp.max(0) as u128 * 1000) & ((1 << 48) - 1);
    let random = ((u128::from(a) << 64) | u128::from(b)) & ((1 << 80) - 1);
    let value = (millis << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::parse_update;

    fn profile(id: Option<&str>, email: Option<&str>) -> Profile {
        let mut p = Profile::new("0123456789abcdef0123", Some(1_700_000_000), 1_700_000_100);
        p.id = id.map(str::to_owned);
        p.email = email.map(str::to_owned);
        p
    }

    fn update(v: Value) -> ProfileUpdate {
        parse_update(v.as_object().unwrap(), true).unwrap()
    }

    #[test]
    fn people_are_addressed_by_id_then_email_then_an_external_cio_id() {
        assert_eq!(
            identifiers(Some("u1"), Some("a@b.co"), "x"),
            json!({"id": "u1"})
        );
        assert_eq!(
            identifiers(None, Some("a@b.co"), "x"),
            json!({"email": "a@b.co"})
        );
        assert_eq!(identifiers(None, None, "x"), json!({"cio_id": "x"}));
    }

    #[test]
    fn identify_sends_the_update_addressed_as_before() {
        let before = profile(None, Some("old@b.co"));
        let after = profile(Some("u1"), Some("new@b.co"));
        let op = identify_op(
            Some(&before),
            &after,
            &update(json!({"plan": "pro", "email": "new@b.co"})),
        )
        .unwrap();
        assert_eq!(op["identifiers"], json!({"email": "old@b.co"}));
        assert_eq!(
            op["attributes"],
            json!({"plan": "pro", "id": "u1", "email": "new@b.co", "created_at": 1_700_000_000})
        );
        let created = identify_op(None, &after, &update(json!({}))).unwrap();
        assert_eq!(created["identifiers"], json!({"id": "u1"}));
        assert_eq!(
            created["attributes"],
            json!({"email": "new@b.co", "created_at": 1_700_000_000})
        );
        let rels = update(
            json!({"cio_relationships": {"action": "add_relationships", "relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}}),
        );
        assert!(identify_op(Some(&after), &after, &rels).is_none());
        let op = relationships_op(&after, rels.relationships.as_ref().unwrap()).unwrap();
        assert_eq!(op["action"], "add_relationships");
        assert_eq!(
            op["cio_relationships"],
            json!([{"identifiers": {"object_type_id": "1", "object_id": "acme"}}])
        );
    }

    #[test]
    fn events_carry_a_stable_ulid_and_seconds() {
        let event = Event {
            kind: EventType::Page,
            name: "/home".into(),
            data: Map::new(),
            timestamp: 1_700_000_000,
            anonymous_id: Some("a".into()),
            id: "browser:abc".into(),
        };
        let op = anonymous_event_op("a", &event);
        assert_eq!(op["action"], "page");
        assert_eq!(op["anonymous_id"], "a");
        assert_eq!(op["timestamp"], 1_700_000_000);
        let ulid = op["id"].as_str().unwrap();
        assert_eq!(ulid.len(), 26);
        assert_eq!(ulid, event_ulid("browser:abc", 1_700_000_000));
        // bench/soak.mjs computes the same ids.
        assert_eq!(ulid, "01HF7YAT00XF0Z4VVSPB9K5HXW");
        assert_eq!(
            event_ulid("e1", 1_700_000_000),
            "01HF7YAT00RJAR368Y7RY61TRP"
        );
        assert_ne!(
            ulid,
            event_ulid("abc", 1_700_000_000),
            "browser ids keep their own key space"
        );
        assert!(ulid
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        let person = person_event_op(&profile(Some("u1"), None), &event);
        assert_eq!(person["identifiers"], json!({"id": "u1"}));
        assert!(person.get("anonymous_id").is_none());
    }

    #[test]
    fn operations_over_32_kb_are_refused_with_a_clear_error() {
        let small = delete_op(&profile(Some("u1"), None));
        assert_eq!(checked(small.clone()), Ok(small));
        let big = json!({"attributes": {"k": "x".repeat(MAX_OP_BYTES)}});
        let err = checked(big).unwrap_err();
        assert_eq!(err.status(), 413);
        assert!(err.to_string().contains("Customer.io"), "{err}");
    }

    #[test]
    fn merges_name_both_sides() {
        let op = merge_op(&profile(Some("a"), None), &profile(None, Some("b@c.co")));
        assert_eq!(
            op,
            json!({"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {"email": "b@c.co"}})
        );
    }
}
