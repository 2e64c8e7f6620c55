//! HTTP: the worker's entry points. A page request is decided by one
//! synchronous call, [`plan`], whose answer the JS driver (`js/entry.mjs`)
//! executes with `fetch`; everything else (`/_cio/`, the track API host, a
//! link, a form, an edge page view, a broken setting) goes to [`handle`], the
//! async handler: `router` sends it to its handler (the route table is
//! `core::routes`), and handlers reach storage only through the identity
//! `Store` (`Edge::store`).

mod admin;
mod browser;
mod error;
mod forward;
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
        cell.get_or_init(|| {
            Config::from_lookup(|name| {
                env.var(name)
                    .map(|v| v.to_string())
                    .or_else(|_| env.secret(name).map(|s| s.to_string()))
                    .ok()
            })
            .map(Rc::new)
        })
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

/// The async handler: a `Response`, or for a page request whose async work is
/// done, `[plan text, body bytes or undefined]` for the driver to forward.
#[wasm_bindgen]
pub async fn handle(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let ctx = Context::new(ctx);
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
