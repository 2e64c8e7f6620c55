//! cio-edge: a first-party identity edge, as a Cloudflare Worker.
//!
//! Floors, from the bottom up (each imports only floors below it, see
//! docs/ARCHITECTURE.md): `core` (pure rules), `inapp` (in-app messages,
//! pure), `cio` (forwarding to Customer.io: its operations, pure), `config`,
//! `cdp` (the Data Pipelines SDKs, pure), `identity` (identity without a
//! runtime), `page` (the page request, pure), `bindings` (binding names);
//! then, in the wasm build only, `cloudflare` (Durable Objects, KV, queues:
//! the Cloudflare adapters) and `edge` (HTTP, I/O only). Everything but
//! `cloudflare` and `edge` builds natively (`cargo test`). The worker's main
//! is `js/entry.mjs`: per request it calls the synchronous `plan` export and
//! forwards, or awaits the async `handle` export.

pub mod bindings;
pub mod cdp;
pub mod cio;
pub mod config;
pub mod core;
pub mod identity;
pub mod inapp;
pub mod page;

#[cfg(target_arch = "wasm32")]
mod cloudflare;
#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(target_arch = "wasm32")]
pub use cloudflare::{Forwarding, IdentityIndex, Person, Visitor};

// The allocator: talc in place of the standard library's dlmalloc, smaller
// in the wasm and faster per allocation (bench/README.md, "Size").
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
