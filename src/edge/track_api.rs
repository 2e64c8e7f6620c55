//! Customer.io Track API (v1 and v2 person operations) under `/_cio/api/`, and
//! at `/api/` on `TRACK_API_HOST`, so an official client pointed here by its
//! base-URL setting works unchanged. HTTP Basic `SITE_ID:API_KEY`.

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use worker::{Method, Request, Response};

use super::browser::read_body;
use super::error::{json_response, EdgeError};
use super::visit::now_secs;
use super::Edge;
use crate::core::auth::basic_matches;
use crate::core::body::{parse_object, Object};
use crate::core::event::{parse_event, EventContext, EventType};
use crate::core::identifier::Identifier;
use crate::core::track_api::{
    parse_anonymous_id, parse_merge, parse_v1_identify, parse_v2_op, PersonOp,
};
use crate::core::Error as ClientError;
use crate::store::identity::{self, IdentifyOptions};

#[derive(Clone, Copy, PartialEq)]
enum Version {
    V1,
    V2,
}

/// `route` is the path after the API root, e.g. `v1/customers/42`.
pub async fn handle(req: Request, edge: &Edge, route: &str) -> Response {
    let version = if route.starts_with("v2/") {
        Version::V2
    } else {
        Version::V1
    };
    match serve(req, edge, route).await {
        Ok(response) => response,
        Err(e) => error_response(&e, version),
    }
}

async fn serve(mut req: Request, edge: &Edge, route: &str) -> Result<Response, EdgeError> {
    // Without credentials configured the API does not exist, never open.
    let (Some(site_id), Some(api_key)) = (&edge.config.site_id, &edge.config.api_key) else {
        return Err(EdgeError::NoRoute);
    };
    let auth = req.headers().get("authorization").ok().flatten();
    if !basic_matches(auth.as_deref(), site_id, api_key) {
        return Err(EdgeError::Unauthorized);
    }
    let segments: Vec<String> = route
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method();
    let use_arrays = edge.config.use_array_params;

    match (method, segments.as_slice()) {
        (Method::Put, ["v1", "customers", identifier]) => {
            let body = parse_object(&read_body(&mut req).await?, true)?;
            run(
                edge,
                parse_v1_identify(Identifier::parse(identifier)?, &body, use_arrays)?,
            )
            .await?;
            Ok(ok_v1())
        }
        (Method::Delete, ["v1", "customers", identifier]) => {
            run(
                edge,
                PersonOp::Delete {
                    identifier: Identifier::parse(identifier)?,
                },
            )
            .await?;
            Ok(ok_v1())
        }
        (Method::Post, ["v1", "customers", identifier, "events"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            run(
                edge,
                PersonOp::Event {
                    identifier: Identifier::parse(identifier)?,
                    body,
                },
            )
            .await?;
            Ok(ok_v1())
        }
        (Method::Post, ["v1", "events"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let anonymous_id = parse_anonymous_id(body.get("anonymous_id"), "anonymous_id")?
                .ok_or_else(|| ClientError::invalid("anonymous_id", "is required"))?;
            let event = event_from(edge, &body)?;
            identity::record(&edge.env, edge.cache(), None, &anonymous_id, event).await?;
            Ok(ok_v1())
        }
        (Method::Post, ["v1", "merge_customers"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            run(edge, parse_merge(&body)?).await?;
            Ok(ok_v1())
        }
        (Method::Post, ["v2", "entity"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            run(edge, parse_v2_op(&Value::Object(body), use_arrays)?).await?;
            Ok(ok_v1())
        }
        (Method::Post, ["v2", "batch"]) => {
            let body = parse_object(&read_body(&mut req).await?, false)?;
            let ops = body
                .get("batch")
                .and_then(Value::as_array)
                .ok_or_else(|| ClientError::invalid("batch", "must be an array of operations"))?;
            batch(edge, ops).await
        }
        (
            _,
            ["v1", "customers", _]
            | ["v1", "customers", _, "events"]
            | ["v1", "events" | "merge_customers"],
        )
        | (_, ["v2", "entity" | "batch"]) => Err(EdgeError::MethodNotAllowed),
        _ => Err(EdgeError::NoRoute),
    }
}

/// Runs each operation of a v2 batch in order; 200 when all succeed, else 207
/// with one error per failed operation (the others are applied).
async fn batch(edge: &Edge, ops: &[Value]) -> Result<Response, EdgeError> {
    let mut errors = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let result = match parse_v2_op(op, edge.config.use_array_params) {
            Ok(op) => run(edge, op).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => {}
            // Storage failing is not the operation's fault: fail the batch.
            Err(e @ EdgeError::Storage(_)) => return Err(e),
            Err(e) => errors.push(v2_error(&e, Some(index))),
        }
    }
    if errors.is_empty() {
        Ok(ok_v1())
    } else {
        Ok(json_response(&json!({ "errors": errors }), 207))
    }
}

fn event_from(edge: &Edge, body: &Object) -> Result<crate::core::event::Event, ClientError> {
    let ctx = EventContext {
        kind: EventType::Event,
        type_in_body: true,
        default_name: None,
        now: now_secs(),
        use_array_params: edge.config.use_array_params,
        from_browser: false,
    };
    parse_event(body, &ctx, || uuid::Uuid::new_v4().to_string())
}

async fn run(edge: &Edge, op: PersonOp) -> Result<(), EdgeError> {
    let (env, cache, now) = (&edge.env, edge.cache(), now_secs());
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
            let done = identity::identify(env, cache, &identify, options).await?;
            cache
                .remember_person(&done.person, done.identifiers_changed)
                .await;
        }
        PersonOp::Delete { identifier } => {
            identity::delete(env, cache, &identifier).await?;
        }
        PersonOp::Event { identifier, body } => {
            let event = event_from(edge, &body)?;
            identity::track_person(env, cache, &identifier, &event, now).await?;
        }
        PersonOp::Merge { primary, secondary } => {
            identity::merge(env, cache, &primary, &secondary, now).await?
        }
    }
    Ok(())
}

fn ok_v1() -> Response {
    json_response(&json!({}), 200)
}

fn v2_error(e: &EdgeError, batch_index: Option<usize>) -> Value {
    let mut error = json!({ "reason": e.reason(), "message": e.to_string() });
    if let EdgeError::Client(c) = e {
        if let Some(field) = c.field() {
            error["field"] = json!(field);
        }
    }
    if let Some(index) = batch_index {
        error["batch_index"] = json!(index);
    }
    error
}

/// v1: `{"meta":{"errors":[...]}}`; v2: `{"errors":[{reason, field, message}]}`.
fn error_response(e: &EdgeError, version: Version) -> Response {
    if let EdgeError::Storage(detail) = e {
        worker::console_error!("storage failed: {detail}");
    }
    let body = match version {
        Version::V1 => json!({ "meta": { "errors": [e.to_string()] } }),
        Version::V2 => json!({ "errors": [v2_error(e, None)] }),
    };
    let mut response = json_response(&body, e.status_code());
    if matches!(e, EdgeError::Unauthorized) {
        let _ = response
            .headers_mut()
            .set("www-authenticate", "Basic realm=\"track\"");
    }
    response
}
