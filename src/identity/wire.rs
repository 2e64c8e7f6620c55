//! What crosses between the worker and its Durable Objects: one call enum and
//! one reply enum per kind of object, and the error, all plain serde data. The
//! Durable Object clients send these as JSON; the in-memory store passes them
//! directly. A client's mistake (`core::Error`) travels as itself, so every
//! variant arrives intact. A call or reply of one value is a newtype variant,
//! not a struct variant of one field: each struct variant costs the wasm a
//! reader of its own.

use serde::{Deserialize, Serialize};

use crate::core::body::Object;
use crate::core::event::Event;
use crate::core::profile::{Profile, ProfileUpdate, Relationship};
use crate::core::Error as ClientError;

use super::key::IndexKey;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The input broke a rule only the stored state can check (409, 404, ...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Storage is unbound, unreachable or failed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn unavailable(detail: impl Into<String>) -> Self {
        StoreError::Unavailable(detail.into())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Unavailable(format!("bad stored or sent data: {e}"))
    }
}

// ---- identity index: one object per identifier value ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexCall {
    Get,
    /// Own the value for this cio_id unless someone already does.
    Claim(String),
    /// Give the value up, only if this cio_id owns it.
    Release(String),
    /// Hand the value from `from` to `to` in one step (a merge keeping the
    /// secondary's email), only if `from` owns it.
    Transfer {
        from: String,
        to: String,
    },
}

/// The owner after the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexReply {
    pub cio_id: Option<String>,
}

// ---- person: one object per cio_id ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonCall {
    Identify(IdentifyCall),
    Track(Event),
    Profile,
    Activity {
        limit: u32,
        before: Option<Position>,
    },
    /// Start a merge into this successor: from now on this person is gone
    /// (every call is sent on to the successor) but keeps its data until
    /// deleted, and answers it all.
    Seal(String),
    /// Undo a seal (to this successor) that found no live successor.
    Unseal(String),
    /// The next page of a sealed person's events, after this seq.
    DumpEvents(i64),
    /// Take in a further page of a sealed secondary's events.
    AbsorbEvents(Vec<Event>),
    /// Take in a sealed secondary person (its first page of events).
    Absorb {
        dump: Box<PersonDump>,
        now: i64,
    },
    /// Forget everything but a tombstone; answers the person as it was.
    Delete,
    /// Forwarding: send the identify that joins the merged visitor's (this
    /// anonymous id's) events to this person again (some were delivered
    /// late). `Done`, or `Missing` when the visitor is not this person's.
    Rejoin(String),
    /// Forwarding: send this operation (a v2 operation without
    /// `identifiers`) for this person; nothing is stored. `Done` also with
    /// forwarding off.
    Forward(crate::core::body::Object),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentifyCall {
    pub cio_id: String,
    pub update: ProfileUpdate,
    /// Create the person when it does not exist yet.
    pub create: bool,
    /// The worker already owns `update.email` for this person in the index.
    pub email_claimed: bool,
    /// The visitor whose anonymous activity merges into this person.
    pub anonymous_id: Option<String>,
    pub now: i64,
    /// The person was found through the cache, not the index: it must still
    /// hold this identifier, else it answers `Missing` and nothing changes.
    #[serde(default)]
    pub must_hold: Option<IndexKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonReply {
    Identified(IdentifyReply),
    Tracked,
    Done,
    View(Box<PersonView>),
    Activity(Activity),
    Dump(Box<PersonDump>),
    /// A page of events in stored order; `next` continues after it.
    Events {
        events: Vec<Event>,
        next: Option<i64>,
    },
    /// No such person, and never was (nothing is created by asking).
    Missing,
    /// The person was deleted (no successor) or merged into the successor.
    /// A cio_id that is gone never comes back.
    Gone(Option<String>),
}

fn changed() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyReply {
    Done {
        person: Box<PersonView>,
        /// The email the person held before this call, to be released.
        released_email: Option<String>,
        /// The visitor already belongs to another person: rotate its id.
        rotate_anon: bool,
        /// The person was created or got a new id or email: the cached
        /// identifier keys need writing, not only the snapshot.
        identifiers_changed: bool,
        /// The profile or relationships changed: the cached snapshot needs
        /// writing (an object that does not say is taken to have changed).
        #[serde(default = "changed")]
        profile_changed: bool,
    },
    /// The update gives the person a new email: claim it in the index first.
    NeedsEmailClaim,
}

/// A person as the admin API shows it and as KV caches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonView {
    pub cio_id: String,
    pub id: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
    pub attributes: Object,
    pub relationships: Vec<Relationship>,
    pub anonymous_ids: Vec<String>,
    pub updated_at: i64,
}

