//! The Data Pipelines source at `/_cio/cdp/` (docs/API.md section 11): the
//! settings the browser SDK loads, its bundle (served by the JS side,
//! `js/cdp.mjs`, so the wasm stays small), and its calls, recorded through
//! the same identity `Store` as the classic ones. The decisions are
//! `crate::cdp`; this file only does I/O.

use serde_json::json;
use url::Url;
use wasm_bindgen::prelude::*;
use worker::Response;

use super::browser::read_body;
use super::error::{json_response, EdgeError};
use super::request::Request;
use super::visit::{self, consented, new_event_id, now_secs};
use super::{limits, Edge};
use crate::cdp::call::{parse_batch, parse_call, Call, Context, Kind};
use crate::cdp::source::{check_write_key, path, settings, write_key_of, Path};
use crate::core::body::parse_object;
use crate::core::cookies::is_anon_id;
use crate::core::identifier::Identifier;
use crate::identity::IdentifyOptions;
use crate::page::visit::Visit;

#[wasm_bindgen]
extern "C" {
    /// A promise of the pinned SDK's file `name` as a response (`key`: the
    /// write key to embed, for the bundle; `cdn`: this edge's `/_cio/cdp`
    /// URL), or of undefined for a file it does not have. `js/cdp.mjs`
    /// defines it (the build injects it into the bundle) and reads the files
    /// on first use; looked up when called, so the wasm loads without it
    /// (the wasm tests).
    #[wasm_bindgen(js_namespace = globalThis, js_name = cioCdpAsset)]
    fn cdp_asset(
        name: &str,
        key: Option<String>,
        cdn: &str,
        if_none_match: Option<String>,
    ) -> js_sys::Promise;
}

