//! The storage seam over Durable Objects: each call goes to the object named
//! by its key, cio_id or anonymous id.

use worker::Env;

use super::rpc::call;
use super::{index, person, visitor};
use crate::identity::wire::*;
use crate::identity::{IndexKey, Objects};

#[derive(Clone)]
pub struct DoObjects {
    env: Env,
}

impl DoObjects {
    pub fn new(env: Env) -> Self {
        DoObjects { env }
    }
}

impl Objects for DoObjects {
    async fn index(&self, key: &IndexKey, c: IndexCall) -> Result<IndexReply, StoreError> {
        call(&self.env, index::BINDING, &key.to_string(), &c).await
    }

    async fn person(&self, cio_id: &str, c: PersonCall) -> Result<PersonReply, StoreError> {
        call(&self.env, person::BINDING, cio_id, &c).await
    }

    async fn visitor(&self, anon_id: &str, c: VisitorCall) -> Result<VisitorReply, StoreError> {
        call(&self.env, visitor::BINDING, anon_id, &c).await
    }
}
