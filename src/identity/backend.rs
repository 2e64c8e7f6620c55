//! The storage seam: what the identity algorithms need from storage, as three
//! traits. The worker implements them over Durable Objects, Workers KV and
//! `ctx.wait_until` (`store/`); native tests over memory (`memory`).

use std::future::Future;
use std::pin::Pin;

use super::key::IndexKey;
use super::wire::*;

/// The three kinds of object, one call at a time. Each call is atomic on its
/// object, except the person's identify, which awaits the visitor.
#[allow(async_fn_in_trait)]
pub trait Objects {
    async fn index(&self, key: &IndexKey, call: IndexCall) -> Result<IndexReply, StoreError>;
    async fn person(&self, cio_id: &str, call: PersonCall) -> Result<PersonReply, StoreError>;
    async fn visitor(&self, anon_id: &str, call: VisitorCall) -> Result<VisitorReply, StoreError>;
}

/// The edge read cache. Never the truth and never consulted for uniqueness;
/// every failure is a miss.
#[allow(async_fn_in_trait)]
pub trait Cache {
    async fn owner(&self, key: &IndexKey) -> Option<String>;
    async fn remember_owner(&self, key: &IndexKey, cio_id: &str);
    async fn forget_owner(&self, key: &IndexKey);
    async fn person(&self, cio_id: &str) -> Option<PersonView>;
    async fn remember_person(&self, person: &PersonView);
    async fn forget_person(&self, cio_id: &str);
    /// One page of cached people's cio_ids and the next page's cursor.
    async fn list_people(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError>;
}

/// Work that returns nothing, boxed, so one type serves every call site; it
/// may borrow (`'a`).
pub type Work<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// [`Work`] that owns everything it uses: what can outlive the answer.
pub type Task = Work<'static>;

/// Work that must not hold up the answer (cache writes, acknowledgements).
pub trait Background {
    fn spawn(&self, task: Task);
}
