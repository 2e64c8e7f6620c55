//! Request bodies: size limit, JSON object parsing, and the array reshaping of
//! Rule 6.8 (docs/API.md). Browser endpoints accept JSON whatever the Content-Type says
//! (sendBeacon posts `text/plain`), so parsing never looks at headers.

use serde_json::{Map, Value};

use super::error::Error;

/// Rule 6.9: request bodies above this answer 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub type Object = Map<String, Value>;

fn too_large() -> Error {
    Error::TooLarge {
        message: format!("request body is over {MAX_BODY_BYTES} bytes"),
    }
}

/// A body read chunk by chunk that stops at the limit: a body without a
/// `Content-Length` (chunked) is refused as soon as it passes
/// `MAX_BODY_BYTES`, never held whole first.
#[derive(Debug, Default)]
pub struct LimitedBody {
    bytes: Vec<u8>,
}

impl LimitedBody {
    /// Adds a chunk; 413 once the body is over the limit (the chunk is not kept).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if chunk.len() > MAX_BODY_BYTES - self.bytes.len() {
            return Err(too_large());
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Parses a body that must be a JSON object. An empty body is an empty object
/// only when `empty_ok` (e.g. `reset`).
pub fn parse_object(bytes: &[u8], empty_ok: bool) -> Result<Object, Error> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::bad_body(format!(
            "request body must be a JSON object, not {}",
            json_kind(&other)
        ))),
        Err(e) => Err(Error::bad_body(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Rule 8 with `USE_ARRAY_PARAMS=false`: every array, at any depth, becomes an
/// object keyed "0", "1", ... as Customer.io's snippet does.
pub fn reshape_arrays(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Object(object_from(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), reshape_arrays(v))),
        )),
        Value::Object(map) => Value::Object(object_from(
            map.into_iter().map(|(k, v)| (k, reshape_arrays(v))),
        )),
        other => other,
    }
}

/// Applies rule 6.8 to a map of attributes or event data when arrays are off.
pub fn shape_object(map: Object, use_array_params: bool) -> Object {
    if use_array_params {
        return map;
    }
    object_from(map.into_iter().map(|(k, v)| (k, reshape_arrays(v))))
}

/// An object of these members, a later one with an earlier one's name
/// replacing it, as `collect()` would; but member by member: `collect()`
/// builds the map through `BTreeMap::from_iter`, which sorts a vector of the
/// members first, and that sort alone is 9 KB of the wasm.
pub fn object_from(members: impl IntoIterator<Item = (String, Value)>) -> Object {
    let mut object = Object::new();
    object.extend(members);
    object
}

/// Serialized length of a JSON value, as the limits of rule 6.9 measure it.
pub fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn parses_only_objects() {
        assert_eq!(parse_object(br#"{"a":1}"#, false).unwrap()["a"], json!(1));
        for bad in [
            &b"{"[..],
            b"null",
            b"[]",
            b"42",
            b"\"s\"",
            b"\xff\xfe\x00",
            b"",
        ] {
            let err = parse_object(bad, false).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
        assert!(parse_object(b"  ", true).unwrap().is_empty());
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_object(&big, true).unwrap_err().status(), 413);
    }

    /// Item: a body without a declared length stops at the limit.
    #[test]
    fn a_limited_body_stops_at_the_limit() {
        let mut body = LimitedBody::default();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..4 {
            body.push(&chunk).unwrap();
        }
        assert_eq!(body.push(b"x").unwrap_err().status(), 413);
        assert_eq!(body.push(&chunk).unwrap_err().status(), 413);
        assert_eq!(
            body.into_bytes().len(),
            MAX_BODY_BYTES,
            "nothing past the limit is held"
        );
        let mut small = LimitedBody::default();
        small.push(b"{}").unwrap();
        small.push(b"").unwrap();
        assert_eq!(small.into_bytes(), b"{}");
    }

    #[test]
    fn reshapes_at_any_depth() {
        let input =
            json!({"my_array": ["one", "two"], "n": {"deep": [[1], {"x": [true]}]}, "s": "k"});
        let want = json!({
            "my_array": {"0": "one", "1": "two"},
            "n": {"deep": {"0": {"0": 1}, "1": {"x": {"0": true}}}},
            "s": "k"
        });
        assert_eq!(reshape_arrays(input.clone()), want);
        let map = input.as_object().unwrap().clone();
        assert_eq!(Value::Object(shape_object(map.clone(), true)), input);
        assert_eq!(Value::Object(shape_object(map, false)), want);
    }

    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn has_array(v: &Value) -> bool {
        match v {
            Value::Array(_) => true,
            Value::Object(m) => m.values().any(has_array),
            _ => false,
        }
    }

    fn leaves(v: &Value) -> usize {
        match v {
            Value::Array(a) => a.iter().map(leaves).sum(),
            Value::Object(m) => m.values().map(leaves).sum(),
            _ => 1,
        }
    }

    proptest! {
        #![proptest_config(crate::core::fuzz_config(1000))]
        #[test]
        fn reshape_removes_every_array_and_keeps_every_leaf(v in arb_json()) {
            let shaped = reshape_arrays(v.clone());
            prop_assert!(!has_array(&shaped));
            prop_assert_eq!(leaves(&shaped), leaves(&v));
            prop_assert_eq!(reshape_arrays(shaped.clone()), shaped);
        }

        #[test]
        fn parse_object_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_object(&bytes, true);
        }
    }
}
