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
    /// The person is new or has a new id or email.
    pub identifiers_changed: bool,
}

/// The cio_id of the person an identifier names, if any: the KV cache first,
/// then the index (the truth). Returns whether the answer came from the index,
/// so the caller can warm the cache off the response path.
pub async fn resolve(
    env: &Env,
    cache: &Cache,
    identifier: &Identifier,
) -> Result<Option<(String, bool)>, StoreError> {
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

/// How an identify may act.
#[derive(Clone, Copy)]
pub struct IdentifyOptions<'a> {
    /// Create the person when none has the identifier (`_update` turns it off).
    pub create: bool,
    /// The visitor whose anonymous activity merges into the person.
    pub anonymous_id: Option<&'a str>,
    pub now: i64,
}

/// Identify (API rules 6.2-6.6): create or update the person the identifier
/// names and merge the visitor's anonymous activity into it. Nothing is
/// applied when the call is rejected.
pub async fn identify(
    env: &Env,
    cache: &Cache,
    identify: &Identify,
    options: IdentifyOptions<'_>,
) -> Result<Identified, StoreError> {
    let mut claims = Claims {
        index: Index { env },
        made: Vec::new(),
    };
    let result = identify_with(env, cache, &mut claims, identify, options).await;
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
    options: IdentifyOptions<'_>,
) -> Result<Identified, StoreError> {
    let update = &identify.update;
    let not_found = || StoreError::Client(ClientError::not_found("no such person"));

    // Who: the cio_id itself, or the owner of the identifier, claimed for a
    // fresh cio_id when creating (the claim decides any race).
    let (mut target, created) = match (&identify.identifier, identify.identifier.index_key()) {
        (Identifier::CioId(cio_id), _) => (cio_id.clone(), false),
        (_, Some(key)) if options.create => {
            let fresh = new_cio_id();
            let owner = claims.claim(&key, &fresh).await?;
            let created = owner == fresh;
            (owner, created)
        }
        (_, Some(key)) => (
            claims.index.owner(&key).await?.ok_or_else(not_found)?,
            false,
        ),
        (_, None) => return Err(not_found()),
    };
    let mut email_claimed = matches!(identify.identifier, Identifier::Email(_));
    let mut adopting_lead = false;

    // A new id with an email that someone already has: that person (a lead
    // identified by email) gets the id, unless it has another one (then the
    // person object answers 409 and the claims are rolled back).
    if created && matches!(identify.identifier, Identifier::Id(_)) {
        if let Some(email) = &update.email {
            let email_owner = claims.claim(&format!("email:{email}"), &target).await?;
            if email_owner != target {
                claims.roll_back().await;
                let primary = identify.identifier.index_key().unwrap_or_default();
                if claims.claim(&primary, &email_owner).await? != email_owner {
                    return Err(
                        ClientError::conflict("id", "this id belongs to another person").into(),
                    );
                }
                target = email_owner;
                adopting_lead = true;
            }
            email_claimed = true;
        }
    }
    // An id given beside another identifier (Track API): claim it for the target.
    if let (Some(id), false) = (&update.id, matches!(identify.identifier, Identifier::Id(_))) {
        if claims.claim(&format!("id:{id}"), &target).await? != target {
            return Err(ClientError::conflict("id", "this id belongs to another person").into());
        }
    }

    let people = People { env };
    loop {
        let call = IdentifyCall {
            cio_id: target.clone(),
            update: update.clone(),
            create: options.create,
            email_claimed,
            anonymous_id: options.anonymous_id.map(str::to_owned),
            now: options.now,
        };
        let reply = match people.identify(call).await {
            // The email's person has an id of its own: the email is taken.
            Err(StoreError::Client(ClientError::Conflict { .. })) if adopting_lead => {
                return Err(
                    ClientError::conflict("email", "this email belongs to another person").into(),
                )
            }
            other => other?,
        };
        match reply {
            IdentifyReply::NeedsEmailClaim if !email_claimed => {
                let email = update.email.as_deref().unwrap_or_default();
                if claims.claim(&format!("email:{email}"), &target).await? != target {
                    return Err(ClientError::conflict(
                        "email",
                        "this email belongs to another person",
                    )
                    .into());
                }
                email_claimed = true;
            }
            IdentifyReply::NeedsEmailClaim => {
                return Err(StoreError::Unavailable(
                    "person refused a claimed email".into(),
                ))
            }
            IdentifyReply::Done {
                person,
                released_email,
                rotate_anon,
                identifiers_changed,
            } => {
                if let Some(old) = released_email {
                    let key = format!("email:{old}");
                    claims.index.release(&key, &person.cio_id).await?;
                    cache.forget_owner(&key).await;
                }
                return Ok(Identified {
                    person,
                    rotate_anon,
                    identifiers_changed,
                });
            }
        }
    }
}

/// The person an identifier names, from the index (the truth, never KV).
pub async fn find(env: &Env, identifier: &Identifier) -> Result<Option<String>, StoreError> {
    match (identifier, identifier.index_key()) {
        (Identifier::CioId(cio_id), _) => Ok(Some(cio_id.clone())),
        (_, Some(key)) => Index { env }.owner(&key).await,
        (_, None) => Ok(None),
    }
}

