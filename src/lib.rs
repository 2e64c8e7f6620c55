//! cio-edge: a first-party identity edge, as a Cloudflare Worker.
//!
//! Floors, from the bottom up (each imports only floors below it, see
//! docs/ARCHITECTURE.md): `core` (pure rules), `forward` (Customer.io
//! operations, pure), `config`, `identity` (identity without a runtime),
//! `page` (the page request, pure), `bindings` (binding names); then, in the
//! wasm build only, `store` (Durable Objects, KV) and `edge` (HTTP, I/O only).
//! Everything but `store` and `edge` builds natively (`cargo test`). The
//! worker's main is `js/entry.mjs`: per request it calls the synchronous
//! `plan` export and forwards, or awaits the async `handle` export.

pub mod bindings;
pub mod config;
pub mod core;
pub mod forward;
pub mod identity;
pub mod page;

#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
pub use store::{Forwarding, IdentityIndex, Person, Visitor};
