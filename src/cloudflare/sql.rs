//! Small SQLite helpers shared by the objects.

use worker::{SqlCursor, SqlStorage, SqlStorageValue};

use super::rpc::SqlResult;
use crate::core::event::Event;
use crate::identity::objects::EventTable;
use crate::identity::wire::Position;
use crate::identity::StoreError;

/// One column of a row read by [`rows`], taken out of it: `None` for a
/// value of another type.
pub trait Column: Sized {
    fn column(value: &mut SqlStorageValue) -> Option<Self>;
}

impl Column for i64 {
    fn column(value: &mut SqlStorageValue) -> Option<Self> {
        // A number beyond JavaScript's safe integers comes as a float: not
        // an integer this code wrote, so the row is refused.
        match *value {
            SqlStorageValue::Integer(n) => Some(n),
            _ => None,
        }
    }
}

impl Column for String {
    fn column(value: &mut SqlStorageValue) -> Option<Self> {
        match value {
            SqlStorageValue::String(s) => Some(std::mem::take(s)),
            _ => None,
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn column(value: &mut SqlStorageValue) -> Option<Self> {
        match value {
            SqlStorageValue::Null => Some(None),
            value => T::column(value).map(Some),
        }
    }
}

/// A row read by [`rows`]: a tuple, one [`Column`] per selected column.
pub trait Row: Sized {
    fn row(values: &mut [SqlStorageValue]) -> Option<Self>;
}

macro_rules! row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Column),+> Row for ($($t,)+) {
            fn row(values: &mut [SqlStorageValue]) -> Option<Self> {
                match values {
                    [$($i),+] => Some(($($t::column($i)?,)+)),
                    _ => None,
                }
            }
        }
    };
}

row!(A a);
row!(A a, B b);
row!(A a, B b, C c);
row!(A a, B b, C c, D d);

/// A cursor's rows, their columns in the order the query selects them. One
/// reader for every row: `to_array` compiled a serde deserializer per row
/// struct into the wasm, and the loop here is not generic either.
pub fn rows<R: Row>(cursor: SqlCursor) -> worker::Result<Vec<R>> {
    let mut out = Vec::new();
    each_row(cursor, &mut |values| {
        out.push(R::row(values)?);
        Some(())
    })?;
    Ok(out)
}

fn each_row(
    cursor: SqlCursor,
    row: &mut dyn FnMut(&mut [SqlStorageValue]) -> Option<()>,
) -> worker::Result<()> {
    for values in cursor.raw() {
        row(&mut values?).ok_or_else(|| worker::Error::from("a SQL row of other columns"))?;
    }
    Ok(())
}

pub fn table_exists(sql: &SqlStorage, table: &str) -> Result<bool, StoreError> {
    let rows: Vec<(String,)> = sql
        .exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
            vec![table.into()],
        )
        .and_then(rows)
        .or_unavailable()?;
    Ok(!rows.is_empty())
}

/// Runs a query whose rows are JSON bodies and parses them.
pub fn bodies<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    params: Vec<worker::SqlStorageValue>,
) -> Result<Vec<T>, StoreError> {
    let rows: Vec<(String,)> = sql
        .exec(query, Some(params).filter(|p| !p.is_empty()))
        .and_then(rows)
        .or_unavailable()?;
    rows.iter()
        .map(|(body,)| crate::core::json::from_str(body).map_err(StoreError::from))
        .collect()
}

/// Stores an event in an `events` table unless its id is there (dedup).
pub fn insert_event(sql: &SqlStorage, event: &Event) -> Result<(), StoreError> {
    let body = serde_json::to_string(event)?;
    sql.exec(
        "INSERT OR IGNORE INTO events (id, ts, body) VALUES (?, ?, ?)",
        vec![event.id.clone().into(), event.timestamp.into(), body.into()],
    )
    .or_unavailable()?;
    Ok(())
}

