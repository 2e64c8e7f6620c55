//! The storage seam over Durable Objects: each call goes to the object named
//! by its key, cio_id or anonymous id.

use worker::Env;

use super::rpc::call;
use crate::bindings::{IDENTITY_INDEX, PERSON, VISITOR};
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
        call(&self.env, IDENTITY_INDEX, &key.to_string(), &c).await
    }

    async fn person(&self, cio_id: &str, c: PersonCall) -> Result<PersonReply, StoreError> {
        call(&self.env, PERSON, cio_id, &c).await
    }

    async fn visitor(&self, anon_id: &str, c: VisitorCall) -> Result<VisitorReply, StoreError> {
        call(&self.env, VISITOR, anon_id, &c).await
    }
}
