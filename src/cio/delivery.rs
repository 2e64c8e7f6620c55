//! Delivery decisions: outbox rows into queue messages, queued operations
//! into v2 batches within Customer.io's limits, and what an answer means
//! (delivered, some operations refused, retry later, or give up).

use std::collections::VecDeque;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Customer.io's limit on one batch request body, on the bytes posted.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Operations per batch request (cio-edge's own Track API takes 100).
pub const MAX_BATCH_OPS: usize = 100;
/// A Queue message holds 128 KB. Bodies are sent as text, so this is the
/// UTF-8 length of the message as sent; the rest is the runtime's framing.
pub const MAX_MESSAGE_BYTES: usize = 120_000;
/// One `sendBatch` takes at most 100 messages and 256 KB in all.
pub const MAX_SEND_MESSAGES: usize = 100;
pub const MAX_SEND_BYTES: usize = 240_000;
/// Deliveries tried before an operation is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest wait between two attempts, whatever Retry-After says.
pub const MAX_BACKOFF_SECS: u32 = 43_200;
/// How long an object waits to hear how its message went before sending it
/// again (a consumer that died); longer than one queue invocation can run.
pub const LEASE_SECS: i64 = 900;
/// An operation not delivered this long after it was written is a jam.
pub const STUCK_AFTER_SECS: i64 = 30;
/// Dead letters kept; beyond it the oldest go (and are counted).
pub const MAX_DEAD_LETTERS: u64 = 10_000;

/// The object whose outbox holds a message's operations until it hears how
/// they went: its binding and its hex id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub ns: String,
    pub id: String,
}

/// One queue message: operations in commit order and how many deliveries
/// were tried (the Workers runtime exposes no attempt count to Rust, so it
/// travels in the message). An object's message names it (`source`) and
/// each operation's outbox row (`seqs`); a replayed dead letter has neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub ops: Vec<Value>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<i64>,
}

impl Envelope {
    /// A queue message body: JSON text, sent as text, so its length here is
    /// the length the queue measures.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A queue message body as `to_message` wrote it; `None` for anything else.
    pub fn from_message(body: &Value) -> Option<Self> {
        match body {
            Value::String(text) => crate::core::json::from_str(text).ok(),
            // Read as text too: one reader of our types (`core::json`), not a
            // second one over `Value` compiled for each.
            other => crate::core::json::from_str(&other.to_string()).ok(),
        }
    }
}

/// An operation given up on, with Customer.io's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub op: Value,
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
}

/// The JSON length of a value as it is sent.
pub fn json_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}

fn digits(n: i64) -> usize {
    n.to_string().len()
}

/// How many of `rows` (outbox rows in order: seq, operation) go in the next
/// message of `source` at `attempt`, measured on the message text exactly;
/// 0 when the first alone does not fit a message.
pub fn fit_message(rows: &[(i64, Value)], attempt: u32, source: Option<&Source>) -> usize {
    let empty = Envelope {
        ops: Vec::new(),
        attempt,
        source: source.cloned(),
        seqs: Vec::new(),
    };
    // `"seqs":[...]` appears once there is a row (objects' messages only).
    let mut bytes = empty.to_message().len() + if source.is_some() { 10 } else { 0 };
    for (i, (seq, op)) in rows.iter().enumerate() {
        let sep = usize::from(i > 0);
        let seq_bytes = if source.is_some() {
            digits(*seq) + sep
        } else {
            0
        };
        let add = json_len(op) + sep + seq_bytes;
        if bytes + add > MAX_MESSAGE_BYTES {
            return i;
        }
        bytes += add;
    }
    rows.len()
}

