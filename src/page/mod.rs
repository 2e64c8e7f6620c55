//! The page request: a request for the site itself (not `/_cio/`), decided
//! in one synchronous call and forwarded to the origin by the JS driver.
//! Pure, native and tested with `cargo test`; `edge` does its I/O.

pub mod codec;
pub mod plan;
