//! Identity operations across the three kinds of object: resolving who a
//! cookie names, identify (claims in the index, then the person, which merges
//! the visitor), and `_cio_id` link clicks.

use worker::Env;

use super::cache::Cache;
use super::index::Index;
use super::person::{IdentifyCall, IdentifyReply, People, PersonView};
use super::rpc::StoreError;
use super::visitor::VisitorStore;
use crate::core::event::Event;
use crate::core::identifier::{new_cio_id, Identifier};
use crate::core::profile::{Identify, ProfileUpdate};
use crate::core::Error as ClientError;

pub struct Identified {
    pub person: PersonView,
    /// The visitor's anonymous id already belongs to another person.
    pub rotate_anon: bool,
}

/// The cio_id of the person an identifier names, if any: the KV cache first,
/// then the index (the truth). Returns whether the answer came from the index,
/// so the caller can warm the cache off the response path.
pub async fn resolve(env: &Env, cache: &Cache, identifier: &Identifier) -> Result<Option<(String, bool)>, StoreError> {
    let Some(key) = identifier.index_key() else {
        return Ok(match identifier {
            Identifier::CioId(cio) => Some((cio.clone(), false)),
            _ => None,
        });
    };
    if let Some(cio) = cache.owner(&key).await {
        return Ok(Some((cio, false)));
    }
    Ok(Index { env }.owner(&key).await?.map(|cio| (cio, true)))
}

/// Keys claimed during one identify, released again if it fails, so that a
/// rejected call leaves the index as it found it.
struct Claims<'a> {
    index: Index<'a>,
    made: Vec<(String, String)>,
}

impl Claims<'_> {
    async fn claim(&mut self, key: &str, cio_id: &str) -> Result<String, StoreError> {
        let owner = self.index.claim(key, cio_id).await?;
        if owner == cio_id {
            self.made.push((key.to_owned(), cio_id.to_owned()));
        }
        Ok(owner)
    }

    async fn roll_back(&mut self) {
        for (key, cio_id) in self.made.drain(..) {
            let _ = self.index.release(&key, &cio_id).await;
        }
    }
}

/// Identify (API rules 6.2-6.6): create or update the person the identifier
/// names and merge the visitor's anonymous activity into it. Nothing is
/// applied when the call is rejected.
pub async fn identify(
    env: &Env,
    cache: &Cache,
    identify: &Identify,
    anonymous_id: Option<&str>,
    now: i64,
) -> Result<Identified, StoreError> {
    let mut claims = Claims { index: Index { env }, made: Vec::new() };
    let result = identify_with(env, cache, &mut claims, identify, anonymous_id, now).await;
    if result.is_err() {
        claims.roll_back().await;
    }
    result
}

async fn identify_with(
    env: &Env,
    cache: &Cache,
    claims: &mut Claims<'_>,
    identify: &Identify,
    anonymous_id: Option<&str>,
    now: i64,
) -> Result<Identified, StoreError> {
    let update = &identify.update;
    let primary = identify
        .identifier
        .index_key()
        .ok_or_else(|| ClientError::invalid("id", "a cio_id cannot create a person"))?;
    let fresh = new_cio_id();
    let mut target = claims.claim(&primary, &fresh).await?;
    let mut email_claimed = matches!(identify.identifier, Identifier::Email(_));
    let mut adopting_lead = false;

    // A new id with an email that someone already has: that person (a lead
    // identified by email) gets the id, unless it has another one (then the
    // person object answers 409 and the claim is rolled back).
    if target == fresh && !email_claimed {
        if let Some(email) = &update.email {
            let email_key = format!("email:{email}");
            let email_owner = claims.claim(&email_key, &target).await?;
            if email_owner != target {
                claims.roll_back().await;
                if claims.claim(&primary, &email_owner).await? != email_owner {
                    return Err(ClientError::conflict("id", "this id belongs to another person").into());
                }
                target = email_owner;
                adopting_lead = true;
            }
            email_claimed = true;
        }
    }

    let people = People { env };
    loop {
        let call = IdentifyCall {
            cio_id: target.clone(),
            update: update.clone(),
            create: true,
            email_claimed,
            anonymous_id: anonymous_id.map(str::to_owned),
            now,
        };
        let reply = match people.identify(call).await {
            // The email's person has an id of its own: the email is taken.
            Err(StoreError::Client(ClientError::Conflict { .. })) if adopting_lead => {
                return Err(ClientError::conflict("email", "this email belongs to another person").into())
            }
            other => other?,
        };
        match reply {
            IdentifyReply::NeedsEmailClaim if !email_claimed => {
                let email = update.email.as_deref().unwrap_or_default();
                if claims.claim(&format!("email:{email}"), &target).await? != target {
                    return Err(ClientError::conflict("email", "this email belongs to another person").into());
                }
                email_claimed = true;
            }
            IdentifyReply::NeedsEmailClaim => {
                return Err(StoreError::Unavailable("person refused a claimed email".into()))
            }
            IdentifyReply::Done { person, released_email, rotate_anon } => {
                if let Some(old) = released_email {
                    let key = format!("email:{old}");
                    claims.index.release(&key, &person.cio_id).await?;
                    cache.forget_owner(&key).await;
                }
                return Ok(Identified { person, rotate_anon });
            }
        }
    }
}

/// A tracked-link click (`_cio_id`): identifies the visitor as that person and
/// merges its activity; `None` when no such person exists.
pub async fn link(env: &Env, cio_id: &str, anonymous_id: &str, now: i64) -> Result<Option<Identified>, StoreError> {
    let call = IdentifyCall {
        cio_id: cio_id.to_owned(),
        update: ProfileUpdate::default(),
        create: false,
        email_claimed: false,
        anonymous_id: Some(anonymous_id.to_owned()),
        now,
    };
    match (People { env }).identify(call).await {
        Ok(IdentifyReply::Done { person, rotate_anon, .. }) => Ok(Some(Identified { person, rotate_anon })),
        Ok(IdentifyReply::NeedsEmailClaim) => Err(StoreError::Unavailable("unexpected email claim".into())),
        Err(StoreError::Client(ClientError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records an event for the identified person, else for the anonymous visitor
/// (forwarded to its person when the visitor was already merged). Answers once
/// the event is durable.
pub async fn record(
    env: &Env,
    cache: &Cache,
    identifier: Option<&Identifier>,
    anonymous_id: &str,
    mut event: Event,
) -> Result<(), StoreError> {
    let people = People { env };
    if let Some(identifier) = identifier {
        if let Some((cio_id, from_index)) = resolve(env, cache, identifier).await? {
            match people.track(&cio_id, &event).await {
                Ok(()) => {
                    if let (true, Some(key)) = (from_index, identifier.index_key()) {
                        cache.remember_owner(&key, &cio_id).await;
                    }
                    return Ok(());
                }
                // The person is gone (deleted): the visitor is anonymous again.
                Err(StoreError::Client(ClientError::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
    }
    event.anonymous_id = Some(anonymous_id.to_owned());
    let recorded = VisitorStore { env }.record(anonymous_id, &event).await?;
    if let Some(cio_id) = recorded.merged_into {
        people.track(&cio_id, &event).await?;
    }
    Ok(())
}
