//! Admin read API (`/_cio/admin/...`, `Authorization: Bearer <ADMIN_TOKEN>`):
//! read back people and activity from the Durable Objects, the truth.

use percent_encoding::percent_decode_str;
use serde_json::json;
use url::Url;
use worker::{Method, Request, Response};

use super::error::{json_response, EdgeError};
use super::Edge;
use crate::core::auth::bearer_matches;
use crate::core::identifier::Identifier;
use crate::core::track_api::parse_anonymous_id;
use crate::core::Error as ClientError;
use crate::store::identity;
use crate::store::person::People;
use crate::store::visitor::VisitorStore;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

pub async fn handle(
    req: Request,
    edge: &Edge,
    url: &Url,
    route: &str,
) -> Result<Response, EdgeError> {
    // Without a token configured the admin API does not exist, never open.
    let Some(token) = &edge.config.admin_token else {
        return Err(EdgeError::NoRoute);
    };
    let auth = req.headers().get("authorization").ok().flatten();
    if !bearer_matches(auth.as_deref(), token) {
        return Err(EdgeError::Unauthorized);
    }
    if req.method() != Method::Get {
        return Err(EdgeError::MethodNotAllowed);
    }
    let segments: Vec<String> = route
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    match segments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["people", identifier] => {
            let cio_id = person_cio_id(edge, identifier).await?;
            let person = People { env: &edge.env }.profile(&cio_id).await?;
            Ok(json_response(
                &serde_json::to_value(person).unwrap_or_default(),
                200,
            ))
        }
        ["people", identifier, "activity"] => {
            let limit = limit(url)?;
            let cio_id = person_cio_id(edge, identifier).await?;
            let activity = People { env: &edge.env }.activity(&cio_id, limit).await?;
            Ok(json_response(&json!({ "events": activity.events }), 200))
        }
        ["people"] => list_people(edge, url).await,
        ["export"] => export(edge),
        ["visitors", anon_id, "activity"] => {
            let anon_id = parse_anonymous_id(
                Some(&serde_json::Value::String(anon_id.to_string())),
                "anonymous_id",
            )?
            .unwrap_or_default();
            let activity = VisitorStore { env: &edge.env }
                .activity(&anon_id, limit(url)?)
                .await?;
            Ok(json_response(
                &serde_json::to_value(activity).unwrap_or_default(),
                200,
            ))
        }
        _ => Err(EdgeError::NoRoute),
    }
}

/// `GET /_cio/admin/people?limit=&cursor=`: a page of people from the KV
/// cache (eventually consistent: a person appears once its first write has
/// propagated).
async fn list_people(edge: &Edge, url: &Url) -> Result<Response, EdgeError> {
    let cursor = url
        .query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned());
    let cursor = crate::core::cursor::decode(cursor.as_deref())?;
    let (ids, next) = edge
        .cache()
        .list_people(u64::from(limit(url)?), cursor)
        .await;
    let next = next.as_deref().map(crate::core::cursor::encode);
    let mut people = Vec::with_capacity(ids.len());
    for cio_id in ids {
        if let Some(person) = edge.cache().person(&cio_id).await {
            people.push(person);
        }
    }
    Ok(json_response(
        &json!({ "people": people, "cursor": next }),
        200,
    ))
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
            let cache = crate::store::cache::Cache::new(&env);
            let (ids, next) = cache.list_people(100, cursor).await;
            let mut chunk = Vec::new();
            for cio_id in ids {
                if let Ok(person) = (People { env: &env }).profile(&cio_id).await {
                    if let Ok(line) = serde_json::to_vec(&person) {
                        chunk.extend_from_slice(&line);
                        chunk.push(b'\n');
                    }
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

/// The person an identifier names, from the index (never the cache).
async fn person_cio_id(edge: &Edge, raw: &str) -> Result<String, EdgeError> {
    let identifier = Identifier::parse(raw)?;
    identity::find(&edge.env, &identifier)
        .await?
        .ok_or_else(|| ClientError::not_found("no such person").into())
}

fn limit(url: &Url) -> Result<u32, EdgeError> {
    match url.query_pairs().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some((_, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ClientError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")).into()
            }),
    }
}
