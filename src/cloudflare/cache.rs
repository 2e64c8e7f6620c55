//! Workers KV as the edge read cache: `ident:<index key>` -> cio_id and
//! `person:<cio_id>` -> snapshot. Never the truth and never consulted for
//! uniqueness; written only after an object committed, and every failure
//! here is a miss.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::field;
use crate::identity::wire::PersonView;
use crate::identity::{Cache, IndexKey, StoreError};

const PERSON_PREFIX: &str = "person:";

// The runtime's KV namespace, bound directly (as `rpc` binds the object
// stubs): a read is one `get(key)` answering text, a write one `put`. The
// `worker` crate's KV builders turn their options into a JS object through
// serde on every call, and its `json()` read a snapshot field by field across
// the boundary.
#[wasm_bindgen]
extern "C" {
    type Namespace;
    #[wasm_bindgen(method, catch)]
    fn get(this: &Namespace, key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &Namespace, key: &str, value: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn delete(this: &Namespace, key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn list(this: &Namespace, options: &js_sys::Object) -> Result<js_sys::Promise, JsValue>;
}

#[derive(Clone)]
pub struct KvCache {
    kv: Option<std::rc::Rc<Namespace>>,
}

fn ident_key(key: &IndexKey) -> String {
    format!("ident:{key}")
}

fn person_key(cio_id: &str) -> String {
    format!("{PERSON_PREFIX}{cio_id}")
}

/// Settles a KV promise; a refusal is an error to the caller.
async fn settle(promise: Result<js_sys::Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(promise?).await
}

impl KvCache {
    pub fn new(env: &Env) -> Self {
        KvCache {
            kv: super::binding(env, crate::bindings::CIO_KV).map(std::rc::Rc::new),
        }
    }

    /// The text under `key`; `None` when absent or unreadable (a miss).
    async fn text(&self, key: &str) -> Option<String> {
        let kv = self.kv.as_ref()?;
        settle(kv.get(key)).await.ok()?.as_string()
    }

    async fn put(&self, key: &str, value: &str) {
        if let Some(kv) = &self.kv {
            let _ = settle(kv.put(key, value)).await;
        }
    }

    async fn delete(&self, key: &str) {
        if let Some(kv) = &self.kv {
            let _ = settle(kv.delete(key)).await;
        }
    }
}

impl Cache for KvCache {
    async fn owner(&self, key: &IndexKey) -> Option<String> {
        self.text(&ident_key(key)).await
    }

    async fn remember_owner(&self, key: &IndexKey, cio_id: &str) {
        self.put(&ident_key(key), cio_id).await;
    }

    async fn forget_owner(&self, key: &IndexKey) {
        self.delete(&ident_key(key)).await;
    }

    async fn person(&self, cio_id: &str) -> Option<PersonView> {
        let text = self.text(&person_key(cio_id)).await?;
        crate::core::json::from_str(&text).ok()
    }

    async fn remember_person(&self, person: &PersonView) {
        if let Ok(json) = serde_json::to_string(person) {
            self.put(&person_key(&person.cio_id), &json).await;
        }
    }

    async fn forget_person(&self, cio_id: &str) {
        self.delete(&person_key(cio_id)).await;
    }

    /// Eventually consistent, as KV listings are.
    async fn list_people(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let Some(kv) = &self.kv else {
            return Ok((Vec::new(), None));
        };
        let options = js_sys::Object::new();
        let set = |name: &str, value: JsValue| {
            let _ = js_sys::Reflect::set(&options, &JsValue::from_str(name), &value);
        };
        set("prefix", JsValue::from_str(PERSON_PREFIX));
        set("limit", JsValue::from(limit));
        if let Some(cursor) = &cursor {
            set("cursor", JsValue::from_str(cursor));
        }
        let page = settle(kv.list(&options)).await.map_err(|e| {
            StoreError::unavailable(format!("KV listing: {}", worker::Error::from(e)))
        })?;
        let keys: js_sys::Array = field(&page, "keys").dyn_into().unwrap_or_default();
        let ids = keys
            .iter()
            .filter_map(|key| field(&key, "name").as_string())
            .filter_map(|name| name.strip_prefix(PERSON_PREFIX).map(str::to_owned))
            .collect();
        let next = if field(&page, "list_complete").as_bool() == Some(true) {
            None
        } else {
            field(&page, "cursor").as_string().filter(|c| !c.is_empty())
        };
        Ok((ids, next))
    }
}
