//! What each kind of Durable Object does with a call, written once against a
//! small synchronous table interface. The SQLite-backed objects (`store/`)
//! and the in-memory store (`memory`) both run exactly this code, so the
//! rules tested natively are the rules deployed.
//!
//! A call's synchronous steps commit as one unit (a Durable Object runs them
//! without interleaving); the only await inside an object is the person's call
//! to the visitor during a merge, and the person re-checks its own state after
//! it, because a delete or a merge may have run in between.
//!
//! With forwarding on, every change a call commits also writes its outbound
//! Customer.io operation(s) to the object's outbox in the same synchronous
//! step (the transactional outbox); an operation over Customer.io's size
//! limit refuses the write instead (413).

use serde_json::Value;

use crate::cio;
use crate::core::event::{Event, BROWSER_ID_PREFIX};
use crate::core::profile::{Profile, ProfileUpdate, Relationship};

use super::backend::Objects;
use super::key::IndexKey;
use super::wire::*;

/// Events an anonymous visitor may hold; past it, its events are refused
/// (429, `at_capacity`) until it identifies. Merges move at most this many.
pub const MAX_VISITOR_EVENTS: u64 = 1_000;
/// Events a person may hold; past it, new events are refused (429). Merges
/// are never refused: they move events already accepted.
pub const MAX_PERSON_EVENTS: u64 = 50_000;
/// The most event JSON one reply carries (activity pages, merge pages).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// The most events one merge page moves.
pub const MERGE_PAGE_EVENTS: u32 = 200;

fn at_capacity(what: &str, cap: u64) -> StoreError {
    crate::core::Error::AtCapacity {
        message: format!("{what} holds the most events it may ({cap})"),
    }
    .into()
}

/// Keeps events while they fit in `MAX_PAGE_BYTES` (always at least one),
/// answering how many were kept.
fn fit_page<T>(rows: &[(Event, T)]) -> usize {
    let mut bytes = 0;
    for (i, (event, _)) in rows.iter().enumerate() {
        bytes += serde_json::to_string(event).map(|s| s.len()).unwrap_or(0);
        if bytes > MAX_PAGE_BYTES && i > 0 {
            return i;
        }
    }
    rows.len()
}

/// A page of at most `limit` events that fits in `MAX_PAGE_BYTES`, and where
/// the next page starts (`P`: a newest-first position or a stored seq).
/// `rows` holds one more than `limit` when more follow.
fn page<P: Copy>(mut rows: Vec<(Event, P)>, limit: u32) -> (Vec<Event>, Option<P>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let kept = fit_page(&rows);
    let next = if more || kept < rows.len() {
        rows.get(kept.saturating_sub(1)).map(|(_, p)| *p)
    } else {
        None
    };
    rows.truncate(kept);
    (rows.into_iter().map(|(e, _)| e).collect(), next)
}

/// A newest-first page of at most `limit` events and where the next starts.
fn activity_page(rows: Vec<(Event, Position)>, limit: u32) -> (Vec<Event>, Option<Position>) {
    page(rows, limit)
}

/// A stored-order page of events and the seq after which more follow.
fn merge_page(rows: Vec<(Event, i64)>) -> (Vec<Event>, Option<i64>) {
    page(rows, MERGE_PAGE_EVENTS)
}

// ---------------------------------------------------------------- index ----

/// One identifier value's owner.
pub trait IndexTables {
    fn owner(&self) -> Result<Option<String>, StoreError>;
    fn set_owner(&self, cio_id: Option<&str>) -> Result<(), StoreError>;
}

pub fn index_call(t: &impl IndexTables, call: IndexCall) -> Result<IndexReply, StoreError> {
    let owner = match call {
        IndexCall::Get => t.owner()?,
        IndexCall::Claim(cio_id) => match t.owner()? {
            Some(existing) => Some(existing),
            None => {
                t.set_owner(Some(&cio_id))?;
                Some(cio_id)
            }
        },
        IndexCall::Release(cio_id) => match t.owner()? {
            Some(owner) if owner == cio_id => {
                t.set_owner(None)?;
                None
            }
            other => other,
        },
        IndexCall::Transfer { from, to } => match t.owner()? {
            Some(owner) if owner == from => {
                t.set_owner(Some(&to))?;
                Some(to)
            }
            other => other,
        },
    };
    Ok(IndexReply { cio_id: owner })
}

