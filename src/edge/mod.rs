//! HTTP: the worker's entry points. A page request is decided by one
//! synchronous call, [`plan`], whose answer the JS driver (`js/entry.mjs`)
//! executes with `fetch`; everything else (`/_cio/`, the track API host, a
//! link, a form, an edge page view, a broken setting) goes to [`handle`], the
//! async handler with the Durable Objects and KV.

mod admin;
mod browser;
mod error;
mod proxy;
mod track_api;
mod visit;

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::{event, Context, Env, Method, Request, Response};

use crate::config::{Config, ConfigError};
use crate::core::event::EventType;
use crate::core::plan::{self, Inputs, PREFIX};
use crate::store::cache::Cache;
use error::{config_error_response, EdgeError};
use visit::Visit;

/// What a request handler needs, loaded once per request.
pub struct Edge {
    pub config: Rc<Config>,
    pub env: Env,
    pub ctx: Context,
    cache: std::cell::OnceCell<Cache>,
}

impl Edge {
    /// The KV cache, bound on first use: a page request never needs it.
    pub fn cache(&self) -> &Cache {
        self.cache.get_or_init(|| Cache::new(&self.env))
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
    use proxy::Outcome::Respond;
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Ok(Respond(config_error_response(&e))),
    };
    let url = req.url()?;
    let edge = Edge {
        config,
        env,
        ctx,
        cache: std::cell::OnceCell::new(),
    };
    let parts = plan::UrlParts::split(url.as_str());
    if let Some(route) = parts.and_then(|p| plan::track_host_route(&edge.config, &p)) {
        let route = route.to_owned();
        return Ok(Respond(track_api::handle(req, &edge, &route).await));
    }
    match url.path().strip_prefix(PREFIX) {
        None => Ok(proxy::handle(req, &edge, url).await),
        Some(route) => {
            let route = route.to_owned();
            Ok(Respond(
                endpoint(req, &edge, &url, &route)
                    .await
                    .unwrap_or_else(|e| e.to_response()),
            ))
        }
    }
}

async fn endpoint(
    req: Request,
    edge: &Edge,
    url: &url::Url,
    route: &str,
) -> Result<Response, EdgeError> {
    let visit = Visit::read(&req, url);
    let post = req.method() == Method::Post;
    match route {
        "identify" if post => browser::identify(req, edge, visit).await,
        "track" if post => browser::track(req, edge, visit, EventType::Event).await,
        "page" if post => browser::track(req, edge, visit, EventType::Page).await,
        "reset" if post => Ok(browser::reset(edge, &visit)),
        "identify" | "track" | "page" | "reset" => Err(EdgeError::MethodNotAllowed),
        "track.js" if matches!(req.method(), Method::Get | Method::Head) => Ok(browser::sdk(&req)),
        "track.js" => Err(EdgeError::MethodNotAllowed),
        _ => {
            if let Some(api_route) = route.strip_prefix("api/") {
                Ok(track_api::handle(req, edge, api_route).await)
            } else if let Some(admin_route) = route.strip_prefix("admin/") {
                admin::handle(req, edge, url, admin_route).await
            } else {
                Err(EdgeError::NoRoute)
            }
        }
    }
}
