//! Workers KV as the edge read cache: identifier -> cio_id and person
//! snapshots. Never the truth and never consulted for uniqueness; written only
//! after the Durable Object committed, and every failure here is a miss.

use worker::{kv::KvStore, Env};

use super::person::PersonView;

pub const BINDING: &str = "CIO_KV";

pub struct Cache {
    kv: Option<KvStore>,
}

fn ident_key(index_key: &str) -> String {
    format!("ident:{index_key}")
}

fn person_key(cio_id: &str) -> String {
    format!("person:{cio_id}")
}

impl Cache {
    pub fn new(env: &Env) -> Self {
        Cache {
            kv: env.kv(BINDING).ok(),
        }
    }

    /// The cio_id cached for an index key (`id:..`, `email:..`).
    pub async fn owner(&self, index_key: &str) -> Option<String> {
        let kv = self.kv.as_ref()?;
        kv.get(&ident_key(index_key)).text().await.ok().flatten()
    }

    pub async fn remember_owner(&self, index_key: &str, cio_id: &str) {
        if let Some(kv) = &self.kv {
            if let Ok(put) = kv.put(&ident_key(index_key), cio_id) {
                let _ = put.execute().await;
            }
        }
    }

    pub async fn forget_owner(&self, index_key: &str) {
        if let Some(kv) = &self.kv {
            let _ = kv.delete(&ident_key(index_key)).await;
        }
    }

    pub async fn forget_person(&self, cio_id: &str) {
        if let Some(kv) = &self.kv {
            let _ = kv.delete(&person_key(cio_id)).await;
        }
    }

    /// One page of the cached people's cio_ids, and the cursor of the next
    /// page. Eventually consistent, as KV is.
    pub async fn list_people(
        &self,
        limit: u64,
        cursor: Option<String>,
    ) -> (Vec<String>, Option<String>) {
        let Some(kv) = &self.kv else {
            return (Vec::new(), None);
        };
        let mut list = kv.list().prefix(person_key("")).limit(limit);
        if let Some(cursor) = cursor {
            list = list.cursor(cursor);
        }
        match list.execute().await {
            Ok(page) => {
                let ids = page
                    .keys
                    .into_iter()
                    .filter_map(|k| k.name.strip_prefix("person:").map(str::to_owned))
                    .collect();
                (
                    ids,
                    if page.list_complete {
                        None
                    } else {
                        page.cursor
                    },
                )
            }
            Err(_) => (Vec::new(), None),
        }
    }

    /// A cached person snapshot.
    pub async fn person(&self, cio_id: &str) -> Option<PersonView> {
        let kv = self.kv.as_ref()?;
        kv.get(&person_key(cio_id))
            .json::<PersonView>()
            .await
            .ok()
            .flatten()
    }

    /// Caches a person's snapshot after a committed change, and its
    /// identifier keys when they are new.
    pub async fn remember_person(&self, person: &PersonView, identifiers_changed: bool) {
        let Some(kv) = &self.kv else { return };
        if identifiers_changed {
            if let Some(id) = &person.id {
                self.remember_owner(&format!("id:{id}"), &person.cio_id)
                    .await;
            }
            if let Some(email) = &person.email {
                self.remember_owner(&format!("email:{email}"), &person.cio_id)
                    .await;
            }
        }
        if let Ok(json) = serde_json::to_string(person) {
            if let Ok(put) = kv.put(&person_key(&person.cio_id), json) {
                let _ = put.execute().await;
            }
        }
    }
}