// -------------------------------------------------------------- visitor ----

/// The events an object keeps: the visitor's and the person's are one table,
/// with one implementation per backend.
pub trait EventTable {
    /// Stores the event unless one with its id is stored (dedup).
    fn insert_event(&self, event: &Event) -> Result<(), StoreError>;
    fn has_event(&self, id: &str) -> Result<bool, StoreError>;
    fn event_count(&self) -> Result<u64, StoreError>;
    /// Whether at least `n` events are stored (the capacity check); SQLite
    /// answers it without reading every row.
    fn holds_at_least(&self, n: u64) -> Result<bool, StoreError> {
        Ok(self.event_count()? >= n)
    }
    /// Newest first, from `before` on (exclusive), at most `limit`.
    fn events_desc(
        &self,
        limit: u32,
        before: Option<Position>,
    ) -> Result<Vec<(Event, Position)>, StoreError>;
    /// In stored order, after the seq `after`, at most `limit`.
    fn events_asc(&self, after: Option<i64>, limit: u32) -> Result<Vec<(Event, i64)>, StoreError>;
}

/// One anonymous visitor's events and, once merged, the person it became.
pub trait VisitorTables: EventTable {
    fn merged_into(&self) -> Result<Option<String>, StoreError>;
    fn set_merged_into(&self, cio_id: Option<&str>) -> Result<(), StoreError>;
    fn clear_events(&self) -> Result<(), StoreError>;
    /// When retention deleted this visitor, its last activity then.
    fn expired(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// Whether accepted writes are forwarded to Customer.io.
    fn forwarding(&self) -> bool {
        false
    }
    /// Appends an outbound operation to the outbox (forwarding on only).
    fn outbox_push(&self, _op: &Value) -> Result<(), StoreError> {
        Ok(())
    }
}

pub fn visitor_call(t: &impl VisitorTables, call: VisitorCall) -> Result<VisitorReply, StoreError> {
    Ok(match call {
        VisitorCall::Record(event) => {
            let merged_into = t.merged_into()?;
            if merged_into.is_none() {
                if t.holds_at_least(MAX_VISITOR_EVENTS)? && !t.has_event(&event.id)? {
                    return Err(at_capacity("this anonymous visitor", MAX_VISITOR_EVENTS));
                }
                match event.anonymous_id.as_deref() {
                    Some(anon) if t.forwarding() && !t.has_event(&event.id)? => {
                        let op = cio::checked(cio::anonymous_event_op(anon, &event))?;
                        t.insert_event(&event)?;
                        t.outbox_push(&op)?;
                    }
                    _ => t.insert_event(&event)?,
                }
            }
            VisitorReply::Recorded(merged_into)
        }
        VisitorCall::Merge { cio_id, after } => {
            let owner = match t.merged_into()? {
                Some(owner) => owner,
                None => {
                    t.set_merged_into(Some(&cio_id))?;
                    cio_id.clone()
                }
            };
            let (events, next) = if owner == cio_id {
                merge_page(t.events_asc(after, MERGE_PAGE_EVENTS + 1)?)
            } else {
                (Vec::new(), None)
            };
            VisitorReply::Merged {
                merged_into: owner,
                events,
                next,
                expired: t.expired()?,
            }
        }
        VisitorCall::Owner => VisitorReply::Recorded(t.merged_into()?),
        VisitorCall::Ack(cio_id) => {
            if t.merged_into()?.as_deref() == Some(cio_id.as_str()) {
                t.clear_events()?;
            }
            VisitorReply::Done
        }
        VisitorCall::Repoint { from, to } => {
            if t.merged_into()?.as_deref() == Some(from.as_str()) {
                t.set_merged_into(to.as_deref())?;
            }
            VisitorReply::Done
        }
        VisitorCall::Activity { limit, before } => {
            let merged_into = t.merged_into()?;
            let (events, next) = if merged_into.is_some() {
                (Vec::new(), None)
            } else {
                activity_page(t.events_desc(limit + 1, before)?, limit)
            };
            VisitorReply::Activity(VisitorActivity {
                merged_into,
                events,
                next,
            })
        }
    })
}

// --------------------------------------------------------------- person ----

/// Why a person is gone: deleted (`successor` none) or merged into another.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    pub successor: Option<String>,
}

