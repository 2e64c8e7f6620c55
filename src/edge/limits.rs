//! Abuse limits with Cloudflare's rate limiting bindings (docs/API.md
//! section 8): browser writes per visitor and per client address, tracked
//! link lookups per client address. A limiter that is not bound, or fails,
//! lets the request through: limits protect storage, they never break a page.

use worker::Request;

use super::error::EdgeError;
use super::Edge;

/// Browser writes (identify, track, page) per anonymous visitor.
pub const VISITOR_LIMITER: &str = crate::bindings::VISITOR_RATE_LIMIT;
/// Browser writes and `_cio_id` lookups per client address.
pub const CLIENT_LIMITER: &str = crate::bindings::CLIENT_RATE_LIMIT;

/// The client's address as Cloudflare reports it.
pub fn client_address(req: &Request) -> String {
    req.headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn allowed(edge: &Edge, binding: &str, key: String) -> bool {
    let Ok(limiter) = edge.env.rate_limiter(binding) else {
        return true;
    };
    match limiter.limit(key).await {
        Ok(outcome) => outcome.success,
        Err(e) => {
            worker::console_warn!("rate limiter {binding} failed, allowing: {e}");
            true
        }
    }
}

/// A browser write: limited per visitor (its cookie's id, else its address)
/// and per address.
pub async fn browser_write(
    edge: &Edge,
    req: &Request,
    anon: Option<&str>,
) -> Result<(), EdgeError> {
    let address = client_address(req);
    let visitor = anon.map_or_else(|| format!("addr:{address}"), str::to_owned);
    if !allowed(edge, VISITOR_LIMITER, visitor).await
        || !allowed(edge, CLIENT_LIMITER, address).await
    {
        return Err(EdgeError::RateLimited);
    }
    Ok(())
}

/// A `_cio_id` lookup: limited per address (a page is served either way).
pub async fn link_lookup(edge: &Edge, req: &Request) -> bool {
    allowed(edge, CLIENT_LIMITER, client_address(req)).await
}