/// Operations without an object (replays, their re-sends) as messages within
/// the limit, order kept; an operation that fits no message is returned
/// apart (it cannot travel by queue).
pub fn envelopes(ops: Vec<Value>, attempt: u32) -> (Vec<Envelope>, Vec<Value>) {
    let mut rows: Vec<(i64, Value)> = ops.into_iter().map(|op| (0, op)).collect();
    let (mut out, mut apart) = (Vec::new(), Vec::new());
    while !rows.is_empty() {
        match fit_message(&rows, attempt, None) {
            0 => apart.push(rows.remove(0).1),
            n => out.push(Envelope {
                ops: rows.drain(..n).map(|(_, op)| op).collect(),
                attempt,
                source: None,
                seqs: Vec::new(),
            }),
        }
    }
    (out, apart)
}

/// Message bodies grouped into `sendBatch` calls: at most
/// `MAX_SEND_MESSAGES` and `MAX_SEND_BYTES` each, order kept.
pub fn send_batches(messages: &[String]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        if i > start && (i - start >= MAX_SEND_MESSAGES || bytes + m.len() > MAX_SEND_BYTES) {
            ranges.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += m.len();
    }
    if start < messages.len() {
        ranges.push(start..messages.len());
    }
    ranges
}

/// The batch request body for `ops`, exactly as posted.
pub fn batch_body(ops: &[Value]) -> String {
    serde_json::json!({ "batch": ops }).to_string()
}

/// Consecutive ranges of `ops` that fit one batch request: at most
/// `MAX_BATCH_OPS` operations and `MAX_BATCH_BYTES` of body as posted.
pub fn pack(ops: &[Value]) -> Vec<Range<usize>> {
    let metrics: Vec<bool> = ops.iter().map(is_metric).collect();
    pack_lens(&ops.iter().map(json_len).collect::<Vec<_>>(), &metrics)
}

/// An in-app metric travels alone: it is its own request (`/api/v1/metrics`).
fn is_metric(op: &Value) -> bool {
    crate::inapp::metrics_body(op).is_some()
}

/// `metric[i]`: operation `i` must stand alone in its range.
fn pack_lens(lens: &[usize], metric: &[bool]) -> Vec<Range<usize>> {
    // `{"batch":[` and `]}`, and a comma between operations.
    const FRAME: usize = 12;
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, FRAME);
    let metric = |i: usize| metric.get(i).copied().unwrap_or(false);
    for (i, len) in lens.iter().enumerate() {
        let add = len + usize::from(i > start);
        let alone = i > 0 && (metric(i) || metric(i - 1));
        if i > start && (alone || i - start >= MAX_BATCH_OPS || bytes + add > MAX_BATCH_BYTES) {
            ranges.push(start..i);
            start = i;
            bytes = FRAME + len;
            continue;
        }
        bytes += add;
    }
    if start < lens.len() {
        ranges.push(start..lens.len());
    }
    ranges
}

/// What one batch request's answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every operation was accepted.
    Delivered,
    /// 207: these (batch index, reason) were refused; the rest accepted.
    Partial(Vec<(usize, String)>),
    /// Try the whole batch again later (`after`: Retry-After in seconds).
    Retry { after: Option<u32>, error: String },
    /// The request itself was refused and repeating it cannot help.
    Refused(String),
}

/// `Retry-After` as seconds (an HTTP date counts as absent).
pub fn parse_retry_after(value: Option<&str>) -> Option<u32> {
    value.and_then(|v| v.trim().parse::<u32>().ok())
}

/// Reads a batch answer. 429, 5xx, 408, 401/403 (credentials can be fixed)
/// and 3xx (redirects are not followed: the URL is wrong and can be fixed)
/// are retried; any other 4xx refuses the batch, keeping its reason.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str, ops: usize) -> Outcome {
    let short = |body: &str| body.chars().take(300).collect::<String>();
    match status {
        207 => Outcome::Partial(failed_ops(body, ops)),
        200..=299 => Outcome::Delivered,
        300..=399 => Outcome::Retry {
            after: None,
            error: format!(
                "{status}: redirected{}; check CIO_REGION / CIO_TRACK_URL",
                if body.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", short(body))
                }
            ),
        },
        408 | 429 | 401 | 403 | 500..=599 => Outcome::Retry {
            after: parse_retry_after(retry_after),
            error: format!("{status}: {}", short(body)),
        },
        _ => Outcome::Refused(format!("{status}: {}", short(body))),
    }
}

