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
mod error;
mod forward;
// The in-app feature's handlers live in its folder.
#[path = "../inapp/edge.rs"]
mod inapp;
mod limits;
mod proxy;
mod router;
mod track_api;
mod visit;
#[cfg(test)]
mod wasm_tests;

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::{event, Context, Env, Request};

use crate::config::{Config, ConfigError};
use crate::core::plan::{self, Inputs};
use crate::store::{edge_store, EdgeStore};
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
        cell.get_or_init(|| crate::store::read_config(env).map(Rc::new))
            .clone()
    })
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The page-request decision (see `core::plan`): `inputs` is the method,
/// URL and the few headers that matter, one per line; the answer is the plan
/// as text. Synchronous, and the only call into the wasm on the hot path.
#[wasm_bindgen]
pub fn plan(env: &Env, inputs: &str) -> String {
    let config = load_config(env);
    let inputs = Inputs::from_lines(inputs);
    plan::plan(config.as_deref(), &inputs, visit::new_anon_id).to_text()
}

/// Whether an origin answer of this status and content type gets the snippet
/// the plan carries.
#[wasm_bindgen]
pub fn injects(status: u16, content_type: Option<String>) -> bool {
    plan::injects(status, content_type.as_deref())
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
    let failure = if timed_out {
        let ms = plan_text
            .lines()
            .nth(2)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        proxy::Failure::TimedOut(ms)
    } else {
        proxy::Failure::Unreachable(detail.to_owned())
    };
    let cookies: Vec<String> = plan::set_cookies_of(plan_text).map(str::to_owned).collect();
    proxy::bad_gateway(&failure, &cookies).into()
}

/// The origin answered a forward plan with `X-Cio-Identify` or `X-Cio-Reset`
/// (the plan's `r` lines; the driver strips them): identify or reset the
/// visitor as the browser calls would, and answer every `Set-Cookie` the
/// response gets, in place of the plan's. A header that cannot be applied
/// is logged and changes nothing: the page is served either way. Reached
/// through [`handle`] (one async entry keeps the wasm small).
async fn from_origin(req: Request, env: Env, ctx: Context, origin: js_sys::Array) -> JsValue {
    let text = |i: u32| origin.get(i).as_string();
    let plan_text = text(0).unwrap_or_default();
    let plan_cookies: Vec<String> = plan::set_cookies_of(&plan_text)
        .map(str::to_owned)
        .collect();
    let cookies = match load_config(&env) {
        Ok(config) => {
            let edge = Edge { config, env, ctx };
            origin_identity(&edge, &req, &plan_text, text(1), text(2))
                .await
                .map(|mut extra| {
                    // A cookie set again replaces the plan's of that name.
                    let mut out: Vec<String> = plan_cookies
                        .iter()
                        .filter(|c| !extra.iter().any(|e| same_cookie(c, e)))
                        .cloned()
                        .collect();
                    out.append(&mut extra);
                    out
                })
                .unwrap_or_else(|e| {
                    worker::console_error!("{e}");
                    plan_cookies
                })
        }
        Err(_) => plan_cookies,
    };
    cookies
        .into_iter()
        .map(JsValue::from)
        .collect::<js_sys::Array>()
        .into()
}

fn same_cookie(a: &str, b: &str) -> bool {
    a.split('=').next() == b.split('=').next()
}

async fn origin_identity(
    edge: &Edge,
    req: &Request,
    plan_text: &str,
    identify: Option<String>,
    reset: Option<String>,
) -> Result<Vec<String>, String> {
    // No anonymous id told to the origin: no consent; nothing is applied.
    let Some(anon) = plan::anon_id_of(plan_text) else {
        return Err("X-Cio-Identify or X-Cio-Reset ignored: no consent".into());
    };
    let url = req.url().map_err(|e| e.to_string())?;
    let mut visit = visit::Visit::read(req, &url, &edge.config.trust);
    visit.cookies.anon_id = Some(anon.to_owned());
    if let Some(raw) = identify {
        let raw = plan::header_text(&raw);
        return browser::identify_body(edge, &visit, raw.as_bytes(), true)
            .await
            .map_err(|e| format!("X-Cio-Identify not applied: {e}"));
    }
    if reset.as_deref().map(str::trim) == Some("1") {
        return Ok(browser::reset_cookies(edge, visit.https));
    }
    Err("X-Cio-Reset ignored: only 1 resets".into())
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
            proxy::Outcome::Respond(error::json_response(
                &serde_json::json!({ "errors": [{ "reason": "internal", "message": "internal error" }] }),
                500,
            ))
        }
    };
    match answer {
        proxy::Outcome::Respond(response) => web_sys::Response::from(response).into(),
        proxy::Outcome::Forward(text, body) => {
            let body = body.map_or(JsValue::UNDEFINED, |b| {
                js_sys::Uint8Array::from(b.as_slice()).into()
            });
            js_sys::Array::of2(&text.into(), &body).into()
        }
    }
}

async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<proxy::Outcome> {
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Ok(proxy::Outcome::Respond(config_error_response(&e))),
    };
    let edge = Edge { config, env, ctx };
    router::serve(req, &edge).await
}
