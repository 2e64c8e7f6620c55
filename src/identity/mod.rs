//! Identity, independent of the runtime: the rules of who a person is, the
//! calls each Durable Object answers, and the operations that span them, all
//! written against the storage seam in `backend` and tested natively against
//! the in-memory store.
//!
//! - `key`: the typed index key (`id:` / `email:`).
//! - `wire`: the calls and replies of the three kinds of object, and `StoreError`.
//! - `objects`: what each object does with a call, over a table interface.
//! - `backend`: the seam (`Objects`, `Cache`, `Background`).
//! - `retention`: what an object's alarm deletes (retention settings).
//! - `store`: the front door handlers call (`Store`).
//! - `memory`: the in-memory implementation of the seam (native tests).

pub mod backend;
pub mod key;
pub mod objects;
pub mod retention;
pub mod store;
pub mod wire;

#[cfg(test)]
pub mod memory;
#[cfg(test)]
mod outbox_tests;
#[cfg(test)]
mod test_kit;
#[cfg(test)]
mod tests;

pub use backend::{Background, Cache, Objects, Task, Work};
pub use key::IndexKey;
pub use store::{Identified, IdentifyOptions, Store};
pub use wire::StoreError;