fn event_rows(
    sql: &SqlStorage,
    query: &str,
    params: Vec<worker::SqlStorageValue>,
) -> Result<Vec<(Event, i64, i64)>, StoreError> {
    let rows: Vec<(i64, i64, String)> = sql.exec(query, params).and_then(rows).or_unavailable()?;
    rows.into_iter()
        .map(|(seq, ts, body)| Ok((crate::core::json::from_str(&body)?, ts, seq)))
        .collect()
}

/// An `events` table, newest first from `before` on (exclusive).
pub fn events_desc(
    sql: &SqlStorage,
    limit: u32,
    before: Option<Position>,
) -> Result<Vec<(Event, Position)>, StoreError> {
    let rows = match before {
        None => event_rows(
            sql,
            "SELECT seq, ts, body FROM events ORDER BY ts DESC, seq DESC LIMIT ?",
            vec![i64::from(limit).into()],
        )?,
        Some(p) => event_rows(
            sql,
            "SELECT seq, ts, body FROM events WHERE ts < ? OR (ts = ? AND seq < ?) ORDER BY ts DESC, seq DESC LIMIT ?",
            vec![p.ts.into(), p.ts.into(), p.seq.into(), i64::from(limit).into()],
        )?,
    };
    Ok(rows
        .into_iter()
        .map(|(e, ts, seq)| (e, Position { ts, seq }))
        .collect())
}

/// An `events` table in stored order after the seq `after`.
pub fn events_asc(
    sql: &SqlStorage,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<(Event, i64)>, StoreError> {
    let rows = event_rows(
        sql,
        "SELECT seq, ts, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        vec![after.unwrap_or(0).into(), i64::from(limit).into()],
    )?;
    Ok(rows.into_iter().map(|(e, _, seq)| (e, seq)).collect())
}

pub fn has_event(sql: &SqlStorage, id: &str) -> Result<bool, StoreError> {
    let rows: Vec<(i64,)> = sql
        .exec("SELECT count(*) FROM events WHERE id = ?", vec![id.into()])
        .and_then(rows)
        .or_unavailable()?;
    Ok(rows.first().is_some_and(|&(n,)| n > 0))
}

/// The first row's integer of a query that selects one.
pub fn first_n(sql: &SqlStorage, query: &str) -> Result<Option<i64>, StoreError> {
    let rows: Vec<(i64,)> = sql.exec(query, None).and_then(rows).or_unavailable()?;
    Ok(rows.first().map(|&(n,)| n))
}

/// The count a `SELECT count(*)` query answers.
pub fn count(sql: &SqlStorage, query: &str) -> Result<u64, StoreError> {
    Ok(first_n(sql, query)?.map_or(0, |n| n.max(0) as u64))
}

pub fn event_count(sql: &SqlStorage) -> Result<u64, StoreError> {
    count(sql, "SELECT count(*) FROM events")
}

/// An object's tables, each created by the first write to it, so that asking
/// an object nobody wrote to leaves nothing on disk (docs/API.md rule 6.15)
/// and a new object creates only the tables it uses (each `CREATE TABLE` is
/// rows written, and a new person or visitor uses two or three of its
/// tables). Which tables exist is read once per instance. The event methods
/// serve the objects whose schema has an `events` table; before the first
/// event they read as empty.
pub struct LazyTables {
    sql: SqlStorage,
    present: std::cell::RefCell<Option<Vec<&'static str>>>,
    /// (table, its `CREATE TABLE IF NOT EXISTS` statement)
    schema: &'static [(&'static str, &'static str)],
}

impl LazyTables {
    pub fn new(sql: SqlStorage, schema: &'static [(&'static str, &'static str)]) -> Self {
        LazyTables {
            sql,
            present: std::cell::RefCell::new(None),
            schema,
        }
    }

    fn present(&self) -> Result<std::cell::RefMut<'_, Vec<&'static str>>, StoreError> {
        let mut present = self.present.borrow_mut();
        if present.is_none() {
            let rows: Vec<(String,)> = self
                .sql
                .exec("SELECT name FROM sqlite_master WHERE type = 'table'", None)
                .and_then(rows)
                .or_unavailable()?;
            let names = self
                .schema
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| rows.iter().any(|(r,)| r == name))
                .collect();
            *present = Some(names);
        }
        Ok(std::cell::RefMut::map(present, |p| {
            p.get_or_insert_with(Vec::new)
        }))
    }

    /// Whether `table` exists.
    pub fn has(&self, table: &str) -> Result<bool, StoreError> {
        Ok(self.present()?.contains(&table))
    }

    /// Whether anything was ever written here (any of the tables exists).
    pub fn exists(&self) -> Result<bool, StoreError> {
        Ok(!self.present()?.is_empty())
    }

    /// Creates `table` unless it exists: every write calls it first.
    pub fn ensure(&self, table: &str) -> Result<(), StoreError> {
        let mut present = self.present()?;
        if present.contains(&table) {
            return Ok(());
        }
        let Some((name, create)) = self.schema.iter().find(|(name, _)| *name == table) else {
            return Err(StoreError::unavailable(format!(
                "no table {table} in the schema"
            )));
        };
        self.sql.exec(create, None).or_unavailable()?;
        present.push(name);
        Ok(())
    }

    /// The tables were dropped: the next write creates them again.
    pub fn dropped(&self) {
        *self.present.borrow_mut() = Some(Vec::new());
    }
}

