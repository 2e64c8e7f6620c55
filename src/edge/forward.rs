//! Forwarding, the worker's side: the queue consumers (`CIO_OUTBOX`:
//! post v2 batches to the workspace; `CIO_DEADLETTER`: record what was given
//! up on) and the admin endpoints `GET /_cio/admin/forwarding` and
//! `POST /_cio/admin/forwarding/replay`. Every decision is in `forward`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use futures_util::future::{select, Either};
use serde_json::{json, Value};
use worker::{
    event, Context, Delay, Env, Fetch, Headers, MessageBatch, MessageBuilder, Method, Request,
    RequestInit, Response,
};

use super::error::{json_response, EdgeError};
use super::visit::now_secs;
use super::Edge;
use crate::config::Forwarding as Settings;
use crate::forward::{classify, next_attempt, pack, DeadLetter, Envelope, Outcome, MAX_ATTEMPTS};
use crate::store::forward::{
    dead_letter, record, replay, settings, StatsCall, DEADLETTER_QUEUE, OUTBOX_QUEUE,
};

/// The dead-letter queue's name in `wrangler.toml`.
pub const DEADLETTER_QUEUE_NAME: &str = "cio-deadletter";
/// How long one batch request may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(15);

#[event(queue)]
pub async fn queue(batch: MessageBatch<Value>, env: Env, _ctx: Context) -> worker::Result<()> {
    // Bodies are JSON text (`Envelope::to_message`); anything else is skipped
    // rather than failing the whole batch.
    let envelopes: Vec<Envelope> = batch
        .raw_iter()
        .filter_map(|m| m.body().as_string())
        .filter_map(|text| Envelope::from_message(&Value::String(text)))
        .collect();
    let done = if batch.queue() == DEADLETTER_QUEUE_NAME {
        record_dead(&env, envelopes).await
    } else {
        deliver(&env, envelopes).await
    };
    match done {
        Ok(()) => batch.ack_all(),
        // Delivered operations may go again: Customer.io deduplicates events
        // by id, and identifies, relationships and deletes repeat harmlessly.
        Err(e) => {
            worker::console_error!("forwarding: {e}; the batch is retried");
            batch.retry_all();
        }
    }
    Ok(())
}

/// Posts the operations, oldest attempt first, each attempt's in order.
/// Once a batch must wait, the rest wait with it, so no operation overtakes
/// an earlier one.
async fn deliver(env: &Env, envelopes: Vec<Envelope>) -> worker::Result<()> {
    let now = now_secs();
    let Some(settings) = settings(env) else {
        let letters = envelopes
            .into_iter()
            .flat_map(|e| e.ops)
            .map(|op| DeadLetter {
                op,
                reason: "forwarding is off (no credentials)".into(),
                at: now,
            })
            .collect();
        return dead_letter(env, letters).await;
    };
    let mut by_attempt: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for envelope in envelopes {
        by_attempt
            .entry(envelope.attempt)
            .or_default()
            .extend(envelope.ops);
    }
    let outbox = env.queue(OUTBOX_QUEUE)?;
    let (mut delivered, mut dead) = (0u64, Vec::new());
    let mut waiting: Option<u32> = None;
    for (attempt, ops) in by_attempt {
        for range in pack(&ops) {
            let batch = &ops[range];
            if let Some(delay) = waiting {
                let again = Envelope {
                    ops: batch.to_vec(),
                    attempt,
                }
                .to_message();
                outbox
                    .send(MessageBuilder::new(again).delay_seconds(delay).build())
                    .await?;
                continue;
            }
            match post(&settings, batch).await {
                Outcome::Delivered => delivered += batch.len() as u64,
                Outcome::Partial(failed) => {
                    delivered += (batch.len() - failed.len()) as u64;
                    dead.extend(failed.into_iter().map(|(i, reason)| DeadLetter {
                        op: batch[i].clone(),
                        reason,
                        at: now,
                    }));
                }
                Outcome::Retry { after, error } => {
                    let _ = record(
                        env,
                        &StatsCall::Retrying {
                            error: error.clone(),
                            at: now,
                        },
                    )
                    .await;
                    match next_attempt(attempt, after) {
                        Some((next, delay)) => {
                            let again = Envelope {
                                ops: batch.to_vec(),
                                attempt: next,
                            }
                            .to_message();
                            outbox
                                .send(MessageBuilder::new(again).delay_seconds(delay).build())
                                .await?;
                            waiting = Some(delay);
                        }
                        None => dead.extend(batch.iter().map(|op| DeadLetter {
                            op: op.clone(),
                            reason: format!("gave up after {MAX_ATTEMPTS} attempts: {error}"),
                            at: now,
                        })),
                    }
                }
                Outcome::Refused(reason) => dead.extend(batch.iter().map(|op| DeadLetter {
                    op: op.clone(),
                    reason: reason.clone(),
                    at: now,
                })),
            }
        }
    }
    if delivered > 0 {
        let _ = record(env, &StatsCall::Delivered { n: delivered }).await;
    }
    dead_letter(env, dead).await
}

