//! HTTP: the worker's entry points. A page request is decided by one
//! synchronous call, [`plan`], whose answer the JS driver (`js/entry.mjs`)
//! executes with `fetch`; everything else (`/_cio/`, the track API host, a
//! link, a form, an edge page view, a broken setting) goes to [`handle`], the
//! async handler: `router` sends it to its handler (the route table is
//! `core::routes`), and handlers reach storage only through the identity
//! `Store` (`Edge::store`).

mod admin;
mod browser;
mod cdp;
mod cio;
mod error;
// The in-app feature's handlers live in its folder.
#[path = "../inapp/edge.rs"]
mod inapp;
mod limits;
mod page;
mod request;
mod router;
mod texts;
mod track_api;
mod visit;
#[cfg(test)]
mod wasm_tests;

use std::rc::Rc;

use request::Request;
use wasm_bindgen::prelude::*;
use worker::{event, Context, Env};

use crate::cloudflare::{edge_store, EdgeStore};
use crate::config::{Config, ConfigError};
use crate::page::codec;
use crate::page::origin::{self, merge_cookies, OriginWord};
use crate::page::plan;
use error::config_error_response;

/// What a request handler needs, loaded once per request.
pub struct Edge {
    pub config: Rc<Config>,
    pub env: Env,
    pub ctx: Context,
}

impl Edge {
    /// The identity store: Durable Objects, the KV cache, `wait_until`.
    pub fn store(&self) -> EdgeStore<'_> {
        edge_store(&self.env, &self.ctx)
    }
}

thread_local! {
    // Settings cannot change under a running isolate: read them once.
    static CONFIG: std::cell::OnceCell<Result<Rc<Config>, ConfigError>> = const { std::cell::OnceCell::new() };
}

fn load_config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| crate::cloudflare::read_config(env).map(Rc::new))
            .clone()
    })
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The page-request decision (see `page::plan`): `inputs` is the method,
/// URL and the few headers that matter, one per line; the answer is the plan
/// as text. Synchronous, and the only call into the wasm on the hot path.
#[wasm_bindgen]
pub fn plan(env: &Env, inputs: &str) -> String {
    let config = load_config(env);
    let inputs = codec::decode_inputs(inputs);
    codec::encode(&plan::plan(config.as_deref(), &inputs, visit::new_anon_id))
}

/// Whether an origin answer of this status and content type gets the snippet
/// the plan carries.
#[wasm_bindgen]
pub fn injects(status: u16, content_type: Option<String>) -> bool {
    origin::injects(status, content_type.as_deref())
}

/// Whether a script already in the page's head is a snippet or loads the SDK
/// (then the page keeps its own): `src` of a script tag, or an inline script's
/// whole text.
#[wasm_bindgen]
pub fn has_sdk(src: Option<String>, text: Option<String>) -> bool {
    use crate::core::snippet::{is_sdk_src, is_snippet_text};
    src.as_deref().is_some_and(is_sdk_src) || text.as_deref().is_some_and(is_snippet_text)
}

/// The answer when a forward plan could not reach the origin: a 502 page
/// carrying the plan's cookies.
#[wasm_bindgen]
pub fn bad_gateway(plan_text: &str, timed_out: bool, detail: &str) -> web_sys::Response {
    let forward = codec::decode_forward(plan_text).unwrap_or_default();
    let failure = if timed_out {
        page::Failure::TimedOut(forward.timeout_ms)
    } else {
        page::Failure::Unreachable(detail.to_owned())
    };
    let cookies: Vec<String> = forward.set_cookies.iter().map(|c| c.to_string()).collect();
    page::bad_gateway(&failure, &cookies).into()
}

/// The origin answered a forward plan with `X-Cio-Identify` or `X-Cio-Reset`
/// (the plan's watched headers; the driver strips them): identify or reset the
/// visitor as the browser calls would, and answer every `Set-Cookie` the
/// response gets, in place of the plan's. A header that cannot be applied
/// is logged and changes nothing: the page is served either way. Reached
/// through [`handle`] (one async entry keeps the wasm small).
async fn from_origin(req: Request, env: Env, ctx: Context, origin: js_sys::Array) -> JsValue {
    let text = |i: u32| origin.get(i).as_string();
    let plan_text = text(0).unwrap_or_default();
    let plan = codec::decode_forward(&plan_text).unwrap_or_default();
    let (identify, reset) = (text(1), text(2));
    let word = OriginWord::read(
        plan.header(origin::ANON_HEADER),
        identify.as_deref(),
        reset.as_deref(),
    );
    let applied = match (load_config(&env), word) {
        (Ok(config), Ok(word)) => {
            let edge = Edge { config, env, ctx };
            // The anonymous id is the one the plan told the origin.
            let anon = plan.header(origin::ANON_HEADER).unwrap_or_default();
            origin_identity(&edge, &req, anon, word).await
        }
        (Ok(_), Err(e)) => Err(e.to_owned()),
        (Err(_), _) => Err(String::new()),
    };
    let cookies = match applied {
        Ok(extra) => merge_cookies(&plan.set_cookies, extra),
        Err(e) => {
            if !e.is_empty() {
                worker::console_error!("{e}");
            }
            plan.set_cookies.iter().map(|c| c.to_string()).collect()
        }
    };
    cookies
        .into_iter()
        .map(JsValue::from)
        .collect::<js_sys::Array>()
        .into()
}

async fn origin_identity(
    edge: &Edge,
    req: &Request,
    anon: &str,
    word: OriginWord<'_>,
) -> Result<Vec<String>, String> {
    let url = req.url().map_err(|e| e.to_string())?;
    let mut visit = visit::read(req, &url, &edge.config.trust);
    visit.cookies.anon_id = Some(anon.to_owned());
    match word {
        OriginWord::Identify(raw) => browser::identify_body(edge, &visit, raw.as_bytes(), true)
            .await
            .map_err(|e| format!("X-Cio-Identify not applied: {e}")),
        OriginWord::Reset => Ok(browser::reset_cookies(edge, visit.https)),
    }
}

/// The async handler: a `Response`, or for a page request whose async work is
/// done, `[plan text, body bytes or undefined]` for the driver to forward.
/// With `origin` (`[plan text, X-Cio-Identify, X-Cio-Reset]`, the origin's
/// answer to a forward plan), the `Set-Cookie` values for that answer
/// ([`from_origin`]).
#[wasm_bindgen]
pub async fn handle(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
    origin: Option<js_sys::Array>,
) -> JsValue {
    let ctx = Context::new(ctx);
    if let Some(origin) = origin {
        return from_origin(Request::from(req), env, ctx, origin).await;
    }
    let answer = match fetch(Request::from(req), env, ctx).await {
        Ok(answer) => answer,
        Err(e) => {
            worker::console_error!("{e}");
            page::Answer::Respond(error::render(
                &error::EdgeError::Internal,
                error::ErrorShape::Browser,
            ))
        }
    };
    match answer {
        page::Answer::Respond(response) => web_sys::Response::from(response).into(),
        page::Answer::Forward(text, body) => {
            let body = body.map_or(JsValue::UNDEFINED, |b| {
                js_sys::Uint8Array::from(b.as_slice()).into()
            });
            js_sys::Array::of2(&text.into(), &body).into()
        }
    }
}

async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<page::Answer> {
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Ok(page::Answer::Respond(config_error_response(&e))),
    };
    let edge = Edge { config, env, ctx };
    router::serve(req, &edge).await
}
