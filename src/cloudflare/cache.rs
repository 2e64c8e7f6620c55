//! Workers KV as the edge read cache: `ident:<index key>` -> cio_id and
//! `person:<cio_id>` -> snapshot. Never the truth and never consulted for
//! uniqueness; written only after an object committed, and every failure
//! here is a miss.

use worker::{kv::KvStore, Env};

use crate::identity::wire::PersonView;
use crate::identity::{Cache, IndexKey, StoreError};

const PERSON_PREFIX: &str = "person:";

#[derive(Clone)]
pub struct KvCache {
    kv: Option<KvStore>,
}

fn ident_key(key: &IndexKey) -> String {
    format!("ident:{key}")
}

fn person_key(cio_id: &str) -> String {
    format!("{PERSON_PREFIX}{cio_id}")
}

impl KvCache {
    pub fn new(env: &Env) -> Self {
        KvCache {
            kv: env.kv(crate::bindings::CIO_KV).ok(),
        }
    }

    async fn put(&self, key: &str, value: String) {
        if let Some(kv) = &self.kv {
            if let Ok(put) = kv.put(key, value) {
                let _ = put.execute().await;
            }
        }
    }

    async fn delete(&self, key: &str) {
        if let Some(kv) = &self.kv {
            let _ = kv.delete(key).await;
        }
    }
}

impl Cache for KvCache {
    async fn owner(&self, key: &IndexKey) -> Option<String> {
        let kv = self.kv.as_ref()?;
        kv.get(&ident_key(key)).text().await.ok().flatten()
    }

    async fn remember_owner(&self, key: &IndexKey, cio_id: &str) {
        self.put(&ident_key(key), cio_id.to_owned()).await;
    }

    async fn forget_owner(&self, key: &IndexKey) {
        self.delete(&ident_key(key)).await;
    }

    async fn person(&self, cio_id: &str) -> Option<PersonView> {
        let kv = self.kv.as_ref()?;
        kv.get(&person_key(cio_id))
            .json::<PersonView>()
            .await
            .ok()
            .flatten()
    }

    async fn remember_person(&self, person: &PersonView) {
        if let Ok(json) = serde_json::to_string(person) {
            self.put(&person_key(&person.cio_id), json).await;
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
        let mut list = kv
            .list()
            .prefix(PERSON_PREFIX.to_owned())
            .limit(u64::from(limit));
        if let Some(cursor) = cursor {
            list = list.cursor(cursor);
        }
        let page = list
            .execute()
            .await
            .map_err(|e| StoreError::unavailable(format!("KV listing: {e}")))?;
        let ids = page
            .keys
            .into_iter()
            .filter_map(|k| k.name.strip_prefix(PERSON_PREFIX).map(str::to_owned))
            .collect();
        let next = if page.list_complete {
            None
        } else {
            page.cursor
        };
        Ok((ids, next))
    }
}
