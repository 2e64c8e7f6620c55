//! Page requests the plan handed to Rust: the I/O of the async step (the
//! link lookup, the form body, the identify and page-view writes). Every
//! rule is `page::step`'s; the answer is a forward plan the JS driver
//! executes like any other.

use url::Url;
use worker::{console_warn, Response};

use super::request::Request;
use super::visit::{new_anon_id, new_event_id, now_secs};
use super::{limits, Edge};
use crate::cloudflare::{detached_store, finish, task};
use crate::core::event::{Event, EventType};
use crate::core::identifier::Identifier;
use crate::core::profile::Identify;
use crate::identity::IdentifyOptions;
use crate::page::codec::encode;
use crate::page::plan::{Inputs, Plan};
use crate::page::step::{FormStep, PageStep, Start};

/// What the async handler answers: a response of its own, or a forward plan
/// (as text) with the request body it had to read, if any.
pub enum Answer {
    Respond(Response),
    Forward(String, Option<Vec<u8>>),
}

pub async fn serve(mut req: Request, edge: &Edge, url: Url) -> Answer {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (cookie, accept, mode) = (header("cookie"), header("accept"), header("sec-fetch-mode"));
    let (content_type, content_length) = (header("content-type"), header("content-length"));
    let sec_gpc = header("sec-gpc");
    let method = req.method().to_string();
    let inputs = Inputs {
        method: &method,
        url: url.as_str(),
        cookie: cookie.as_deref(),
        accept: accept.as_deref(),
        sec_fetch_mode: mode.as_deref(),
        content_type: content_type.as_deref(),
        content_length: content_length.as_deref(),
        sec_gpc: sec_gpc.as_deref(),
    };
    let mut step = match PageStep::start(&edge.config, &inputs, new_anon_id) {
        Start::Tracked(step) => step,
        Start::Untracked(forward) => return Answer::Forward(encode(&Plan::Forward(forward)), None),
        Start::BadUrl => {
            let failure = Failure::Unreachable(format!("unreadable URL {url}"));
            return Answer::Respond(bad_gateway(&failure, &[]));
        }
    };

    if let Some(cio_id) = step.link() {
        let lookup = if limits::link_lookup(edge, &req).await {
            edge.store().link(&cio_id).await
        } else {
            console_warn!("_cio_id link not looked up: rate limited");
            Ok(None)
        };
        match lookup {
            Ok(found) => {
                if let Some(person) = step.linked(&cio_id, found.as_ref()) {
                    link_merge_in_background(edge, person, step.anon_id().to_owned());
                }
            }
            // Tracking never breaks the site: the page is served anyway.
            Err(e) => console_warn!("_cio_id link not applied: {e}"),
        }
    }

    // The form is read whole (and forwarded byte-identical); its email
    // identifies the visitor off the response path unless `_cioid` needs
    // the cio_id first.
    let mut buffered = None;
    if let Some(content_type) = step.form(&inputs) {
        let Ok(body) = req.bytes().await else {
            let failure = Failure::Unreachable("could not read the request body".into());
            return Answer::Respond(bad_gateway(&failure, &step.set_cookies()));
        };
        match step.form_read(content_type, &body) {
            FormStep::Nobody => {}
            FormStep::IdentifyFirst(identify) => {
                match identify_now(edge, &identify, step.anon_id()).await {
                    Ok(cio_id) => step.identified(Identifier::CioId(cio_id)),
                    Err(e) => console_warn!("form identify not applied: {e}"),
                }
            }
            FormStep::IdentifyAfter(identify) => {
                identify_in_background(edge, identify, step.anon_id().to_owned())
            }
        }
        buffered = Some(body);
    }
    if let Some(name) = step.page_view() {
        record_page_view(
            edge,
            name,
            step.identifier().cloned(),
            step.anon_id().to_owned(),
        );
    }
    Answer::Forward(encode(&Plan::Forward(step.finish())), buffered)
}

async fn identify_now(
    edge: &Edge,
    identify: &Identify,
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

fn identify_in_background(edge: &Edge, identify: Identify, anon_id: String) {
    let env = edge.env.clone();
    edge.ctx.wait_until(task(async move {
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
    }));
}

/// `LINK_MERGES_HISTORY`: the visitor's earlier activity joins the linked
/// person, off the response path (the page never waits on it).
fn link_merge_in_background(edge: &Edge, cio_id: String, anon_id: String) {
    let env = edge.env.clone();
    edge.ctx.wait_until(task(async move {
        let store = detached_store(&env);
        if let Err(e) = store.link_merge(&cio_id, &anon_id, now_secs()).await {
            console_warn!("link history not merged: {e}");
        }
        finish(store).await;
    }));
}

/// `EDGE_PAGE_VIEWS`: record the navigation off the response path.
fn record_page_view(edge: &Edge, name: &str, identifier: Option<Identifier>, anon_id: String) {
    let env = edge.env.clone();
    let event = Event {
        kind: EventType::Page,
        name: name.to_owned(),
        data: Default::default(),
        timestamp: now_secs(),
        anonymous_id: None,
        id: new_event_id(),
    };
    edge.ctx.wait_until(task(async move {
        let store = detached_store(&env);
        if let Err(e) = store.record(identifier.as_ref(), &anon_id, event).await {
            console_warn!("edge page view not recorded: {e}");
        }
        finish(store).await;
    }));
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