/// The refused operations of a 207 answer: `{"errors":[{"batch_index",
/// "reason","field"?,"message"}]}`. An entry without a usable index is
/// ignored; an answer that cannot be read refuses nothing (the operations
/// were accepted as far as can be told).
pub fn failed_ops(body: &str, ops: usize) -> Vec<(usize, String)> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    // Each refusal in its operation's slot, the first for an index kept: in
    // batch order without a slice sort (3.5 KB of wasm per instantiation).
    let mut slots: Vec<Option<String>> = vec![None; ops];
    let refusals = value
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let index = usize::try_from(e.get("batch_index")?.as_u64()?).ok()?;
            if index >= ops {
                return None;
            }
            let text = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut reason = text("reason");
            for extra in [text("field"), text("message")] {
                if !extra.is_empty() {
                    reason = if reason.is_empty() {
                        extra
                    } else {
                        format!("{reason}: {extra}")
                    };
                }
            }
            Some((index, reason))
        });
    for (index, reason) in refusals {
        if let Some(slot @ None) = slots.get_mut(index) {
            *slot = Some(reason);
        }
    }
    slots
        .into_iter()
        .enumerate()
        .filter_map(|(index, reason)| Some((index, reason?)))
        .collect()
}

/// Seconds before attempt `attempt` (1 for the first retry): Retry-After when
/// the answer gave one, else 1, 2, 4, ... up to five minutes.
pub fn backoff_secs(attempt: u32, retry_after: Option<u32>) -> u32 {
    match retry_after {
        Some(secs) => secs.clamp(1, MAX_BACKOFF_SECS),
        None => 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(300),
    }
}

/// After a failed attempt: `Some(delay)` to try again, `None` to give up.
pub fn next_attempt(attempt: u32, retry_after: Option<u32>) -> Option<(u32, u32)> {
    let next = attempt + 1;
    (next < MAX_ATTEMPTS).then(|| (next, backoff_secs(next, retry_after)))
}

/// The Track API base for a region, or the override.
pub fn track_base(region: &str, override_url: Option<&str>) -> String {
    match override_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if region == "eu" => "https://track-eu.customer.io".into(),
        None => "https://track.customer.io".into(),
    }
}

/// The Pipelines API base (`CIO_DESTINATION=pipelines`), from its OpenAPI
/// file's `servers`: US `https://cdp.customer.io/v1`, EU
/// `https://cdp-eu.customer.io/v1`; or the override.
pub fn pipelines_base(region: &str, override_url: Option<&str>) -> String {
    match override_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if region == "eu" => "https://cdp-eu.customer.io".into(),
        None => "https://cdp.customer.io".into(),
    }
}

// ------------------------------------------------------ one consumer run ----

/// How the rest of a message goes on after a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Again {
    /// The attempt number the rest is sent as.
    pub attempt: u32,
    pub delay: u32,
    pub error: String,
}

/// One message after a run: what was delivered or dead-lettered (in order,
/// `done` operations from the start) and whether the rest waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub envelope: Envelope,
    pub done: usize,
    pub delivered: u64,
    pub dead: Vec<DeadLetter>,
    pub again: Option<Again>,
}

impl Settled {
    /// The last outbox row done, for the object's acknowledgement.
    pub fn upto(&self) -> Option<i64> {
        self.done
            .checked_sub(1)
            .and_then(|i| self.envelope.seqs.get(i).copied())
    }

    /// The operations not done (they go again).
    pub fn rest(&self) -> &[Value] {
        self.envelope.ops.get(self.done..).unwrap_or_default()
    }
}

