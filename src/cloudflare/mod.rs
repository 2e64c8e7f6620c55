//! The storage seam over Cloudflare's bindings: the three Durable Object
//! classes (SQLite tables under `identity::objects`' rules), the client that
//! calls them, the KV cache, and `wait_until` for work after the answer.

pub mod cache;
pub mod cio;
pub mod class;
pub mod http;
pub mod index;
pub mod objects;
pub mod person;
pub mod rpc;
pub mod sql;
pub mod visitor;

use worker::{Context, Env};

use crate::identity::{Background, Store, Task, Work};

pub use cio::Forwarding;
pub use index::IdentityIndex;
pub use person::Person;
pub use visitor::Visitor;

/// The settings from the environment (vars, then secrets); the one reader,
/// for the worker and its objects alike.
pub fn read_config(env: &Env) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::from_lookup(|name| setting(env, name))
}

/// A setting: a plain-text var or a secret, both strings on the environment.
/// One property read per name: the crate's `var` and `secret` format an
/// error for every setting that is not set, which cost a cold start's first
/// request about 2 ms (bench/README.md, "Cold start").
pub fn setting(env: &Env, name: &str) -> Option<String> {
    field(env, name).as_string()
}

/// The retention settings an object runs its alarm by; a broken setting
/// keeps everything (the worker answers the error on every request).
pub fn retention(env: &Env) -> crate::identity::retention::Retention {
    read_config(env)
        .map(|c| crate::identity::retention::Retention {
            anonymous_secs: c.anonymous_retention_secs,
            event_secs: c.event_retention_secs,
        })
        .unwrap_or_default()
}

/// Unix seconds now, as the objects see it.
pub fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// Asks for an object's alarm by `at` (unix seconds): the earliest wish
/// wins, so work sharing the one alarm of an object keeps its turn; each
/// alarm handler tolerates ringing early.
pub async fn wake_by(storage: &worker::Storage, at: i64) {
    let at_ms = at * 1000;
    if matches!(storage.get_alarm().await, Ok(Some(set)) if set <= at_ms) {
        return;
    }
    let offset_ms = (at_ms - js_sys::Date::now() as i64).max(0);
    if let Err(e) = storage.set_alarm(offset_ms).await {
        worker::console_error!("alarm not set: {e}");
    }
}

/// An alarm that failed: logged, and answered as an error so the runtime
/// rings it again.
pub fn alarm_failed(e: crate::identity::StoreError) -> worker::Error {
    worker::console_error!("retention alarm failed: {e}");
    worker::Error::RustError("retention alarm failed".into())
}

/// The binding `name` of the environment as the runtime's own object (a
/// namespace, a limiter), for the adapters that call it directly; `None`
/// when it is not bound.
pub fn binding<T: wasm_bindgen::JsCast>(env: &Env, name: &str) -> Option<T> {
    js_sys::Reflect::get(env, &wasm_bindgen::JsValue::from_str(name))
        .ok()
        .filter(wasm_bindgen::JsValue::is_object)
        .map(wasm_bindgen::JsCast::unchecked_into)
}

/// A property of an object the runtime answered; undefined when missing.
pub fn field(object: &wasm_bindgen::JsValue, name: &str) -> wasm_bindgen::JsValue {
    js_sys::Reflect::get(object, &wasm_bindgen::JsValue::from_str(name))
        .unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
}

/// Work for `wait_until`, boxed: every call site hands over the one `Task`
/// type, so the runtime glue for it is compiled once, not once per site.
pub fn task(work: impl std::future::Future<Output = ()> + 'static) -> Task {
    Box::pin(work)
}

/// Where the store's background work goes: handed to the runtime
/// (`wait_until`) so it outlives the answer, or, for an operation that is
/// itself off the response path (inside `wait_until`, or a stream), queued
/// and run after it by [`finish`]. One type for both, so the store's code is
/// compiled once.
pub enum Spawn<'a> {
    WaitUntil(&'a Context),
    After(std::cell::RefCell<Vec<Task>>),
}

impl Background for Spawn<'_> {
    fn spawn(&self, task: Task) {
        match self {
            Spawn::WaitUntil(ctx) => ctx.wait_until(task),
            Spawn::After(queued) => queued.borrow_mut().push(task),
        }
    }
}

/// The identity store as the worker runs it.
pub type EdgeStore<'a> = Store<objects::DoObjects, cache::KvCache, Spawn<'a>>;

pub fn edge_store<'a>(env: &Env, ctx: &'a Context) -> EdgeStore<'a> {
    Store {
        objects: objects::DoObjects::new(env.clone()),
        cache: cache::KvCache::new(env),
        background: Spawn::WaitUntil(ctx),
    }
}

pub type DetachedStore = EdgeStore<'static>;

/// A store for work already off the response path.
pub fn detached_store(env: &Env) -> DetachedStore {
    Store {
        objects: objects::DoObjects::new(env.clone()),
        cache: cache::KvCache::new(env),
        background: Spawn::After(Default::default()),
    }
}

/// Runs what the store queued.
pub async fn finish(store: DetachedStore) {
    if let Spawn::After(queued) = store.background {
        side_by_side(queued.take(), None).await;
    }
}

/// Runs `work` concurrently, at most `at_once` at a time (`None`: all), until
/// all are done. Every site hands over boxed work of one type, so the
/// combinator is compiled once (each `join_all` or `buffer_unordered` of
/// another future type was a copy of its own).
pub async fn side_by_side(work: Vec<Work<'_>>, at_once: Option<usize>) {
    use futures_util::StreamExt;
    futures_util::stream::iter(work)
        .for_each_concurrent(at_once, |w| w)
        .await;
}
