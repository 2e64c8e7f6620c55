//! One anonymous visitor (Durable Object named by its `_cioanonid`): its events
//! until it is identified, then a `merged_into` marker so that late events are
//! forwarded to the person instead of stranded (invariants 3 and 4).

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::rpc::{call, read_call, reply, Done, StoreError};
use crate::core::event::Event;

pub const BINDING: &str = "VISITOR";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum VisitorCall {
    Record {
        event: Event,
    },
    /// Mark the visitor merged into `cio_id` (unless it already is, into
    /// another person) and hand over its events.
    Merge {
        cio_id: String,
    },
    /// The person stored the handed-over events: drop them here.
    Ack {
        cio_id: String,
    },
    Activity {
        limit: u32,
    },
    /// The person `from` was merged into another (`to`) or deleted (`None`):
    /// follow it, or become anonymous again.
    Repoint {
        from: String,
        to: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Recorded {
    /// Set when the visitor was already merged: the event was not stored here
    /// and belongs to that person.
    pub merged_into: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct MergeReply {
    /// The person this visitor belongs to after the call.
    pub merged_into: String,
    /// Events not yet acknowledged by that person (empty when the visitor
    /// belongs to another person).
    pub events: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
pub struct VisitorActivity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    pub events: Vec<Event>,
}

#[durable_object]
pub struct Visitor {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

#[derive(Deserialize)]
struct MarkerRow {
    merged_into: String,
}

impl Visitor {
    fn merged_into(&self) -> worker::Result<Option<String>> {
        let rows: Vec<MarkerRow> = self
            .sql
            .exec("SELECT merged_into FROM marker WHERE k = 1", None)?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.merged_into))
    }

    /// Events newest first (activity) or in the order they happened (merge,
    /// so the person stores them in that order).
    fn events(&self, limit: u32, newest_first: bool) -> worker::Result<Vec<Event>> {
        let query = if newest_first {
            "SELECT body FROM events ORDER BY ts DESC, seq DESC LIMIT ?"
        } else {
            "SELECT body FROM events ORDER BY ts, seq LIMIT ?"
        };
        let rows: Vec<BodyRow> = self
            .sql
            .exec(query, vec![i64::from(limit).into()])?
            .to_array()?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect())
    }

    fn handle(&self, call: VisitorCall) -> worker::Result<Response> {
        match call {
            VisitorCall::Record { event } => {
                let merged_into = self.merged_into()?;
                if merged_into.is_none() {
                    let body = serde_json::to_string(&event)?;
                    self.sql.exec(
                        "INSERT OR IGNORE INTO events (id, ts, body) VALUES (?, ?, ?)",
                        vec![event.id.into(), event.timestamp.into(), body.into()],
                    )?;
                }
                reply(Ok(Recorded { merged_into }))
            }
            VisitorCall::Merge { cio_id } => {
                let owner = match self.merged_into()? {
                    Some(owner) => owner,
                    None => {
                        self.sql.exec(
                            "INSERT INTO marker (k, merged_into) VALUES (1, ?)",
                            vec![cio_id.clone().into()],
                        )?;
                        cio_id.clone()
                    }
                };
                let events = if owner == cio_id {
                    self.events(u32::MAX, false)?
                } else {
                    Vec::new()
                };
                reply(Ok(MergeReply {
                    merged_into: owner,
                    events,
                }))
            }
            VisitorCall::Ack { cio_id } => {
                if self.merged_into()?.as_deref() == Some(cio_id.as_str()) {
                    self.sql.exec("DELETE FROM events", None)?;
                }
                reply(Ok(Done {}))
            }
            VisitorCall::Repoint { from, to } => {
                match to {
                    Some(to) => self.sql.exec(
                        "UPDATE marker SET merged_into = ? WHERE k = 1 AND merged_into = ?",
                        vec![to.into(), from.into()],
                    )?,
                    None => self.sql.exec(
                        "DELETE FROM marker WHERE k = 1 AND merged_into = ?",
                        vec![from.into()],
                    )?,
                };
                reply(Ok(Done {}))
            }
            VisitorCall::Activity { limit } => {
                let merged_into = self.merged_into()?;
                let events = if merged_into.is_some() {
                    Vec::new()
                } else {
                    self.events(limit, true)?
                };
                reply(Ok(VisitorActivity {
                    merged_into,
                    events,
                }))
            }
        }
    }
}

impl DurableObject for Visitor {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, body TEXT NOT NULL)",
            None,
        );
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS marker (k INTEGER PRIMARY KEY CHECK (k = 1), merged_into TEXT NOT NULL)",
            None,
        );
        Self { sql }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let call = read_call::<VisitorCall>(req).await?;
        self.handle(call)
    }
}

/// Client side: one visitor, as the worker and the person object use it.
pub struct VisitorStore<'a> {
    pub env: &'a Env,
}

impl VisitorStore<'_> {
    pub async fn record(&self, anon_id: &str, event: &Event) -> Result<Recorded, StoreError> {
        call(
            self.env,
            BINDING,
            anon_id,
            &VisitorCall::Record {
                event: event.clone(),
            },
        )
        .await
    }

    pub(super) async fn merge(
        &self,
        anon_id: &str,
        cio_id: &str,
    ) -> Result<MergeReply, StoreError> {
        call(
            self.env,
            BINDING,
            anon_id,
            &VisitorCall::Merge {
                cio_id: cio_id.to_owned(),
            },
        )
        .await
    }

    pub(super) async fn ack(&self, anon_id: &str, cio_id: &str) -> Result<(), StoreError> {
        let _: Done = call(
            self.env,
            BINDING,
            anon_id,
            &VisitorCall::Ack {
                cio_id: cio_id.to_owned(),
            },
        )
        .await?;
        Ok(())
    }

    pub async fn repoint(
        &self,
        anon_id: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<(), StoreError> {
        let request = VisitorCall::Repoint {
            from: from.to_owned(),
            to: to.map(str::to_owned),
        };
        let _: Done = call(self.env, BINDING, anon_id, &request).await?;
        Ok(())
    }

    pub async fn activity(&self, anon_id: &str, limit: u32) -> Result<VisitorActivity, StoreError> {
        call(self.env, BINDING, anon_id, &VisitorCall::Activity { limit }).await
    }
}
