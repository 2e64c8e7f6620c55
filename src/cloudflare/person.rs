//! The person object: one per cio_id, SQLite-backed: profile, relationships,
//! events (deduplicated by id), the anonymous ids merged into it, and a
//! tombstone that outlives a delete or a merge. Its rules live in
//! `identity::objects::person_call`; this is the SQLite side, and the one
//! place its after-the-answer work is handed to `wait_until`.

use worker::{Env, SqlStorage, State};

use super::cio::Outbox;
use super::class::{Incoming, Object};
use super::objects::DoObjects;
use super::rpc::{read_call, reply, SqlResult};
use super::sql::{self, bodies, rows, LazyTables, SqlEvents};
use super::task;
use crate::core::profile::{Profile, Relationship};
use crate::identity::objects::{person_call, FollowUp, PersonTables, Tombstone};
use crate::identity::retention::{self, PersonClock, Retention};
use crate::identity::wire::VisitorCall;
use crate::identity::{Objects, StoreError};

const DATA_TABLES: [&str; 4] = ["profile", "relationships", "anonymous_ids", "events"];

// `seq` is a plain INTEGER PRIMARY KEY (the next is the largest plus one):
// AUTOINCREMENT would write a `sqlite_sequence` row with every insert, a
// third of an event's rows written. Tables made before keep it; both order
// the same, and a reused seq (the newest row deleted, then an insert) is
// newer than every cursor still in use.
const SCHEMA: &[(&str, &str)] = &[
    ("profile", "CREATE TABLE IF NOT EXISTS profile (k INTEGER PRIMARY KEY CHECK (k = 1), body TEXT NOT NULL)"),
    ("relationships", "CREATE TABLE IF NOT EXISTS relationships (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"),
    ("anonymous_ids", "CREATE TABLE IF NOT EXISTS anonymous_ids (id TEXT PRIMARY KEY)"),
    ("events", "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, body TEXT NOT NULL)"),
    ("tombstone", "CREATE TABLE IF NOT EXISTS tombstone (k INTEGER PRIMARY KEY CHECK (k = 1), body TEXT NOT NULL)"),
];

crate::export_object!(PersonClass as Person, Person, alarm);

pub struct Person {
    state: State,
    retention: Retention,
    env: Env,
    sql: SqlStorage,
    /// Created by the first write: a lookup of a cio_id nobody has leaves
    /// nothing on disk.
    tables: LazyTables,
    outbox: Outbox,
}

impl Person {
    /// A write to `table`, created first when it is not there yet.
    fn exec(
        &self,
        table: &str,
        query: &str,
        params: Vec<worker::SqlStorageValue>,
    ) -> Result<(), StoreError> {
        self.tables.ensure(table)?;
        self.sql
            .exec(query, Some(params).filter(|p| !p.is_empty()))
            .or_unavailable()?;
        Ok(())
    }

    /// A read of `table`: nothing when it is not there.
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        query: &str,
        params: Vec<worker::SqlStorageValue>,
    ) -> Result<Vec<T>, StoreError> {
        if !self.tables.has(table)? {
            return Ok(Vec::new());
        }
        bodies(&self.sql, query, params)
    }
}

impl SqlEvents for Person {
    fn tables(&self) -> &LazyTables {
        &self.tables
    }
}

