//! The pass-through: every request outside `/_cio/` goes to the origin with
//! method, path, query, headers and body intact (streamed), and the origin's
//! answer comes back the same way, redirects unfollowed. The edge only adds its
//! cookies and, toward the origin, `X-Cio-Anon-Id` / `X-Cio-Id`.

use url::Url;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{console_warn, Method, Request, Response};

use super::visit::{is_html_navigation, new_anon_id, new_event_id, now_secs, Visit};
use super::{limits, Edge};
use crate::core::event::{Event, EventType};
use crate::core::form::{form_identify, parse_form, MAX_FORM_BYTES};
use crate::core::identifier::{is_cio_id, Identifier};
use crate::core::profile::cookie_identifier;
use crate::core::snippet::SnippetInjector;
use crate::identity::IdentifyOptions;
use crate::store::{detached_store, finish};

pub const ANON_HEADER: &str = "x-cio-anon-id";
pub const ID_HEADER: &str = "x-cio-id";
const LINK_PARAM: &str = "_cio_id";

pub async fn handle(mut req: Request, edge: &Edge, url: Url) -> Response {
    let visit = Visit::read(&req, &url);
    let policy = &edge.config.cookies;
    let html_navigation = is_html_navigation(&req.method(), req.headers());

    let (anon_id, anon_changed) = match &visit.cookies.anon_id {
        Some(anon) => (anon.clone(), false),
        None => (new_anon_id(), true),
    };
    let mut identifier = visit.cookies.identifier.clone();
    let mut set_cookies = Vec::new();

    // A tracked link names a person; it identifies this browser unless the
    // browser is already someone else, and merges nothing: the visitor's
    // earlier activity joins a person only when it identifies itself.
    if edge.config.auto_identify_links {
        if let Some(cio_id) = link_param(&url) {
            let lookup = if limits::link_lookup(edge, &req).await {
                edge.store().link(&cio_id).await
            } else {
                console_warn!("_cio_id link not looked up: rate limited");
                Ok(None)
            };
            match lookup {
                Ok(Some(p)) => {
                    let written = cookie_identifier(p.id.as_deref(), p.email.as_deref(), &p.cio_id);
                    let linked = Identifier::parse(&written).ok();
                    let someone_else = identifier.is_some()
                        && identifier != linked
                        && identifier != Some(Identifier::CioId(p.cio_id.clone()));
                    if !someone_else {
                        set_cookies.push(policy.id_cookie(visit.https, &written));
                        identifier = linked;
                    }
                }
                Ok(None) => {}
                // Tracking never breaks the site: the page is served anyway.
                Err(e) => console_warn!("_cio_id link not applied: {e}"),
            }
        }
    }
    if anon_changed || html_navigation {
        set_cookies.insert(0, policy.anon_cookie(visit.https, &anon_id));
    }

    // AUTO_IDENTIFY_FORMS: a small form post is read whole (and forwarded
    // byte-identical); its email identifies the visitor off the response path.
    let mut buffered = None;
    if edge.config.auto_identify_forms && req.method() == Method::Post {
        if let Some(content_type) = small_form(&req) {
            let Ok(body) = req.bytes().await else {
                return bad_gateway(
                    &Failure::Unreachable("could not read the request body".into()),
                    &set_cookies,
                );
            };
            let fields = parse_form(&content_type, &body).unwrap_or_default();
            let config = &edge.config;
            if let Some(identify) =
                form_identify(&fields, &config.form_email_field, &config.form_attributes)
            {
                set_cookies.push(policy.id_cookie(visit.https, &identify.identifier.as_written()));
                identifier = Some(identify.identifier.clone());
                identify_in_background(edge, identify, anon_id.clone());
            }
            buffered = Some(body);
        }
    }
    if edge.config.edge_page_views && html_navigation {
        record_page_view(edge, &url, identifier.clone(), anon_id.clone());
    }

    let written = identifier.as_ref().map(Identifier::as_written);
    match forward(
        req,
        buffered,
        edge,
        &url,
        &anon_id,
        written.as_deref(),
        &set_cookies,
    )
    .await
    {
        Ok(response) => response,
        Err(failure) => bad_gateway(&failure, &set_cookies),
    }
}

/// The content type of a form post small enough to inspect (declared length).
fn small_form(req: &Request) -> Option<String> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let length = header("content-length")?.parse::<usize>().ok()?;
    let content_type = header("content-type")?;
    let mime = content_type.to_ascii_lowercase();
    let is_form = mime.starts_with("application/x-www-form-urlencoded")
        || mime.starts_with("multipart/form-data");
    (is_form && length <= MAX_FORM_BYTES).then_some(content_type)
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

fn link_param(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == LINK_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| is_cio_id(v))
}

/// `EDGE_PAGE_VIEWS`: record the navigation off the response path.
fn record_page_view(edge: &Edge, url: &Url, identifier: Option<Identifier>, anon_id: String) {
    let env = edge.env.clone();
    let event = Event {
        kind: EventType::Page,
        name: url.as_str().chars().take(100).collect(),
        data: Default::default(),
        timestamp: now_secs(),
        anonymous_id: None,
        id: new_event_id(),
    };
    edge.ctx.wait_until(async move {
        let store = detached_store(&env);
        if let Err(e) = store.record(identifier.as_ref(), &anon_id, event).await {
            console_warn!("edge page view not recorded: {e}");
        }
        finish(store).await;
    });
}

