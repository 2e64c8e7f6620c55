//! Small SQLite helpers shared by the objects.

use serde::Deserialize;
use worker::SqlStorage;

use super::rpc::SqlResult;
use crate::core::event::Event;
use crate::identity::StoreError;

#[derive(Deserialize)]
struct NameRow {
    #[allow(dead_code)]
    name: String,
}

#[derive(Deserialize)]
pub struct BodyRow {
    pub body: String,
}

pub fn table_exists(sql: &SqlStorage, table: &str) -> Result<bool, StoreError> {
    let rows: Vec<NameRow> = sql
        .exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
            vec![table.into()],
        )
        .and_then(|c| c.to_array())
        .or_unavailable()?;
    Ok(!rows.is_empty())
}

/// Runs a query whose rows are JSON bodies and parses them.
pub fn bodies<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    params: Vec<worker::SqlStorageValue>,
) -> Result<Vec<T>, StoreError> {
    let rows: Vec<BodyRow> = sql
        .exec(query, Some(params).filter(|p| !p.is_empty()))
        .and_then(|c| c.to_array())
        .or_unavailable()?;
    rows.iter()
        .map(|r| serde_json::from_str(&r.body).map_err(StoreError::from))
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
