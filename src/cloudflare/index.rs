//! The identity index object: one per identifier value (named by its
//! `IndexKey`), holding the cio_id that owns it. Each call runs without
//! interleaving, so one value belongs to at most one person under any
//! concurrency (docs/ARCHITECTURE.md, invariant 1).

use worker::{Env, SqlStorage, State};

use super::class::{Incoming, Object};
use super::rpc::{read_call, reply, SqlResult};
use super::sql::{rows, LazyTables};
use crate::identity::objects::{index_call, IndexTables};
use crate::identity::StoreError;

crate::export_object!(IdentityIndexClass as IdentityIndex, IdentityIndex);

pub struct IdentityIndex {
    sql: SqlStorage,
    /// Created by the first write: asking about a value nobody owns leaves
    /// nothing on disk.
    tables: LazyTables,
}

const SCHEMA: &[(&str, &str)] = &[(
    "owner",
    "CREATE TABLE IF NOT EXISTS owner (k INTEGER PRIMARY KEY CHECK (k = 1), cio_id TEXT NOT NULL)",
)];

impl IndexTables for IdentityIndex {
    fn owner(&self) -> Result<Option<String>, StoreError> {
        if !self.tables.has("owner")? {
            return Ok(None);
        }
        let rows: Vec<(String,)> = self
            .sql
            .exec("SELECT cio_id FROM owner WHERE k = 1", None)
            .and_then(rows)
            .or_unavailable()?;
        Ok(rows.into_iter().next().map(|(cio_id,)| cio_id))
    }

    fn set_owner(&self, cio_id: Option<&str>) -> Result<(), StoreError> {
        match cio_id {
            Some(cio_id) => {
                self.tables.ensure("owner")?;
                self.sql.exec(
                    "INSERT OR REPLACE INTO owner (k, cio_id) VALUES (1, ?)",
                    vec![cio_id.into()],
                )
            }
            None if self.tables.has("owner")? => {
                self.sql.exec("DELETE FROM owner WHERE k = 1", None)
            }
            None => return Ok(()),
        }
        .or_unavailable()?;
        Ok(())
    }
}

impl Object for IdentityIndex {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        Self {
            tables: LazyTables::new(sql.clone(), SCHEMA),
            sql,
        }
    }

    async fn fetch(&self, call: Incoming) -> worker::Result<String> {
        let call = read_call(&call)?;
        reply(index_call(self, call))
    }
}
