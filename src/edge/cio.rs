//! Forwarding, the worker's side: the queue consumers (`CIO_OUTBOX`:
//! post v2 batches to the workspace; `CIO_DEADLETTER`: record what was given
//! up on) and the admin endpoints `GET /_cio/admin/forwarding` and
//! `POST /_cio/admin/forwarding/replay`. Every decision is in `cio`.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use worker::{event, Context, Env, MessageBatch, Method, Response};

use super::error::{json_response, EdgeError};
use super::request::Request;
use super::visit::now_secs;
use super::Edge;
use crate::cio::{batch_body, classify, envelopes, Ack, DeadLetter, Envelope, Outcome, Run};
use crate::cloudflare::cio::{
    answer_object, record, replay, settings, text_message, StatsCall, DEADLETTER_QUEUE,
    OUTBOX_QUEUE,
};
use crate::cloudflare::{http, side_by_side};
use crate::config::CioWorkspace as Settings;
use crate::identity::Work;

/// The dead-letter queue's name in `wrangler.toml`.
pub const DEADLETTER_QUEUE_NAME: &str = crate::bindings::CIO_DEADLETTER_QUEUE;
/// The Customer.io workspace settings forwarding relies on.
const REQUIRED_WORKSPACE_SETTINGS: &[&str] = &[
    "Allow updates to email using ID: on, else an email change of a person who has an id is not applied in Customer.io",
    "Anonymous event merging: on (the default since July 2021), else visitors' history is never joined to people",
];
/// How long one batch request may take, answer body included, before it
/// counts as failed.
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

/// Posts the messages' operations (`cio::Run` decides the batches and
/// what each answer means), stores the dead letters, then tells each object
/// how its message went; a replayed message's rest is queued again.
async fn deliver(env: &Env, envelopes_in: Vec<Envelope>) -> worker::Result<()> {
    let now = now_secs();
    let Some(settings) = settings(env) else {
        let letters: Vec<DeadLetter> = envelopes_in
            .into_iter()
            .flat_map(|e| e.ops)
            .map(|op| DeadLetter {
                op,
                reason: "forwarding is off (no credentials)".into(),
                at: now,
            })
            .collect();
        return store_dead(env, letters, 0).await;
    };
    let mut run = Run::new(envelopes_in, now);
    while let Some(batch) = run.next_batch() {
        let outcome = post(&settings, &batch).await;
        run.answer(outcome);
    }
    let stopped = run.stopped().map(str::to_owned);
    let settled = run.settle();
    for s in &settled {
        let done = s.envelope.ops.get(..s.done).unwrap_or_default();
        rejoin_late(env, done, s.envelope.attempt, now).await;
    }

    // Dead letters are stored before any object forgets them.
    let replayed = |s: &&crate::cio::Settled| s.envelope.source.is_none();
    let dead: Vec<DeadLetter> = settled.iter().flat_map(|s| s.dead.clone()).collect();
    let dead_replays = settled
        .iter()
        .filter(replayed)
        .map(|s| s.dead.len() as u64)
        .sum();
    store_dead(env, dead, dead_replays).await?;
    let delivered: u64 = settled.iter().map(|s| s.delivered).sum();
    let delivered_replays = settled.iter().filter(replayed).map(|s| s.delivered).sum();
    if delivered > 0 {
        let call = StatsCall::Delivered {
            n: delivered,
            replays: delivered_replays,
        };
        let _ = record(env, &call).await;
    }
    if let Some(error) = stopped {
        let _ = record(env, &StatsCall::Retrying { error, at: now }).await;
    }

    let outbox = env.queue(OUTBOX_QUEUE)?;
    let mut answers: Vec<Work> = Vec::new();
    for s in &settled {
        match &s.envelope.source {
            Some(source) => {
                let ack = Ack {
                    sent_upto: s.envelope.seqs.last().copied().unwrap_or(0),
                    upto: s.upto(),
                    again: s.again.clone(),
                };
                answers.push(Box::pin(async move {
                    // Unanswered, the object sends the message again later.
                    if let Err(e) = answer_object(env, source, &ack).await {
                        worker::console_error!(
                            "forwarding: an outbox did not take its answer: {e}"
                        );
                    }
                }));
            }
            None => {
                if let Some(again) = &s.again {
                    let (messages, _) = envelopes(s.rest().to_vec(), again.attempt);
                    for m in messages {
                        outbox
                            .send(text_message(m.to_message(), Some(again.delay)))
                            .await?;
                    }
                }
            }
        }
    }
    side_by_side(answers, None).await;
    Ok(())
}

