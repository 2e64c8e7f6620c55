//! The page request: a request for the site itself (not `/_cio/`), end to
//! end. `plan` decides it in one synchronous call and the JS driver forwards
//! it to the origin; when it needs async work first (a link, a form, an edge
//! page view), `step` holds the rules and `edge` does the lookups and writes.
//! Pure, native, tested with `cargo test`; `edge` only does its I/O.
//!
//! - `inputs`: what is read of the request (URL parts, navigation, link, form)
//! - `visit`: the visitor (its cookies) and the one anonymous-id issuer
//! - `plan`: the decision
//! - `step`: the async step's rules over lookup results
//! - `origin`: the request forwarded to the origin and its answer's headers
//! - `codec`: the text the JS driver and the wasm pass each other

pub mod codec;
pub mod inputs;
pub mod origin;
pub mod plan;
pub mod step;
pub mod visit;

#[cfg(test)]
mod test_kit;
