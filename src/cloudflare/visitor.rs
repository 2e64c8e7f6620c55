//! The visitor object: one per anonymous id, holding its events until it is
//! identified, then a `merged_into` marker so that late events reach the
//! person instead of being stranded. Its rules live in
//! `identity::objects::visitor_call`; this is the SQLite side.

use worker::{Env, SqlStorage, State};

use super::cio::Outbox;
use super::class::{Incoming, Object};
use super::rpc::{read_call, reply, SqlResult};
use super::sql::{self, rows, LazyTables, SqlEvents};
use crate::identity::objects::{visitor_call, VisitorTables};
use crate::identity::retention::{self, Retention, VisitorClock};
use crate::identity::StoreError;

// `seq` without AUTOINCREMENT, as in the person (see there).
const SCHEMA: &[(&str, &str)] = &[
    ("events", "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, body TEXT NOT NULL)"),
    ("marker", "CREATE TABLE IF NOT EXISTS marker (k INTEGER PRIMARY KEY CHECK (k = 1), merged_into TEXT NOT NULL)"),
    ("touched", "CREATE TABLE IF NOT EXISTS touched (k INTEGER PRIMARY KEY CHECK (k = 1), at INTEGER NOT NULL)"),
];

crate::export_object!(VisitorClass as Visitor, Visitor, alarm);

pub struct Visitor {
    state: State,
    retention: Retention,
    env: Env,
    outbox: Outbox,
    sql: SqlStorage,
    /// Created by the first write: a read leaves nothing on disk.
    tables: LazyTables,
}

impl SqlEvents for Visitor {
    fn tables(&self) -> &LazyTables {
        &self.tables
    }
}

impl VisitorTables for Visitor {
    fn merged_into(&self) -> Result<Option<String>, StoreError> {
        if !self.tables.has("marker")? {
            return Ok(None);
        }
        let rows: Vec<(String,)> = self
            .sql
            .exec("SELECT merged_into FROM marker WHERE k = 1", None)
            .and_then(rows)
            .or_unavailable()?;
        Ok(rows.into_iter().next().map(|(cio_id,)| cio_id))
    }

    fn set_merged_into(&self, cio_id: Option<&str>) -> Result<(), StoreError> {
        match cio_id {
            Some(cio_id) => {
                self.tables.ensure("marker")?;
                self.sql.exec(
                    "INSERT OR REPLACE INTO marker (k, merged_into) VALUES (1, ?)",
                    vec![cio_id.into()],
                )
            }
            None if self.tables.has("marker")? => {
                self.sql.exec("DELETE FROM marker WHERE k = 1", None)
            }
            None => return Ok(()),
        }
        .or_unavailable()?;
        Ok(())
    }

    fn clear_events(&self) -> Result<(), StoreError> {
        if self.tables.has("events")? {
            self.sql.exec("DELETE FROM events", None).or_unavailable()?;
        }
        Ok(())
    }

    fn expired(&self) -> Result<Option<i64>, StoreError> {
        if !sql::table_exists(&self.sql, "expired")? {
            return Ok(None);
        }
        sql::first_n(&self.sql, "SELECT last FROM expired WHERE k = 1")
    }

    fn forwarding(&self) -> bool {
        self.outbox.on
    }

    fn outbox_push(&self, op: &serde_json::Value) -> Result<(), StoreError> {
        self.outbox.push(&self.sql, op)
    }
}

impl VisitorClock for Visitor {
    fn last_active(&self) -> Result<Option<i64>, StoreError> {
        if !self.tables.has("touched")? {
            return Ok(None);
        }
        sql::first_n(&self.sql, "SELECT at FROM touched WHERE k = 1")
    }

    fn touch(&self, now: i64) -> Result<(), StoreError> {
        self.tables.ensure("touched")?;
        self.sql
            .exec(
                "INSERT OR REPLACE INTO touched (k, at) VALUES (1, ?)",
                vec![now.into()],
            )
            .or_unavailable()?;
        Ok(())
    }

    fn forget(&self, last_active: i64) -> Result<(), StoreError> {
        // Kept after the data goes: a later identify must not have Customer.io
        // join what was deleted here (`cio::may_join_anonymous`).
        self.sql
            .exec(
                "CREATE TABLE IF NOT EXISTS expired (k INTEGER PRIMARY KEY CHECK (k = 1), last INTEGER NOT NULL)",
                None,
            )
            .or_unavailable()?;
        self.sql
            .exec(
                "INSERT OR REPLACE INTO expired (k, last) VALUES (1, ?)",
                vec![last_active.into()],
            )
            .or_unavailable()?;
        for drop in [
            "DROP TABLE IF EXISTS events",
            "DROP TABLE IF EXISTS marker",
            "DROP TABLE IF EXISTS touched",
        ] {
            self.sql.exec(drop, None).or_unavailable()?;
        }
        self.tables.dropped();
        Ok(())
    }
}

impl Object for Visitor {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        Self {
            tables: LazyTables::new(sql.clone(), SCHEMA),
            sql,
            retention: super::retention(&env),
            outbox: Outbox::new(&env, crate::bindings::VISITOR, state.id().to_string()),
            state,
            env,
        }
    }

    async fn fetch(&self, call: Incoming) -> worker::Result<String> {
        if call.path == super::cio::ANSWER_PATH {
            return self
                .outbox
                .answer(&call, &self.state, &self.env, &self.sql)
                .await;
        }
        let call = read_call(&call)?;
        let activity = retention::visitor_activity(&call);
        let answer = visitor_call(self, call);
        if activity && answer.is_ok() {
            match retention::visitor_after(self, super::now_secs(), self.retention) {
                Ok(Some(at)) => super::wake_by(&self.state.storage(), at).await,
                Ok(None) => {}
                Err(e) => worker::console_error!("visitor activity not noted: {e}"),
            }
        }
        self.outbox.arm(&self.state).await;
        reply(answer)
    }

    async fn alarm(&self) -> worker::Result<()> {
        // One alarm serves both: the outbox drains, then retention deletes an
        // idle visitor or asks again (the earliest wish wins, `wake_by`).
        let drained = self.outbox.drain(&self.state, &self.env, &self.sql).await;
        match retention::visitor_alarm(self, super::now_secs(), self.retention) {
            Ok(Some(at)) => super::wake_by(&self.state.storage(), at).await,
            Ok(None) => {}
            Err(e) => return Err(super::alarm_failed(e)),
        }
        drained
    }
}
