//! What the identity tests share: a fixed clock, events, identify options
//! and bodies, and running an operation to the end against the in-memory
//! store.

use futures::executor::block_on;
use serde_json::Value;

use super::memory::Mem;
use super::{Identified, IdentifyOptions, StoreError};
use crate::core::event::{Event, EventType};
use crate::core::identifier::Identifier;
use crate::core::profile::{parse_identify, Identify};

pub const NOW: i64 = 1_700_000_000;

pub fn identify_body(body: Value) -> Identify {
    parse_identify(body.as_object().unwrap(), true).unwrap()
}

pub fn opts(anon: Option<&str>) -> IdentifyOptions<'_> {
    IdentifyOptions {
        create: true,
        anonymous_id: anon,
        now: NOW,
    }
}

/// An event `e-<id>` with no data.
pub fn event(id: &str) -> Event {
    event_with(id, Value::Null)
}

/// An event `e-<id>` with `data` (an object; anything else is no data).
pub fn event_with(id: &str, data: Value) -> Event {
    Event {
        kind: EventType::Event,
        name: format!("e-{id}"),
        data: data.as_object().cloned().unwrap_or_default(),
        timestamp: NOW,
        anonymous_id: None,
        id: id.to_owned(),
    }
}

pub fn id(v: &str) -> Identifier {
    Identifier::parse(v).unwrap()
}

/// Runs an operation to the end, background work included.
pub fn run<T>(mem: &Mem, f: impl std::future::Future<Output = T>) -> T {
    block_on(async {
        let out = f.await;
        mem.settle().await;
        out
    })
}

pub fn identify(mem: &Mem, body: Value, anon: Option<&str>) -> Result<Identified, StoreError> {
    let store = mem.store();
    run(mem, store.identify(&identify_body(body), opts(anon)))
}
