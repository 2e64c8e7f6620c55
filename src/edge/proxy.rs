//! Page requests that need async work before they are forwarded: a `_cio_id`
//! link to look up, a form post to read, an edge page view to record. The
//! work done, the answer is a forward plan (`core::plan`) that the JS driver
//! executes like any other; the forwarding itself lives there, in one place.

use url::Url;
use worker::{console_warn, Request, Response};

use super::visit::{new_anon_id, new_event_id, now_secs};
use super::{limits, Edge};
use crate::core::event::{clamp_bytes, Event, EventType, BROWSER_ID_PREFIX, MAX_PAGE_NAME_BYTES};
use crate::core::form::{form_identify, parse_form};
use crate::core::identifier::Identifier;
use crate::core::plan::{self, link_param, small_form, Inputs, Visit};
use crate::core::profile::cookie_identifier;
use crate::core::secure::IdCookie;
use crate::identity::IdentifyOptions;
use crate::store::{detached_store, finish};

/// What the async handler answers: a response of its own, or a forward plan
/// (as text) with the request body it had to read, if any.
pub enum Outcome {
    Respond(Response),
    Forward(String, Option<Vec<u8>>),
}

pub async fn handle(mut req: Request, edge: &Edge, url: Url) -> Outcome {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (cookie, accept, mode) = (header("cookie"), header("accept"), header("sec-fetch-mode"));
    let (content_type, content_length) = (header("content-type"), header("content-length"));
    let sec_gpc = header("sec-gpc");
    let method = req.method().to_string();
    let url_text = url.as_str().to_owned();
    let inputs = Inputs {
        method: &method,
        url: &url_text,
        cookie: cookie.as_deref(),
        accept: accept.as_deref(),
        sec_fetch_mode: mode.as_deref(),
        content_type: content_type.as_deref(),
        content_length: content_length.as_deref(),
        sec_gpc: sec_gpc.as_deref(),
    };
    let Some(visit) = Visit::read(&inputs, &edge.config.trust) else {
        return Outcome::Respond(bad_gateway(
            &Failure::Unreachable(format!("unreadable URL {url}")),
            &[],
        ));
    };
    let policy = &edge.config.cookies;
    let trust = &edge.config.trust;
    if !edge.config.consent.allows(inputs.cookie, inputs.sec_gpc) {
        return Outcome::Forward(plan::untracked(&edge.config, visit.url).to_text(), None);
    }

    let (anon_id, anon_changed) = match &visit.cookies.anon_id {
        Some(anon) => (anon.clone(), false),
        None => (new_anon_id(), true),
    };
    let mut identifier = visit.cookies.identifier.clone();
    let mut set_cookies = Vec::new();

    // A tracked link names a person; it identifies this browser unless the
    // browser is already someone else, and merges nothing (rule 6.12): the
    // visitor's earlier activity joins a person only when it identifies.
    if edge.config.auto_identify_links && trust.honours_links() {
        if let Some(cio_id) = link_param(&visit.url) {
            let lookup = if limits::link_lookup(edge, &req).await {
                edge.store().link(&cio_id).await
            } else {
                console_warn!("_cio_id link not looked up: rate limited");
                Ok(None)
            };
            match lookup {
                Ok(Some(p)) => {
                    let written = cookie_identifier(p.id.as_deref(), p.email.as_deref(), &p.cio_id);
                    let as_cio = Identifier::CioId(p.cio_id.clone());
                    let linked = Identifier::parse(&written)
                        .ok()
                        .map(|l| trust.cookie_identifier(&l, &p.cio_id));
                    let someone_else = identifier.is_some()
                        && identifier != linked
                        && identifier.as_ref() != Some(&as_cio);
                    if !someone_else {
                        if let Some(linked) = &linked {
                            set_cookies.extend(trust.id_cookies(policy, visit.https, linked));
                        }
                        identifier = linked;
                        if edge.config.link_merges_history {
                            link_merge_in_background(edge, p.cio_id.clone(), anon_id.clone());
                        }
                    }
                }
                // Forwarding on: a Customer.io cio_id the edge has not seen
                // identifies an anonymous browser as that person; nothing is
                // stored until its first event (docs/FORWARDING.md).
                Ok(None) if edge.config.forwarding.is_some() && identifier.is_none() => {
                    set_cookies.push(policy.id_cookie(visit.https, &format!("cio_{cio_id}")));
                    identifier = Some(Identifier::CioId(cio_id));
                }
                Ok(None) => {}
                // Tracking never breaks the site: the page is served anyway.
                Err(e) => console_warn!("_cio_id link not applied: {e}"),
            }
        }
    }
    if anon_changed || visit.html_navigation {
        set_cookies.insert(0, policy.anon_cookie(visit.https, &anon_id));
    }

    // AUTO_IDENTIFY_FORMS: a small form post is read whole (and forwarded
    // byte-identical); its email identifies the visitor off the response path.
    let mut buffered = None;
    if edge.config.auto_identify_forms {
        if let Some(content_type) = small_form(&inputs) {
            let content_type = content_type.to_owned();
            let Ok(body) = req.bytes().await else {
                return Outcome::Respond(bad_gateway(
                    &Failure::Unreachable("could not read the request body".into()),
                    &set_cookies,
                ));
            };
            let fields = parse_form(&content_type, &body).unwrap_or_default();
            let config = &edge.config;
            // A form is the browser's word: in secure mode it cannot vouch
            // for anyone, so it identifies nobody.
            let identify =
                form_identify(&fields, &config.form_email_field, &config.form_attributes)
                    .filter(|_| trust.secret.is_none());
            if let Some(identify) = identify {
                if trust.id_cookie == IdCookie::Cio {
                    // `_cioid` holds the cio_id: the identify runs first.
                    match identify_now(edge, &identify, &anon_id).await {
                        Ok(cio_id) => {
                            let cio = Identifier::CioId(cio_id);
                            set_cookies.extend(trust.id_cookies(policy, visit.https, &cio));
                            identifier = Some(cio);
                        }
                        Err(e) => console_warn!("form identify not applied: {e}"),
                    }
                } else {
                    set_cookies.extend(trust.id_cookies(policy, visit.https, &identify.identifier));
                    identifier = Some(identify.identifier.clone());
                    identify_in_background(edge, identify, anon_id.clone());
                }
            }
            buffered = Some(body);
        }
    }
    if edge.config.edge_page_views && visit.html_navigation {
        record_page_view(edge, &url, identifier.clone(), anon_id.clone());
    }

    let written = identifier.as_ref().map(Identifier::as_written);
    if visit.html_navigation {
        set_cookies.extend(crate::cdp::ids::document_cookies(
            &edge.config,
            inputs.cookie,
            visit.url.host,
            visit.https,
            &anon_id,
            written.as_deref(),
        ));
    }
    let forward = plan::forward(
        &edge.config,
        visit.url,
        &method,
        &anon_id,
        written.as_deref(),
        set_cookies,
    );
    Outcome::Forward(forward.to_text(), buffered)
}

