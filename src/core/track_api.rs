//! Customer.io Track API wire formats (v1 and v2 person operations), parsed
//! into the same identify and event rules the browser endpoints use.

use serde_json::{json, Value};

use super::body::{json_kind, Object};
use super::error::Error;
use super::identifier::{cio_shaped, integer_text, is_cio_id, looks_like_cio_id, Identifier};
use super::profile::{parse_update, Identify, RelationshipChange};

/// Longest anonymous id accepted from a backend (the browser's are UUIDs).
pub const MAX_ANON_ID_BYTES: usize = 150;

/// One person operation, whichever API version carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonOp {
    Identify {
        identify: Identify,
        /// `_update: true`: never create.
        create: bool,
        anonymous_id: Option<String>,
    },
    Delete {
        identifier: Identifier,
    },
    /// An event body in v1 shape (`name`, `data`, `id`, `timestamp`, `type`).
    Event {
        identifier: Identifier,
        body: Object,
    },
    Merge {
        primary: Identifier,
        secondary: Identifier,
    },
    /// A v2 `event`/`page`/`screen` with `identifiers: {"anonymous_id"}`
    /// (or a top-level `anonymous_id`, as earlier versions forwarded it).
    AnonymousEvent {
        anonymous_id: String,
        body: Object,
    },
    /// What is Customer.io's alone (devices, suppression): nothing is stored
    /// here; with forwarding on it is sent on for the person. `op` is the v2
    /// operation without `identifiers`.
    Relay {
        identifier: Identifier,
        op: Object,
    },
}

/// A device as the v1 (`id`) or v2 (`token`) API sends it, in v2's shape:
/// `{"token", "platform"?, "last_used"?, "attributes"?}`. `platform` is
/// required when adding (Track API `device_object_common`).
pub fn parse_device(value: Option<&Value>, adding: bool) -> Result<Object, Error> {
    let device = value
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("device", "must be an object"))?;
    let token = device
        .get("token")
        .or_else(|| device.get("id"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 1000 && !t.chars().any(char::is_control))
        .ok_or_else(|| {
            Error::invalid(
                "device",
                "needs a token (v2) or id (v1): a string of 1 to 1000 bytes",
            )
        })?;
    let mut out = Object::new();
    out.insert("token".into(), json!(token));
    if !adding {
        return Ok(out);
    }
    match device.get("platform").and_then(Value::as_str) {
        Some(p @ ("ios" | "android")) => {
            out.insert("platform".into(), json!(p));
        }
        _ => {
            return Err(Error::invalid(
                "device",
                "platform must be \"ios\" or \"android\"",
            ))
        }
    }
    match device.get("last_used") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            out.insert("last_used".into(), Value::Number(n.clone()));
        }
        Some(_) => return Err(Error::invalid("device", "last_used must be unix seconds")),
    }
    match device.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(attrs)) => {
            // Customer.io's device attributes are strings.
            let mut kept = Object::new();
            for (k, v) in attrs {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => {
                        return Err(Error::invalid(
                            "device",
                            format!("attribute {k} must be a string"),
                        ))
                    }
                };
                kept.insert(k.clone(), json!(text));
            }
            out.insert("attributes".into(), Value::Object(kept));
        }
        Some(_) => return Err(Error::invalid("device", "attributes must be an object")),
    }
    Ok(out)
}

/// A device, suppress or unsuppress operation for the person `identifier`.
pub fn relay_op(identifier: Identifier, action: &str, device: Option<Object>) -> PersonOp {
    let mut op = Object::new();
    op.insert("type".into(), json!("person"));
    op.insert("action".into(), json!(action));
    if let Some(device) = device {
        op.insert("device".into(), Value::Object(device));
    }
    PersonOp::Relay { identifier, op }
}

/// A backend-supplied anonymous id: any non-empty string without control
/// characters, at most 150 bytes.
pub fn parse_anonymous_id(
    value: Option<&Value>,
    field: &'static str,
) -> Result<Option<String>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || s.len() > MAX_ANON_ID_BYTES || s.chars().any(char::is_control) {
                Err(Error::invalid(
                    field,
                    format!("must be 1 to {MAX_ANON_ID_BYTES} bytes"),
                ))
            } else {
                Ok(Some(s.to_owned()))
            }
        }
        Some(other) => Err(Error::invalid(
            field,
            format!("must be a string, not {}", json_kind(other)),
        )),
    }
}