/// The one SQLite event table, the visitor's and the person's.
impl EventTable for LazyTables {
    fn insert_event(&self, event: &Event) -> Result<(), StoreError> {
        self.ensure("events")?;
        insert_event(&self.sql, event)
    }

    fn has_event(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.has("events")? && has_event(&self.sql, id)?)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        if !self.has("events")? {
            return Ok(0);
        }
        event_count(&self.sql)
    }

    /// Seqs are distinct integers, so the span from the first to the last
    /// is at least the count: two rows read instead of every row, and a
    /// count only when the span reaches `n`.
    fn holds_at_least(&self, n: u64) -> Result<bool, StoreError> {
        if !self.has("events")? {
            return Ok(false);
        }
        let span = first_n(
            &self.sql,
            "SELECT coalesce((SELECT seq FROM events ORDER BY seq DESC LIMIT 1) - (SELECT seq FROM events ORDER BY seq LIMIT 1) + 1, 0)",
        )?
        .unwrap_or(0);
        if span.max(0).unsigned_abs() < n {
            return Ok(false);
        }
        Ok(event_count(&self.sql)? >= n)
    }

    fn events_desc(
        &self,
        limit: u32,
        before: Option<Position>,
    ) -> Result<Vec<(Event, Position)>, StoreError> {
        if !self.has("events")? {
            return Ok(Vec::new());
        }
        events_desc(&self.sql, limit, before)
    }

    fn events_asc(&self, after: Option<i64>, limit: u32) -> Result<Vec<(Event, i64)>, StoreError> {
        if !self.has("events")? {
            return Ok(Vec::new());
        }
        events_asc(&self.sql, after, limit)
    }
}

/// A Durable Object whose events are in its [`LazyTables`]: its event table
/// is theirs.
pub trait SqlEvents {
    fn tables(&self) -> &LazyTables;
}

impl<T: SqlEvents> EventTable for T {
    fn insert_event(&self, event: &Event) -> Result<(), StoreError> {
        self.tables().insert_event(event)
    }
    fn has_event(&self, id: &str) -> Result<bool, StoreError> {
        self.tables().has_event(id)
    }
    fn event_count(&self) -> Result<u64, StoreError> {
        self.tables().event_count()
    }
    fn holds_at_least(&self, n: u64) -> Result<bool, StoreError> {
        self.tables().holds_at_least(n)
    }
    fn events_desc(
        &self,
        limit: u32,
        before: Option<Position>,
    ) -> Result<Vec<(Event, Position)>, StoreError> {
        self.tables().events_desc(limit, before)
    }
    fn events_asc(&self, after: Option<i64>, limit: u32) -> Result<Vec<(Event, i64)>, StoreError> {
        self.tables().events_asc(after, limit)
    }
}
