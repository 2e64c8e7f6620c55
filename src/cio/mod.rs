//! Forwarding to the site's Customer.io workspace, the pure half: which
//! Track API v2 operations an accepted write becomes (`ops`), and how queued
//! operations are packed, posted, retried and dead-lettered (`delivery`).
//! The objects write the operations into their outbox in the same step as the
//! change (`identity::objects`); `cloudflare::cio` and `edge::cio` move
//! them to Customer.io.

pub mod delivery;
pub mod ops;

pub use delivery::*;
pub use ops::*;
