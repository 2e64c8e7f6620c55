//! Customer.io's Data Pipelines SDKs through the edge (docs/API.md section
//! 11), pure: their call bodies read into the edge's identify and event
//! rules (`call`), the settings the browser SDK loads, the write key check,
//! and the `ajs_*` id cookies the edge keeps first-party (`ids`). The I/O is
//! `edge::cdp`.

pub mod call;
pub mod destination;
pub mod ids;
pub mod source;
pub mod time;
