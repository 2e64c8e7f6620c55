//! Admin read API (`/_cio/admin/...`, `Authorization: Bearer <ADMIN_TOKEN>`):
//! read back people and activity from the Durable Objects, the truth.

use percent_encoding::percent_decode_str;
use serde_json::json;
use url::Url;
use worker::{Method, Request, Response};

use super::error::{json_response, EdgeError};
use super::Edge;
use crate::core::auth::bearer_matches;
use crate::core::cookies::is_anon_id;
use crate::core::identifier::Identifier;
use crate::core::Error as ClientError;
use crate::store::index::Index;
use crate::store::person::People;
use crate::store::visitor::VisitorStore;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

pub async fn handle(req: Request, edge: &Edge, url: &Url, route: &str) -> Result<Response, EdgeError> {
    // Without a token configured the admin API does not exist, never open.
    let Some(token) = &edge.config.admin_token else { return Err(EdgeError::NoRoute) };
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
    match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["people", identifier] => {
            let cio_id = person_cio_id(edge, identifier).await?;
            let person = People { env: &edge.env }.profile(&cio_id).await?;
            Ok(json_response(&serde_json::to_value(person).unwrap_or_default(), 200))
        }
        ["people", identifier, "activity"] => {
            let limit = limit(url)?;
            let cio_id = person_cio_id(edge, identifier).await?;
            let activity = People { env: &edge.env }.activity(&cio_id, limit).await?;
            Ok(json_response(&json!({ "events": activity.events }), 200))
        }
        ["visitors", anon_id, "activity"] => {
            if !is_anon_id(anon_id) {
                return Err(ClientError::invalid("anonymous_id", "is not an anonymous id").into());
            }
            let activity = VisitorStore { env: &edge.env }.activity(anon_id, limit(url)?).await?;
            Ok(json_response(&serde_json::to_value(activity).unwrap_or_default(), 200))
        }
        _ => Err(EdgeError::NoRoute),
    }
}

/// The person an identifier names, from the index (never the cache).
async fn person_cio_id(edge: &Edge, raw: &str) -> Result<String, EdgeError> {
    let identifier = Identifier::parse(raw)?;
    let found = match (&identifier, identifier.index_key()) {
        (Identifier::CioId(cio), _) => Some(cio.clone()),
        (_, Some(key)) => Index { env: &edge.env }.owner(&key).await?,
        (_, None) => None,
    };
    found.ok_or_else(|| ClientError::not_found("no such person").into())
}

fn limit(url: &Url) -> Result<u32, EdgeError> {
    match url.query_pairs().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some((_, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ClientError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")).into()),
    }
}
