//! Admin read API (`/_cio/admin/...`, `Authorization: Bearer <ADMIN_TOKEN>`):
//! people and activity read back from the Durable Objects, the truth
//! (docs/API.md section 5).

use serde_json::{json, Value};
use url::Url;
use worker::{Method, Response};

use super::error::{json_response, EdgeError};
use super::request::Request;
use super::visit::{authorize, invalid};
use super::Edge;
use crate::core::auth::bearer_matches;
use crate::core::cursor;
use crate::core::event::Event;
use crate::core::identifier::Identifier;
use crate::core::track_api::parse_anonymous_id;
use crate::identity::wire::Position;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

pub async fn serve(
    req: Request,
    edge: &Edge,
    url: &Url,
    segments: &[String],
) -> Result<Response, EdgeError> {
    let token = edge.config.admin_token.as_deref();
    authorize(&req, token.is_some(), |auth| {
        bearer_matches(auth, token.unwrap_or_default())
    })?;
    if let Some(rest) = segments.strip_prefix(&["forwarding".to_owned()]) {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        return super::cio::admin(&req, edge, &rest).await;
    }
    if req.method() != Method::Get {
        return Err(EdgeError::MethodNotAllowed);
    }
    let store = edge.store();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let value = match segments.as_slice() {
        ["people", identifier] => {
            serde_json::to_value(store.profile(&Identifier::parse(identifier)?).await?)
        }
        ["people", identifier, "activity"] => {
            let identifier = Identifier::parse(identifier)?;
            let page = store
                .activity(&identifier, limit(url)?, before(url)?)
                .await?;
            Ok(activity_json(None, page.events, page.next))
        }
        ["people"] => {
            // Only a cursor this edge handed out; garbage is 400, not an empty page.
            let cursor = cursor::decode(query(url, "cursor").as_deref())?;
            let (people, next) = store.list_people(limit(url)?, cursor).await?;
            let next = next.as_deref().map(cursor::encode);
            Ok(json!({ "people": people, "cursor": next }))
        }
        ["export"] => return export(edge),
        ["visitors", anon_id, "activity"] => {
            let anon_id = parse_anonymous_id(
                Some(&serde_json::Value::String((*anon_id).to_owned())),
                "anonymous_id",
            )?
            .unwrap_or_default();
            let page = store
                .visitor_activity(&anon_id, limit(url)?, before(url)?)
                .await?;
            Ok(activity_json(page.merged_into, page.events, page.next))
        }
        _ => return Err(EdgeError::NoRoute),
    };
    Ok(json_response(&value.unwrap_or_default(), 200))
}

/// `GET /_cio/admin/export`: every person as NDJSON, streamed page by page,
/// each read from its Durable Object (the listing comes from KV).
fn export(edge: &Edge) -> Result<Response, EdgeError> {
    use futures_util::stream;
    let env = edge.env.clone();
    let pages = stream::unfold(Some(None::<String>), move |state| {
        let env = env.clone();
        async move {
            let cursor = state?;
            let store = crate::cloudflare::detached_store(&env);
            let (people, next) = store.list_people(100, cursor).await.unwrap_or_default();
            crate::cloudflare::finish(store).await;
            let mut chunk = Vec::new();
            for person in people {
                if let Ok(line) = serde_json::to_vec(&person) {
                    chunk.extend_from_slice(&line);
                    chunk.push(b'\n');
                }
            }
            Some((Ok::<Vec<u8>, worker::Error>(chunk), next.map(Some)))
        }
    });
    let mut response = Response::from_stream(pages)?;
    let _ = response
        .headers_mut()
        .set("content-type", "application/x-ndjson");
    Ok(response)
}

/// `{"merged_into"?, "events", "cursor"?}`: a cursor only when more follow.
fn activity_json(merged_into: Option<String>, events: Vec<Event>, next: Option<Position>) -> Value {
    let mut body = json!({ "events": events });
    if let Some(cio_id) = merged_into {
        body["merged_into"] = json!(cio_id);
    }
    if let Some(next) = next {
        body["cursor"] = json!(next.to_cursor());
    }
    body
}

/// `?cursor=` of an activity page: where it starts.
fn before(url: &Url) -> Result<Option<Position>, EdgeError> {
    match query(url, "cursor") {
        None => Ok(None),
        Some(c) => Ok(Some(Position::from_cursor(&c)?)),
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn limit(url: &Url) -> Result<u32, EdgeError> {
    match query(url, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be 1 to {MAX_LIMIT}"))),
    }
}
