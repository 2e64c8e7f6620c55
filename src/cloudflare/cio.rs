//! The outbox's way out, on Cloudflare: the SQLite `outbox` table each
//! person and visitor object writes in the same step as its change, the
//! alarm that drains it into the `CIO_OUTBOX` queue (rows deleted only after
//! the send succeeded), and the `Forwarding` object: delivery counts, the
//! last error and the dead letters the admin API shows and replays.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{Env, QueueContentType, SqlStorage, State};

use super::class::{Incoming, Object};
use super::rpc::{call, read_call, reply, unavailable, SqlResult};
use super::sql::{rows, table_exists};
use crate::cio::{
    dead_overflow, fit_message, jam, send_batches, Ack, DeadLetter, Envelope, OutboxState, Source,
    Step,
};
use crate::config::CioWorkspace as Settings;
use crate::identity::StoreError;

pub const OUTBOX_QUEUE: &str = crate::bindings::CIO_OUTBOX;
pub const DEADLETTER_QUEUE: &str = crate::bindings::CIO_DEADLETTER;
pub const BINDING: &str = crate::bindings::FORWARDING;
/// The one `Forwarding` object.
const SINGLETON: &str = "forwarding";
/// Outbox rows one message is chosen from.
const DRAIN_ROWS: i64 = 200;
/// When a drain fails (the queue unreachable), the next try.
const DRAIN_RETRY_MS: i64 = 5_000;
/// The path of the consumer's answer to an object (`Ack`).
pub const ANSWER_PATH: &str = "/outbox";

/// The forwarding settings, or `None` when off (or misconfigured: the
/// fetch handler reports that on every request).
pub fn settings(env: &Env) -> Option<Settings> {
    Settings::from_lookup(|name| super::setting(env, name))
        .ok()
        .flatten()
}

/// A message body as text: the queue measures (and the consumer reads) the
/// same characters `Envelope::to_message` counted.
pub fn text_message(body: String, delay: Option<u32>) -> worker::SendMessage<String> {
    let builder = worker::MessageBuilder::new(body).content_type(QueueContentType::Text);
    match delay {
        Some(secs) => builder.delay_seconds(secs).build(),
        None => builder.build(),
    }
}

/// One object's outbox table and its alarm. One message is in flight at a
/// time; its rows stay until the consumer answers (`answer`), so a retry
/// keeps them first and nothing of this object overtakes them.
pub struct Outbox {
    /// Forwarding is on for this isolate.
    pub on: bool,
    ready: Cell<bool>,
    /// A row was written since the alarm was last armed.
    pending: Cell<bool>,
    source: Source,
}

/// The outbox's state, and whether the Forwarding object lists it as
/// pending (it must be told once the outbox is empty again).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
struct Kept {
    state: OutboxState,
    listed: bool,
}

impl Outbox {
    /// `ns` is the object's binding, `id` its hex id: where the consumer
    /// sends its answer.
    pub fn new(env: &Env, ns: &str, id: String) -> Self {
        Outbox {
            on: settings(env).is_some(),
            ready: Cell::new(false),
            pending: Cell::new(false),
            source: Source { ns: ns.into(), id },
        }
    }

    fn ensure(&self, sql: &SqlStorage) -> Result<(), StoreError> {
        if self.ready.get() {
            return Ok(());
        }
        for statement in [
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, at INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS outbox_state (k INTEGER PRIMARY KEY CHECK (k = 1), body TEXT NOT NULL)",
        ] {
            sql.exec(statement, None).or_unavailable()?;
        }
        // Outboxes written before rows carried their time.
        let columns = sql
            .exec("SELECT * FROM outbox LIMIT 0", None)
            .or_unavailable()?
            .column_names();
        if !columns.iter().any(|c| c == "at") {
            sql.exec(
                "ALTER TABLE outbox ADD COLUMN at INTEGER NOT NULL DEFAULT 0",
                None,
            )
            .or_unavailable()?;
        }
        self.ready.set(true);
        Ok(())
    }

    fn load(&self, sql: &SqlStorage) -> Result<Kept, StoreError> {
        let rows: Vec<(String,)> = sql
            .exec("SELECT body FROM outbox_state WHERE k = 1", None)
            .and_then(rows)
            .or_unavailable()?;
        Ok(rows
            .first()
            .and_then(|(body,)| crate::core::json::from_str(body).ok())
            .unwrap_or_default())
    }

