//! What the page path's native tests share: settings from a few pairs, a
//! request from its URL, and the ids they expect.

use std::collections::HashMap;

use super::inputs::Inputs;
use crate::config::{Config, ConfigError};

pub const ANON: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
pub const NEW: &str = "11111111-2222-4333-8444-555555555555";

pub fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("ORIGIN_URL".into())
        .or_insert_with(|| "http://127.0.0.1:9000/base".into());
    Config::from_lookup(|name| map.get(name).cloned())
}

pub fn get(url: &str) -> Inputs<'_> {
    Inputs {
        method: "GET",
        url,
        ..Default::default()
    }
}
