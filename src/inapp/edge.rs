//! In-app messages, the worker's side (a module of `crate::edge`): the SDK
//! bundle, the session endpoint and the metrics endpoint. Decisions are in
//! `crate::inapp`; the bundle's bytes stay in JS (`edge::texts`), out of the
//! wasm.

use worker::Response;

use super::browser::{etag_matches, read_body, record_event};
use super::error::{json_response, EdgeError};
use super::request::Request;
use super::texts::{self, Text};
use super::visit::{self, now_secs};
use super::{limits, Edge};
use crate::core::body::parse_object;
use crate::inapp::{
    parse_metric, session_body, token, token_of, InAppRoute, Sdk, Token, GIST_CDN_URL, GIST_VERSION,
};

/// Every in-app route answers 404 unless `IN_APP=true`.
pub async fn serve(route: InAppRoute, req: Request, edge: &Edge) -> Result<Response, EdgeError> {
    if !edge.config.in_app.on {
        return Err(EdgeError::NoRoute);
    }
    match route {
        InAppRoute::Bundle => bundle(&req, edge).await,
        InAppRoute::Session => session(&req, edge).await,
        InAppRoute::Metric => metric(req, edge).await,
    }
}

/// `GET /_cio/gist.js`: the pinned bundle, cacheable for an hour and
/// revalidated by ETag (the version); `IN_APP_SDK=cdn`: Customer.io's copy.
async fn bundle(req: &Request, edge: &Edge) -> Result<Response, EdgeError> {
    let headers = worker::Headers::new();
    let _ = headers.set("cache-control", "public, max-age=3600");
    if edge.config.in_app.sdk == Sdk::Cdn {
        let _ = headers.set("location", GIST_CDN_URL);
        return Ok(Response::builder()
            .with_status(302)
            .with_headers(headers)
            .empty());
    }
    let etag = format!("\"gist-{GIST_VERSION}\"");
    let _ = headers.set("etag", &etag);
    let _ = headers.set("content-type", "application/javascript; charset=utf-8");
    let status = if etag_matches(req, &etag) { 304 } else { 200 };
    texts::respond(Text::Gist, status, headers).await
}

/// `GET /_cio/in-app/session`: this browser's token (the identifier its
/// vouched `_cioid` names; a `cio_…` cookie's person's id or email) and the
/// public site id. The one browser endpoint that answers profile data: the
/// identity this browser already holds, never cached.
async fn session(req: &Request, edge: &Edge) -> Result<Response, EdgeError> {
    let url = req.url()?;
    let visit = visit::read(req, &url, &edge.config.trust);
    let token = match token(visit.cookies.identifier.as_ref()) {
        Token::None => None,
        Token::Is(token) => Some(token),
        // A lookup costs a Durable Object call for a made-up `cio_…` too:
        // limited per client address like a link (section 8).
        Token::Lookup(cio_id) if limits::link_lookup(edge, req).await => edge
            .store()
            .link(&cio_id)
            .await?
            .and_then(|p| token_of(p.id.as_deref(), p.email.as_deref())),
        Token::Lookup(_) => return Err(EdgeError::RateLimited),
    };
    let mut response = json_response(&session_body(token.as_deref(), &edge.config.in_app), 200);
    let _ = response.headers_mut().set("vary", "Cookie");
    Ok(response)
}

/// `POST /_cio/in-app/metric`: an opened or clicked message, recorded on the
/// person (or the anonymous visitor) like a browser `track`; with forwarding
/// on, sent to Customer.io's metrics endpoint through the outbox.
async fn metric(mut req: Request, edge: &Edge) -> Result<Response, EdgeError> {
    let url = req.url()?;
    let visit = visit::read(&req, &url, &edge.config.trust);
    limits::browser_write(
        edge,
        &req,
        visit.cookies.anon_id.as_deref(),
        visit.cookies.identifier.as_ref(),
    )
    .await?;
    let body = read_body(&mut req).await?;
    let event = parse_metric(&parse_object(&body, false)?)?.event(now_secs());
    let cookies = record_event(edge, &visit, event).await?;
    let mut response = json_response(&serde_json::json!({ "ok": true }), 200);
    for cookie in cookies {
        let _ = response.headers_mut().append("set-cookie", &cookie);
    }
    Ok(response)
}
