//! Browser endpoints (`/_cio/identify`, `track`, `page`, `reset`): identity
//! from the cookies, no key, and never any profile data in the answer.

use futures_util::StreamExt;
use serde_json::json;
use worker::{Request, Response};

use super::error::{json_response, EdgeError};
use super::visit::{new_anon_id, new_event_id, now_secs, Visit};
use super::Edge;
use crate::core::body::{parse_object, MAX_BODY_BYTES};
use crate::core::event::{parse_event, EventContext, EventType};
use crate::core::identifier::Identifier;
use crate::core::profile::parse_identify;
use crate::core::secure::user_hash_message;
use crate::core::Error as ClientError;
use crate::identity::IdentifyOptions;

/// Oversized bodies up to this size are read and discarded before the 413.
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Reads a request body, refusing one over the limit (413) before reading it
/// when its length is declared.
pub async fn read_body(req: &mut Request) -> Result<Vec<u8>, EdgeError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || ClientError::TooLarge {
        message: format!("request body is over {MAX_BODY_BYTES} bytes"),
    };
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        // Read the body away (within reason) so the client, still sending,
        // gets the 413 rather than a reset connection.
        if declared.is_some_and(|len| len <= DRAIN_LIMIT_BYTES) {
            if let Ok(mut stream) = req.stream() {
                while let Some(Ok(_)) = stream.next().await {}
            }
        }
        return Err(too_large().into());
    }
    req.bytes()
        .await
        .map_err(|_| ClientError::bad_body("could not read the request body").into())
}

/// `{"ok":true}` with the cookies to set, each its own header.
fn ok_with_cookies(cookies: &[String]) -> Response {
    let mut response = json_response(&json!({ "ok": true }), 200);
    for cookie in cookies {
        let _ = response.headers_mut().append("set-cookie", cookie);
    }
    response
}

pub async fn identify(mut req: Request, edge: &Edge, visit: Visit) -> Result<Response, EdgeError> {
    let body = read_body(&mut req).await?;
    let cookies = identify_body(edge, &visit, &body, false).await?;
    Ok(ok_with_cookies(&cookies))
}

/// An identify body (a browser call, or the origin's `X-Cio-Identify` when
/// `from_origin`, which needs no `user_hash`) applied: the cookies to set.
pub async fn identify_body(
    edge: &Edge,
    visit: &Visit,
    body: &[u8],
    from_origin: bool,
) -> Result<Vec<String>, EdgeError> {
    let mut body = parse_object(body, false)?;
    // `user_hash` vouches for the call (secure mode); it is never an attribute.
    let user_hash = body.remove("user_hash");
    if let (Some(secret), false) = (&edge.config.trust.secret, from_origin) {
        let verified = match (user_hash_message(&body), user_hash) {
            (Some(message), Some(serde_json::Value::String(hash))) => {
                secret.verify_user_hash(&message, &hash)
            }
            _ => false,
        };
        if !verified {
            return Err(EdgeError::Unauthorized);
        }
    }
    let identify = parse_identify(&body, edge.config.use_array_params)?;
    apply_identify(edge, &visit.cookies, visit.https, &identify).await
}

/// Identifies the visitor as `identify` says (a browser call or the origin's
/// `X-Cio-Identify`) and answers the cookies to set.
pub async fn apply_identify(
    edge: &Edge,
    incoming: &crate::core::cookies::IncomingCookies,
    https: bool,
    identify: &crate::core::profile::Identify,
) -> Result<Vec<String>, EdgeError> {
    let policy = &edge.config.cookies;
    let mut cookies = Vec::new();
    let anon = match &incoming.anon_id {
        Some(anon) => anon.clone(),
        None => {
            let anon = new_anon_id();
            cookies.push(policy.anon_cookie(https, &anon));
            anon
        }
    };
    let options = IdentifyOptions {
        create: true,
        anonymous_id: Some(&anon),
        now: now_secs(),
    };
    // A browser a Customer.io link identified (forwarding on) may give that
    // person its identifier (`Store::identify_linked`).
    let done = match (&edge.config.forwarding, &incoming.identifier) {
        (Some(_), Some(Identifier::CioId(cio_id))) => {
            edge.store()
                .identify_linked(cio_id, identify, options)
                .await?
        }
        _ => edge.store().identify(identify, options).await?,
    };
    let trust = &edge.config.trust;
    let written = trust.cookie_identifier(&identify.identifier, &done.person.cio_id);
    cookies.extend(trust.id_cookies(policy, https, &written));
    if done.rotate_anon {
        // Already merged into someone else: this browser starts a new visitor.
        cookies.retain(|c| !c.starts_with("_cioanonid="));
        cookies.push(policy.anon_cookie(https, &new_anon_id()));
    }
    Ok(cookies)
}

pub async fn track(
    mut req: Request,
    edge: &Edge,
    visit: Visit,
    kind: EventType,
) -> Result<Response, EdgeError> {
    let body = read_body(&mut req).await?;
    let referer = req.headers().get("referer").ok().flatten();
    let ctx = EventContext {
        kind,
        type_in_body: false,
        default_name: referer.as_deref().filter(|_| kind == EventType::Page),
        now: now_secs(),
        use_array_params: edge.config.use_array_params,
        from_browser: true,
    };
    let event = parse_event(&parse_object(&body, false)?, &ctx, new_event_id)?;
    Ok(ok_with_cookies(&record_event(edge, &visit, event).await?))
}

/// Records an event from this browser on its person, else its anonymous
/// visitor: the cookies to set (a new `_cioanonid` when it had none).
pub async fn record_event(
    edge: &Edge,
    visit: &Visit,
    event: crate::core::event::Event,
) -> Result<Vec<String>, EdgeError> {
    let mut cookies = Vec::new();
    let anon = visit.anon_id(&edge.config.cookies, &mut cookies);
    match (&edge.config.forwarding, &visit.cookies.identifier) {
        (Some(_), Some(Identifier::CioId(cio_id))) => {
            edge.store()
                .record_linked(cio_id, &anon, event, now_secs())
                .await?
        }
        _ => {
            edge.store()
                .record(visit.cookies.identifier.as_ref(), &anon, event)
                .await?
        }
    }
    Ok(cookies)
}

/// The browser SDK, with a strong ETag (a hash of its bytes, fixed at build).
const SDK: &str = include_str!("../../assets/track.js");
const SDK_HASH: u64 = fnv1a(SDK.as_bytes());

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `GET /_cio/track.js`: cacheable for an hour, revalidated by ETag.
pub fn sdk(req: &Request) -> Response {
    let etag = format!("\"{SDK_HASH:016x}\"");
    let headers = worker::Headers::new();
    let _ = headers.set("etag", &etag);
    let _ = headers.set("cache-control", "public, max-age=3600");
    let _ = headers.set("content-type", "application/javascript; charset=utf-8");
    let unchanged = req
        .headers()
        .get("if-none-match")
        .ok()
        .flatten()
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Response::builder()
            .with_status(304)
            .with_headers(headers)
            .empty();
    }
    Response::builder()
        .with_status(200)
        .with_headers(headers)
        .fixed(SDK.as_bytes().to_vec())
}

pub fn reset(edge: &Edge, visit: &Visit) -> Response {
    ok_with_cookies(&reset_cookies(edge, visit.https))
}

/// Forget the identity, start a new visitor.
pub fn reset_cookies(edge: &Edge, https: bool) -> Vec<String> {
    let policy = &edge.config.cookies;
    let mut cookies = edge.config.trust.clear_id_cookies(policy, https);
    cookies.push(policy.anon_cookie(https, &new_anon_id()));
    cookies
}