/// One person's profile, relationships, events and merged anonymous ids, and
/// the tombstone that outlives them.
pub trait PersonTables: EventTable {
    fn profile(&self) -> Result<Option<Profile>, StoreError>;
    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError>;
    fn relationships(&self) -> Result<Vec<Relationship>, StoreError>;
    fn save_relationships(&self, relationships: &[Relationship]) -> Result<(), StoreError>;
    fn anonymous_ids(&self) -> Result<Vec<String>, StoreError>;
    fn has_anonymous_id(&self, anon_id: &str) -> Result<bool, StoreError>;
    fn add_anonymous_id(&self, anon_id: &str) -> Result<(), StoreError>;
    /// Deletes the earliest-stored event whose id is in the browsers' key
    /// space (`browser:`); false when there is none.
    fn drop_earliest_browser_event(&self) -> Result<bool, StoreError>;
    fn tombstone(&self) -> Result<Option<Tombstone>, StoreError>;
    fn set_tombstone(&self, tombstone: Option<&Tombstone>) -> Result<(), StoreError>;
    /// Drops everything but the tombstone (and the outbox).
    fn wipe(&self) -> Result<(), StoreError>;
    /// Whether accepted writes are forwarded to Customer.io.
    fn forwarding(&self) -> bool {
        false
    }
    /// Appends an outbound operation to the outbox (forwarding on only).
    fn outbox_push(&self, _op: &Value) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Work the object does after it has answered.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUp {
    /// The person stored the visitor's events: the visitor may drop its copies.
    /// Should this never run, the next merge hands them over again, deduped.
    AckVisitor {
        anonymous_id: String,
        cio_id: String,
    },
}

/// A person's answer and what it does after answering.
pub struct Answered {
    pub reply: Result<PersonReply, StoreError>,
    pub follow_up: Vec<FollowUp>,
}

impl From<Result<PersonReply, StoreError>> for Answered {
    fn from(reply: Result<PersonReply, StoreError>) -> Self {
        Answered {
            reply,
            follow_up: Vec::new(),
        }
    }
}

/// Runs one call on a person. `objects` reaches the visitor during a merge.
pub async fn person_call(
    t: &impl PersonTables,
    objects: &impl Objects,
    call: PersonCall,
) -> Answered {
    match call {
        PersonCall::Identify(call) => identify(t, objects, call).await,
        other => person_sync(t, other).into(),
    }
}

/// The person's calls that never wait on anything.
fn person_sync(t: &impl PersonTables, call: PersonCall) -> Result<PersonReply, StoreError> {
    let gone =
        |t: &dyn Fn() -> Result<Option<Tombstone>, StoreError>| -> Result<PersonReply, StoreError> {
            Ok(match t()? {
                Some(tombstone) => PersonReply::Gone(tombstone.successor),
                None => PersonReply::Missing,
            })
        };
    let tomb = || t.tombstone();
    // A sealed person answers only what a merge needs: its dump and delete.
    let sealed = t.tombstone()?.is_some();
    match call {
        PersonCall::Identify(_) => unreachable_identify(),
        PersonCall::Track(event) => match (sealed, t.profile()?) {
            (false, Some(profile)) => {
                if t.holds_at_least(MAX_PERSON_EVENTS)? && !t.has_event(&event.id)? {
                    // Fail soft for the person's own browsers: a browser's
                    // event makes room by dropping the earliest browser
                    // event, so a stranger with a forged `_cioid` can never
                    // lock the person out; the backend's events are never
                    // dropped, and with none to drop the write is refused.
                    let browser = event.id.starts_with(BROWSER_ID_PREFIX);
                    if !(browser && t.drop_earliest_browser_event()?) {
                        return Err(at_capacity("this person", MAX_PERSON_EVENTS));
                    }
                }
                if t.forwarding() && !t.has_event(&event.id)? {
                    let op = cio::checked(cio::person_event_op(&profile, &event))?;
                    t.insert_event(&event)?;
                    t.outbox_push(&op)?;
                } else {
                    t.insert_event(&event)?;
                }
                Ok(PersonReply::Tracked)
            }
            _ => gone(&tomb),
        },
        PersonCall::Rejoin(anonymous_id) => match (sealed, t.profile()?) {
            (false, Some(profile)) if t.has_anonymous_id(&anonymous_id)? => {
                if t.forwarding() {
                    t.outbox_push(&cio::anonymous_merge_op(&profile, &anonymous_id))?;
                }
                Ok(PersonReply::Done)
            }
            (false, Some(_)) => Ok(PersonReply::Missing),
            _ => gone(&tomb),
        },
        PersonCall::Forward(op) => match (sealed, t.profile()?) {
            (false, Some(profile)) => {
                if t.forwarding() {
                    t.outbox_push(&cio::checked(cio::addressed_op(&profile, op))?)?;
                }
                Ok(PersonReply::Done)
            }
            _ => gone(&tomb),
        },
        PersonCall::Profile => match (sealed, t.profile()?) {
            (false, Some(profile)) => Ok(PersonReply::View(Box::new(view(t, profile)?))),
            _ => gone(&tomb),
        },
        PersonCall::Activity { limit, before } => match (sealed, t.profile()?) {
            (false, Some(_)) => {
                let (events, next) = activity_page(t.events_desc(limit + 1, before)?, limit);
                Ok(PersonReply::Activity(Activity { events, next }))
            }
            _ => gone(&tomb),
        },
        PersonCall::DumpEvents(after) => match t.tombstone()? {
            Some(Tombstone { successor: Some(_) }) => {
                let (events, next) = merge_page(t.events_asc(Some(after), MERGE_PAGE_EVENTS + 1)?);
                Ok(PersonReply::Events { events, next })
            }
            _ => gone(&tomb),
        },
        PersonCall::AbsorbEvents(events) => match (sealed, t.profile()?) {
            (false, Some(_)) => {
                for event in &events {
                    t.insert_event(event)?;
                }
                Ok(PersonReply::Done)
            }
            _ => gone(&tomb),
        },
        PersonCall::Seal(successor) => {
            match (t.tombstone()?, t.profile()?) {
                // Sealed for this successor already: a retried merge.
                (Some(Tombstone { successor: Some(s) }), Some(profile)) if s == successor => {
                    Ok(PersonReply::Dump(Box::new(dump(t, profile)?)))
                }
                (None, Some(profile)) => {
                    t.set_tombstone(Some(&Tombstone {
                        successor: Some(successor),
                    }))?;
                    Ok(PersonReply::Dump(Box::new(dump(t, profile)?)))
                }
                _ => gone(&tomb),
            }
        }
        PersonCall::Unseal(successor) => {
            if t.tombstone()?
                == Some(Tombstone {
                    successor: Some(successor),
                })
                && t.profile()?.is_some()
            {
                t.set_tombstone(None)?;
            }
            Ok(PersonReply::Done)
        }
        PersonCall::Absorb { dump, now } => match (sealed, t.profile()?) {
            (false, Some(mut profile)) => {
                if t.forwarding() {
                    t.outbox_push(&cio::merge_op(&profile, &dump.profile))?;
                }
                absorb(t, &mut profile, &dump, now)?;
                Ok(PersonReply::View(Box::new(view(t, profile)?)))
            }
            _ => gone(&tomb),
        },
        PersonCall::Delete => match t.profile()? {
            Some(profile) => {
                let before = view(t, profile)?;
                // A merged person keeps pointing at its successor.
                let successor = t.tombstone()?.and_then(|t| t.successor);
                // A merged person's end is the merge the primary forwarded.
                if successor.is_none() && t.forwarding() {
                    let profile = t.profile()?;
                    if let Some(profile) = profile {
                        t.outbox_push(&cio::delete_op(&profile))?;
                    }
                }
                t.wipe()?;
                t.set_tombstone(Some(&Tombstone { successor }))?;
                Ok(PersonReply::View(Box::new(before)))
            }
            None => gone(&tomb),
        },
    }
}

fn unreachable_identify() -> Result<PersonReply, StoreError> {
    Err(StoreError::unavailable("identify is asynchronous"))
}

pub fn view(t: &impl PersonTables, profile: Profile) -> Result<PersonView, StoreError> {
    Ok(PersonView {
        cio_id: profile.cio_id,
        id: profile.id,
        email: profile.email,
        created_at: profile.created_at,
        attributes: profile.attributes,
        relationships: t.relationships()?,
        anonymous_ids: t.anonymous_ids()?,
        updated_at: profile.updated_at,
    })
}

fn dump(t: &impl PersonTables, profile: Profile) -> Result<PersonDump, StoreError> {
    let (events, next) = merge_page(t.events_asc(None, MERGE_PAGE_EVENTS + 1)?);
    Ok(PersonDump {
        profile,
        relationships: t.relationships()?,
        anonymous_ids: t.anonymous_ids()?,
        events,
        next,
    })
}

/// Merge: missing attributes, relationships, anonymous ids and events of the
/// secondary move here (events deduplicated by id, so a repeated merge
/// changes nothing).
fn absorb(
    t: &impl PersonTables,
    profile: &mut Profile,
    dump: &PersonDump,
    now: i64,
) -> Result<(), StoreError> {
    profile.absorb(&dump.profile, now);
    // The primary keeps its own email; one without takes the secondary's
    // (the merge then hands the index entry over with it).
    if profile.email.is_none() {
        profile.email.clone_from(&dump.profile.email);
    }
    let mut relationships = t.relationships()?;
    for rel in &dump.relationships {
        if !relationships
            .iter()
            .any(|r| r.object_type_id == rel.object_type_id && r.object_id == rel.object_id)
        {
            relationships.push(rel.clone());
        }
    }
    t.save_relationships(&relationships)?;
    for anon in &dump.anonymous_ids {
        t.add_anonymous_id(anon)?;
    }
    for event in &dump.events {
        t.insert_event(event)?;
    }
    t.save_profile(profile)
}

enum Applied {
    Done {
        released_email: Option<String>,
        identifiers_changed: bool,
        /// False when the update left the profile and relationships as they
        /// were: nothing was written, and `updated_at` stays.
        profile_changed: bool,
    },
    NeedsEmailClaim,
    Missing,
    Gone(Option<String>),
}

/// Checks and applies the profile part of an identify; synchronous, so it
/// commits as one unit.
fn apply_update(t: &impl PersonTables, call: &IdentifyCall) -> Result<Applied, StoreError> {
    if let Some(tombstone) = t.tombstone()? {
        return Ok(Applied::Gone(tombstone.successor));
    }
    let stored = t.profile()?;
    if let Some(key) = &call.must_hold {
        let holds = stored
            .as_ref()
            .is_some_and(|p| IndexKey::all_of(p.id.as_deref(), p.email.as_deref()).contains(key));
        if !holds {
            return Ok(Applied::Missing);
        }
    }
    let before = stored.clone();
    let (mut profile, created) = match stored {
        // Nothing to change (a link click): leave updated_at alone.
        Some(_) if call.update == ProfileUpdate::default() => {
            return Ok(Applied::Done {
                released_email: None,
                identifiers_changed: false,
                profile_changed: false,
            })
        }
        Some(profile) => (profile, false),
        None if call.create => (
            Profile::new(&call.cio_id, call.update.created_at, call.now),
            true,
        ),
        None => return Ok(Applied::Missing),
    };
    if let Some(email) = &call.update.email {
        if profile.email.as_ref() != Some(email) && !call.email_claimed {
            return Ok(Applied::NeedsEmailClaim);
        }
    }
    let identifiers_before = (profile.id.clone(), profile.email.clone());
    let applied = profile.apply(&call.update, call.now)?;
    // The outbound operations are built (and checked against Customer.io's
    // limits) before anything is written, so a refused one writes nothing.
    let mut outbound = Vec::new();
    if t.forwarding() {
        let before = before.as_ref().filter(|_| !created);
        if let Some(op) = cio::identify_op(before, &profile, &call.update) {
            outbound.push(cio::checked(op)?);
        }
        if let Some(change) = &call.update.relationships {
            if let Some(op) = cio::relationships_op(&profile, change) {
                outbound.push(cio::checked(op)?);
            }
        }
    }
    let mut relationships_changed = false;
    if let Some(change) = &call.update.relationships {
        let held = t.relationships()?;
        let mut relationships = held.clone();
        change.apply_to(&mut relationships);
        if relationships != held {
            t.save_relationships(&relationships)?;
            relationships_changed = true;
        }
    }
    let identifiers_changed =
        created || (profile.id.clone(), profile.email.clone()) != identifiers_before;
    // An identify that repeats what the person holds (a site identifying on
    // every page) writes nothing: `updated_at` is when the profile changed.
    let profile_changed = created
        || relationships_changed
        || before.as_ref().is_none_or(|b| {
            let mut same_clock = profile.clone();
            same_clock.updated_at = b.updated_at;
            same_clock != *b
        });
    if profile_changed {
        t.save_profile(&profile)?;
    }
    for op in &outbound {
        t.outbox_push(op)?;
    }
    Ok(Applied::Done {
        released_email: applied.released_email,
        identifiers_changed,
        profile_changed,
    })
}

async fn identify(t: &impl PersonTables, objects: &impl Objects, call: IdentifyCall) -> Answered {
    let (released_email, identifiers_changed, profile_changed) = match apply_update(t, &call) {
        Ok(Applied::Done {
            released_email,
            identifiers_changed,
            profile_changed,
        }) => (released_email, identifiers_changed, profile_changed),
        Ok(Applied::NeedsEmailClaim) => {
            return Ok(PersonReply::Identified(IdentifyReply::NeedsEmailClaim)).into()
        }
        Ok(Applied::Gone(successor)) => return Ok(PersonReply::Gone(successor)).into(),
        Ok(Applied::Missing) => return Ok(PersonReply::Missing).into(),
        Err(e) => return Err(e).into(),
    };
    let mut follow_up = Vec::new();
    let mut rotate_anon = false;
    if let Some(anon_id) = &call.anonymous_id {
        match merge_visitor(t, objects, &call.cio_id, anon_id, call.now).await {
            Ok(Merged::Taken) => follow_up.push(FollowUp::AckVisitor {
                anonymous_id: anon_id.clone(),
                cio_id: call.cio_id.clone(),
            }),
            Ok(Merged::AlreadyHere) => {}
            Ok(Merged::Elsewhere) => rotate_anon = true,
            Ok(Merged::PersonGone(successor)) => return Ok(PersonReply::Gone(successor)).into(),
            Err(e) => return Err(e).into(),
        }
    }
    let reply = match t.profile() {
        Ok(Some(profile)) => view(t, profile).map(|person| {
            PersonReply::Identified(IdentifyReply::Done {
                person: Box::new(person),
                released_email,
                rotate_anon,
                identifiers_changed,
                profile_changed,
            })
        }),
        Ok(None) => Ok(PersonReply::Missing),
        Err(e) => Err(e),
    };
    Answered { reply, follow_up }
}

enum Merged {
    /// The visitor's events are stored here now.
    Taken,
    AlreadyHere,
    /// The visitor already belongs to someone else.
    Elsewhere,
    /// This person was deleted or merged while the visitor answered; the
    /// visitor was handed back its freedom and keeps its events.
    PersonGone(Option<String>),
}

/// Takes over the visitor's anonymous activity.
async fn merge_visitor(
    t: &impl PersonTables,
    objects: &impl Objects,
    cio_id: &str,
    anon_id: &str,
    now: i64,
) -> Result<Merged, StoreError> {
    if t.has_anonymous_id(anon_id)? {
        return Ok(Merged::AlreadyHere);
    }
    // The visitor's events come a page at a time; other calls may run on
    // this person while the visitor answers, so it re-checks after each.
    let mut after = None;
    let mut deleted = None;
    loop {
        let call = VisitorCall::Merge {
            cio_id: cio_id.to_owned(),
            after,
        };
        let VisitorReply::Merged {
            merged_into,
            events,
            next,
            expired,
        } = objects.visitor(anon_id, call).await?
        else {
            return Err(unexpected("visitor merge"));
        };
        if merged_into != cio_id {
            return Ok(Merged::Elsewhere);
        }
        deleted = deleted.or(expired);
        if let Some(tombstone) = t.tombstone()? {
            let repoint = VisitorCall::Repoint {
                from: cio_id.to_owned(),
                // Anonymous again, with the events it still holds.
                to: None,
            };
            objects.visitor(anon_id, repoint).await?;
            return Ok(Merged::PersonGone(tombstone.successor));
        }
        for event in &events {
            t.insert_event(event)?;
        }
        match next {
            Some(seq) => after = Some(seq),
            None => break,
        }
    }
    t.add_anonymous_id(anon_id)?;
    // Customer.io would join what retention deleted here to this person.
    if t.forwarding() && cio::may_join_anonymous(deleted, now) {
        if let Some(profile) = t.profile()? {
            t.outbox_push(&cio::anonymous_merge_op(&profile, anon_id))?;
        }
    }
    Ok(Merged::Taken)
}
