//! Delivery decisions: outbox rows into queue messages, queued operations
//! into v2 batches within Customer.io's limits, and what an answer means
//! (delivered, some operations refused, retry later, or give up).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Customer.io's limit on one batch request body.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Operations per batch request (cio-edge's own Track API takes 100).
pub const MAX_BATCH_OPS: usize = 100;
/// Operation bytes per queue message (a Queue message holds 128 KB).
pub const MAX_MESSAGE_BYTES: usize = 96 * 1024;
/// Deliveries tried before an operation is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest wait between two attempts, whatever Retry-After says (a Queue
/// delays a message at most 12 hours).
pub const MAX_BACKOFF_SECS: u32 = 43_200;

/// One queue message: operations of one object's outbox, in commit order,
/// and how many deliveries were tried (the Workers runtime exposes no
/// attempt count to Rust, so it travels in the message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub ops: Vec<Value>,
    #[serde(default)]
    pub attempt: u32,
}

impl Envelope {
    /// A queue message body: JSON text (a structured-clone body would turn
    /// JSON objects into `Map`s on the way).
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A queue message body as `to_message` wrote it; `None` for anything else.
    pub fn from_message(body: &Value) -> Option<Self> {
        match body {
            Value::String(text) => serde_json::from_str(text).ok(),
            other => serde_json::from_value(other.clone()).ok(),
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

/// Outbox rows (in commit order) as queue messages of at most
/// `MAX_MESSAGE_BYTES`, order kept.
pub fn envelopes(ops: Vec<Value>) -> Vec<Envelope> {
    let mut out: Vec<Envelope> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let len = op.to_string().len();
        match out.last_mut() {
            Some(last) if bytes + len <= MAX_MESSAGE_BYTES => last.ops.push(op),
            _ => {
                out.push(Envelope {
                    ops: vec![op],
                    attempt: 0,
                });
                bytes = 0;
            }
        }
        bytes += len;
    }
    out
}

/// Consecutive ranges of `ops` that fit one batch request: at most
/// `MAX_BATCH_OPS` operations and `MAX_BATCH_BYTES` of body.
pub fn pack(ops: &[Value]) -> Vec<std::ops::Range<usize>> {
    // `{"batch":[...]}` and the commas between operations.
    const FRAME: usize = 16;
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, FRAME);
    // An in-app metric is its own request (`/api/v1/metrics`), so it stands
    // alone in its range, order kept.
    let metric = |i: usize| ops.get(i).and_then(crate::inapp::metrics_body).is_some();
    for (i, op) in ops.iter().enumerate() {
        let len = op.to_string().len() + 1;
        let alone = i > 0 && (metric(i) || metric(i - 1));
        if i > start && (alone || i - start >= MAX_BATCH_OPS || bytes + len > MAX_BATCH_BYTES) {
            ranges.push(start..i);
            start = i;
            bytes = FRAME;
        }
        bytes += len;
    }
    if start < ops.len() {
        ranges.push(start..ops.len());
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

/// Reads a batch answer. 429, 5xx, 408 and 401/403 (credentials can be
/// fixed) are retried; any other 4xx refuses the batch.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str, ops: usize) -> Outcome {
    let short = |body: &str| body.chars().take(300).collect::<String>();
    match status {
        207 => Outcome::Partial(failed_ops(body, ops)),
        200..=299 => Outcome::Delivered,
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
    let mut failed: Vec<(usize, String)> = value
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
        })
        .collect();
    failed.sort_by_key(|(i, _)| *i);
    failed.dedup_by_key(|(i, _)| *i);
    failed
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_messages_under_the_queue_limit_in_order() {
        let op = json!({"k": "x".repeat(30 * 1024)});
        let env = envelopes(vec![
            op.clone(),
            op.clone(),
            op.clone(),
            op.clone(),
            json!(1),
        ]);
        assert_eq!(env.len(), 2);
        assert_eq!(env[0].ops.len(), 3);
        assert_eq!(env[1].ops, vec![op, json!(1)]);
        assert!(envelopes(Vec::new()).is_empty());
    }

    #[test]
    fn messages_are_json_text() {
        let e = Envelope {
            ops: vec![json!({"a": {"b": 1}})],
            attempt: 3,
        };
        assert_eq!(
            Envelope::from_message(&Value::String(e.to_message())),
            Some(e)
        );
        assert_eq!(Envelope::from_message(&json!("garbage")), None);
    }

    #[test]
    fn batches_hold_at_most_100_ops_and_500_kb() {
        let small: Vec<Value> = (0..250).map(|i| json!({"i": i})).collect();
        assert_eq!(pack(&small), vec![0..100, 100..200, 200..250]);
        let big: Vec<Value> = (0..40)
            .map(|_| json!({"k": "x".repeat(31 * 1024)}))
            .collect();
        let ranges = pack(&big);
        for r in &ranges {
            let body = serde_json::to_string(&json!({"batch": &big[r.clone()]})).unwrap();
            assert!(body.len() <= MAX_BATCH_BYTES, "{}", body.len());
        }
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 40);
        assert!(pack(&[]).is_empty());
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
        let body = r#"{"errors":[{"batch_index":2,"reason":"conflict","field":"email","message":"taken"},{"batch_index":9,"reason":"x"},{"reason":"no index"}]}"#;
        assert_eq!(
            classify(207, None, body, 3),
            Outcome::Partial(vec![(2, "conflict: email: taken".into())])
        );
        assert_eq!(classify(207, None, "not json", 3), Outcome::Partial(vec![]));
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
