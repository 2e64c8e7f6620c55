//! Retention (docs/API.md section 10.5): `ANONYMOUS_RETENTION_DAYS` deletes a
//! visitor never identified after that long without activity,
//! `EVENT_RETENTION_DAYS` a person's events older than that. Each object keeps
//! its own alarm (Durable Object alarms on Workers, a map in `memory`): no scan
//! of everything. These are the rules; the objects call them after a call
//! that stored something and when their alarm rings.

use super::objects::{PersonTables, VisitorTables};
use super::wire::{PersonCall, StoreError, VisitorCall};

/// The two settings, in seconds; 0 keeps forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub anonymous_secs: i64,
    pub event_secs: i64,
}

/// What retention needs of a visitor beyond its tables.
pub trait VisitorClock: VisitorTables {
    /// When it last recorded an event (the edge's clock).
    fn last_active(&self) -> Result<Option<i64>, StoreError>;
    fn touch(&self, now: i64) -> Result<(), StoreError>;
    /// Deletes everything it holds, keeping only that it was deleted and
    /// its last activity then (`VisitorTables::expired`).
    fn forget(&self, last_active: i64) -> Result<(), StoreError>;
}

/// What retention needs of a person beyond its tables.
pub trait PersonClock: PersonTables {
    fn delete_events_before(&self, ts: i64) -> Result<(), StoreError>;
    fn oldest_event(&self) -> Result<Option<i64>, StoreError>;
}

/// Whether a visitor call is activity (an event to record).
pub fn visitor_activity(call: &VisitorCall) -> bool {
    matches!(call, VisitorCall::Record(_))
}

/// After a visitor answered a call that was activity: notes it and answers
/// when its alarm should ring, if it is to have one (a running alarm is
/// kept: it reads the last activity when it rings).
pub fn visitor_after(
    t: &impl VisitorClock,
    now: i64,
    r: Retention,
) -> Result<Option<i64>, StoreError> {
    if r.anonymous_secs == 0 || t.merged_into()?.is_some() {
        return Ok(None);
    }
    t.touch(now)?;
    Ok(Some(now + r.anonymous_secs))
}

/// A visitor's alarm rang: delete it when it was never identified and idle
/// for the retention period; else answer when to look again.
pub fn visitor_alarm(
    t: &impl VisitorClock,
    now: i64,
    r: Retention,
) -> Result<Option<i64>, StoreError> {
    if r.anonymous_secs == 0 || t.merged_into()?.is_some() {
        return Ok(None);
    }
    match t.last_active()? {
        None => Ok(None),
        Some(last) if last + r.anonymous_secs <= now => {
            t.forget(last)?;
            Ok(None)
        }
        Some(last) => Ok(Some(last + r.anonymous_secs)),
    }
}

/// Whether a person call may store events (then the person needs an alarm).
pub fn person_stores_events(call: &PersonCall) -> bool {
    matches!(
        call,
        PersonCall::Track(_)
            | PersonCall::Identify(_)
            | PersonCall::Absorb { .. }
            | PersonCall::AbsorbEvents(_)
    )
}

/// When a person that may have stored events should ring, unless an alarm
/// is set already.
pub fn person_after(call: &PersonCall, now: i64, r: Retention) -> Option<i64> {
    (r.event_secs > 0 && person_stores_events(call)).then_some(now + r.event_secs)
}

/// A person's alarm rang: delete its events older than the retention period
/// and answer when the oldest left expires.
pub fn person_alarm(
    t: &impl PersonClock,
    now: i64,
    r: Retention,
) -> Result<Option<i64>, StoreError> {
    if r.event_secs == 0 {
        return Ok(None);
    }
    t.delete_events_before(now - r.event_secs)?;
    Ok(t.oldest_event()?.map(|ts| (ts + r.event_secs).max(now + 1)))
}
