//! The outbox's way out, on Cloudflare: the SQLite `outbox` table each
//! person and visitor object writes in the same step as its change, the
//! alarm that drains it into the `CIO_OUTBOX` queue (rows deleted only after
//! the send succeeded), and the `Forwarding` object: delivery counts, the
//! last error and the dead letters the admin API shows and replays.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::rpc::{call, read_call, reply, SqlResult};
use super::sql::table_exists;
use crate::cio::{envelopes, DeadLetter, Envelope};
use crate::config::CioWorkspace as Settings;
use crate::identity::StoreError;

pub const OUTBOX_QUEUE: &str = crate::bindings::CIO_OUTBOX;
pub const DEADLETTER_QUEUE: &str = crate::bindings::CIO_DEADLETTER;
pub const BINDING: &str = crate::bindings::FORWARDING;
/// The one `Forwarding` object.
const SINGLETON: &str = "forwarding";
/// Outbox rows one drain step reads.
const DRAIN_ROWS: i64 = 200;
/// When a drain fails (the queue unreachable), the next try.
const DRAIN_RETRY_MS: i64 = 5_000;

/// The forwarding settings, or `None` when off (or misconfigured: the
/// fetch handler reports that on every request).
pub fn settings(env: &Env) -> Option<Settings> {
    Settings::from_lookup(|name| {
        env.var(name)
            .map(|v| v.to_string())
            .or_else(|_| env.secret(name).map(|s| s.to_string()))
            .ok()
    })
    .ok()
    .flatten()
}

/// One object's outbox table and its alarm.
pub struct Outbox {
    /// Forwarding is on for this isolate.
    pub on: bool,
    ready: Cell<bool>,
    /// A row was written since the alarm was last armed.
    pending: Cell<bool>,
}

#[derive(Deserialize)]
struct OutboxRow {
    seq: i64,
    body: String,
}

impl Outbox {
    pub fn new(env: &Env) -> Self {
        Outbox {
            on: settings(env).is_some(),
            ready: Cell::new(false),
            pending: Cell::new(false),
        }
    }

    /// Appends an operation (part of the caller's synchronous step).
    pub fn push(&self, sql: &SqlStorage, op: &Value) -> Result<(), StoreError> {
        if !self.ready.get() {
            sql.exec(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
                None,
            )
            .or_unavailable()?;
            self.ready.set(true);
        }
        sql.exec(
            "INSERT INTO outbox (body) VALUES (?)",
            vec![op.to_string().into()],
        )
        .or_unavailable()?;
        self.pending.set(true);
        Ok(())
    }

    /// After a call: rows were written, so the alarm drains them now.
    pub async fn arm(&self, state: &State) {
        if self.pending.replace(false) {
            if let Err(e) = state.storage().set_alarm(0i64).await {
                worker::console_error!("outbox alarm: {e}");
            }
        }
    }

    /// The alarm: every row into the queue, a page at a time, each page's
    /// rows deleted once the queue took it. A failure re-arms the alarm.
    pub async fn drain(
        &self,
        state: &State,
        env: &Env,
        sql: &SqlStorage,
    ) -> worker::Result<Response> {
        if !table_exists(sql, "outbox").unwrap_or(false) {
            return Response::ok("empty");
        }
        let mut sent = 0usize;
        loop {
            let rows: Vec<OutboxRow> = sql
                .exec(
                    "SELECT seq, body FROM outbox ORDER BY seq LIMIT ?",
                    vec![DRAIN_ROWS.into()],
                )?
                .to_array()?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            let ops: Vec<Value> = rows
                .iter()
                .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
                .filter(|op| !op.is_null())
                .collect();
            let n = ops.len();
            let queued = match env.queue(OUTBOX_QUEUE) {
                Ok(queue) => queue.send_batch(messages(ops)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = queued {
                worker::console_error!("outbox drain: {e}");
                let _ = state.storage().set_alarm(DRAIN_RETRY_MS).await;
                break;
            }
            sql.exec("DELETE FROM outbox WHERE seq <= ?", vec![last.into()])?;
            sent += n;
        }
        if sent > 0 {
            let _ = record(env, &StatsCall::Enqueued { n: sent as u64 }).await;
        }
        Response::ok("drained")
    }
}

// ---------------------------------------------------- the stats object ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StatsCall {
    Enqueued {
        n: u64,
    },
    Delivered {
        n: u64,
    },
    Retrying {
        error: String,
        at: i64,
    },
    Dead {
        letters: Vec<DeadLetter>,
    },
    Status {
        limit: u32,
    },
    /// The oldest dead letters with their row numbers, for a replay.
    DeadLetters {
        limit: u32,
    },
    /// Replayed: drop these rows.
    Forget {
        seqs: Vec<i64>,
    },
}

/// One call to the `Forwarding` object.
pub async fn record(env: &Env, c: &StatsCall) -> Result<Value, StoreError> {
    call(env, BINDING, SINGLETON, c).await
}

/// Replays dead letters: back into the outbox queue as first attempts, then
/// forgotten (only once the queue took them). Answers how many.
pub async fn replay(env: &Env) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let page = record(env, &StatsCall::DeadLetters { limit: 200 }).await?;
        let rows: Vec<(i64, DeadLetter)> = serde_json::from_value(page)?;
        if rows.is_empty() {
            return Ok(total);
        }
        let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
        let ops: Vec<Value> = rows.into_iter().map(|(_, d)| d.op).collect();
        let n = ops.len() as u64;
        let queue = env.queue(OUTBOX_QUEUE).map_err(super::rpc::unavailable)?;
        queue
            .send_batch(messages(ops))
            .await
            .map_err(super::rpc::unavailable)?;
        record(env, &StatsCall::Forget { seqs }).await?;
        total += n;
    }
}