pub async fn serve(
    req: Request,
    edge: &Edge,
    url: &Url,
    segments: &[String],
) -> Result<Response, EdgeError> {
    // Unset, the source does not exist (as before it did).
    let Some(write_key) = edge.config.cdp_write_key.as_deref() else {
        return Err(EdgeError::NoRoute);
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let https = url.scheme() == "https";
    match path(req.method().as_ref(), &segments) {
        Path::Settings(key) => {
            check_write_key(Some(&key), write_key)?;
            let mut response = json_response(&settings(write_key, authority, https), 200);
            let _ = response
                .headers_mut()
                .set("cache-control", "public, max-age=300");
            Ok(response)
        }
        Path::Bundle(key) => {
            check_write_key(Some(&key), write_key)?;
            asset(&req, url, "standalone.js", Some(key)).await
        }
        Path::Chunk(name) => asset(&req, url, &name, None).await,
        Path::Call(kind) => calls(req, edge, url, Some(kind), write_key).await,
        Path::Batch => calls(req, edge, url, None, write_key).await,
        Path::WrongMethod => Err(EdgeError::MethodNotAllowed),
        Path::NotFound => Err(EdgeError::NoRoute),
    }
}

async fn asset(
    req: &Request,
    url: &Url,
    name: &str,
    key: Option<String>,
) -> Result<Response, EdgeError> {
    let cdn = format!("{}/_cio/cdp", url.origin().ascii_serialization());
    let tag = req.headers().get("if-none-match").ok().flatten();
    let answer = wasm_bindgen_futures::JsFuture::from(cdp_asset(name, key, &cdn, tag))
        .await
        .map_err(|e| {
            worker::console_error!("the Pipelines SDK: {}", worker::Error::from(e));
            EdgeError::Internal
        })?;
    answer
        .dyn_into::<web_sys::Response>()
        .map(Response::from)
        .map_err(|_| EdgeError::NoRoute)
}

/// One call or a batch: every call is validated before any is applied
/// (nothing of a refused request is stored); a retry after a storage failure
/// is safe, as events are deduplicated by `messageId`.
async fn calls(
    mut req: Request,
    edge: &Edge,
    url: &Url,
    kind: Option<Kind>,
    write_key: &str,
) -> Result<Response, EdgeError> {
    let body = parse_object(&read_body(&mut req).await?, false)?;
    let auth = req.headers().get("authorization").ok().flatten();
    check_write_key(write_key_of(&body, auth.as_deref()).as_deref(), write_key)?;
    if !consented(&req, &edge.config.consent) {
        return Ok(super::router::no_content());
    }
    let ctx = Context {
        now: now_secs(),
        use_array_params: edge.config.use_array_params,
    };
    let calls = match kind {
        Some(kind) => vec![parse_call(kind, &body, &ctx, &mut new_event_id)?],
        None => parse_batch(&body, &ctx, &mut new_event_id)?,
    };
    let visit = visit::read(&req, url, &edge.config.trust);
    let limited = visit.cookies.anon_id.clone().or_else(|| {
        calls.iter().find_map(|c| match c {
            Call::Event { anonymous_id, .. } | Call::Identify { anonymous_id, .. } => {
                anonymous_id.clone()
            }
            _ => None,
        })
    });
    limits::browser_write(
        edge,
        &req,
        limited.as_deref(),
        visit.cookies.identifier.as_ref(),
    )
    .await?;
    let mut cookies = Vec::new();
    let mut visit = visit;
    for call in calls {
        apply(edge, &mut visit, call, &mut cookies).await?;
    }
    // A cookie set twice in a batch: its last value.
    let name = |c: &String| c.split('=').next().unwrap_or_default().to_owned();
    let mut seen = Vec::new();
    cookies.reverse();
    cookies.retain(|c| {
        let n = name(c);
        let first = !seen.contains(&n);
        seen.push(n);
        first
    });
    cookies.reverse();
    let mut response = json_response(&json!({}), 200);
    for cookie in &cookies {
        let _ = response.headers_mut().append("set-cookie", cookie);
    }
    Ok(response)
}

/// Applies one call. The SDK's ids are the truth for its calls: `userId`
/// names the person, `anonymousId` the visitor; the edge's own cookies follow
/// them (`_cioanonid` becomes the SDK's anonymous id; an identify sets
/// `_cioid`; a call from a new anonymous id without a user is the SDK's
/// `reset()`, so `_cioid` is cleared). `visit` is updated as the cookies are,
/// so the calls of a batch see each other's effect.
async fn apply(
    edge: &Edge,
    visit: &mut Visit,
    call: Call,
    cookies: &mut Vec<String>,
) -> Result<(), EdgeError> {
    let (policy, trust, now) = (&edge.config.cookies, &edge.config.trust, now_secs());
    let store = edge.store();
    match call {
        Call::Nothing => {}
        Call::Identify {
            identify,
            anonymous_id,
            user_hash,
            email_hash,
            vouch,
        } => {
            // Secure mode: an identify is vouched for as `/_cio/identify` is
            // (`traits.user_hash` signs the identifier as kept, an email
            // beside it needs `traits.email_hash`); a group call only for
            // the identity the signed cookie holds.
            if let Some(secret) = &trust.secret {
                if vouch {
                    let as_value = |h: Option<String>| h.map(serde_json::Value::String);
                    crate::core::secure::verify_identify(
                        secret,
                        &identify,
                        as_value(user_hash).as_ref(),
                        as_value(email_hash).as_ref(),
                    )
                    .map_err(|e| match e {
                        crate::core::Error::Unverified { .. } => EdgeError::Unauthorized,
                        other => other.into(),
                    })?;
                } else if visit.cookies.identifier.as_ref() != Some(&identify.identifier) {
                    return Err(EdgeError::Unauthorized);
                }
            }
            let anon = anonymous_id.or_else(|| visit.cookies.anon_id.clone());
            let options = IdentifyOptions {
                create: true,
                anonymous_id: anon.as_deref(),
                now,
            };
            // As `/_cio/identify`: a browser a Customer.io link identified is,
            // once it names itself, that person; a link never renames anyone.
            let done = store.identify(&identify, options).await?;
            let written = trust.cookie_identifier(&identify.identifier, &done.person.cio_id);
            cookies.extend(trust.id_cookies(policy, visit.https, &written));
            visit.cookies.identifier = Some(written);
            follow_anon(visit, anon.as_deref(), policy, cookies);
        }
        Call::Event {
            user,
            anonymous_id,
            event,
        } => {
            // Secure mode: a userId counts only when the signed cookie names it.
            let user = user
                .filter(|u| trust.secret.is_none() || visit.cookies.identifier.as_ref() == Some(u));
            let anon = anonymous_id
                .clone()
                .or_else(|| visit.cookies.anon_id.clone());
            match (user, anon) {
                (Some(user), _) => store.track_person(&user, &event, now).await?,
                (None, Some(anon)) => {
                    let same_visitor = visit.cookies.anon_id.as_deref() == Some(anon.as_str());
                    if !same_visitor
                        && visit.cookies.anon_id.is_some()
                        && visit.cookies.identifier.is_some()
                    {
                        // A new anonymous id and no user: the SDK was reset.
                        cookies.extend(trust.clear_id_cookies(policy, visit.https));
                        visit.cookies.identifier = None;
                    }
                    let identifier = visit.cookies.identifier.clone().filter(|_| same_visitor);
                    match (&edge.config.forwarding, &identifier) {
                        (Some(_), Some(Identifier::CioId(cio_id))) => {
                            store
                                .record_linked(
                                    cio_id,
                                    &anon,
                                    event,
                                    now,
                                    edge.config.link_merges_history,
                                )
                                .await?
                        }
                        _ => store.record(identifier.as_ref(), &anon, event).await?,
                    }
                    follow_anon(visit, Some(&anon), policy, cookies);
                }
                (None, None) => {
                    return Err(crate::core::Error::invalid(
                        "userId",
                        "is not vouched for (secure mode) and there is no anonymousId",
                    )
                    .into())
                }
            }
        }
        // `alias` joins the visitor `previousId` to the person, as an identify
        // would. Merging two people deletes one: that stays with the Track
        // API, whose key is secret (a write key is public).
        Call::Alias { user, previous } => {
            if trust.secret.is_some() && visit.cookies.identifier.as_ref() != Some(&user.identifier)
            {
                return Err(EdgeError::Unauthorized);
            }
            let options = IdentifyOptions {
                create: true,
                anonymous_id: Some(&previous),
                now,
            };
            store.identify(&user, options).await?;
        }
    }
    Ok(())
}

/// `_cioanonid` follows the SDK's anonymous id (when it has the shape the
/// edge issues), so both SDKs and the origin's `X-Cio-Anon-Id` name one
/// visitor.
fn follow_anon(
    visit: &mut Visit,
    anon: Option<&str>,
    policy: &crate::core::cookies::CookiePolicy,
    cookies: &mut Vec<String>,
) {
    if let Some(anon) = anon.filter(|a| is_anon_id(a)) {
        if visit.cookies.anon_id.as_deref() != Some(anon) {
            cookies.retain(|c| !c.starts_with("_cioanonid="));
            cookies.push(policy.anon_cookie(visit.https, anon));
            visit.cookies.anon_id = Some(anon.to_owned());
        }
    }
}

/// `CIO_DESTINATION=pipelines`: one packed batch of outbox operations
/// delivered as Pipelines calls (`crate::cdp::destination`): the batchable
/// ones in one `POST <base>/v1/batch`, each alias on its own `POST
/// <base>/v1/alias`; Basic auth with the API key and a blank password; strict
/// mode, so a call Customer.io would drop is a 400 here, not a silent 200.
pub async fn post_pipelines(
    base: &str,
    key: &str,
    ops: &[serde_json::Value],
) -> crate::cio::Outcome {
    use crate::cdp::destination::{calls_of, Post};
    use crate::cio::{classify, Outcome};
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut batch = Vec::new();
    let mut batch_ops = Vec::new();
    let mut aliases = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match calls_of(op) {
            Ok(posts) => {
                for post in posts {
                    match post {
                        Post::Batch(call) => {
                            batch.push(call);
                            if batch_ops.last() != Some(&i) {
                                batch_ops.push(i);
                            }
                        }
                        Post::Alias(call) => aliases.push((i, call)),
                    }
                }
            }
            Err(reason) => failed.push((i, format!("not sent to the Pipelines API: {reason}"))),
        }
    }
    let mut sends: Vec<(Vec<usize>, &str, serde_json::Value)> = Vec::new();
    if !batch.is_empty() {
        sends.push((batch_ops, "batch", json!({ "batch": batch })));
    }
    for (i, call) in aliases {
        sends.push((vec![i], "alias", call));
    }
    for (indexes, path, body) in sends {
        let answer = send_pipelines(&format!("{base}/v1/{path}"), key, &body.to_string()).await;
        let outcome = match answer {
            Ok((status, retry_after, text)) => {
                classify(status, retry_after.as_deref(), &text, indexes.len())
            }
            Err(error) => Outcome::Retry { after: None, error },
        };
        match outcome {
            Outcome::Delivered => {}
            // A later retry sends the delivered calls again with the same
            // messageId, which Customer.io deduplicates.
            retry @ Outcome::Retry { .. } => return retry,
            Outcome::Refused(reason) => failed.extend(indexes.iter().map(|i| (*i, reason.clone()))),
            // Pipelines answers no partial success; read as delivered.
            Outcome::Partial(_) => {}
        }
    }
    if failed.is_empty() {
        Outcome::Delivered
    } else {
        Outcome::Partial(failed)
    }
}

async fn send_pipelines(
    url: &str,
    key: &str,
    body: &str,
) -> Result<(u16, Option<String>, String), String> {
    use crate::cloudflare::http::{post, Failure, Post};
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    let authorization = format!("Basic {credentials}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", authorization.as_str()),
        ("x-strict-mode", "1"),
    ];
    let answer = post(Post {
        url,
        headers: &headers,
        body,
        manual_redirect: false,
        deadline: std::time::Duration::from_secs(15),
    })
    .await;
    match answer {
        Ok(answer) => Ok((answer.status, answer.retry_after, answer.text)),
        Err(Failure::BadRequest(e)) => Err(format!("bad request to {url}: {e}")),
        Err(Failure::Unreachable(e)) => Err(format!("unreachable: {e}")),
        Err(Failure::TimedOut) => Err("no answer within 15 s".into()),
    }
}
