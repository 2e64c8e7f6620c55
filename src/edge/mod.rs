//! HTTP: the worker's entry points. `router` sends each request to its
//! handler (the route table is `core::routes`); handlers reach storage only
//! through the identity `Store` (`Edge::store`).

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

use worker::{event, Context, Env, Request, Response};

use crate::config::{Config, ConfigError};
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

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Ok(config_error_response(&e)),
    };
    let edge = Edge { config, env, ctx };
    router::serve(req, &edge).await
}
