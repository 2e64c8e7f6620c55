//! HTTP: the worker's entry points and the routing of each request, either to
//! the origin (everything outside `/_cio/`) or to an endpoint of ours.

mod admin;
mod browser;
mod error;
mod proxy;
mod track_api;
mod visit;

use std::rc::Rc;

use worker::{event, Context, Env, Method, Request, Response};

use crate::config::{Config, ConfigError};
use crate::core::event::EventType;
use crate::store::cache::Cache;
use error::{config_error_response, EdgeError};
use visit::Visit;

/// The reserved prefix; everything else belongs to the site.
const PREFIX: &str = "/_cio/";

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

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Ok(config_error_response(&e)),
    };
    let url = req.url()?;
    let edge = Edge {
        config,
        env,
        ctx,
        cache: std::cell::OnceCell::new(),
    };
    let on_track_host = edge
        .config
        .track_api_host
        .as_deref()
        .is_some_and(|h| url.host_str() == Some(h));
    if on_track_host {
        if let Some(route) = url.path().strip_prefix("/api/") {
            return Ok(track_api::handle(req, &edge, route).await);
        }
    }
    match url.path().strip_prefix(PREFIX) {
        None => Ok(proxy::handle(req, &edge, url).await),
        Some(route) => {
            let route = route.to_owned();
            Ok(endpoint(req, &edge, &url, &route)
                .await
                .unwrap_or_else(|e| e.to_response()))
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