    fn save(&self, sql: &SqlStorage, kept: &Kept) -> Result<(), StoreError> {
        sql.exec(
            "INSERT OR REPLACE INTO outbox_state (k, body) VALUES (1, ?)",
            vec![serde_json::to_string(kept)?.into()],
        )
        .or_unavailable()?;
        Ok(())
    }

    fn count(&self, sql: &SqlStorage) -> Result<u64, StoreError> {
        super::sql::count(sql, "SELECT COUNT(*) FROM outbox")
    }

    /// Appends an operation (part of the caller's synchronous step).
    pub fn push(&self, sql: &SqlStorage, op: &Value) -> Result<(), StoreError> {
        self.ensure(sql)?;
        sql.exec(
            "INSERT INTO outbox (body, at) VALUES (?, ?)",
            vec![op.to_string().into(), super::now_secs().into()],
        )
        .or_unavailable()?;
        self.pending.set(true);
        Ok(())
    }

    /// After a call: rows were written, so the alarm looks at them now.
    pub async fn arm(&self, state: &State) {
        if self.pending.replace(false) {
            if let Err(e) = state.storage().set_alarm(0i64).await {
                worker::console_error!("outbox alarm: {e}");
            }
        }
    }

    /// The alarm: the next message into the queue, unless one is in flight
    /// or waiting for its retry. A queue that refuses it is reported (the
    /// admin status shows the jam) and tried again in 5 s.
    pub async fn drain(&self, state: &State, env: &Env, sql: &SqlStorage) -> worker::Result<()> {
        if !table_exists(sql, "outbox").unwrap_or(false) {
            return Ok(());
        }
        if let Err(e) = self.drain_step(state, env, sql).await {
            worker::console_error!("outbox drain: {e}");
            let _ = state.storage().set_alarm(DRAIN_RETRY_MS).await;
        }
        Ok(())
    }