/// Removes a person found by `cio_id` and frees its identifiers; its former
/// visitors follow `successor` (a merge) or become anonymous again.
async fn remove(
    env: &Env,
    cache: &Cache,
    cio_id: &str,
    successor: Option<&str>,
) -> Result<bool, StoreError> {
    let person = match (People { env }).delete(cio_id).await {
        Ok(person) => person,
        Err(StoreError::Client(ClientError::NotFound { .. })) => return Ok(false),
        Err(e) => return Err(e),
    };
    let index = Index { env };
    let keys = person
        .id
        .iter()
        .map(|id| format!("id:{id}"))
        .chain(person.email.iter().map(|e| format!("email:{e}")));
    for key in keys {
        index.release(&key, cio_id).await?;
        cache.forget_owner(&key).await;
    }
    cache.forget_person(cio_id).await;
    let visitors = VisitorStore { env };
    for anon in &person.anonymous_ids {
        visitors.repoint(anon, cio_id, successor).await?;
    }
    Ok(true)
}

/// `DELETE /customers/{identifier}`: the person, its events and relationships
/// are gone and its identifiers free. Answers whether someone was deleted.
pub async fn delete(env: &Env, cache: &Cache, identifier: &Identifier) -> Result<bool, StoreError> {
    match find(env, identifier).await? {
        Some(cio_id) => remove(env, cache, &cio_id, None).await,
        None => Ok(false),
    }
}

/// `merge_customers`: the secondary's attributes the primary lacks, its
/// events, anonymous ids and relationships move to the primary; then the
/// secondary is deleted. Missing people make it a no-op, so it is idempotent.
pub async fn merge(
    env: &Env,
    cache: &Cache,
    primary: &Identifier,
    secondary: &Identifier,
    now: i64,
) -> Result<(), StoreError> {
    let (Some(primary), Some(secondary)) = (find(env, primary).await?, find(env, secondary).await?)
    else {
        return Ok(());
    };
    if primary == secondary {
        return Ok(());
    }
    let people = People { env };
    let (mut dump, primary_email) = match (
        people.dump(&secondary).await,
        people.profile(&primary).await,
    ) {
        (Ok(dump), Ok(view)) => (dump, view.email),
        (Err(StoreError::Client(ClientError::NotFound { .. })), _)
        | (_, Err(StoreError::Client(ClientError::NotFound { .. }))) => return Ok(()),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    // A primary without an email takes the secondary's: its claim in the index
    // moves first, so the index never names a person that lacks the email.
    let index = Index { env };
    let mut moved_email = None;
    if let (None, Some(email)) = (&primary_email, dump.profile.email.clone()) {
        let key = format!("email:{email}");
        index.release(&key, &secondary).await?;
        if index.claim(&key, &primary).await? == primary {
            moved_email = Some(email);
        }
    }
    if moved_email.is_none() {
        dump.profile.email = None;
    }
    let view = match people.absorb(&primary, dump, now).await {
        Ok(view) => view,
        Err(StoreError::Client(ClientError::NotFound { .. })) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(email) = &moved_email {
        // The primary got an email meanwhile: it keeps its own.
        if view.email.as_ref() != Some(email) {
            index.release(&format!("email:{email}"), &primary).await?;
        }
    }
    remove(env, cache, &secondary, Some(&primary)).await?;
    cache.remember_person(&view, moved_email.is_some()).await;
    Ok(())
}

/// An event for a person named by the Track API; an id or email that names
/// nobody yet creates the person, as Customer.io does.
pub async fn track_person(
    env: &Env,
    cache: &Cache,
    identifier: &Identifier,
    event: &Event,
    now: i64,
) -> Result<(), StoreError> {
    let cio_id = match find(env, identifier).await? {
        Some(cio_id) => cio_id,
        None if !matches!(identifier, Identifier::CioId(_)) => {
            let mut create = Identify {
                identifier: identifier.clone(),
                update: ProfileUpdate::default(),
            };
            match identifier {
                Identifier::Id(id) => create.update.id = Some(id.clone()),
                Identifier::Email(email) => create.update.email = Some(email.clone()),
                Identifier::CioId(_) => {}
            }
            let options = IdentifyOptions {
                create: true,
                anonymous_id: None,
                now,
            };
            let done = self::identify(env, cache, &create, options).await?;
            done.person.cio_id
        }
        None => return Err(ClientError::not_found("no such person").into()),
    };
    People { env }.track(&cio_id, event).await
}

/// A tracked-link click (`_cio_id`): identifies the visitor as that person and
/// merges its activity; `None` when no such person exists.
pub async fn link(
    env: &Env,
    cio_id: &str,
    anonymous_id: &str,
    now: i64,
) -> Result<Option<Identified>, StoreError> {
    let call = IdentifyCall {
        cio_id: cio_id.to_owned(),
        update: ProfileUpdate::default(),
        create: false,
        email_claimed: false,
        anonymous_id: Some(anonymous_id.to_owned()),
        now,
    };
    match (People { env }).identify(call).await {
        Ok(IdentifyReply::Done {
            person,
            rotate_anon,
            identifiers_changed,
            ..
        }) => Ok(Some(Identified {
            person,
            rotate_anon,
            identifiers_changed,
        })),
        Ok(IdentifyReply::NeedsEmailClaim) => {
            Err(StoreError::Unavailable("unexpected email claim".into()))
        }
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
