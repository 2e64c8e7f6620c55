//! Pure identity logic: no `worker` import, no I/O. Every decision the edge
//! makes about cookies, identifiers, profiles and events lives here, tested
//! natively with `cargo test`.

pub mod auth;
pub mod body;
pub mod cookies;
pub mod error;
pub mod event;
pub mod form;
pub mod identifier;
pub mod profile;
pub mod snippet;
pub mod track_api;

pub use error::Error;