    async fn drain_step(
        &self,
        state: &State,
        env: &Env,
        sql: &SqlStorage,
    ) -> Result<(), StoreError> {
        self.ensure(sql)?;
        let now = super::now_secs();
        let mut kept = self.load(sql)?;
        if let Step::Wait(at) = kept.state.step(now) {
            super::wake_by(&state.storage(), at).await;
            return Ok(());
        }
        loop {
            let rows: Vec<(i64, String, Option<i64>)> = sql
                .exec(
                    "SELECT seq, body, at FROM outbox ORDER BY seq LIMIT ?",
                    vec![DRAIN_ROWS.into()],
                )
                .and_then(rows)
                .or_unavailable()?;
            let Some((_, _, at)) = rows.first() else {
                if kept.listed {
                    self.unlist(state, env, sql, &mut kept).await;
                }
                return Ok(());
            };
            let oldest = at.filter(|at| *at > 0).unwrap_or(now);
            let parsed: Vec<(i64, Value)> = rows
                .iter()
                .map(|(seq, body, _)| (*seq, serde_json::from_str(body).unwrap_or(Value::Null)))
                .collect();
            let n = fit_message(&parsed, kept.state.attempt, Some(&self.source));
            if n == 0 {
                // Cannot travel by queue at all: a dead letter of its own,
                // so it holds up nothing behind it.
                let (seq, op) = parsed[0].clone();
                let letter = DeadLetter {
                    reason: format!(
                        "{} bytes: larger than a queue message can carry",
                        crate::cio::json_len(&op)
                    ),
                    op,
                    at: now,
                };
                record(
                    env,
                    &StatsCall::Dead {
                        letters: vec![letter],
                        replays: 0,
                    },
                )
                .await?;
                sql.exec("DELETE FROM outbox WHERE seq = ?", vec![seq.into()])
                    .or_unavailable()?;
                continue;
            }
            let chosen = &parsed[..n];
            let upto = chosen[n - 1].0;
            let fresh = chosen
                .iter()
                .filter(|(seq, _)| *seq > kept.state.high)
                .count() as u64;
            let envelope = Envelope {
                ops: chosen.iter().map(|(_, op)| op.clone()).collect(),
                attempt: kept.state.attempt,
                source: Some(self.source.clone()),
                seqs: chosen.iter().map(|(seq, _)| *seq).collect(),
            };
            let pending = self.count(sql)?;
            let sent = match env.queue(OUTBOX_QUEUE) {
                Ok(queue) => queue.send(text_message(envelope.to_message(), None)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                let error = format!("the outbox queue refused a message: {e}");
                let _ = record(
                    env,
                    &StatsCall::Jammed {
                        source: self.source.id.clone(),
                        oldest,
                        pending,
                        error: error.clone(),
                        at: now,
                    },
                )
                .await;
                kept.listed = true;
                self.save(sql, &kept)?;
                return Err(StoreError::unavailable(error));
            }
            kept.state.sent(upto, now);
            kept.listed = true;
            self.save(sql, &kept)?;
            super::wake_by(&state.storage(), kept.state.lease).await;
            let _ = record(
                env,
                &StatsCall::Enqueued {
                    n: fresh,
                    source: Some(self.source.id.clone()),
                    oldest,
                    pending,
                },
            )
            .await;
            return Ok(());
        }
    }

    /// Tells the Forwarding object this outbox is empty; failing that, the
    /// alarm tries again (a stale listing would show a jam).
    async fn unlist(&self, state: &State, env: &Env, sql: &SqlStorage, kept: &mut Kept) {
        let cleared = StatsCall::Cleared(self.source.id.clone());
        if record(env, &cleared).await.is_ok() {
            kept.listed = false;
            let _ = self.save(sql, kept);
        } else {
            let _ = state.storage().set_alarm(DRAIN_RETRY_MS).await;
        }
    }

    /// The consumer's answer for a message (`ANSWER_PATH`): rows done are
    /// deleted; the rest waits for its retry, or the next message goes now.
    pub async fn answer(
        &self,
        call: &Incoming,
        state: &State,
        env: &Env,
        sql: &SqlStorage,
    ) -> worker::Result<String> {
        let ack: Ack = crate::core::json::from_str(&call.body)
            .map_err(|e| worker::Error::RustError(format!("bad answer: {e}")))?;
        let done: Result<(), StoreError> = async {
            self.ensure(sql)?;
            if let Some(upto) = ack.upto {
                sql.exec("DELETE FROM outbox WHERE seq <= ?", vec![upto.into()])
                    .or_unavailable()?;
            }
            let mut kept = self.load(sql)?;
            let wait = kept.state.answered(&ack, super::now_secs());
            self.save(sql, &kept)?;
            match wait {
                Some(at) => super::wake_by(&state.storage(), at).await,
                None if self.count(sql)? > 0 => {
                    let _ = state.storage().set_alarm(0i64).await;
                }
                None if kept.listed => self.unlist(state, env, sql, &mut kept).await,
                None => {}
            }
            Ok(())
        }
        .await;
        reply(done)
    }
}

/// Tells an object how its message went.
pub async fn answer_object(env: &Env, source: &Source, ack: &Ack) -> Result<(), StoreError> {
    if source.ns != crate::bindings::PERSON && source.ns != crate::bindings::VISITOR {
        return Err(StoreError::unavailable(format!(
            "no outbox in {}",
            source.ns
        )));
    }
    let stub = super::rpc::stub(env, &source.ns, super::rpc::ObjectName::Id(&source.id))?;
    super::rpc::post(&stub, ANSWER_PATH, &source.ns, ack).await
}

// ---------------------------------------------------- the stats object ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsCall {
    /// An object queued a message: `n` operations new to the queue;
    /// `pending` rows wait in its outbox, the oldest written at `oldest`.
    Enqueued {
        n: u64,
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        oldest: i64,
        #[serde(default)]
        pending: u64,
    },
    /// An object's outbox could not queue its message.
    Jammed {
        source: String,
        oldest: i64,
        pending: u64,
        error: String,
        at: i64,
    },
    /// An object's (this source's) outbox is empty again.
    Cleared(String),
    /// Delivered, `replays` of them replayed dead letters.
    Delivered {
        n: u64,
        #[serde(default)]
        replays: u64,
    },
    Retrying {
        error: String,
        at: i64,
    },
    Dead {
        letters: Vec<DeadLetter>,
        #[serde(default)]
        replays: u64,
    },
    /// The status, with at most this many dead letters.
    Status(u32),
    /// Dead letters after row `after`, oldest first, with their row numbers.
    DeadLetters {
        limit: u32,
        #[serde(default)]
        after: i64,
    },
    /// Replayed: drop these rows.
    Forget(Vec<i64>),
}

/// One call to the `Forwarding` object.
pub async fn record(env: &Env, c: &StatsCall) -> Result<Value, StoreError> {
    call(env, BINDING, SINGLETON, c).await
}

