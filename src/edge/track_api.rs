//! Customer.io Track API (v1 and v2 person operations) under `/_cio/api/`, and
//! at `/api/` on `TRACK_API_HOST`, so an official client pointed here by its
//! base-URL setting works unchanged. HTTP Basic `SITE_ID:API_KEY`
//! (docs/API.md section 4).

use serde_json::{json, Value};
use worker::{Method, Response};

use super::browser::read_body;
use super::error::{json_response, EdgeError, ErrorShape};
use super::request::Request;
use super::visit::{authorize, invalid, new_event_id, now_secs};
use super::Edge;
use crate::cloudflare::side_by_side;
use crate::core::auth::basic_matches;
use crate::core::body::{parse_object, Object};
use crate::core::event::{parse_event, Event, EventContext, EventType};
use crate::core::identifier::Identifier;
use crate::core::track_api::{
    parse_anonymous_id, parse_device, parse_merge, parse_v1_identify, parse_v2_op, relay_op,
    PersonOp,
};
use crate::identity::{IdentifyOptions, Work};

/// v2 routes answer errors in v2's shape, everything else in v1's.
pub fn shape(segments: &[String]) -> ErrorShape {
    match segments.first().map(String::as_str) {
        Some("v2") => ErrorShape::TrackV2,
        _ => ErrorShape::TrackV1,
    }
}

/// `segments`: the path after the API root, e.g. `["v1", "customers", "42"]`.
pub async fn serve(
    mut req: Request,
    edge: &Edge,
    segments: &[String],
) -> Result<Response, EdgeError> {
    let config = &edge.config;
    authorize(
        &req,
        config.site_id.is_some() && config.api_key.is_some(),
        |auth| {
            basic_matches(
                auth,
                config.site_id.as_deref().unwrap_or_default(),
                config.api_key.as_deref().unwrap_or_default(),
            )
        },
    )?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let use_arrays = config.use_array_params;

    match (req.method(), segments.as_slice()) {
        (Method::Put, ["v1", "customers", identifier]) => {
            let body = parse_object(&read_body(&mut req).await?, true)?;
            let op = parse_v1_identify(Identifier::parse(identifier)?, &body, use_arrays)?;
            run(edge, op).await?;
            Ok(ok())
        }
        (Method::Delete, ["v1", "customers", identifier]) => {
            let identifier = Identifier::parse(identifier)?;
            run(edge, PersonOp::Delete { identifier }).await?;
            Ok(ok())
        }
        (Method::Post, ["v1", "customers", identifier, "events"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let identifier = Identifier::parse(identifier)?;
            run(edge, PersonOp::Event { identifier, body }).await?;
            Ok(ok())
        }
        (Method::Put, ["v1", "customers", identifier, "devices"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let device = parse_device(body.get("device"), true)?;
            let op = relay_op(Identifier::parse(identifier)?, "add_device", Some(device));
            run(edge, op).await?;
            Ok(ok())
        }
        (Method::Delete, ["v1", "customers", identifier, "devices", token]) => {
            let device = parse_device(Some(&json!({ "token": token })), false)?;
            let op = relay_op(
                Identifier::parse(identifier)?,
                "delete_device",
                Some(device),
            );
            run(edge, op).await?;
            Ok(ok())
        }
        (Method::Post, ["v1", "customers", identifier, action @ ("suppress" | "unsuppress")]) => {
            run(edge, relay_op(Identifier::parse(identifier)?, action, None)).await?;
            Ok(ok())
        }
        (Method::Post, ["v1", "events"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let anonymous_id = parse_anonymous_id(body.get("anonymous_id"), "anonymous_id")?
                .ok_or_else(|| invalid("anonymous_id", "is required"))?;
            let event = event_from(edge, &body)?;
            edge.store().record(None, &anonymous_id, event).await?;
            Ok(ok())
        }
        (Method::Post, ["v1", "merge_customers"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            run(edge, parse_merge(&body)?).await?;
            Ok(ok())
        }
        (Method::Post, ["v2", "entity"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            run(edge, parse_v2_op(&Value::Object(body), use_arrays)?).await?;
            Ok(ok())
        }
        (Method::Post, ["v2", "batch"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let ops = body
                .get("batch")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("batch", "must be an array of operations"))?;
            batch(edge, ops).await
        }
        (
            _,
            ["v1", "customers", _]
            | ["v1", "customers", _, "events" | "devices" | "suppress" | "unsuppress"]
            | ["v1", "customers", _, "devices", _]
            | ["v1", "events" | "merge_customers"],
        )
        | (_, ["v2", "entity" | "batch"]) => Err(EdgeError::MethodNotAllowed),
        _ => Err(EdgeError::NoRoute),
    }
}

/// The most operations one v2 batch may carry: what one invocation finishes
/// well inside a Worker's limits (each operation makes at most about four
/// storage calls). Over it: 400 naming `batch`.
pub const MAX_BATCH_OPS: usize = 100;
/// Operations of a batch that run at once (on different people).
const BATCH_CONCURRENCY: usize = 4;

/// A v2 batch: operations naming the same person run in order, others side
/// by side (a merge waits for everything before it); 200 when all succeed,
/// else 207 listing every failed operation by `batch_index`, storage failures
/// included; the others are applied.
async fn batch(edge: &Edge, ops: &[Value]) -> Result<Response, EdgeError> {
    if ops.len() > MAX_BATCH_OPS {
        return Err(invalid(
            "batch",
            format!("at most {MAX_BATCH_OPS} operations per request; send the rest in another"),
        ));
    }
    let mut failed: Vec<(usize, EdgeError)> = Vec::new();
    let mut pending: Vec<(usize, PersonOp)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        match parse_v2_op(op, edge.config.use_array_params) {
            Ok(merge @ PersonOp::Merge { .. }) => {
                failed.extend(run_side_by_side(edge, std::mem::take(&mut pending)).await);
                if let Err(e) = run(edge, merge).await {
                    failed.push((index, e));
                }
            }
            Ok(op) => pending.push((index, op)),
            Err(e) => failed.push((index, e.into())),
        }
    }
    failed.extend(run_side_by_side(edge, pending).await);
    if failed.is_empty() {
        return Ok(ok());
    }
    // In batch order: each error in its operation's slot (no slice sort,
    // whose instantiation is 3.5 KB of wasm).
    let mut slots: Vec<Option<EdgeError>> = ops.iter().map(|_| None).collect();
    for (index, e) in failed {
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(e);
        }
    }
    let errors: Vec<Value> = slots
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let e = e.as_ref()?;
            if let EdgeError::Storage(detail) = e {
                worker::console_error!("batch operation {index}: storage failed: {detail}");
            }
            Some(e.detail(Some(index)))
        })
        .collect();
    Ok(json_response(&json!({ "errors": errors }), 207))
}

/// Runs operations in lanes, one lane per person named, lanes in parallel.
async fn run_side_by_side(edge: &Edge, ops: Vec<(usize, PersonOp)>) -> Vec<(usize, EdgeError)> {
    let mut lanes: Vec<(String, Vec<(usize, PersonOp)>)> = Vec::new();
    for (index, op) in ops {
        let key = lane(&op);
        match lanes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, lane)) => lane.push((index, op)),
            None => lanes.push((key, vec![(index, op)])),
        }
    }
    let failed = std::cell::RefCell::new(Vec::new());
    let work: Vec<Work> = lanes
        .into_iter()
        .map(|(_, lane)| -> Work {
            let failed = &failed;
            Box::pin(async move {
                for (index, op) in lane {
                    if let Err(e) = run(edge, op).await {
                        failed.borrow_mut().push((index, e));
                    }
                }
            })
        })
        .collect();
    side_by_side(work, Some(BATCH_CONCURRENCY)).await;
    failed.into_inner()
}