/// Anonymous events just delivered late may have missed Customer.io's
/// five-minute join window: their visitor's person, if any, sends its join
/// identify again, now after them (`cio::late_anonymous_ids`,
/// `identity::store::rejoin`). Best effort: a failure is logged.
async fn rejoin_late(env: &Env, delivered: &[Value], attempt: u32, now: i64) {
    let late = crate::cio::late_anonymous_ids(delivered, attempt, now);
    if late.is_empty() {
        return;
    }
    let objects = crate::cloudflare::objects::DoObjects::new(env.clone());
    for anonymous_id in late {
        if let Err(e) = crate::identity::store::rejoin(&objects, &anonymous_id).await {
            worker::console_error!("forwarding: join of {anonymous_id} not sent again: {e}");
        }
    }
}

/// Stores dead letters in the `Forwarding` object.
async fn store_dead(env: &Env, letters: Vec<DeadLetter>, replays: u64) -> worker::Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    record(env, &StatsCall::Dead { letters, replays })
        .await
        .map(|_| ())
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

/// One v2 batch request: Basic auth, redirects not followed, one deadline
/// for the whole exchange (a receiver that stalls the body is no answer),
/// the answer classified.
async fn post(settings: &Settings, ops: &[Value]) -> Outcome {
    // CIO_DESTINATION=pipelines: the same operations, as Pipelines calls.
    if let Some(key) = &settings.pipelines_key {
        return super::cdp::post_pipelines(&settings.base_url, key, ops).await;
    }
    let retry = |error: String| Outcome::Retry { after: None, error };
    // An in-app metric (`pack` keeps it alone) goes to `/api/v1/metrics`,
    // which takes no credentials.
    let metrics = match ops {
        [op] => crate::inapp::metrics_body(op),
        _ => None,
    };
    let authorization;
    let mut headers = vec![("content-type", "application/json")];
    let (url, body) = match metrics {
        Some(body) => (
            format!("{}{}", settings.base_url, crate::inapp::METRICS_PATH),
            body.to_string(),
        ),
        None => {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", settings.site_id, settings.api_key));
            authorization = format!("Basic {credentials}");
            headers.push(("authorization", &authorization));
            (
                format!("{}/api/v2/batch", settings.base_url),
                batch_body(ops),
            )
        }
    };
    let answer = http::post(http::Post {
        url: &url,
        headers: &headers,
        body: &body,
        manual_redirect: true,
        deadline: POST_TIMEOUT,
    })
    .await;
    match answer {
        // A redirect's answer is where it points.
        Ok(answer) => {
            let text = answer.location.as_deref().unwrap_or(&answer.text);
            classify(
                answer.status,
                answer.retry_after.as_deref(),
                text,
                ops.len(),
            )
        }
        Err(http::Failure::BadRequest(e)) => retry(format!("bad request to {url}: {e}")),
        Err(http::Failure::Unreachable(e)) => retry(format!("unreachable: {e}")),
        Err(http::Failure::TimedOut) => retry(format!(
            "no complete answer within {} s",
            POST_TIMEOUT.as_secs()
        )),
    }
}

/// The dead-letter queue: messages the runtime gave up on (the consumer
/// failed on them `max_retries` times). An object's message is not a dead
/// letter: its rows are still in its outbox, which sends them again when
/// no answer came; a replay's operations are recorded again.
async fn record_dead(env: &Env, envelopes: Vec<Envelope>) -> worker::Result<()> {
    let now = now_secs();
    let letters: Vec<DeadLetter> = envelopes
        .into_iter()
        .filter(|e| e.source.is_none())
        .flat_map(|e| e.ops)
        .map(|op| {
            crate::core::json::from_str::<DeadLetter>(&op.to_string()).unwrap_or(DeadLetter {
                op,
                reason: "the queue consumer failed on it max_retries times".into(),
                at: now,
            })
        })
        .collect();
    let replays = letters.len() as u64;
    store_dead(env, letters, replays).await
}

/// `/_cio/admin/forwarding[/replay]`, already authorised.
pub async fn admin(req: &Request, edge: &Edge, rest: &[&str]) -> Result<Response, EdgeError> {
    let on = edge.config.forwarding.as_ref();
    match (req.method(), rest) {
        (Method::Get, []) => {
            let mut status = match on {
                Some(_) => record(&edge.env, &StatsCall::Status(100)).await?,
                None => json!({}),
            };
            status["on"] = json!(on.is_some());
            status["region"] = json!(on.map(|s| s.region.as_str()));
            status["track_url"] = json!(on.map(|s| s.base_url.as_str()));
            status["queue"] = json!(OUTBOX_QUEUE);
            status["dead_letter_queue"] = json!(DEADLETTER_QUEUE);
            // What the workspace must allow for the edge's writes to apply
            // there (docs/FORWARDING.md, set-up).
            status["workspace_settings"] = json!(on.map(|_| REQUIRED_WORKSPACE_SETTINGS));
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