/// `{"id"|"email"|"cio_id": value}` with exactly one key (merge sides, v2
/// identifiers).
pub fn parse_identifier_object(
    value: Option<&Value>,
    field: &'static str,
) -> Result<Identifier, Error> {
    let obj = value
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid(field, "must be an object with one of id, email, cio_id"))?;
    if obj.len() != 1 {
        return Err(Error::invalid(
            field,
            "must hold exactly one of id, email, cio_id",
        ));
    }
    let (key, value) = obj
        .iter()
        .next()
        .ok_or_else(|| Error::invalid(field, "is empty"))?;
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) if key == "id" => integer_text(n, "id")?,
        Value::Number(n) => n.to_string(),
        _ => return Err(Error::invalid(field, format!("{key} must be a string"))),
    };
    match key.as_str() {
        "id" => match Identifier::from_identify_value(Some(&Value::String(text.clone())))? {
            // An email given as "id" is still an id here: the key says so.
            Identifier::Email(_) | Identifier::CioId(_) => Ok(Identifier::Id(text)),
            id => Ok(id),
        },
        "email" => match Identifier::parse(&text)? {
            email @ Identifier::Email(_) => Ok(email),
            _ => Err(Error::invalid(field, "email is not an email address")),
        },
        "cio_id" if is_cio_id(&text) => Ok(Identifier::CioId(text)),
        "cio_id" => Err(Error::invalid(field, "cio_id is not a cio_id")),
        _ => Err(Error::invalid(
            field,
            "must hold exactly one of id, email, cio_id",
        )),
    }
}

/// `PUT /v1/customers/{identifier}`: the path names the person; the body holds
/// attributes, and may add an `id` or `email` the person does not have yet.
pub fn parse_v1_identify(
    path: Identifier,
    body: &Object,
    use_array_params: bool,
) -> Result<PersonOp, Error> {
    let mut update = parse_update(body, use_array_params)?;
    let body_id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(body_id(s.trim())?),
        Some(Value::Number(n)) => Some(body_id(&integer_text(n, "id")?)?),
        Some(_) => return Err(Error::invalid("id", "must be a string or a number")),
    };
    match &path {
        Identifier::Id(id) => {
            if body_id.as_ref().is_some_and(|b| b != id) {
                return Err(Error::invalid("id", "differs from the id in the path"));
            }
            update.id = Some(id.clone());
        }
        Identifier::Email(email) => {
            if update.email.as_ref().is_some_and(|e| e != email) {
                return Err(Error::invalid(
                    "email",
                    "differs from the email in the path",
                ));
            }
            update.email = Some(email.clone());
            update.id = body_id;
        }
        Identifier::CioId(_) => update.id = body_id,
    }
    let create = match body.get("_update") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Bool(true)) => false,
        Some(_) => return Err(Error::invalid("_update", "must be a boolean")),
    };
    let anonymous_id = parse_anonymous_id(body.get("anonymous_id"), "anonymous_id")?;
    Ok(PersonOp::Identify {
        identify: Identify {
            identifier: path,
            update,
        },
        create,
        anonymous_id,
    })
}

