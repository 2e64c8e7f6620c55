//! Person profiles: the identify body (docs/API.md rules 6.1-6.9), the profile record,
//! and how an identify changes it. The storage layer runs `apply` inside the
//! person's Durable Object, so every rule here holds under concurrency.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{json_kind, json_len, shape_object, Object};
use super::error::Error;
use super::event::unix_seconds;
use super::identifier::{integer_text, is_email, normalize_email, Identifier};

pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 150;
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1000;
pub const MAX_ATTRIBUTES: usize = 300;

/// Keys of an identify body that are not attributes.
const RESERVED: [&str; 6] = [
    "id",
    "email",
    "created_at",
    "cio_relationships",
    "anonymous_id",
    "_update",
];

/// What an identify asks to change, validated; travels to the person object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileUpdate {
    /// The `id` to give the person (absent when identifying by email).
    pub id: Option<String>,
    pub email: Option<String>,
    pub created_at: Option<i64>,
    pub attributes: Object,
    pub relationships: Option<RelationshipChange>,
}

/// A parsed identify call: who, and what changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    pub identifier: Identifier,
    pub update: ProfileUpdate,
}

/// Parses an identify body (`/_cio/identify`): `id` names the person.
pub fn parse_identify(body: &Object, use_array_params: bool) -> Result<Identify, Error> {
    let identifier = Identifier::from_identify_value(body.get("id"))?;
    let mut update = parse_update(body, use_array_params)?;
    match &identifier {
        Identifier::Email(email) => {
            // An email used as the id is the person's email (rule 6.2).
            if update.email.as_ref().is_some_and(|e| e != email) {
                return Err(Error::invalid(
                    "email",
                    "differs from the email given as id",
                ));
            }
            update.email = Some(email.clone());
        }
        Identifier::Id(id) => update.id = Some(id.clone()),
        Identifier::CioId(_) => {}
    }
    Ok(Identify { identifier, update })
}

