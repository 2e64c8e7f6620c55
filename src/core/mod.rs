//! Pure identity logic: no `worker` import, no I/O. Every decision the edge
//! makes about cookies, identifiers, profiles and events lives here, tested
//! natively with `cargo test`.

pub mod abuse;
pub mod auth;
pub mod body;
pub mod cookies;
pub mod cross_site;
pub mod cursor;
pub mod error;
pub mod event;
pub mod form;
pub mod identifier;
pub mod json;
pub mod profile;
pub mod routes;
pub mod secure;
pub mod snippet;
pub mod track_api;

pub use error::Error;

/// Property-test configuration: `default_cases` cases, or `FUZZ_CASES` when
/// set (`npm run fuzz` runs every parser's property test at a large count).
#[cfg(test)]
pub(crate) fn fuzz_config(default_cases: u32) -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::prelude::ProptestConfig {
        cases,
        ..Default::default()
    }
}