/// The origin URL for a request: the origin's scheme, host and port, its path
/// as a prefix, then the request's own path and query, untouched.
fn origin_url(origin: &Url, url: &Url) -> Url {
    let mut target = origin.clone();
    let prefix = origin.path().trim_end_matches('/');
    target.set_path(&format!("{prefix}{}", url.path()));
    target.set_query(url.query());
    target
}

enum Failure {
    Unreachable(String),
    TimedOut(u32),
}

async fn forward(
    req: Request,
    buffered: Option<Vec<u8>>,
    edge: &Edge,
    url: &Url,
    anon_id: &str,
    identifier: Option<&str>,
    set_cookies: &[String],
) -> Result<Response, Failure> {
    let js = |e: wasm_bindgen::JsValue| Failure::Unreachable(format!("{e:?}"));
    let incoming = req.inner();
    let target = origin_url(&edge.config.origin, url);

    // Copy the headers (the incoming ones are immutable), then set ours; a
    // client-sent X-Cio-* header never reaches the origin.
    let headers = web_sys::Headers::new_with_headers(&incoming.headers()).map_err(js)?;
    let _ = headers.delete("host");
    let _ = headers.set("x-forwarded-host", url.host_str().unwrap_or_default());
    let _ = headers.set("x-forwarded-proto", url.scheme());
    let _ = headers.set(ANON_HEADER, anon_id);
    let _ = headers.delete(ID_HEADER);
    if let Some(identifier) = identifier {
        let _ = headers.set(ID_HEADER, identifier);
    }

    let init = web_sys::RequestInit::new();
    let method = incoming.method();
    init.set_method(&method);
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(bytes) = buffered {
        init.set_body(&js_sys::Uint8Array::from(bytes.as_slice()));
    } else if method != "GET" && method != "HEAD" {
        if let Some(body) = incoming.body() {
            init.set_body(&body);
        }
    }
    // One runtime timer aborts the fetch if no response headers came in time.
    let timeout_ms = edge.config.origin_timeout_ms;
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(timeout_ms)));

    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let fetched = match JsFuture::from(global.fetch_with_str_and_init(target.as_str(), &init)).await
    {
        Ok(fetched) => fetched,
        Err(e) if is_timeout(&e) => return Err(Failure::TimedOut(timeout_ms)),
        Err(e) => return Err(js(e)),
    };
    let fetched: web_sys::Response = fetched.dyn_into().map_err(js)?;

    // One copy of the origin's headers (each Set-Cookie kept as its own), then
    // our cookies appended, each its own header; the body stays a stream.
    let out_headers = web_sys::Headers::new_with_headers(&fetched.headers()).map_err(js)?;
    for cookie in set_cookies {
        let _ = out_headers.append("set-cookie", cookie);
    }
    let status = fetched.status();
    let is_html = || {
        out_headers
            .get("content-type")
            .ok()
            .flatten()
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/html"))
    };
    if edge.config.inject_snippet && status == 200 && method != "HEAD" && is_html() {
        return inject(fetched, out_headers).map_err(|e| Failure::Unreachable(e.to_string()));
    }
    let out = web_sys::ResponseInit::new();
    out.set_status(status);
    out.set_status_text(&fetched.status_text());
    out.set_headers(&out_headers);
    let response =
        web_sys::Response::new_with_opt_readable_stream_and_init(fetched.body().as_ref(), &out)
            .map_err(js)?;
    Ok(Response::from(response))
}

/// INJECT_SNIPPET: the page streams through the rewriter chunk by chunk; the
/// runtime has already decoded a compressed body and re-encodes it on the way
/// out per the kept `Content-Encoding`. The length changes, so it goes.
fn inject(fetched: web_sys::Response, headers: web_sys::Headers) -> worker::Result<Response> {
    use futures_util::StreamExt;
    let status = fetched.status();
    let _ = headers.delete("content-length");
    let mut page = Response::from(fetched);
    let input = page.stream()?;
    let chunks =
        futures_util::stream::unfold(Some((input, SnippetInjector::new())), |state| async move {
            let (mut input, mut injector) = state?;
            match input.next().await {
                Some(Ok(chunk)) => Some((Ok(injector.write(&chunk)), Some((input, injector)))),
                Some(Err(e)) => Some((Err(e), None)),
                None => Some((Ok(injector.end()), None)),
            }
        });
    Ok(Response::from_stream(chunks)?
        .with_status(status)
        .with_headers(worker::Headers(headers)))
}

/// The error an `AbortSignal.timeout` raises.
fn is_timeout(e: &wasm_bindgen::JsValue) -> bool {
    js_sys::Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .as_deref()
        == Some("TimeoutError")
}

fn bad_gateway(failure: &Failure, set_cookies: &[String]) -> Response {
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