/// Replays dead letters: back into the outbox queue as first attempts,
/// within the queue's limits, each forgotten once the queue took it.
/// Answers how many.
pub async fn replay(env: &Env) -> Result<u64, StoreError> {
    let (mut total, mut after) = (0, 0);
    loop {
        let page = record(env, &StatsCall::DeadLetters { limit: 200, after }).await?;
        // Read again as text, by the one reader of our types (`core::json`):
        // asking `call` for the typed page would compile a second copy of the
        // object call (0.7 KiB of the wasm) for an admin action.
        let rows: Vec<(i64, DeadLetter)> = crate::core::json::from_str(&page.to_string())?;
        let Some(last) = rows.last().map(|(seq, _)| *seq) else {
            return Ok(total);
        };
        after = last;
        let mut rows: Vec<(i64, Value)> = rows.into_iter().map(|(s, d)| (s, d.op)).collect();
        // Messages and the letters each carries.
        let mut messages: Vec<(String, Vec<i64>)> = Vec::new();
        while !rows.is_empty() {
            match fit_message(&rows, 0, None) {
                // Too large to travel: it stays a dead letter.
                0 => {
                    rows.remove(0);
                }
                n => {
                    let taken: Vec<(i64, Value)> = rows.drain(..n).collect();
                    let envelope = Envelope {
                        ops: taken.iter().map(|(_, op)| op.clone()).collect(),
                        attempt: 0,
                        source: None,
                        seqs: Vec::new(),
                    };
                    messages.push((
                        envelope.to_message(),
                        taken.iter().map(|(s, _)| *s).collect(),
                    ));
                }
            }
        }
        let bodies: Vec<String> = messages.iter().map(|(m, _)| m.clone()).collect();
        let queue = env.queue(OUTBOX_QUEUE).map_err(unavailable)?;
        for range in send_batches(&bodies) {
            let batch: Vec<_> = bodies[range.clone()]
                .iter()
                .map(|m| text_message(m.clone(), None))
                .collect();
            queue.send_batch(batch).await.map_err(unavailable)?;
            let seqs: Vec<i64> = messages[range]
                .iter()
                .flat_map(|(_, s)| s.clone())
                .collect();
            total += seqs.len() as u64;
            record(env, &StatsCall::Forget(seqs)).await?;
        }
    }
}

const STATS_SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS last_error (k INTEGER PRIMARY KEY CHECK (k = 1), message TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sources (id TEXT PRIMARY KEY, oldest INTEGER NOT NULL, pending INTEGER NOT NULL)",
];

crate::export_object!(ForwardingClass as Forwarding, Forwarding);

pub struct Forwarding {
    sql: SqlStorage,
}

impl Forwarding {
    fn add(&self, k: &str, n: i64) -> worker::Result<()> {
        self.sql.exec(
            "INSERT INTO counters (k, n) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n",
            vec![k.into(), n.into()],
        )?;
        Ok(())
    }

    fn last_error(&self, message: &str, at: i64) -> worker::Result<()> {
        self.sql.exec(
            "INSERT OR REPLACE INTO last_error (k, message, at) VALUES (1, ?, ?)",
            vec![message.into(), at.into()],
        )?;
        Ok(())
    }

    fn list(&self, source: &str, oldest: i64, pending: u64) -> worker::Result<()> {
        self.sql.exec(
            "INSERT OR REPLACE INTO sources (id, oldest, pending) VALUES (?, ?, ?)",
            vec![source.into(), oldest.into(), (pending as i64).into()],
        )?;
        Ok(())
    }

    fn count(&self, query: &str) -> worker::Result<i64> {
        let rows: Vec<(i64,)> = rows(self.sql.exec(query, None)?)?;
        Ok(rows.first().map_or(0, |&(n,)| n))
    }