async fn identify_now(
    edge: &Edge,
    identify: &crate::core::profile::Identify,
    anon_id: &str,
) -> Result<String, crate::identity::StoreError> {
    let options = IdentifyOptions {
        create: true,
        anonymous_id: Some(anon_id),
        now: now_secs(),
    };
    Ok(edge
        .store()
        .identify(identify, options)
        .await?
        .person
        .cio_id)
}

fn identify_in_background(edge: &Edge, identify: crate::core::profile::Identify, anon_id: String) {
    let env = edge.env.clone();
    edge.ctx.wait_until(async move {
        let options = IdentifyOptions {
            create: true,
            anonymous_id: Some(&anon_id),
            now: now_secs(),
        };
        let store = detached_store(&env);
        if let Err(e) = store.identify(&identify, options).await {
            console_warn!("form identify not applied: {e}");
        }
        finish(store).await;
    });
}

/// `LINK_MERGES_HISTORY`: the visitor's earlier activity joins the linked
/// person, off the response path (the page never waits on it).
fn link_merge_in_background(edge: &Edge, cio_id: String, anon_id: String) {
    let env = edge.env.clone();
    edge.ctx.wait_until(async move {
        let store = detached_store(&env);
        if let Err(e) = store.link_merge(&cio_id, &anon_id, now_secs()).await {
            console_warn!("link history not merged: {e}");
        }
        finish(store).await;
    });
}

/// `EDGE_PAGE_VIEWS`: record the navigation off the response path.
fn record_page_view(edge: &Edge, url: &Url, identifier: Option<Identifier>, anon_id: String) {
    let env = edge.env.clone();
    let event = Event {
        kind: EventType::Page,
        name: clamp_bytes(url.as_str(), MAX_PAGE_NAME_BYTES).to_owned(),
        data: Default::default(),
        timestamp: now_secs(),
        anonymous_id: None,
        // A browser's navigation: in the browsers' key space (section 8).
        id: format!("{BROWSER_ID_PREFIX}{}", new_event_id()),
    };
    edge.ctx.wait_until(async move {
        let store = detached_store(&env);
        if let Err(e) = store.record(identifier.as_ref(), &anon_id, event).await {
            console_warn!("edge page view not recorded: {e}");
        }
        finish(store).await;
    });
}

pub enum Failure {
    Unreachable(String),
    TimedOut(u32),
}

pub fn bad_gateway(failure: &Failure, set_cookies: &[String]) -> Response {
    let detail = match failure {
        Failure::Unreachable(e) => {
            console_warn!("origin unreachable: {e}");
            "could not reach the origin server".to_owned()
        }
        Failure::TimedOut(ms) => format!("the origin server did not answer within {ms} ms"),
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\
         <body><h1>502 Bad Gateway</h1><p>The edge is up, but {detail} (origin unreachable). \
         Check that ORIGIN_URL points at a running site.</p></body></html>"
    );
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "text/html; charset=utf-8");
    let _ = headers.set("cache-control", "no-store");
    for cookie in set_cookies {
        let _ = headers.append("set-cookie", cookie);
    }
    Response::builder()
        .with_status(502)
        .with_headers(headers)
        .fixed(html.into_bytes())
}