/// The messages of one queue invocation, posted batch by batch. A message's
/// operations go in order; one the receiver refuses with a 4xx is found by
/// halving its batch, so only that operation is dead-lettered; after a
/// retryable answer nothing more is posted in this run, and every message
/// keeps its rest for later (only those in the failed batch count an
/// attempt), so no operation overtakes an earlier one of its object.
pub struct Run {
    items: Vec<(usize, usize)>,
    groups: VecDeque<Vec<usize>>,
    current: Vec<usize>,
    settled: Vec<Settled>,
    /// A retryable answer: (Retry-After, error).
    stop: Option<(Option<u32>, String)>,
    tried: Vec<bool>,
    now: i64,
}

impl Run {
    pub fn new(envelopes: Vec<Envelope>, now: i64) -> Self {
        let mut items = Vec::new();
        for (e, env) in envelopes.iter().enumerate() {
            items.extend((0..env.ops.len()).map(|i| (e, i)));
        }
        let lens: Vec<usize> = items
            .iter()
            .map(|&(e, i)| json_len(&envelopes[e].ops[i]))
            .collect();
        let metrics: Vec<bool> = items
            .iter()
            .map(|&(e, i)| is_metric(&envelopes[e].ops[i]))
            .collect();
        let groups = pack_lens(&lens, &metrics)
            .into_iter()
            .map(|r| r.collect::<Vec<usize>>())
            .collect();
        let tried = vec![false; envelopes.len()];
        let settled = envelopes
            .into_iter()
            .map(|envelope| Settled {
                envelope,
                done: 0,
                delivered: 0,
                dead: Vec::new(),
                again: None,
            })
            .collect();
        Run {
            items,
            groups,
            current: Vec::new(),
            settled,
            stop: None,
            tried,
            now,
        }
    }

    /// The next batch to post, or `None` when the run is over.
    pub fn next_batch(&mut self) -> Option<Vec<Value>> {
        if self.stop.is_some() {
            return None;
        }
        let group = self.groups.pop_front()?;
        self.current = group;
        Some(
            self.current
                .iter()
                .map(|&k| {
                    let (e, i) = self.items[k];
                    self.settled[e].envelope.ops[i].clone()
                })
                .collect(),
        )
    }

    fn finish(&mut self, k: usize, dead: Option<String>) {
        let (e, i) = self.items[k];
        let s = &mut self.settled[e];
        s.done = s.done.max(i + 1);
        match dead {
            Some(reason) => s.dead.push(DeadLetter {
                op: s.envelope.ops[i].clone(),
                reason,
                at: self.now,
            }),
            None => s.delivered += 1,
        }
    }

    /// The answer to the batch `next_batch` gave.
    pub fn answer(&mut self, outcome: Outcome) {
        let current = std::mem::take(&mut self.current);
        match outcome {
            Outcome::Delivered => current.iter().for_each(|&k| self.finish(k, None)),
            Outcome::Partial(failed) => {
                for (pos, &k) in current.iter().enumerate() {
                    let reason = failed
                        .iter()
                        .find(|(i, _)| *i == pos)
                        .map(|(_, r)| r.clone());
                    self.finish(k, reason);
                }
            }
            Outcome::Refused(_) if current.len() > 1 => {
                // Which operation was it? Halves, in order, before the rest.
                let (left, right) = current.split_at(current.len() / 2);
                self.groups.push_front(right.to_vec());
                self.groups.push_front(left.to_vec());
            }
            Outcome::Refused(reason) => current
                .iter()
                .for_each(|&k| self.finish(k, Some(reason.clone()))),
            Outcome::Retry { after, error } => {
                for &k in &current {
                    self.tried[self.items[k].0] = true;
                }
                self.stop = Some((after, error));
            }
        }
    }