    fn dead_rows(&self, limit: u32, after: i64) -> worker::Result<Vec<(i64, DeadLetter)>> {
        let rows: Vec<(i64, String)> = rows(self.sql.exec(
            "SELECT seq, body FROM dead WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![after.into(), i64::from(limit).into()],
        )?)?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, body)| Some((seq, crate::core::json::from_str(&body).ok()?)))
            .collect())
    }

    fn answer(&self, c: StatsCall) -> worker::Result<Value> {
        for statement in STATS_SCHEMA {
            self.sql.exec(statement, None)?;
        }
        Ok(match c {
            StatsCall::Enqueued {
                n,
                source,
                oldest,
                pending,
            } => {
                self.add("enqueued", n as i64)?;
                if let Some(source) = source {
                    self.list(&source, oldest, pending)?;
                }
                json!({})
            }
            StatsCall::Jammed {
                source,
                oldest,
                pending,
                error,
                at,
            } => {
                self.list(&source, oldest, pending)?;
                self.last_error(&error, at)?;
                json!({})
            }
            StatsCall::Cleared(source) => {
                self.sql
                    .exec("DELETE FROM sources WHERE id = ?", vec![source.into()])?;
                json!({})
            }
            StatsCall::Delivered { n, replays } => {
                self.add("delivered", n as i64)?;
                self.add("replay_pending", -(replays as i64))?;
                json!({})
            }
            StatsCall::Retrying { error, at } => {
                self.add("retries", 1)?;
                self.last_error(&error, at)?;
                json!({})
            }
            StatsCall::Dead { letters, replays } => {
                self.add("failed", letters.len() as i64)?;
                self.add("replay_pending", -(replays as i64))?;
                for letter in &letters {
                    self.sql.exec(
                        "INSERT INTO dead (body) VALUES (?)",
                        vec![json!(letter).to_string().into()],
                    )?;
                    self.last_error(&letter.reason, letter.at)?;
                }
                // The table has a cap: the oldest letters go, and are counted.
                let held = self.count("SELECT COUNT(*) FROM dead")?;
                let drop = dead_overflow(held.max(0) as u64);
                if drop > 0 {
                    self.sql.exec(
                        "DELETE FROM dead WHERE seq IN (SELECT seq FROM dead ORDER BY seq LIMIT ?)",
                        vec![(drop as i64).into()],
                    )?;
                    self.add("dead_letters_dropped", drop as i64)?;
                }
                json!({})
            }
            StatsCall::Status(limit) => {
                let counters: Vec<(String, i64)> =
                    rows(self.sql.exec("SELECT k, n FROM counters", None)?)?;
                let get = |k: &str| counters.iter().find(|c| c.0 == k).map_or(0, |c| c.1);
                let last: Vec<(String, i64)> = rows(
                    self.sql
                        .exec("SELECT message, at FROM last_error WHERE k = 1", None)?,
                )?;
                let outstanding: Vec<(Option<i64>, Option<i64>)> = rows(
                    self.sql
                        .exec("SELECT MIN(oldest), SUM(pending) FROM sources", None)?,
                )?;
                let (oldest, in_outboxes) =
                    outstanding.first().map_or((None, 0), |&(oldest, pending)| {
                        (oldest, pending.unwrap_or(0))
                    });
                let (stuck, age) = jam(oldest, super::now_secs());
                let held = self.count("SELECT COUNT(*) FROM dead")?;
                let dead: Vec<DeadLetter> = self
                    .dead_rows(limit, 0)?
                    .into_iter()
                    .map(|(_, d)| d)
                    .collect();
                json!({
                    "enqueued": get("enqueued"),
                    "delivered": get("delivered"),
                    "failed": get("failed"),
                    "retries": get("retries"),
                    "replayed": get("replayed"),
                    "pending": in_outboxes.max(0) + get("replay_pending").max(0),
                    "stuck": stuck,
                    "oldest_pending_age": age,
                    "last_error": last.first().map(|(message, at)| json!({"message": message, "at": at})),
                    "dead_letter_count": held,
                    "dead_letters_dropped": get("dead_letters_dropped"),
                    "dead_letters": dead,
                })
            }
            StatsCall::DeadLetters { limit, after } => json!(self.dead_rows(limit, after)?),
            StatsCall::Forget(seqs) => {
                for seq in &seqs {
                    self.sql
                        .exec("DELETE FROM dead WHERE seq = ?", vec![(*seq).into()])?;
                }
                self.add("replayed", seqs.len() as i64)?;
                self.add("replay_pending", seqs.len() as i64)?;
                json!({})
            }
        })
    }
}

impl Object for Forwarding {
    fn new(state: State, _env: Env) -> Self {
        Forwarding {
            sql: state.storage().sql(),
        }
    }

    async fn fetch(&self, call: Incoming) -> worker::Result<String> {
        let c: StatsCall = read_call(&call)?;
        reply(self.answer(c).map_err(unavailable))
    }
}
