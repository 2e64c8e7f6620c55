//! The identity index: one Durable Object per identifier value (`id:<id>`,
//! `email:<email>`), holding the cio_id that owns it. Claims are atomic, so one
//! value belongs to at most one person under any concurrency (invariant 1).

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::rpc::{call, read_call, reply, StoreError};

pub const BINDING: &str = "IDENTITY_INDEX";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum IndexCall {
    Get,
    /// Own the value for `cio_id` unless someone already does.
    Claim {
        cio_id: String,
    },
    /// Give the value up, only if `cio_id` owns it.
    Release {
        cio_id: String,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Owner {
    pub cio_id: Option<String>,
}

#[durable_object]
pub struct IdentityIndex {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct OwnerRow {
    cio_id: String,
}

impl IdentityIndex {
    fn owner(&self) -> worker::Result<Option<String>> {
        let rows: Vec<OwnerRow> = self
            .sql
            .exec("SELECT cio_id FROM owner WHERE k = 1", None)?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.cio_id))
    }
}

impl DurableObject for IdentityIndex {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Schema creation cannot fail on a healthy object; if it does, the
        // first query reports it.
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS owner (k INTEGER PRIMARY KEY CHECK (k = 1), cio_id TEXT NOT NULL)",
            None,
        );
        Self { sql }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        // Each arm runs synchronously: no other call interleaves with it.
        let owner = match read_call::<IndexCall>(req).await? {
            IndexCall::Get => self.owner()?,
            IndexCall::Claim { cio_id } => match self.owner()? {
                Some(existing) => Some(existing),
                None => {
                    self.sql.exec(
                        "INSERT INTO owner (k, cio_id) VALUES (1, ?)",
                        vec![cio_id.clone().into()],
                    )?;
                    Some(cio_id)
                }
            },
            IndexCall::Release { cio_id } => {
                self.sql.exec(
                    "DELETE FROM owner WHERE k = 1 AND cio_id = ?",
                    vec![cio_id.into()],
                )?;
                self.owner()?
            }
        };
        reply(Ok(Owner { cio_id: owner }))
    }
}

/// Client side: the index, as the worker uses it.
pub struct Index<'a> {
    pub env: &'a Env,
}

impl Index<'_> {
    pub async fn owner(&self, key: &str) -> Result<Option<String>, StoreError> {
        let owner: Owner = call(self.env, BINDING, key, &IndexCall::Get).await?;
        Ok(owner.cio_id)
    }

    /// Claims `key` for `cio_id`; answers the owner after the call (`cio_id`
    /// itself when the claim won).
    pub async fn claim(&self, key: &str, cio_id: &str) -> Result<String, StoreError> {
        let owner: Owner = call(
            self.env,
            BINDING,
            key,
            &IndexCall::Claim {
                cio_id: cio_id.to_owned(),
            },
        )
        .await?;
        owner
            .cio_id
            .ok_or_else(|| StoreError::Unavailable("claim left no owner".into()))
    }

    pub async fn release(&self, key: &str, cio_id: &str) -> Result<(), StoreError> {
        let _: Owner = call(
            self.env,
            BINDING,
            key,
            &IndexCall::Release {
                cio_id: cio_id.to_owned(),
            },
        )
        .await?;
        Ok(())
    }
}