/// An `id` in a v1 identify body: the same rules as an identify's id, except
/// that an email-shaped one stays an id (the key says so).
fn body_id(id: &str) -> Result<String, Error> {
    if id.len() > super::identifier::MAX_ID_BYTES {
        return Err(Error::invalid("id", "must be at most 150 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid("id", "must not contain control characters"));
    }
    if looks_like_cio_id(id) {
        return Err(cio_shaped("id"));
    }
    Ok(id.to_owned())
}

/// `POST /v1/merge_customers`.
pub fn parse_merge(body: &Object) -> Result<PersonOp, Error> {
    Ok(PersonOp::Merge {
        primary: parse_identifier_object(body.get("primary"), "primary")?,
        secondary: parse_identifier_object(body.get("secondary"), "secondary")?,
    })
}

/// A v2 event operation as a v1 event body.
fn event_body(op: &Object, action: &str) -> Result<Object, Error> {
    let attributes = match op.get("attributes") {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(Error::invalid(
                "attributes",
                format!("must be an object, not {}", json_kind(other)),
            ))
        }
    };
    let mut body = Object::new();
    for key in ["name", "id", "timestamp"] {
        if let Some(v) = op.get(key) {
            body.insert(key.into(), v.clone());
        }
    }
    body.insert("data".into(), Value::Object(attributes));
    body.insert("type".into(), json!(action));
    Ok(body)
}

/// One v2 person operation (`/v2/entity`, or an item of `/v2/batch`).
pub fn parse_v2_op(value: &Value, use_array_params: bool) -> Result<PersonOp, Error> {
    let op = value
        .as_object()
        .ok_or_else(|| Error::bad_body("each operation must be a JSON object"))?;
    match op.get("type").and_then(Value::as_str) {
        Some("person") => {}
        _ => {
            return Err(Error::invalid(
                "type",
                "only \"person\" operations are supported",
            ))
        }
    }
    let action = op.get("action").and_then(Value::as_str).unwrap_or_default();
    if action == "merge" {
        return parse_merge(op);
    }
    let anonymous_identifier = op
        .get("identifiers")
        .and_then(Value::as_object)
        .filter(|ids| ids.len() == 1)
        .and_then(|ids| ids.get("anonymous_id"));
    let anonymous = matches!(action, "event" | "page" | "screen")
        && (op.get("identifiers").is_none() || anonymous_identifier.is_some());
    if anonymous {
        let given = anonymous_identifier.or_else(|| op.get("anonymous_id"));
        let anonymous_id = parse_anonymous_id(given, "anonymous_id")?
            .ok_or_else(|| Error::invalid("identifiers", "is required (or anonymous_id)"))?;
        let mut body = event_body(op, action)?;
        body.insert("anonymous_id".into(), json!(anonymous_id));
        return Ok(PersonOp::AnonymousEvent { anonymous_id, body });
    }
    let identifier = parse_identifier_object(op.get("identifiers"), "identifiers")?;
    let attributes = match op.get("attributes") {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(Error::invalid(
                "attributes",
                format!("must be an object, not {}", json_kind(other)),
            ))
        }
    };
    match action {
        "identify" => {
            // `email` and `id` among the attributes are the person's, as in a
            // v1 body; the protocol fields of v2 live beside `attributes`.
            let mut body = attributes;
            let attributes_anon = body.get("anonymous_id").cloned();
            for reserved in ["cio_id", "cio_relationships", "anonymous_id", "_update"] {
                body.remove(reserved);
            }
            if let Some(rels) = op.get("cio_relationships") {
                body.insert(
                    "cio_relationships".into(),
                    json!({"action": "add_relationships", "relationships": rels}),
                );
            }
            // The person's `anonymous_id` attribute (how Customer.io's own
            // clients send it), or a top-level one: that visitor merges in.
            let anon = attributes_anon.or_else(|| op.get("anonymous_id").cloned());
            if let Some(anon) = anon {
                body.insert("anonymous_id".into(), anon);
            }
            parse_v1_identify(identifier, &body, use_array_params)
        }
        "delete" => Ok(PersonOp::Delete { identifier }),
        "add_device" => Ok(relay_op(identifier, action, Some(parse_device(op.get("device"), true)?))),
        "delete_device" => Ok(relay_op(identifier, action, Some(parse_device(op.get("device"), false)?))),
        "suppress" | "unsuppress" => Ok(relay_op(identifier, action, None)),
        "event" | "page" | "screen" => Ok(PersonOp::Event {
            identifier,
            body: event_body(op, action)?,
        }),
        "add_relationships" | "delete_relationships" => {
            let rels = op
                .get("cio_relationships")
                .ok_or_else(|| Error::invalid("cio_relationships", "is required"))?;
            let change = RelationshipChange::parse(
                &json!({"action": action, "relationships": rels}),
                use_array_params,
            )?;
            let mut identify = Identify { identifier: identifier.clone(), update: Default::default() };
            identify.update.relationships = Some(change);
            // Relationships change an existing person only.
            Ok(PersonOp::Identify { identify, create: false, anonymous_id: None })
        }
        _ => Err(Error::invalid(
            "action",
            "must be identify, delete, event, page, screen, add_relationships, delete_relationships, add_device, delete_device, suppress, unsuppress or merge",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body::tests::arb_json;
    use proptest::prelude::*;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn v2_anonymous_events() {
        let op = parse_v2_op(&json!({"type": "person", "action": "page", "anonymous_id": "a1", "name": "/x", "attributes": {"k": 1}}), true).unwrap();
        assert_eq!(
            op,
            PersonOp::AnonymousEvent {
                anonymous_id: "a1".into(),
                body: obj(
                    json!({"name": "/x", "data": {"k": 1}, "type": "page", "anonymous_id": "a1"})
                )
            }
        );
        let err = parse_v2_op(
            &json!({"type": "person", "action": "event", "name": "n"}),
            true,
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("identifiers"));
    }

    #[test]
    fn what_customer_io_clients_send_is_taken() {
        // v2 anonymous events as Customer.io's own destination sends them.
        let op = parse_v2_op(&json!({"type": "person", "action": "screen", "identifiers": {"anonymous_id": "a2"}, "name": "Home"}), true).unwrap();
        assert_eq!(
            op,
            PersonOp::AnonymousEvent {
                anonymous_id: "a2".into(),
                body: obj(
                    json!({"name": "Home", "data": {}, "type": "screen", "anonymous_id": "a2"})
                )
            }
        );
        // An identify's `anonymous_id` attribute merges that visitor.
        let PersonOp::Identify { anonymous_id, identify, .. } = parse_v2_op(&json!({"type": "person", "action": "identify", "identifiers": {"id": "7"}, "attributes": {"anonymous_id": "a3", "plan": "x"}}), true).unwrap() else {
            panic!("identify")
        };
        assert_eq!(anonymous_id.as_deref(), Some("a3"));
        assert!(!identify.update.attributes.contains_key("anonymous_id"));
        // An anonymous id is only for events.
        let err = parse_v2_op(
            &json!({"type": "person", "action": "identify", "identifiers": {"anonymous_id": "a"}}),
            true,
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("identifiers"));
        // Devices and suppression: forwarded as v2 operations.
        let op = parse_v2_op(&json!({"type": "person", "action": "add_device", "identifiers": {"id": "7"}, "device": {"token": "t1", "platform": "ios", "last_used": 5, "attributes": {"app_version": "2", "n": 3}}}), true).unwrap();
        assert_eq!(
            op,
            PersonOp::Relay {
                identifier: Identifier::Id("7".into()),
                op: obj(
                    json!({"type": "person", "action": "add_device", "device": {"token": "t1", "platform": "ios", "last_used": 5, "attributes": {"app_version": "2", "n": "3"}}})
                )
            }
        );
        let v1 = parse_device(Some(&json!({"id": "t2", "platform": "android"})), true).unwrap();
        assert_eq!(
            Value::Object(v1),
            json!({"token": "t2", "platform": "android"})
        );
        for bad in [
            json!({"id": "t"}),
            json!({"platform": "ios"}),
            json!({"id": "t", "platform": "web"}),
            json!({"id": "t", "platform": "ios", "last_used": "x"}),
            json!("t"),
        ] {
            assert_eq!(
                parse_device(Some(&bad), true).unwrap_err().field(),
                Some("device"),
                "{bad}"
            );
        }
        let op = parse_v2_op(
            &json!({"type": "person", "action": "unsuppress", "identifiers": {"email": "a@b.co"}}),
            true,
        )
        .unwrap();
        assert!(matches!(op, PersonOp::Relay { .. }));
    }

    #[test]
    fn identifier_objects() {
        let ok = |v: Value, want: Identifier| {
            assert_eq!(parse_identifier_object(Some(&v), "p").unwrap(), want)
        };
        ok(json!({"id": "7"}), Identifier::Id("7".into()));
        ok(json!({"id": 7}), Identifier::Id("7".into()));
        ok(
            json!({"email": "A@b.co"}),
            Identifier::Email("a@b.co".into()),
        );
        ok(
            json!({"cio_id": "abc123"}),
            Identifier::CioId("abc123".into()),
        );
        for bad in [
            json!({}),
            json!({"id": "1", "email": "a@b.co"}),
            json!({"phone": "1"}),
            json!({"email": "nope"}),
            json!("x"),
            json!({"id": {}}),
        ] {
            assert!(parse_identifier_object(Some(&bad), "p").is_err(), "{bad}");
        }
    }

    #[test]
    fn v1_identify_shapes() {
        let PersonOp::Identify {
            identify,
            create,
            anonymous_id,
        } = parse_v1_identify(
            Identifier::Id("u1".into()),
            &obj(
                json!({"email": "X@y.co", "plan": "a", "anonymous_id": "anon-1", "_update": true}),
            ),
            true,
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(identify.update.id.as_deref(), Some("u1"));
        assert_eq!(identify.update.email.as_deref(), Some("x@y.co"));
        assert!(!create);
        assert_eq!(anonymous_id.as_deref(), Some("anon-1"));
        assert!(!identify.update.attributes.contains_key("_update"));
        assert!(!identify.update.attributes.contains_key("anonymous_id"));

        let by_email = parse_v1_identify(
            Identifier::Email("a@b.co".into()),
            &obj(json!({"id": "u9"})),
            true,
        )
        .unwrap();
        let PersonOp::Identify { identify, .. } = by_email else {
            panic!()
        };
        assert_eq!(
            (
                identify.update.id.as_deref(),
                identify.update.email.as_deref()
            ),
            (Some("u9"), Some("a@b.co"))
        );

        for (path, body, field) in [
            (Identifier::Id("u1".into()), json!({"id": "u2"}), "id"),
            (
                Identifier::Email("a@b.co".into()),
                json!({"email": "c@d.co"}),
                "email",
            ),
            (
                Identifier::Id("u1".into()),
                json!({"_update": "yes"}),
                "_update",
            ),
            (
                Identifier::Id("u1".into()),
                json!({"anonymous_id": 5}),
                "anonymous_id",
            ),
        ] {
            assert_eq!(
                parse_v1_identify(path, &obj(body.clone()), true)
                    .unwrap_err()
                    .field(),
                Some(field),
                "{body}"
            );
        }
    }

    #[test]
    fn v2_ops() {
        let op = parse_v2_op(&json!({"type": "person", "identifiers": {"id": "1"}, "action": "event", "name": "n", "attributes": {"k": 1}}), true).unwrap();
        assert_eq!(
            op,
            PersonOp::Event {
                identifier: Identifier::Id("1".into()),
                body: obj(json!({"name": "n", "data": {"k": 1}, "type": "event"}))
            }
        );
        let op = parse_v2_op(
            &json!({"type": "person", "identifiers": {"id": "1"}, "action": "identify",
            "attributes": {"email": "A@b.co", "created_at": 5, "plan": "x"}}),
            true,
        )
        .unwrap();
        let PersonOp::Identify { identify, .. } = op else {
            panic!()
        };
        assert_eq!(identify.update.email.as_deref(), Some("a@b.co"));
        assert_eq!(identify.update.created_at, Some(5));
        assert_eq!(
            Value::Object(identify.update.attributes),
            json!({"plan": "x"})
        );
        let op = parse_v2_op(&json!({"type": "person", "action": "merge", "primary": {"id": "1"}, "secondary": {"email": "a@b.co"}}), true).unwrap();
        assert!(matches!(op, PersonOp::Merge { .. }));
        let op = parse_v2_op(&json!({"type": "person", "identifiers": {"id": "1"}, "action": "identify", "attributes": {"a": 1},
            "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}), true).unwrap();
        let PersonOp::Identify {
            identify,
            create: true,
            ..
        } = op
        else {
            panic!()
        };
        assert_eq!(
            identify.update.relationships.unwrap().relationships.len(),
            1
        );
        for bad in [
            json!({"type": "object"}),
            json!({"type": "person", "identifiers": {"id": "1"}, "action": "fly"}),
            json!([]),
            json!({"type": "person", "action": "identify"}),
        ] {
            assert!(parse_v2_op(&bad, true).is_err(), "{bad}");
        }
    }

    /// Items: cio_-shaped ids and non-integer numbers are refused naming `id`
    /// on every Track API path that takes an id.
    #[test]
    fn ids_refused_consistently() {
        let bad_ids = [
            json!("cio_abc123"),
            json!(42.5),
            json!(1e2),
            json!(-0.0),
            json!(42.0),
        ];
        for bad in &bad_ids {
            let op = json!({"type": "person", "identifiers": {"id": bad}, "action": "identify"});
            assert_eq!(
                parse_v2_op(&op, true).unwrap_err().field(),
                Some("id"),
                "v2 {bad}"
            );
            let merge = obj(json!({"primary": {"id": bad}, "secondary": {"id": "x"}}));
            assert_eq!(
                parse_merge(&merge).unwrap_err().field(),
                Some("id"),
                "merge {bad}"
            );
            let body = obj(json!({"id": bad}));
            for path in [
                Identifier::CioId("c".into()),
                Identifier::Email("a@b.co".into()),
            ] {
                let err = parse_v1_identify(path, &body, true).unwrap_err();
                assert_eq!(err.field(), Some("id"), "v1 body {bad}");
            }
        }
        let op = parse_v2_op(&json!({"type": "person", "identifiers": {"id": 18446744073709551615u64}, "action": "delete"}), true).unwrap();
        assert_eq!(
            op,
            PersonOp::Delete {
                identifier: Identifier::Id("18446744073709551615".into())
            }
        );
        // An email given under "id" stays an id, as sent (trimmed).
        assert_eq!(
            parse_identifier_object(Some(&json!({"id": " A@b.co "})), "p").unwrap(),
            Identifier::Id("A@b.co".into())
        );
        // The cio_id key still takes a cio_id.
        assert_eq!(
            parse_identifier_object(Some(&json!({"cio_id": "abc123"})), "p").unwrap(),
            Identifier::CioId("abc123".into())
        );
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn parsers_never_panic(v in arb_json()) {
            let _ = parse_v2_op(&v, true);
            if let Value::Object(map) = &v {
                let _ = parse_merge(map);
                let _ = parse_v1_identify(Identifier::Id("x".into()), map, false);
                let _ = parse_v1_identify(Identifier::CioId("c".into()), map, true);
            }
        }
    }
}
