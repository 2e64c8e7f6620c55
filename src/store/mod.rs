//! Adapters over the bindings: Durable Objects (the truth) and KV (the cache).
//! Each object kind lives in its own module, server and client side together.

pub mod cache;
pub mod identity;
pub mod index;
pub mod person;
pub mod rpc;
pub mod visitor;

pub use index::IdentityIndex;
pub use person::Person;
pub use rpc::StoreError;
pub use visitor::Visitor;