impl PersonTables for Person {
    fn profile(&self) -> Result<Option<Profile>, StoreError> {
        Ok(self
            .read("profile", "SELECT body FROM profile WHERE k = 1", vec![])?
            .into_iter()
            .next())
    }

    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        let body = serde_json::to_string(profile)?;
        self.exec(
            "profile",
            "INSERT OR REPLACE INTO profile (k, body) VALUES (1, ?)",
            vec![body.into()],
        )
    }

    fn relationships(&self) -> Result<Vec<Relationship>, StoreError> {
        self.read(
            "relationships",
            "SELECT body FROM relationships ORDER BY seq",
            vec![],
        )
    }

    fn save_relationships(&self, relationships: &[Relationship]) -> Result<(), StoreError> {
        if relationships.is_empty() && !self.tables.has("relationships")? {
            return Ok(());
        }
        self.exec("relationships", "DELETE FROM relationships", vec![])?;
        for rel in relationships {
            self.exec(
                "relationships",
                "INSERT INTO relationships (body) VALUES (?)",
                vec![serde_json::to_string(rel)?.into()],
            )?;
        }
        Ok(())
    }

    fn anonymous_ids(&self) -> Result<Vec<String>, StoreError> {
        if !self.tables.has("anonymous_ids")? {
            return Ok(Vec::new());
        }
        let rows: Vec<(String,)> = self
            .sql
            .exec("SELECT id FROM anonymous_ids ORDER BY id", None)
            .and_then(rows)
            .or_unavailable()?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    fn has_anonymous_id(&self, anon_id: &str) -> Result<bool, StoreError> {
        if !self.tables.has("anonymous_ids")? {
            return Ok(false);
        }
        let rows: Vec<(String,)> = self
            .sql
            .exec(
                "SELECT id FROM anonymous_ids WHERE id = ?",
                vec![anon_id.into()],
            )
            .and_then(rows)
            .or_unavailable()?;
        Ok(!rows.is_empty())
    }

    fn add_anonymous_id(&self, anon_id: &str) -> Result<(), StoreError> {
        self.exec(
            "anonymous_ids",
            "INSERT OR IGNORE INTO anonymous_ids (id) VALUES (?)",
            vec![anon_id.into()],
        )
    }

    fn drop_earliest_browser_event(&self) -> Result<bool, StoreError> {
        if !self.tables.has("events")? {
            return Ok(false);
        }
        // Stored order (seq) is the primary key: the scan stops at the
        // first browser event, and it never sorts the table.
        let rows: Vec<(String,)> = self
            .sql
            .exec(
                "DELETE FROM events WHERE seq = (SELECT seq FROM events WHERE substr(id, 1, 8) = 'browser:' ORDER BY seq LIMIT 1) RETURNING id",
                None,
            )
            .and_then(rows)
            .or_unavailable()?;
        Ok(!rows.is_empty())
    }

    fn tombstone(&self) -> Result<Option<Tombstone>, StoreError> {
        Ok(self
            .read(
                "tombstone",
                "SELECT body FROM tombstone WHERE k = 1",
                vec![],
            )?
            .into_iter()
            .next())
    }

    fn set_tombstone(&self, tombstone: Option<&Tombstone>) -> Result<(), StoreError> {
        match tombstone {
            Some(t) => self.exec(
                "tombstone",
                "INSERT OR REPLACE INTO tombstone (k, body) VALUES (1, ?)",
                vec![serde_json::to_string(t)?.into()],
            ),
            None if self.tables.has("tombstone")? => {
                self.exec("tombstone", "DELETE FROM tombstone WHERE k = 1", vec![])
            }
            None => Ok(()),
        }
    }

    fn wipe(&self) -> Result<(), StoreError> {
        for table in DATA_TABLES {
            if self.tables.has(table)? {
                self.exec(table, &format!("DELETE FROM {table}"), vec![])?;
            }
        }
        Ok(())
    }

    fn forwarding(&self) -> bool {
        self.outbox.on
    }

    fn outbox_push(&self, op: &serde_json::Value) -> Result<(), StoreError> {
        self.outbox.push(&self.sql, op)
    }
}

impl PersonClock for Person {
    fn delete_events_before(&self, ts: i64) -> Result<(), StoreError> {
        if self.tables.has("events")? {
            self.exec("events", "DELETE FROM events WHERE ts < ?", vec![ts.into()])?;
        }
        Ok(())
    }

    fn oldest_event(&self) -> Result<Option<i64>, StoreError> {
        if !self.tables.has("events")? {
            return Ok(None);
        }
        sql::first_n(&self.sql, "SELECT ts FROM events ORDER BY ts LIMIT 1")
    }
}

impl Object for Person {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        Self {
            retention: super::retention(&env),
            outbox: Outbox::new(&env, crate::bindings::PERSON, state.id().to_string()),
            state,
            env,
            tables: LazyTables::new(sql.clone(), SCHEMA),
            sql,
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
        let objects = DoObjects::new(self.env.clone());
        let wake = retention::person_after(&call, super::now_secs(), self.retention);
        let answered = person_call(self, &objects, call).await;
        if let (Some(at), Ok(_)) = (wake, &answered.reply) {
            if self.tables.exists().unwrap_or(false) {
                super::wake_by(&self.state.storage(), at).await;
            }
        }
        for follow_up in answered.follow_up {
            let FollowUp::AckVisitor {
                anonymous_id,
                cio_id,
            } = follow_up;
            let objects = objects.clone();
            // Boxed: every `wait_until` in the wasm takes the one `Task` type.
            self.state.wait_until(task(async move {
                let _ = objects
                    .visitor(&anonymous_id, VisitorCall::Ack(cio_id))
                    .await;
            }));
        }
        self.outbox.arm(&self.state).await;
        reply(answered.reply)
    }

    async fn alarm(&self) -> worker::Result<()> {
        // One alarm serves both: the outbox drains, then retention deletes
        // what expired and asks again (the earliest wish wins, `wake_by`).
        let drained = self.outbox.drain(&self.state, &self.env, &self.sql).await;
        match retention::person_alarm(self, super::now_secs(), self.retention) {
            Ok(Some(at)) => super::wake_by(&self.state.storage(), at).await,
            Ok(None) => {}
            Err(e) => return Err(super::alarm_failed(e)),
        }
        drained
    }
}