/// Sends operations to the dead-letter queue (its consumer records them).
pub async fn dead_letter(env: &Env, letters: Vec<DeadLetter>) -> worker::Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let ops: Vec<Value> = letters.into_iter().map(|d| json!(d)).collect();
    let queue = env.queue(DEADLETTER_QUEUE)?;
    queue.send(Envelope { ops, attempt: 0 }.to_message()).await
}

/// Operations as queue message bodies (JSON text).
fn messages(ops: Vec<Value>) -> Vec<String> {
    envelopes(ops).iter().map(Envelope::to_message).collect()
}

const STATS_SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS last_error (k INTEGER PRIMARY KEY CHECK (k = 1), message TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
];

#[durable_object]
pub struct Forwarding {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Counter {
    k: String,
    n: i64,
}

#[derive(Deserialize)]
struct LastError {
    message: String,
    at: i64,
}

impl Forwarding {
    fn add(&self, k: &str, n: u64) -> worker::Result<()> {
        self.sql.exec(
            "INSERT INTO counters (k, n) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n",
            vec![k.into(), (n as i64).into()],
        )?;
        Ok(())
    }

    fn dead_rows(&self, limit: u32) -> worker::Result<Vec<(i64, DeadLetter)>> {
        let rows: Vec<OutboxRow> = self
            .sql
            .exec(
                "SELECT seq, body FROM dead ORDER BY seq LIMIT ?",
                vec![i64::from(limit).into()],
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.seq, serde_json::from_str(&r.body).ok()?)))
            .collect())
    }

    fn answer(&self, c: StatsCall) -> worker::Result<Value> {
        for statement in STATS_SCHEMA {
            self.sql.exec(statement, None)?;
        }
        Ok(match c {
            StatsCall::Enqueued { n } => {
                self.add("enqueued", n)?;
                json!({})
            }
            StatsCall::Delivered { n } => {
                self.add("delivered", n)?;
                json!({})
            }
            StatsCall::Retrying { error, at } => {
                self.add("retries", 1)?;
                self.sql.exec(
                    "INSERT OR REPLACE INTO last_error (k, message, at) VALUES (1, ?, ?)",
                    vec![error.into(), at.into()],
                )?;
                json!({})
            }
            StatsCall::Dead { letters } => {
                self.add("failed", letters.len() as u64)?;
                for letter in &letters {
                    self.sql.exec(
                        "INSERT INTO dead (body) VALUES (?)",
                        vec![json!(letter).to_string().into()],
                    )?;
                    self.sql.exec(
                        "INSERT OR REPLACE INTO last_error (k, message, at) VALUES (1, ?, ?)",
                        vec![letter.reason.clone().into(), letter.at.into()],
                    )?;
                }
                json!({})
            }
            StatsCall::Status { limit } => {
                let counters: Vec<Counter> = self
                    .sql
                    .exec("SELECT k, n FROM counters", None)?
                    .to_array()?;
                let get = |k: &str| counters.iter().find(|c| c.k == k).map_or(0, |c| c.n);
                let last: Vec<LastError> = self
                    .sql
                    .exec("SELECT message, at FROM last_error WHERE k = 1", None)?
                    .to_array()?;
                let dead: Vec<DeadLetter> =
                    self.dead_rows(limit)?.into_iter().map(|(_, d)| d).collect();
                json!({
                    "enqueued": get("enqueued"),
                    "delivered": get("delivered"),
                    "failed": get("failed"),
                    "retries": get("retries"),
                    "replayed": get("replayed"),
                    "pending": (get("enqueued") + get("replayed") - get("delivered") - get("failed")).max(0),
                    "last_error": last.first().map(|l| json!({"message": l.message, "at": l.at})),
                    "dead_letters": dead,
                })
            }
            StatsCall::DeadLetters { limit } => json!(self.dead_rows(limit)?),
            StatsCall::Forget { seqs } => {
                for seq in &seqs {
                    self.sql
                        .exec("DELETE FROM dead WHERE seq = ?", vec![(*seq).into()])?;
                }
                self.add("replayed", seqs.len() as u64)?;
                json!({})
            }
        })
    }
}

impl DurableObject for Forwarding {
    fn new(state: State, _env: Env) -> Self {
        Forwarding {
            sql: state.storage().sql(),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let c: StatsCall = read_call(req).await?;
        reply(self.answer(c).map_err(super::rpc::unavailable))
    }
}
