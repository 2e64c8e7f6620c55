//! Browser endpoints (`/_cio/identify`, `track`, `page`, `reset`): identity
//! from the cookies, no key, and never any profile data in the answer.

use futures_util::StreamExt;
use serde_json::json;
use worker::Response;

use super::error::{json_response, EdgeError};
use super::request::Request;
use super::texts::{self, Text};
use super::visit::{new_anon_id, new_event_id, now_secs};
use super::Edge;
use crate::core::body::{parse_object, LimitedBody, MAX_BODY_BYTES};
use crate::core::cross_site::{self, WriteHeaders};
use crate::core::event::{parse_event, EventContext, EventType};
use crate::core::identifier::Identifier;
use crate::core::profile::parse_identify;
use crate::core::secure::{verify_identify, EMAIL_HASH, USER_HASH};
use crate::core::Error as ClientError;
use crate::identity::IdentifyOptions;
use crate::page::visit::Visit;

/// Oversized bodies up to this size are read and discarded before the 413.
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// How long an oversized chunked body is read away before the 413.
const DRAIN_MILLIS: u64 = 2000;

/// Reads a request body, refusing one over the limit (413): before reading
/// it when its length is declared, else as soon as what arrived passes the
/// limit (a chunked body is never held whole first).
pub async fn read_body(req: &mut Request) -> Result<Vec<u8>, EdgeError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok());
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
    let unreadable = || ClientError::bad_body("could not read the request body");
    if declared.is_some() {
        // The runtime holds a body to its declared length: read it in one
        // call, without a stream reader's per-chunk round trips.
        let bytes = req.bytes().await.map_err(|_| unreadable())?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(too_large().into());
        }
        return Ok(bytes);
    }
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(Vec::new());
    };
    let mut body = LimitedBody::default();
    while let Some(chunk) = stream.next().await {
        if let Err(e) = body.push(&chunk.map_err(|_| unreadable())?) {
            // Nothing more is kept; what still comes is read away, briefly.
            drop(body);
            drain_briefly(&mut stream).await;
            return Err(e.into());
        }
    }
    Ok(body.into_bytes())
}

/// After a chunked body passed the limit: read the rest away (held nowhere)
/// so a client still sending gets the 413 rather than a reset, but for at
/// most `DRAIN_LIMIT_BYTES` and `DRAIN_MILLIS`: a body that never ends, or
/// trickles, is answered anyway.
async fn drain_briefly(stream: &mut super::request::ByteStream) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > DRAIN_LIMIT_BYTES {
                break;
            }
        }
    };
    let deadline = worker::Delay::from(std::time::Duration::from_millis(DRAIN_MILLIS));
    futures_util::future::select(Box::pin(drain), Box::pin(deadline)).await;
}

fn too_large() -> ClientError {
    ClientError::TooLarge {
        message: format!("request body is over {MAX_BODY_BYTES} bytes"),
    }
}

/// Refuses a browser write another site's page made (`core::cross_site`).
pub fn same_site_only(req: &Request, url: &url::Url) -> Result<(), EdgeError> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (site, origin, content_type) = (
        header("sec-fetch-site"),
        header("origin"),
        header("content-type"),
    );
    let own_origin = url.origin().ascii_serialization();
    cross_site::check(&WriteHeaders {
        own_origin: &own_origin,
        sec_fetch_site: site.as_deref(),
        origin: origin.as_deref(),
        content_type: content_type.as_deref(),
    })
    .map_err(EdgeError::from)
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
    // The hashes vouch for the call (secure mode); they are never attributes.
    let user_hash = body.remove(USER_HASH);
    let email_hash = body.remove(EMAIL_HASH);
    let identify = parse_identify(&body, edge.config.use_array_params)?;
    if let (Some(secret), false) = (&edge.config.trust.secret, from_origin) {
        verify_identify(secret, &identify, user_hash.as_ref(), email_hash.as_ref())?;
    }
    apply_identify(edge, visit, &identify).await
}

/// Identifies the visitor as `identify` says (a browser call or the origin's
/// `X-Cio-Identify`) and answers the cookies to set.
pub async fn apply_identify(
    edge: &Edge,
    visit: &Visit,
    identify: &crate::core::profile::Identify,
) -> Result<Vec<String>, EdgeError> {
    let (policy, https) = (&edge.config.cookies, visit.https);
    let mut cookies = Vec::new();
    let anon = visit.anon_id(policy, &mut cookies, new_anon_id);
    let options = IdentifyOptions {
        create: true,
        anonymous_id: Some(&anon),
        now: now_secs(),
    };
    // A browser a Customer.io link identified is, once it names itself,
    // that person: a link never gives the linked person another identifier.
    let done = edge.store().identify(identify, options).await?;
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
    let anon = visit.anon_id(&edge.config.cookies, &mut cookies, new_anon_id);
    match (&edge.config.forwarding, &visit.cookies.identifier) {
        (Some(_), Some(Identifier::CioId(cio_id))) => {
            edge.store()
                .record_linked(
                    cio_id,
                    &anon,
                    event,
                    now_secs(),
                    edge.config.link_merges_history,
                )
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

/// The browser SDK's strong ETag: a hash of its bytes, fixed at build. The
/// bytes are read here only to hash them; they are served from JS
/// (`edge::texts`), so the wasm does not carry them.
const SDK_HASH: u64 = fnv1a(include_str!("../../assets/track.js").as_bytes());

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
pub fn etag_matches(req: &Request, etag: &str) -> bool {
    req.headers()
        .get("if-none-match")
        .ok()
        .flatten()
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `GET /_cio/track.js`: cacheable for an hour, revalidated by ETag.
pub async fn sdk(req: &Request) -> Result<Response, EdgeError> {
    let etag = format!("\"{SDK_HASH:016x}\"");
    let headers = worker::Headers::new();
    let _ = headers.set("etag", &etag);
    let _ = headers.set("cache-control", "public, max-age=3600");
    let _ = headers.set("content-type", "application/javascript; charset=utf-8");
    let status = if etag_matches(req, &etag) { 304 } else { 200 };
    texts::respond(Text::Track, status, headers).await
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