/// Where an event sits in newest-first order: its timestamp and stored seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub ts: i64,
    pub seq: i64,
}

impl Position {
    /// The activity cursor a client gets: `<ts>.<seq>`.
    pub fn to_cursor(self) -> String {
        format!("{}.{}", self.ts, self.seq)
    }

    /// A cursor as `to_cursor` wrote it; anything else is a 400 naming it.
    pub fn from_cursor(cursor: &str) -> Result<Self, ClientError> {
        let invalid =
            || ClientError::invalid("cursor", "must be a cursor exactly as a page returned it");
        let (ts, seq) = cursor.split_once('.').ok_or_else(invalid)?;
        let ts = ts.parse::<i64>().map_err(|_| invalid())?;
        let seq = seq
            .parse::<i64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(invalid)?;
        Ok(Position { ts, seq })
    }
}

/// A page of activity, newest first; `next` is where the following page
/// starts (none on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next: Option<Position>,
}

/// A whole person, as a merge moves it; its events come a page at a time,
/// the first here and the rest after `next`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonDump {
    pub profile: Profile,
    pub relationships: Vec<Relationship>,
    pub anonymous_ids: Vec<String>,
    pub events: Vec<Event>,
    pub next: Option<i64>,
}

// ---- visitor: one object per anonymous id ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorCall {
    Record(Event),
    /// Mark the visitor merged into `cio_id` (unless it already is, into
    /// another person) and hand over a page of its events, after `after`.
    Merge {
        cio_id: String,
        after: Option<i64>,
    },
    /// The person (this cio_id) stored the handed-over events: drop them
    /// here.
    Ack(String),
    Activity {
        limit: u32,
        before: Option<Position>,
    },
    /// The person this visitor was merged into, if any (`Recorded`).
    Owner,
    /// The person `from` was merged into another (`to`) or is gone (`None`):
    /// follow it, or become anonymous again, keeping any events not handed
    /// over.
    Repoint {
        from: String,
        to: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorReply {
    /// A person (the visitor was already merged into it): the event was not
    /// stored here and belongs to that person.
    Recorded(Option<String>),
    /// The person this visitor belongs to after the call, and the events not
    /// yet acknowledged by it (none when it belongs to another person).
    Merged {
        merged_into: String,
        events: Vec<Event>,
        /// More events follow after this seq.
        next: Option<i64>,
        /// Retention deleted this visitor once; its last activity then.
        #[serde(default)]
        expired: Option<i64>,
    },
    Activity(VisitorActivity),
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorActivity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    pub events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next: Option<Position>,
}

/// An answer of the wrong kind: a bug between client and object, never the
/// client's fault.
pub fn unexpected(what: &str) -> StoreError {
    StoreError::unavailable(format!("unexpected reply to {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let p = Position {
            ts: 1_700_000_000,
            seq: 42,
        };
        assert_eq!(Position::from_cursor(&p.to_cursor()), Ok(p));
        for bad in ["", "garbage", "1.", ".5", "1.0", "1.-3", "a.b", "1.2.3"] {
            let err = Position::from_cursor(bad).unwrap_err();
            assert_eq!(err.field(), Some("cursor"), "{bad:?}");
        }
    }
}
