//! Track API v2 operations (`POST /api/v2/batch` items) built from what an
//! object committed. People are addressed by `id`, else `email`; a person
//! with neither was made for a Customer.io cio_id from a tracked link and is
//! addressed by that `cio_id`. An edge-issued cio_id is never sent. Each
//! shape and its source is in docs/FORWARDING.md ("What is sent").

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
/// attributes and the identifiers the address does not carry. `created_at`
/// only when the caller sent it: Customer.io's own is never overwritten.
/// A person known only by Customer.io's cio_id (a link's) that now gets an
/// id or email is addressed by that id or email, never renamed through the
/// cio_id. `None` when the update only changes relationships.
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
    let mut address = identifiers_of(before.unwrap_or(after));
    if address.get("cio_id").is_some() && (after.id.is_some() || after.email.is_some()) {
        address = identifiers_of(after);
    }
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
    if let Some(created_at) = update.created_at {
        attributes.insert("created_at".into(), json!(created_at));
    }
    Some(json!({
        "type": "person",
        "action": "identify",
        "identifiers": address,
        "attributes": attributes,
    }))
}

/// The visitor `anonymous_id` joined to the person: an identify setting the
/// person's `anonymous_id` attribute, which is how Customer.io associates
/// anonymous events with a person (those it received before it, and up to
/// five minutes after; sent again after a late anonymous delivery).
pub fn anonymous_merge_op(profile: &Profile, anonymous_id: &str) -> Value {
    json!({
        "type": "person",
        "action": "identify",
        "identifiers": identifiers_of(profile),
        "attributes": {"anonymous_id": anonymous_id},
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

/// `owner`: the person's edge cio_id or the visitor's anonymous id, so two
/// people's events with the same client id are two events there.
fn event_fields(owner: &str, event: &Event) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("type".into(), json!("person"));
    let action = match event.kind {
        EventType::Page => "page",
        EventType::Event => "event",
        EventType::Screen => "screen",
    };
    op.insert("action".into(), json!(action));
    op.insert("name".into(), json!(event.name));
    op.insert(
        "id".into(),
        json!(event_ulid(owner, &event.id, event.timestamp)),
    );
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
    let mut op = event_fields(&profile.cio_id, event);
    op.insert("identifiers".into(), identifiers_of(profile));
    Value::Object(op)
}

/// An event or page view of an anonymous visitor: `identifiers:
/// {"anonymous_id"}`, as Customer.io's own v2 destination sends it.
pub fn anonymous_event_op(anonymous_id: &str, event: &Event) -> Value {
    if let Some(op) = crate::inapp::metric_op(event, None) {
        return op;
    }
    let mut op = event_fields(anonymous_id, event);
    op.insert(
        "identifiers".into(),
        json!({ "anonymous_id": anonymous_id }),
    );
    Value::Object(op)
}

/// The anonymous id of an anonymous event operation.
pub fn anonymous_id_of(op: &Value) -> Option<&str> {
    match op.get("action").and_then(Value::as_str) {
        Some("event" | "page" | "screen") => op.get("identifiers")?.get("anonymous_id")?.as_str(),
        _ => None,
    }
}

/// How old (seconds) an anonymous event may be when it is delivered and
/// still count as on time: well inside Customer.io's five-minute join window.
pub const LATE_AFTER_SECS: i64 = 60;

/// The anonymous ids whose events in a just-delivered batch may have missed
/// Customer.io's join window (the batch was retried, or the event is older
/// than `LATE_AFTER_SECS`): their person, if any, sends its join identify
/// again so those events are joined (docs.customer.io/journeys/anonymous-events).
pub fn late_anonymous_ids(ops: &[Value], attempt: u32, now: i64) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for op in ops {
        let Some(anon) = anonymous_id_of(op) else {
            continue;
        };
        let ts = op.get("timestamp").and_then(Value::as_i64).unwrap_or(now);
        if (attempt > 0 || now - ts > LATE_AFTER_SECS) && !ids.iter().any(|a| a == anon) {
            ids.push(anon.to_owned());
        }
    }
    ids
}

/// A device or suppression operation (`op` without `identifiers`),
/// addressed as the person.
pub fn addressed_op(profile: &Profile, mut op: Map<String, Value>) -> Value {
    op.insert("identifiers".into(), identifiers_of(profile));
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

/// Customer.io deduplicates events by a ULID `id`, across the workspace.
/// The stored id (a client's, `browser:<hex>`, or the edge's UUID) of one
/// owner (a person's edge cio_id, a visitor's anonymous id) maps to one
/// ULID, always the same, so a redelivery is recognised and two owners'
/// equal ids stay two events: the event's time in milliseconds, then 80 bits
/// of a hash of owner and id, in Crockford base32.
pub fn event_ulid(owner: &str, stored_id: &str, timestamp: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let id = stored_id.strip_prefix(BROWSER_ID_PREFIX).map_or_else(
        || format!("{}:{owner}:api:{stored_id}", owner.len()),
        |rest| format!("{}:{owner}:browser:{rest}", owner.len()),
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

/// How long Customer.io keeps anonymous events and joins them to a person
/// identified with their `anonymous_id` (30 days), and a day to spare.
pub const CIO_ANONYMOUS_SECS: i64 = 31 * 86_400;

/// Whether an identify may carry a visitor's `anonymous_id` to Customer.io.
/// Its anonymous events there cannot be deleted (the Track API has no call
/// for it), so once retention deleted the visitor here
/// (`identity::retention`), the join is not
/// sent while Customer.io may still hold what was deleted: the deletion is
/// forwarded the one way the API allows.
pub fn may_join_anonymous(expired: Option<i64>, now: i64) -> bool {
    expired.is_none_or(|last| now >= last + CIO_ANONYMOUS_SECS)
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
            json!({"plan": "pro", "id": "u1", "email": "new@b.co"})
        );
        // Customer.io's own created_at is never overwritten by the edge's.
        let created = identify_op(None, &after, &update(json!({}))).unwrap();
        assert_eq!(created["identifiers"], json!({"id": "u1"}));
        assert_eq!(created["attributes"], json!({"email": "new@b.co"}));
        let sent =
            identify_op(None, &after, &update(json!({"created_at": 1_600_000_000}))).unwrap();
        assert_eq!(sent["attributes"]["created_at"], 1_600_000_000);
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
        assert_eq!(op["identifiers"], json!({"anonymous_id": "a"}));
        assert!(op.get("anonymous_id").is_none());
        assert_eq!(op["timestamp"], 1_700_000_000);
        let ulid = op["id"].as_str().unwrap();
        assert_eq!(ulid.len(), 26);
        assert_eq!(ulid, event_ulid("a", "browser:abc", 1_700_000_000));
        // bench/soak.mjs computes the same ids.
        assert_eq!(ulid, ULID_A_BROWSER_ABC);
        assert_eq!(event_ulid("p1", "e1", 1_700_000_000), ULID_P1_E1);
        assert_ne!(
            ulid,
            event_ulid("a", "abc", 1_700_000_000),
            "browser ids keep their own key space"
        );
        // Two people's same client id are two events at Customer.io.
        assert_ne!(
            event_ulid("p1", "order-1001", 1_700_000_000),
            event_ulid("p2", "order-1001", 1_700_000_000)
        );
        // The owner and the id cannot trade characters.
        assert_ne!(
            event_ulid("p1:api", "x", 1_700_000_000),
            event_ulid("p1", "api:x", 1_700_000_000)
        );
        assert!(ulid
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        let person = person_event_op(&profile(Some("u1"), None), &event);
        assert_eq!(person["identifiers"], json!({"id": "u1"}));
        assert!(person.get("anonymous_id").is_none());
    }

    const ULID_A_BROWSER_ABC: &str = "01HF7YAT0056JN0JDA83TYQXR0";
    const ULID_P1_E1: &str = "01HF7YAT00VH4A4YNNPNVWE5K9";

    #[test]
    fn a_link_person_that_gets_an_id_is_addressed_by_it_never_renamed() {
        let before = profile(None, None);
        let after = profile(Some("u9"), Some("u9@b.co"));
        let op = identify_op(
            Some(&before),
            &after,
            &update(json!({"id": "u9", "email": "u9@b.co"})),
        )
        .unwrap();
        assert_eq!(op["identifiers"], json!({"id": "u9"}));
        assert_eq!(op["attributes"], json!({"email": "u9@b.co"}));
        // Only Customer.io's own person stays addressed by cio_id.
        let same = identify_op(Some(&before), &before, &update(json!({"plan": "x"}))).unwrap();
        assert_eq!(same["identifiers"], json!({"cio_id": before.cio_id}));
    }

    #[test]
    fn the_join_is_the_anonymous_id_attribute_and_late_deliveries_send_it_again() {
        let op = anonymous_merge_op(&profile(Some("u1"), None), "a1");
        assert_eq!(
            op,
            json!({"type": "person", "action": "identify", "identifiers": {"id": "u1"}, "attributes": {"anonymous_id": "a1"}})
        );
        let ev = |anon: &str, ts: i64| json!({"type": "person", "action": "page", "identifiers": {"anonymous_id": anon}, "name": "/", "timestamp": ts});
        let now = 1_700_000_000;
        let person = json!({"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "x", "timestamp": now - 999});
        let ops = [
            ev("a1", now),
            ev("a2", now - 600),
            ev("a2", now - 700),
            person.clone(),
        ];
        assert_eq!(late_anonymous_ids(&ops, 0, now), vec!["a2".to_owned()]);
        assert_eq!(
            late_anonymous_ids(&ops, 3, now),
            vec!["a1".to_owned(), "a2".to_owned()]
        );
        assert!(late_anonymous_ids(&[person], 3, now).is_empty());
    }

    #[test]
    fn devices_and_suppression_are_addressed_as_the_person() {
        let mut op = Map::new();
        op.insert("type".into(), json!("person"));
        op.insert("action".into(), json!("suppress"));
        assert_eq!(
            addressed_op(&profile(None, Some("a@b.co")), op),
            json!({"type": "person", "action": "suppress", "identifiers": {"email": "a@b.co"}})
        );
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

    #[test]
    fn a_deleted_visitor_is_not_joined_while_customer_io_may_hold_its_events() {
        assert!(may_join_anonymous(None, 0));
        assert!(!may_join_anonymous(Some(1_000), 1_000 + 86_400));
        assert!(!may_join_anonymous(
            Some(1_000),
            1_000 + CIO_ANONYMOUS_SECS - 1
        ));
        assert!(may_join_anonymous(Some(1_000), 1_000 + CIO_ANONYMOUS_SECS));
    }
}