    /// Every message with what happened to it and what its rest does.
    pub fn settle(mut self) -> Vec<Settled> {
        for (e, s) in self.settled.iter_mut().enumerate() {
            if s.done >= s.envelope.ops.len() {
                continue;
            }
            let Some((after, error)) = &self.stop else {
                continue;
            };
            let attempt = s.envelope.attempt;
            if !self.tried[e] {
                // Held for another message's answer: no attempt counted.
                s.again = Some(Again {
                    attempt,
                    delay: backoff_secs(attempt.max(1), *after),
                    error: error.clone(),
                });
                continue;
            }
            match next_attempt(attempt, *after) {
                Some((next, delay)) => {
                    s.again = Some(Again {
                        attempt: next,
                        delay,
                        error: error.clone(),
                    })
                }
                None => {
                    let reason = format!("gave up after {MAX_ATTEMPTS} attempts: {error}");
                    for op in &s.envelope.ops[s.done..] {
                        s.dead.push(DeadLetter {
                            op: op.clone(),
                            reason: reason.clone(),
                            at: self.now,
                        });
                    }
                    s.done = s.envelope.ops.len();
                }
            }
        }
        self.settled
    }

    /// The retryable error that ended the run, if one did.
    pub fn stopped(&self) -> Option<&str> {
        self.stop.as_ref().map(|(_, e)| e.as_str())
    }
}

// ------------------------------------------------ an object's outbox ----

/// What an object's outbox is doing, kept beside its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxState {
    /// The last row of the message in flight (0: none).
    pub flight: i64,
    /// When to send it again if no answer came (unix seconds).
    pub lease: i64,
    /// The attempt the next message is sent as.
    pub attempt: u32,
    /// Not before (a retry's delay), unix seconds.
    pub retry_at: i64,
    /// The highest row ever sent (rows above it are new to the queue).
    pub high: i64,
}

/// What the alarm does with the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the next message now.
    Send,
    /// Nothing before this time (unix seconds).
    Wait(i64),
}

impl OutboxState {
    pub fn step(&self, now: i64) -> Step {
        if self.flight > 0 && now < self.lease {
            Step::Wait(self.lease)
        } else if self.retry_at > now {
            Step::Wait(self.retry_at)
        } else {
            Step::Send
        }
    }

    /// A message ending at row `upto` was queued.
    pub fn sent(&mut self, upto: i64, now: i64) {
        self.flight = upto;
        self.lease = now + LEASE_SECS;
        self.high = self.high.max(upto);
    }

    /// The consumer's answer for the message that ended at `sent_upto`;
    /// `Some(at)` when the next message waits until then. A late answer for
    /// a message sent again since changes nothing but what it delivered.
    pub fn answered(&mut self, ack: &Ack, now: i64) -> Option<i64> {
        if ack.sent_upto != self.flight {
            return None;
        }
        self.flight = 0;
        match &ack.again {
            Some(again) => {
                self.attempt = again.attempt;
                self.retry_at = now + i64::from(again.delay);
                Some(self.retry_at)
            }
            None => {
                self.attempt = 0;
                self.retry_at = 0;
                None
            }
        }
    }
}

/// The consumer to an object: rows up to `upto` are done (delivered or
/// dead-lettered); the rest of the message ending at `sent_upto` goes
/// again as `again` says, or now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub sent_upto: i64,
    pub upto: Option<i64>,
    pub again: Option<Again>,
}

/// Whether the oldest undelivered operation (written at `oldest`, unix
/// seconds) makes a jam, and its age.
pub fn jam(oldest: Option<i64>, now: i64) -> (bool, Option<i64>) {
    let age = oldest.map(|at| (now - at).max(0));
    (age.is_some_and(|a| a >= STUCK_AFTER_SECS), age)
}