/// Everything of an identify body but the identifier: email, created_at,
/// attributes and relationships, with the limits of rule 6.9.
pub fn parse_update(body: &Object, use_array_params: bool) -> Result<ProfileUpdate, Error> {
    let email = match body.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) if is_email(s.trim()) && normalize_email(s).len() <= 150 => {
            Some(normalize_email(s))
        }
        Some(Value::String(_)) => return Err(Error::invalid("email", "is not an email address")),
        Some(other) => {
            return Err(Error::invalid(
                "email",
                format!("must be a string, not {}", json_kind(other)),
            ))
        }
    };
    let created_at = match body.get("created_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            unix_seconds(v)
                .ok_or_else(|| Error::invalid("created_at", "must be unix seconds (a number)"))?,
        ),
    };

    let mut attributes = Object::new();
    for (name, value) in body {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        check_attribute(name, value)?;
        attributes.insert(name.clone(), value.clone());
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Error::invalid(
            "attributes",
            format!("a person holds at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    let attributes = shape_object(attributes, use_array_params);

    let relationships = match body.get("cio_relationships") {
        None | Some(Value::Null) => None,
        Some(value) => Some(RelationshipChange::parse(value, use_array_params)?),
    };
    Ok(ProfileUpdate {
        id: None,
        email,
        created_at,
        attributes,
        relationships,
    })
}

fn check_attribute(name: &str, value: &Value) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        let shown: String = name.chars().take(40).collect();
        return Err(Error::invalid(
            format!("attributes.{shown}"),
            format!("attribute names must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes"),
        ));
    }
    if json_len(value) > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(Error::invalid(
            name.to_owned(),
            format!("attribute values must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipAction {
    Add,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub object_type_id: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Object>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationshipChange {
    pub action: RelationshipAction,
    pub relationships: Vec<Relationship>,
}

impl RelationshipChange {
    /// Rule 6.7: `{"action", "relationships": [{"identifiers": {...},
    /// "relationship_attributes"?}]}`.
    pub fn parse(value: &Value, use_array_params: bool) -> Result<Self, Error> {
        const FIELD: &str = "cio_relationships";
        let obj = value.as_object().ok_or_else(|| {
            Error::invalid(FIELD, "must be an object with action and relationships")
        })?;
        let action = match obj.get("action").and_then(Value::as_str) {
            Some("add_relationships") => RelationshipAction::Add,
            Some("delete_relationships" | "remove_relationships") => RelationshipAction::Delete,
            _ => {
                return Err(Error::invalid(
                    "cio_relationships.action",
                    "must be add_relationships, delete_relationships or remove_relationships",
                ))
            }
        };
        let items = obj
            .get("relationships")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid("cio_relationships.relationships", "must be an array"))?;
        let mut relationships = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = |name: &str| format!("cio_relationships.relationships[{i}].{name}");
            let ids = item
                .get("identifiers")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::invalid(field("identifiers"), "must be an object"))?;
            let id_string = |key: &str| -> Result<String, Error> {
                match ids.get(key) {
                    Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 150 => {
                        Ok(s.clone())
                    }
                    Some(Value::Number(n)) => integer_text(n, field(&format!("identifiers.{key}"))),
                    _ => Err(Error::invalid(
                        field(&format!("identifiers.{key}")),
                        "must be a non-empty string of at most 150 bytes",
                    )),
                }
            };
            let object_type_id = id_string("object_type_id")?;
            let object_id = id_string("object_id")?;
            let attributes = match item.get("relationship_attributes") {
                None | Some(Value::Null) => None,
                Some(v @ Value::Object(map)) => {
                    if json_len(v) > MAX_ATTRIBUTE_VALUE_BYTES * 10 {
                        return Err(Error::invalid(
                            field("relationship_attributes"),
                            "is too large",
                        ));
                    }
                    Some(shape_object(map.clone(), use_array_params))
                }
                Some(_) => {
                    return Err(Error::invalid(
                        field("relationship_attributes"),
                        "must be an object",
                    ))
                }
            };
            relationships.push(Relationship {
                object_type_id,
                object_id,
                attributes,
            });
        }
        Ok(RelationshipChange {
            action,
            relationships,
        })
    }

    /// Applies the change to a person's relationships: add is idempotent on
    /// (object_type_id, object_id) and refreshes attributes; delete removes.
    pub fn apply_to(&self, current: &mut Vec<Relationship>) {
        for rel in &self.relationships {
            let pos = current.iter().position(|r| {
                r.object_type_id == rel.object_type_id && r.object_id == rel.object_id
            });
            match (self.action, pos) {
                (RelationshipAction::Add, Some(i)) => {
                    if rel.attributes.is_some() {
                        current[i].attributes = rel.attributes.clone();
                    }
                }
                (RelationshipAction::Add, None) => current.push(rel.clone()),
                (RelationshipAction::Delete, Some(i)) => {
                    current.remove(i);
                }
                (RelationshipAction::Delete, None) => {}
            }
        }
    }
}

/// A person's stored profile (relationships, events and anonymous ids are kept
/// beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub cio_id: String,
    /// `None` for a person created by email, until an `id` is assigned.
    pub id: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
    pub attributes: Object,
    pub updated_at: i64,
}

/// What an update changed that the caller must act on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The email this person held before, when the update replaced it.
    pub released_email: Option<String>,
}

impl Profile {
    /// A new person (rule 6.3, 6.4): `created_at` as sent, else now.
    pub fn new(cio_id: &str, created_at: Option<i64>, now: i64) -> Self {
        Profile {
            cio_id: cio_id.to_owned(),
            id: None,
            email: None,
            created_at: created_at.unwrap_or(now),
            attributes: Object::new(),
            updated_at: now,
        }
    }

    pub fn holds(&self, identifier: &Identifier) -> bool {
        match identifier {
            Identifier::Id(id) => self.id.as_deref() == Some(id),
            Identifier::Email(email) => self.email.as_deref() == Some(email),
            Identifier::CioId(cio) => &self.cio_id == cio,
        }
    }

    /// Checks the whole update against this profile, then applies it: either
    /// all of it or, on error, nothing. Sent attributes overwrite, new ones are
    /// added, the rest stay (rule 6.3).
    pub fn apply(&mut self, update: &ProfileUpdate, now: i64) -> Result<Applied, Error> {
        if let (Some(new_id), Some(current)) = (&update.id, &self.id) {
            if new_id != current {
                return Err(Error::conflict("id", "this person already has another id"));
            }
        }
        let added = update
            .attributes
            .keys()
            .filter(|k| !self.attributes.contains_key(*k))
            .count();
        if self.attributes.len() + added > MAX_ATTRIBUTES {
            return Err(Error::invalid(
                "attributes",
                format!("a person holds at most {MAX_ATTRIBUTES} attributes"),
            ));
        }

        let mut applied = Applied::default();
        if update.id.is_some() {
            self.id.clone_from(&update.id);
        }
        if let Some(email) = &update.email {
            if self.email.as_ref() != Some(email) {
                applied.released_email = self.email.replace(email.clone());
            }
        }
        if let Some(created_at) = update.created_at {
            self.created_at = created_at;
        }
        for (name, value) in &update.attributes {
            self.attributes.insert(name.clone(), value.clone());
        }
        self.updated_at = now;
        Ok(applied)
    }