/// One v2 batch request: Basic auth, a deadline, the answer classified.
async fn post(settings: &Settings, ops: &[Value]) -> Outcome {
    let retry = |error: String| Outcome::Retry { after: None, error };
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    // An in-app metric (`pack` keeps it alone) goes to `/api/v1/metrics`,
    // which takes no credentials.
    let (url, body) = match ops {
        [op] if crate::inapp::metrics_body(op).is_some() => (
            format!("{}{}", settings.base_url, crate::inapp::METRICS_PATH),
            crate::inapp::metrics_body(op)
                .map(Value::to_string)
                .unwrap_or_default(),
        ),
        _ => {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", settings.site_id, settings.api_key));
            let _ = headers.set("authorization", &format!("Basic {credentials}"));
            (
                format!("{}/api/v2/batch", settings.base_url),
                json!({ "batch": ops }).to_string(),
            )
        }
    };
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = match Request::new_with_init(&url, &init) {
        Ok(req) => req,
        Err(e) => return Outcome::Refused(format!("bad request to {url}: {e}")),
    };
    let send = Box::pin(async move { Fetch::Request(req).send().await });
    let deadline = Box::pin(Delay::from(POST_TIMEOUT));
    match select(send, deadline).await {
        Either::Left((Ok(mut resp), _)) => {
            let status = resp.status_code();
            let retry_after = resp.headers().get("retry-after").ok().flatten();
            let text = resp.text().await.unwrap_or_default();
            classify(status, retry_after.as_deref(), &text, ops.len())
        }
        Either::Left((Err(e), _)) => retry(format!("unreachable: {e}")),
        Either::Right(_) => retry(format!("no answer within {} s", POST_TIMEOUT.as_secs())),
    }
}

/// The dead-letter queue: our own dead letters, and messages the runtime
/// gave up on (the consumer failed on them `max_retries` times).
async fn record_dead(env: &Env, envelopes: Vec<Envelope>) -> worker::Result<()> {
    let now = now_secs();
    let letters: Vec<DeadLetter> = envelopes
        .into_iter()
        .flat_map(|e| e.ops)
        .map(|op| {
            serde_json::from_value::<DeadLetter>(op.clone()).unwrap_or(DeadLetter {
                op,
                reason: "the queue consumer failed on it max_retries times".into(),
                at: now,
            })
        })
        .collect();
    if letters.is_empty() {
        return Ok(());
    }
    record(env, &StatsCall::Dead { letters })
        .await
        .map(|_| ())
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

/// `/_cio/admin/forwarding[/replay]`, already authorised.
pub async fn admin(req: &Request, edge: &Edge, rest: &[&str]) -> Result<Response, EdgeError> {
    let on = edge.config.forwarding.as_ref();
    match (req.method(), rest) {
        (Method::Get, []) => {
            let mut status = match on {
                Some(_) => record(&edge.env, &StatsCall::Status { limit: 100 }).await?,
                None => json!({}),
            };
            status["on"] = json!(on.is_some());
            status["region"] = json!(on.map(|s| s.region.as_str()));
            status["track_url"] = json!(on.map(|s| s.base_url.as_str()));
            status["queue"] = json!(OUTBOX_QUEUE);
            status["dead_letter_queue"] = json!(DEADLETTER_QUEUE);
            Ok(json_response(&status, 200))
        }
        (Method::Post, ["replay"]) => {
            let replayed = match on {
                Some(_) => replay(&edge.env).await?,
                None => 0,
            };
            Ok(json_response(&json!({ "replayed": replayed }), 200))
        }
        (_, [] | ["replay"]) => Err(EdgeError::MethodNotAllowed),
        _ => Err(EdgeError::NoRoute),
    }
}