/// The person an operation is about, as written.
fn lane(op: &PersonOp) -> String {
    match op {
        PersonOp::Identify { identify, .. } => identify.identifier.as_written(),
        PersonOp::Delete { identifier }
        | PersonOp::Event { identifier, .. }
        | PersonOp::Relay { identifier, .. } => identifier.as_written(),
        PersonOp::Merge { primary, .. } => primary.as_written(),
        PersonOp::AnonymousEvent { anonymous_id, .. } => format!("anonymous:{anonymous_id}"),
    }
}

fn event_from(edge: &Edge, body: &Object) -> Result<Event, EdgeError> {
    let ctx = EventContext {
        kind: EventType::Event,
        type_in_body: true,
        default_name: None,
        now: now_secs(),
        use_array_params: edge.config.use_array_params,
        from_browser: false,
    };
    Ok(parse_event(body, &ctx, new_event_id)?)
}

async fn run(edge: &Edge, op: PersonOp) -> Result<(), EdgeError> {
    let (store, now) = (edge.store(), now_secs());
    match op {
        PersonOp::Identify {
            identify,
            create,
            anonymous_id,
        } => {
            let options = IdentifyOptions {
                create,
                anonymous_id: anonymous_id.as_deref(),
                now,
            };
            store.identify(&identify, options).await?;
        }
        PersonOp::Delete { identifier } => {
            store.delete(&identifier).await?;
        }
        PersonOp::Event { identifier, body } => {
            let event = event_from(edge, &body)?;
            store.track_person(&identifier, &event, now).await?;
        }
        PersonOp::Merge { primary, secondary } => store.merge(&primary, &secondary, now).await?,
        PersonOp::AnonymousEvent { anonymous_id, body } => {
            let event = event_from(edge, &body)?;
            store.record(None, &anonymous_id, event).await?;
        }
        // Customer.io's alone: with forwarding off there is nothing to do.
        PersonOp::Relay { .. } if edge.config.forwarding.is_none() => {}
        PersonOp::Relay { identifier, op } => store.relay(&identifier, &op, now).await?,
    }
    Ok(())
}

fn ok() -> Response {
    json_response(&json!({}), 200)
}