/// How many of the oldest dead letters go when `held` are stored.
pub fn dead_overflow(held: u64) -> u64 {
    held.saturating_sub(MAX_DEAD_LETTERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src() -> Source {
        Source {
            ns: "PERSON".into(),
            id: "a".repeat(64),
        }
    }

    #[test]
    fn messages_are_measured_exactly_on_the_text_sent() {
        // Backslashes and quotes are escaped once in the message text; the
        // measure is that text, not the operation before escaping.
        let heavy = json!({"blob": "\\".repeat(14_000), "q": "\"".repeat(10), "u": "é😀"});
        for source in [None, Some(src())] {
            for n in 1..5usize {
                let rows: Vec<(i64, Value)> =
                    (0..n as i64).map(|i| (i * 97 + 1, heavy.clone())).collect();
                let fit = fit_message(&rows, 3, source.as_ref());
                let env = Envelope {
                    ops: rows[..fit].iter().map(|(_, op)| op.clone()).collect(),
                    attempt: 3,
                    seqs: if source.is_some() {
                        rows[..fit].iter().map(|(s, _)| *s).collect()
                    } else {
                        Vec::new()
                    },
                    source: source.clone(),
                };
                let text = env.to_message();
                assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
                assert_eq!(fit, n.min(4), "each op is ~28 KB escaped: four fit 120 KB");
                if fit < n {
                    let mut more = env.clone();
                    more.ops.push(heavy.clone());
                    assert!(more.to_message().len() > MAX_MESSAGE_BYTES);
                }
            }
        }
        // The estimate is the exact length.
        let rows: Vec<(i64, Value)> = vec![(7, json!({"a": 1})), (12345, json!("x\\y"))];
        let env = Envelope {
            ops: vec![json!({"a": 1}), json!("x\\y")],
            attempt: 0,
            source: Some(src()),
            seqs: vec![7, 12345],
        };
        let empty = Envelope {
            ops: vec![],
            attempt: 0,
            source: Some(src()),
            seqs: vec![],
        };
        assert_eq!(
            env.to_message().len(),
            empty.to_message().len()
                + 10
                + json_len(&rows[0].1)
                + 1
                + json_len(&rows[1].1)
                + 1
                + 1
                + 5
        );
        let huge = json!({"k": "x".repeat(MAX_MESSAGE_BYTES)});
        assert_eq!(fit_message(&[(1, huge.clone())], 0, None), 0);
        let (env, apart) = envelopes(vec![json!(1), huge.clone(), json!(2)], 0);
        assert_eq!(apart, vec![huge]);
        assert_eq!(
            env.iter().flat_map(|e| e.ops.clone()).collect::<Vec<_>>(),
            vec![json!(1), json!(2)]
        );
    }

    #[test]
    fn send_batches_stay_within_100_messages_and_the_byte_limit() {
        let msgs: Vec<String> = (0..10).map(|_| "x".repeat(100_000)).collect();
        let ranges = send_batches(&msgs);
        assert_eq!(ranges, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        let small: Vec<String> = (0..250).map(|_| "x".into()).collect();
        assert_eq!(send_batches(&small), vec![0..100, 100..200, 200..250]);
        assert!(send_batches(&[]).is_empty());
    }

    #[test]
    fn messages_are_json_text() {
        let e = Envelope {
            ops: vec![json!({"a": {"b": 1}})],
            attempt: 3,
            source: Some(src()),
            seqs: vec![4],
        };
        assert_eq!(
            Envelope::from_message(&Value::String(e.to_message())),
            Some(e)
        );
        assert_eq!(Envelope::from_message(&json!("garbage")), None);
        // Messages queued before sources existed still read.
        let old = Envelope::from_message(&json!(r#"{"ops":[1],"attempt":2}"#)).unwrap();
        assert_eq!((old.source, old.seqs.len()), (None, 0));
    }

    #[test]
    fn batches_hold_at_most_100_ops_and_500_kb_of_body_as_posted() {
        let small: Vec<Value> = (0..250).map(|i| json!({"i": i})).collect();
        assert_eq!(pack(&small), vec![0..100, 100..200, 200..250]);
        let big: Vec<Value> = (0..40)
            .map(|_| json!({"k": "\\".repeat(15 * 1024)}))
            .collect();
        let ranges = pack(&big);
        for r in &ranges {
            let body = batch_body(&big[r.clone()]);
            assert!(body.len() <= MAX_BATCH_BYTES, "{}", body.len());
            // As full as it may be: one more would not fit.
            if r.end < big.len() {
                assert!(batch_body(&big[r.start..=r.end]).len() > MAX_BATCH_BYTES);
            }
        }
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 40);
        assert!(pack(&[]).is_empty());
    }

    fn env(ops: Vec<Value>, attempt: u32, first_seq: i64) -> Envelope {
        let seqs = (0..ops.len() as i64).map(|i| first_seq + i).collect();
        Envelope {
            ops,
            attempt,
            source: Some(src()),
            seqs,
        }
    }

    #[test]
    fn a_refused_batch_dead_letters_only_the_operation_it_was_about() {
        let a = env(vec![json!("a1"), json!("a2")], 0, 10);
        let b = env(vec![json!("poison"), json!("b2")], 0, 20);
        let mut run = Run::new(vec![a, b], 100);
        let mut posted = Vec::new();
        while let Some(batch) = run.next_batch() {
            posted.push(batch.clone());
            if batch.contains(&json!("poison")) {
                run.answer(Outcome::Refused("400: poison".into()));
            } else {
                run.answer(Outcome::Delivered);
            }
        }
        assert_eq!(posted[0].len(), 4);
        let settled = run.settle();
        assert_eq!(
            (settled[0].delivered, settled[0].done, settled[0].upto()),
            (2, 2, Some(11))
        );
        assert_eq!(settled[1].dead.len(), 1);
        assert_eq!(settled[1].dead[0].op, json!("poison"));
        assert_eq!(settled[1].dead[0].reason, "400: poison");
        assert_eq!((settled[1].delivered, settled[1].upto()), (1, Some(21)));
        assert!(settled.iter().all(|s| s.again.is_none()));
    }

    #[test]
    fn a_retry_holds_every_message_and_counts_attempts_only_for_the_tried() {
        // Two batches: the first (a's) delivered... then b's batch is 429'd.
        let big = |t: &str| json!({"t": t, "k": "x".repeat(300 * 1024)});
        let a = env(vec![big("a1")], 0, 1);
        let b = env(vec![big("b1"), big("b2")], 4, 5);
        let c = env(vec![json!("c1")], 2, 9);
        let mut run = Run::new(vec![a, b, c], 100);
        assert!(run.next_batch().is_some());
        run.answer(Outcome::Delivered);
        assert!(run.next_batch().is_some());
        run.answer(Outcome::Retry {
            after: Some(7),
            error: "429: slow".into(),
        });
        assert_eq!(run.next_batch(), None, "nothing more this run");
        assert_eq!(run.stopped(), Some("429: slow"));
        let s = run.settle();
        assert_eq!((s[0].done, s[0].again.clone()), (1, None));
        assert_eq!(s[1].done, 0);
        assert_eq!(
            s[1].again,
            Some(Again {
                attempt: 5,
                delay: 7,
                error: "429: slow".into()
            })
        );
        assert_eq!(s[1].rest().len(), 2, "the rest keeps its order");
        assert_eq!(
            s[2].again.as_ref().map(|a| a.attempt),
            Some(2),
            "held, not tried: no attempt counted"
        );
        // The last attempt: dead letters with the last error.
        let mut run = Run::new(vec![env(vec![json!(1)], MAX_ATTEMPTS - 1, 1)], 5);
        run.next_batch();
        run.answer(Outcome::Retry {
            after: None,
            error: "503: down".into(),
        });
        let s = run.settle();
        assert_eq!(s[0].dead.len(), 1);
        assert!(s[0].dead[0].reason.contains("503: down"));
        assert_eq!((s[0].upto(), s[0].again.clone()), (Some(1), None));
    }

    #[test]
    fn an_outbox_sends_one_message_at_a_time_and_waits_its_turn() {
        let mut st = OutboxState::default();
        assert_eq!(st.step(100), Step::Send);
        st.sent(5, 100);
        assert_eq!(st.step(101), Step::Wait(100 + LEASE_SECS));
        assert_eq!(
            st.step(100 + LEASE_SECS),
            Step::Send,
            "no answer: send again"
        );
        let again = Ack {
            sent_upto: 5,
            upto: Some(3),
            again: Some(Again {
                attempt: 1,
                delay: 4,
                error: "429".into(),
            }),
        };
        assert_eq!(st.answered(&again, 102), Some(106));
        assert_eq!((st.flight, st.attempt), (0, 1));
        assert_eq!(st.step(103), Step::Wait(106));
        assert_eq!(st.step(106), Step::Send);
        st.sent(9, 106);
        let stale = Ack {
            sent_upto: 5,
            upto: Some(5),
            again: None,
        };
        assert_eq!(st.answered(&stale, 107), None);
        assert_eq!(
            st.flight, 9,
            "a late answer for an older message changes nothing"
        );
        let done = Ack {
            sent_upto: 9,
            upto: Some(9),
            again: None,
        };
        assert_eq!(st.answered(&done, 108), None);
        assert_eq!((st.flight, st.attempt, st.retry_at, st.high), (0, 0, 0, 9));
    }

    #[test]
    fn a_jam_shows_after_30_seconds_and_dead_letters_are_capped() {
        assert_eq!(jam(None, 100), (false, None));
        assert_eq!(jam(Some(80), 100), (false, Some(20)));
        assert_eq!(jam(Some(70), 100), (true, Some(30)));
        assert_eq!(dead_overflow(MAX_DEAD_LETTERS), 0);
        assert_eq!(dead_overflow(MAX_DEAD_LETTERS + 3), 3);
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, None, "{}", 3), Outcome::Delivered);
        assert_eq!(
            classify(503, Some("1"), "down", 3),
            Outcome::Retry {
                after: Some(1),
                error: "503: down".into()
            }
        );
        assert!(matches!(
            classify(429, None, "", 3),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(classify(401, None, "", 3), Outcome::Retry { .. }));
        assert!(matches!(classify(400, None, "bad", 3), Outcome::Refused(r) if r == "400: bad"));
        for code in [301, 302, 307, 308] {
            assert!(
                matches!(classify(code, None, "/moved", 3), Outcome::Retry { error, .. } if error.starts_with(&code.to_string()) && error.contains("/moved"))
            );
        }
        let body = r#"{"errors":[{"batch_index":2,"reason":"conflict","field":"email","message":"taken"},{"batch_index":9,"reason":"x"},{"reason":"no index"}]}"#;
        assert_eq!(
            classify(207, None, body, 3),
            Outcome::Partial(vec![(2, "conflict: email: taken".into())])
        );
        assert_eq!(classify(207, None, "not json", 3), Outcome::Partial(vec![]));
    }

    #[test]
    fn refusals_come_in_batch_order_the_first_for_an_index_kept() {
        let body = r#"{"errors":[{"batch_index":4,"reason":"d"},{"batch_index":0,"reason":"a"},{"batch_index":4,"reason":"again"},{"batch_index":1,"reason":"b"}]}"#;
        assert_eq!(
            failed_ops(body, 5),
            vec![(0, "a".into()), (1, "b".into()), (4, "d".into())]
        );
        assert_eq!(failed_ops(r#"{"errors":[{"batch_index":0}]}"#, 0), vec![]);
    }

    #[test]
    fn backoff_doubles_honours_retry_after_and_gives_up() {
        assert_eq!(
            (1..=5).map(|a| backoff_secs(a, None)).collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16]
        );
        assert_eq!(backoff_secs(40, None), 300);
        assert_eq!(backoff_secs(3, Some(1)), 1);
        assert_eq!(backoff_secs(3, Some(0)), 1);
        assert_eq!(backoff_secs(3, Some(u32::MAX)), MAX_BACKOFF_SECS);
        assert_eq!(next_attempt(0, Some(7)), Some((1, 7)));
        assert_eq!(next_attempt(MAX_ATTEMPTS - 1, None), None);
        assert_eq!(parse_retry_after(Some(" 5 ")), Some(5));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }

    #[test]
    fn regions_and_override() {
        assert_eq!(track_base("us", None), "https://track.customer.io");
        assert_eq!(track_base("eu", None), "https://track-eu.customer.io");
        assert_eq!(
            track_base("eu", Some("http://127.0.0.1:9/_cio/")),
            "http://127.0.0.1:9/_cio"
        );
    }
}
