//! The storage seam over Cloudflare's bindings: the three Durable Object
//! classes (SQLite tables under `identity::objects`' rules), the client that
//! calls them, the KV cache, and `wait_until` for work after the answer.

pub mod cache;
pub mod forward;
pub mod index;
pub mod objects;
pub mod person;
pub mod rpc;
pub mod sql;
pub mod visitor;

use worker::{Context, Env};

use crate::identity::{Background, Store, Task};

pub use forward::Forwarding;
pub use index::IdentityIndex;
pub use person::Person;
pub use visitor::Visitor;

/// Background work handed to the runtime, so it outlives the answer.
pub struct WaitUntil<'a>(pub &'a Context);

impl Background for WaitUntil<'_> {
    fn spawn(&self, task: Task) {
        self.0.wait_until(task);
    }
}

/// The identity store as the worker runs it.
pub type EdgeStore<'a> = Store<objects::DoObjects, cache::KvCache, WaitUntil<'a>>;

pub fn edge_store<'a>(env: &Env, ctx: &'a Context) -> EdgeStore<'a> {
    Store {
        objects: objects::DoObjects::new(env.clone()),
        cache: cache::KvCache::new(env),
        background: WaitUntil(ctx),
    }
}

/// Background work for an operation that is itself off the response path
/// (inside `wait_until`, or a stream): queued, then run after it by `finish`.
#[derive(Default)]
pub struct After(std::cell::RefCell<Vec<Task>>);

impl Background for After {
    fn spawn(&self, task: Task) {
        self.0.borrow_mut().push(task);
    }
}

pub type DetachedStore = Store<objects::DoObjects, cache::KvCache, After>;

/// A store for work already off the response path.
pub fn detached_store(env: &Env) -> DetachedStore {
    Store {
        objects: objects::DoObjects::new(env.clone()),
        cache: cache::KvCache::new(env),
        background: After::default(),
    }
}

/// Runs what the store queued.
pub async fn finish(store: DetachedStore) {
    let tasks: Vec<Task> = store.background.0.take();
    futures_util::future::join_all(tasks).await;
}