    /// Merge (Track API `merge_customers`): attributes this person lacks come
    /// from the secondary; its own stay. `created_at` becomes the earlier one.
    /// A primary without an email takes the secondary's (the caller has moved
    /// its claim in the index to this person first).
    pub fn absorb(&mut self, secondary: &Profile, now: i64) {
        if self.email.is_none() {
            self.email.clone_from(&secondary.email);
        }
        for (name, value) in &secondary.attributes {
            if !self.attributes.contains_key(name) && self.attributes.len() < MAX_ATTRIBUTES {
                self.attributes.insert(name.clone(), value.clone());
            }
        }
        self.created_at = self.created_at.min(secondary.created_at);
        self.updated_at = now;
    }

    /// The value of the `_cioid` cookie for this person when identified by a
    /// tracked link: the id, else the email, else `cio_<cio_id>`.
    pub fn cookie_identifier(&self) -> String {
        cookie_identifier(self.id.as_deref(), self.email.as_deref(), &self.cio_id)
    }
}

/// The `_cioid` value for a person reached by cio_id: the id, else the email,
/// else `cio_<cio_id>` (docs/API.md section 1).
pub fn cookie_identifier(id: Option<&str>, email: Option<&str>, cio_id: &str) -> String {
    id.or(email)
        .map(str::to_owned)
        .unwrap_or_else(|| Identifier::CioId(cio_id.to_owned()).as_written())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn identify_by_id_with_attributes() {
        let i = parse_identify(
            &obj(json!({"id": 7, "email": "A@B.co", "created_at": 1339438758, "plan": "pro", "tags": ["a"]})),
            true,
        )
        .unwrap();
        assert_eq!(i.identifier, Identifier::Id("7".into()));
        assert_eq!(i.update.id.as_deref(), Some("7"));
        assert_eq!(i.update.email.as_deref(), Some("a@b.co"));
        assert_eq!(i.update.created_at, Some(1_339_438_758));
        assert_eq!(
            Value::Object(i.update.attributes),
            json!({"plan": "pro", "tags": ["a"]})
        );
    }

    #[test]
    fn identify_by_email() {
        let i = parse_identify(&obj(json!({"id": "Bob@X.io"})), true).unwrap();
        assert_eq!(i.identifier, Identifier::Email("bob@x.io".into()));
        assert_eq!(
            (i.update.id, i.update.email.as_deref()),
            (None, Some("bob@x.io"))
        );
        let err = parse_identify(&obj(json!({"id": "bob@x.io", "email": "other@x.io"})), true)
            .unwrap_err();
        assert_eq!(err.field(), Some("email"));
    }

    #[test]
    fn identify_rejections() {
        let cases = [
            (json!({}), "id"),
            (json!({"id": {"a": 1}}), "id"),
            (json!({"id": "  "}), "id"),
            (json!({"id": "x".repeat(151)}), "id"),
            (json!({"id": "a", "created_at": "1339438758"}), "created_at"),
            (json!({"id": "a", "email": "not-an-email"}), "email"),
            (json!({"id": "a", "email": 5}), "email"),
            (json!({"id": "a", "big": "v".repeat(1000)}), "big"),
            (
                json!({"id": "a", "cio_relationships": {"action": "nope", "relationships": []}}),
                "cio_relationships.action",
            ),
            (
                json!({"id": "a", "cio_relationships": []}),
                "cio_relationships",
            ),
            (
                json!({"id": "a", "cio_relationships": {"action": "add_relationships"}}),
                "cio_relationships.relationships",
            ),
            (
                json!({"id": "a", "cio_relationships": {"action": "add_relationships", "relationships": [{"identifiers": {"object_type_id": "1"}}]}}),
                "cio_relationships.relationships[0].identifiers.object_id",
            ),
        ];
        for (body, field) in cases {
            let err = parse_identify(&obj(body.clone()), true).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}");
            assert_eq!(err.status(), 400);
        }
        let long_name = "n".repeat(151);
        let err = parse_identify(&obj(json!({"id": "a", long_name: 1})), true).unwrap_err();
        assert!(err.field().unwrap().starts_with("attributes."), "{err:?}");
        let mut many = Object::new();
        many.insert("id".into(), json!("a"));
        for i in 0..301 {
            many.insert(format!("a{i}"), json!(i));
        }
        assert_eq!(
            parse_identify(&many, true).unwrap_err().field(),
            Some("attributes")
        );
        assert!(parse_identify(&obj(json!({"id": "a", "ok": "v".repeat(990)})), true).is_ok());
    }

    #[test]
    fn arrays_both_ways() {
        let body = obj(json!({"id": "a", "my_array": ["one", "two"]}));
        assert_eq!(
            parse_identify(&body, true).unwrap().update.attributes["my_array"],
            json!(["one", "two"])
        );
        assert_eq!(
            parse_identify(&body, false).unwrap().update.attributes["my_array"],
            json!({"0": "one", "1": "two"})
        );
    }

    fn rels(action: &str, pairs: &[(&str, &str)]) -> RelationshipChange {
        let items: Vec<Value> = pairs
            .iter()
            .map(|(t, o)| json!({"identifiers": {"object_type_id": t, "object_id": o}}))
            .collect();
        RelationshipChange::parse(&json!({"action": action, "relationships": items}), true).unwrap()
    }

    #[test]
    fn relationships_add_idempotent_delete_and_remove() {
        let mut current = Vec::new();
        rels("add_relationships", &[("1", "acme"), ("1", "globex")]).apply_to(&mut current);
        rels("add_relationships", &[("1", "acme")]).apply_to(&mut current);
        assert_eq!(current.len(), 2);
        rels("delete_relationships", &[("1", "acme")]).apply_to(&mut current);
        assert_eq!(current.len(), 1);
        rels("remove_relationships", &[("1", "globex"), ("2", "never")]).apply_to(&mut current);
        assert!(current.is_empty());
        let with_attrs = RelationshipChange::parse(
            &json!({"action": "add_relationships", "relationships": [
                {"identifiers": {"object_type_id": 1, "object_id": "acme"}, "relationship_attributes": {"role": "admin"}}]}),
            true,
        )
        .unwrap();
        with_attrs.apply_to(&mut current);
        assert_eq!(current[0].object_type_id, "1");
        assert_eq!(
            current[0].attributes.as_ref().unwrap()["role"],
            json!("admin")
        );
    }

    #[test]
    fn apply_overwrites_adds_keeps() {
        let mut p = Profile::new("c1", None, 100);
        assert_eq!(p.created_at, 100);
        let first = parse_identify(
            &obj(json!({"id": "u1", "a": 1, "b": 2, "email": "x@y.co"})),
            true,
        )
        .unwrap();
        p.apply(&first.update, 101).unwrap();
        let second = parse_identify(
            &obj(json!({"id": "u1", "b": 3, "c": 4, "email": "z@y.co"})),
            true,
        )
        .unwrap();
        let applied = p.apply(&second.update, 102).unwrap();
        assert_eq!(
            Value::Object(p.attributes.clone()),
            json!({"a": 1, "b": 3, "c": 4})
        );
        assert_eq!(applied.released_email.as_deref(), Some("x@y.co"));
        assert_eq!(
            (p.cio_id.as_str(), p.id.as_deref(), p.email.as_deref()),
            ("c1", Some("u1"), Some("z@y.co"))
        );
        assert_eq!((p.created_at, p.updated_at), (100, 102));
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let mut p = Profile::new("c1", Some(5), 100);
        p.apply(
            &ProfileUpdate {
                id: Some("u1".into()),
                ..Default::default()
            },
            100,
        )
        .unwrap();
        let before = p.clone();
        let other_id = ProfileUpdate {
            id: Some("u2".into()),
            attributes: obj(json!({"x": 1})),
            ..Default::default()
        };
        assert_eq!(p.apply(&other_id, 200).unwrap_err().status(), 409);
        let mut full = ProfileUpdate::default();
        for i in 0..300 {
            full.attributes.insert(format!("a{i}"), json!(i));
        }
        p.apply(&full, 300).unwrap();
        let snapshot = p.clone();
        let one_more = ProfileUpdate {
            attributes: obj(json!({"extra": 1, "a1": 2})),
            ..Default::default()
        };
        assert_eq!(
            p.apply(&one_more, 400).unwrap_err().field(),
            Some("attributes")
        );
        assert_eq!(p, snapshot);
        assert_ne!(before, snapshot);
    }

    #[test]
    fn absorb_takes_only_missing_attributes() {
        let mut primary = Profile::new("p", Some(50), 100);
        primary.attributes = obj(json!({"a": 1, "b": 2}));
        let mut secondary = Profile::new("s", Some(10), 100);
        secondary.attributes = obj(json!({"b": 9, "c": 3}));
        primary.absorb(&secondary, 200);
        assert_eq!(
            Value::Object(primary.attributes.clone()),
            json!({"a": 1, "b": 2, "c": 3})
        );
        assert_eq!(
            (
                primary.cio_id.as_str(),
                primary.created_at,
                primary.updated_at
            ),
            ("p", 10, 200)
        );
    }

    /// Item: a primary without an email takes the secondary's; one with an
    /// email keeps its own.
    #[test]
    fn absorb_takes_the_email_only_when_the_primary_has_none() {
        let mut secondary = Profile::new("s", None, 1);
        secondary.email = Some("s@x.co".into());
        let mut bare = Profile::new("p", None, 1);
        bare.absorb(&secondary, 2);
        assert_eq!(bare.email.as_deref(), Some("s@x.co"));
        let mut own = Profile::new("p", None, 1);
        own.email = Some("p@x.co".into());
        own.absorb(&secondary, 2);
        assert_eq!(own.email.as_deref(), Some("p@x.co"));
        let mut neither = Profile::new("p", None, 1);
        neither.absorb(&Profile::new("s", None, 1), 2);
        assert_eq!(neither.email, None);
    }

    #[test]
    fn relationship_ids_are_exact_integers() {
        let parse = |id: Value| {
            RelationshipChange::parse(
                &json!({"action": "add_relationships", "relationships": [{"identifiers": {"object_type_id": 1, "object_id": id}}]}),
                true,
            )
        };
        assert_eq!(
            parse(json!(18446744073709551615u64)).unwrap().relationships[0].object_id,
            "18446744073709551615"
        );
        let err = parse(json!(1.5)).unwrap_err();
        assert_eq!(
            err.field(),
            Some("cio_relationships.relationships[0].identifiers.object_id")
        );
    }

    #[test]
    fn cookie_identifier_prefers_id_then_email() {
        let mut p = Profile::new("abc", None, 1);
        assert_eq!(p.cookie_identifier(), "cio_abc");
        p.email = Some("e@x.co".into());
        assert_eq!(p.cookie_identifier(), "e@x.co");
        p.id = Some("u".into());
        assert_eq!(p.cookie_identifier(), "u");
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn merge_rule(
            before in prop::collection::btree_map("[a-e]", any::<i32>(), 0..5),
            sent in prop::collection::btree_map("[a-h]", any::<i32>(), 0..5),
        ) {
            let mut p = Profile::new("cio", None, 1);
            p.attributes = before.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let update = ProfileUpdate {
                attributes: sent.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
                ..Default::default()
            };
            p.apply(&update, 2).unwrap();
            for (k, v) in &sent { prop_assert_eq!(&p.attributes[k], &json!(v)); }
            for (k, v) in &before {
                if !sent.contains_key(k) { prop_assert_eq!(&p.attributes[k], &json!(v)); }
            }
            let keys: std::collections::BTreeSet<_> = before.keys().chain(sent.keys()).collect();
            prop_assert_eq!(p.attributes.len(), keys.len());
            prop_assert_eq!(p.cio_id.as_str(), "cio");
        }

        #[test]
        fn identify_parser_never_panics(v in arb_json(), id in arb_json()) {
            if let Value::Object(mut map) = v {
                let _ = parse_identify(&map, false);
                map.insert("id".into(), id);
                let _ = parse_identify(&map, true);
                if let Some(rel) = map.get("id") {
                    let _ = RelationshipChange::parse(rel, true);
                }
            }
        }
    }
}
