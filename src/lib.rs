//! cio-edge: a first-party identity edge, as a Cloudflare Worker.
//!
//! `core` and `config` are pure and build natively (`cargo test`); `edge`
//! (HTTP) and `store` (Durable Objects, KV) exist only in the wasm build.
//! Dependencies point one way: edge -> store -> core, edge -> core. The
//! worker's main is `js/entry.mjs`: per request it calls the synchronous
//! `plan` export and forwards, or awaits the async `handle` export.

pub mod cdp;
pub mod config;
pub mod core;
pub mod forward;
pub mod identity;
pub mod inapp;

#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
pub use store::{Forwarding, IdentityIndex, Person, Visitor};
