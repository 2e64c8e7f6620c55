//! What each kind of Durable Object does with a call, written once against a
//! small synchronous table interface. The SQLite-backed objects (`store/`)
//! and the in-memory store (`memory`) both run exactly this code, so the
//! rules tested natively are the rules deployed.
//!
//! A call's synchronous steps commit as one unit (a Durable Object runs them
//! without interleaving); the only await inside an object is the person's call
//! to the visitor during a merge, and the person re-checks its own state after
//! it, because a delete or a merge may have run in between.

use crate::core::event::Event;
use crate::core::profile::{Profile, ProfileUpdate, Relationship};

use super::backend::Objects;
use super::wire::*;

// ---------------------------------------------------------------- index ----

/// One identifier value's owner.
pub trait IndexTables {
    fn owner(&self) -> Result<Option<String>, StoreError>;
    fn set_owner(&self, cio_id: Option<&str>) -> Result<(), StoreError>;
}

pub fn index_call(t: &impl IndexTables, call: IndexCall) -> Result<IndexReply, StoreError> {
    let owner = match call {
        IndexCall::Get => t.owner()?,
        IndexCall::Claim { cio_id } => match t.owner()? {
            Some(existing) => Some(existing),
            None => {
                t.set_owner(Some(&cio_id))?;
                Some(cio_id)
            }
        },
        IndexCall::Release { cio_id } => match t.owner()? {
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

/// One anonymous visitor's events and, once merged, the person it became.
pub trait VisitorTables {
    fn merged_into(&self) -> Result<Option<String>, StoreError>;
    fn set_merged_into(&self, cio_id: Option<&str>) -> Result<(), StoreError>;
    /// Stores the event unless one with its id is stored (dedup).
    fn insert_event(&self, event: &Event) -> Result<(), StoreError>;
    /// Newest first, or in the order they happened (a merge hands them over in
    /// that order).
    fn events(&self, limit: u32, newest_first: bool) -> Result<Vec<Event>, StoreError>;
    fn clear_events(&self) -> Result<(), StoreError>;
}

pub fn visitor_call(t: &impl VisitorTables, call: VisitorCall) -> Result<VisitorReply, StoreError> {
    Ok(match call {
        VisitorCall::Record { event } => {
            let merged_into = t.merged_into()?;
            if merged_into.is_none() {
                t.insert_event(&event)?;
            }
            VisitorReply::Recorded { merged_into }
        }
        VisitorCall::Merge { cio_id } => {
            let owner = match t.merged_into()? {
                Some(owner) => owner,
                None => {
                    t.set_merged_into(Some(&cio_id))?;
                    cio_id.clone()
                }
            };
            let events = if owner == cio_id {
                t.events(u32::MAX, false)?
            } else {
                Vec::new()
            };
            VisitorReply::Merged {
                merged_into: owner,
                events,
            }
        }
        VisitorCall::Ack { cio_id } => {
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
        VisitorCall::Activity { limit } => {
            let merged_into = t.merged_into()?;
            let events = if merged_into.is_some() {
                Vec::new()
            } else {
                t.events(limit, true)?
            };
            VisitorReply::Activity(VisitorActivity {
                merged_into,
                events,
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
pub trait PersonTables {
    fn profile(&self) -> Result<Option<Profile>, StoreError>;
    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError>;
    fn relationships(&self) -> Result<Vec<Relationship>, StoreError>;
    fn save_relationships(&self, relationships: &[Relationship]) -> Result<(), StoreError>;
    fn anonymous_ids(&self) -> Result<Vec<String>, StoreError>;
    fn has_anonymous_id(&self, anon_id: &str) -> Result<bool, StoreError>;
    fn add_anonymous_id(&self, anon_id: &str) -> Result<(), StoreError>;
    /// Stores the event unless one with its id is stored (dedup).
    fn insert_event(&self, event: &Event) -> Result<(), StoreError>;
    /// Newest first.
    fn events(&self, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// In the order they were stored.
    fn all_events(&self) -> Result<Vec<Event>, StoreError>;
    fn tombstone(&self) -> Result<Option<Tombstone>, StoreError>;
    fn set_tombstone(&self, tombstone: Option<&Tombstone>) -> Result<(), StoreError>;
    /// Drops everything but the tombstone.
    fn wipe(&self) -> Result<(), StoreError>;
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
                Some(tombstone) => PersonReply::Gone {
                    successor: tombstone.successor,
                },
                None => PersonReply::Missing,
            })
        };
    let tomb = || t.tombstone();
    // A sealed person answers only what a merge needs: its dump and delete.
    let sealed = t.tombstone()?.is_some();
    match call {
        PersonCall::Identify(_) => unreachable_identify(),
        PersonCall::Track { event } => match (sealed, t.profile()?) {
            (false, Some(_)) => {
                t.insert_event(&event)?;
                Ok(PersonReply::Tracked)
            }
            _ => gone(&tomb),
        },
        PersonCall::Profile => match (sealed, t.profile()?) {
            (false, Some(profile)) => Ok(PersonReply::View(Box::new(view(t, profile)?))),
            _ => gone(&tomb),
        },
        PersonCall::Activity { limit } => match (sealed, t.profile()?) {
            (false, Some(_)) => Ok(PersonReply::Activity(Activity {
                events: t.events(limit)?,
            })),
            _ => gone(&tomb),
        },
        PersonCall::Seal { successor } => {
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
        PersonCall::Unseal { successor } => {
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
    Ok(PersonDump {
        profile,
        relationships: t.relationships()?,
        anonymous_ids: t.anonymous_ids()?,
        events: t.all_events()?,
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
    let (mut profile, created) = match t.profile()? {
        // Nothing to change (a link click): leave updated_at alone.
        Some(_) if call.update == ProfileUpdate::default() => {
            return Ok(Applied::Done {
                released_email: None,
                identifiers_changed: false,
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
    if let Some(change) = &call.update.relationships {
        let mut relationships = t.relationships()?;
        change.apply_to(&mut relationships);
        t.save_relationships(&relationships)?;
    }
    let identifiers_changed =
        created || (profile.id.clone(), profile.email.clone()) != identifiers_before;
    t.save_profile(&profile)?;
    Ok(Applied::Done {
        released_email: applied.released_email,
        identifiers_changed,
    })
}

async fn identify(t: &impl PersonTables, objects: &impl Objects, call: IdentifyCall) -> Answered {
    let (released_email, identifiers_changed) = match apply_update(t, &call) {
        Ok(Applied::Done {
            released_email,
            identifiers_changed,
        }) => (released_email, identifiers_changed),
        Ok(Applied::NeedsEmailClaim) => {
            return Ok(PersonReply::Identified(IdentifyReply::NeedsEmailClaim)).into()
        }
        Ok(Applied::Gone(successor)) => return Ok(PersonReply::Gone { successor }).into(),
        Ok(Applied::Missing) => return Ok(PersonReply::Missing).into(),
        Err(e) => return Err(e).into(),
    };
    let mut follow_up = Vec::new();
    let mut rotate_anon = false;
    if let Some(anon_id) = &call.anonymous_id {
        match merge_visitor(t, objects, &call.cio_id, anon_id).await {
            Ok(Merged::Taken) => follow_up.push(FollowUp::AckVisitor {
                anonymous_id: anon_id.clone(),
                cio_id: call.cio_id.clone(),
            }),
            Ok(Merged::AlreadyHere) => {}
            Ok(Merged::Elsewhere) => rotate_anon = true,
            Ok(Merged::PersonGone(successor)) => return Ok(PersonReply::Gone { successor }).into(),
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
) -> Result<Merged, StoreError> {
    if t.has_anonymous_id(anon_id)? {
        return Ok(Merged::AlreadyHere);
    }
    let reply = objects
        .visitor(
            anon_id,
            VisitorCall::Merge {
                cio_id: cio_id.to_owned(),
            },
        )
        .await?;
    let VisitorReply::Merged {
        merged_into,
        events,
    } = reply
    else {
        return Err(unexpected("visitor merge"));
    };
    if merged_into != cio_id {
        return Ok(Merged::Elsewhere);
    }
    // Other calls may have run on this person while the visitor answered.
    if let Some(tombstone) = t.tombstone()? {
        objects
            .visitor(
                anon_id,
                VisitorCall::Repoint {
                    from: cio_id.to_owned(),
                    // Anonymous again, with the events it still holds.
                    to: None,
                },
            )
            .await?;
        return Ok(Merged::PersonGone(tombstone.successor));
    }
    for event in &events {
        t.insert_event(event)?;
    }
    t.add_anonymous_id(anon_id)?;
    Ok(Merged::Taken)
}
