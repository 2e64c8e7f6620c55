//! The front door handlers call: every identity operation (identify, link,
//! record, track, delete, merge, reads), written once against the storage
//! seam, with the cache kept inside. Each operation's order of calls is what
//! `docs/ARCHITECTURE.md` describes; the races it survives are tested in
//! `identity::tests` against the in-memory store.

use crate::core::event::Event;
use crate::core::identifier::{new_cio_id, Identifier};
use crate::core::profile::{Identify, ProfileUpdate};
use crate::core::Error as ClientError;

use super::backend::{Background, Cache, Objects};
use super::key::IndexKey;
use super::wire::*;

/// How often an operation starts over when the person it reached was deleted
/// or merged under it. Each retry sees the previous one's person gone for
/// good (a tombstone), so two are enough unless deletes keep racing it.
const ATTEMPTS: usize = 3;
/// How many merges an event follows from a merged person to its successor.
const MAX_HOPS: usize = 4;

pub struct Identified {
    pub person: PersonView,
    /// The visitor's anonymous id already belongs to another person.
    pub rotate_anon: bool,
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

pub struct Store<O, C, B> {
    pub objects: O,
    pub cache: C,
    pub background: B,
}

fn conflict(field: &'static str) -> StoreError {
    ClientError::conflict(field, format!("this {field} belongs to another person")).into()
}

/// Who an identify attempt writes to, as its steps settle it.
struct Who {
    target: String,
    /// The target was created by this attempt's claim.
    created: bool,
    /// Found through the cache: the person checks it still holds this.
    must_hold: Option<IndexKey>,
    email_claimed: bool,
    /// The target is a lead found by the email, taking the new id.
    adopting_lead: bool,
}

fn not_found() -> StoreError {
    ClientError::not_found("no such person").into()
}

enum Attempt {
    /// With what the cache needs: the identifier keys, the snapshot.
    Done(Box<Identified>, CacheUpkeep),
    /// The person reached was deleted or merged while we worked on it.
    Gone(String),
    /// The cached owner no longer holds the identifier: ask the index.
    Stale(IndexKey),
}

/// What an identify's answer asks of the cache.
#[derive(Debug, Clone, Copy)]
struct CacheUpkeep {
    identifiers: bool,
    snapshot: bool,
}

/// Forwarding: anonymous events of `anonymous_id` were delivered late (past
/// Customer.io's join window, maybe): when the visitor was merged into a
/// person, that person sends its join identify again, so Customer.io
/// associates them (docs.customer.io/journeys/anonymous-events). Answers
/// whether it was sent.
pub async fn rejoin(objects: &impl Objects, anonymous_id: &str) -> Result<bool, StoreError> {
    let VisitorReply::Recorded(Some(mut cio_id)) =
        objects.visitor(anonymous_id, VisitorCall::Owner).await?
    else {
        return Ok(false);
    };
    for _ in 0..MAX_HOPS {
        let call = PersonCall::Rejoin(anonymous_id.to_owned());
        match objects.person(&cio_id, call).await? {
            PersonReply::Done => return Ok(true),
            PersonReply::Gone(Some(next)) => cio_id = next,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

impl<O, C, B> Store<O, C, B>
where
    O: Objects,
    C: Cache + Clone + 'static,
    B: Background,
{
    // ---- lookups ----

    /// The person an identifier names, from the index (the truth, never KV).
    pub async fn find(&self, identifier: &Identifier) -> Result<Option<String>, StoreError> {
        match (identifier, IndexKey::of(identifier)) {
            (Identifier::CioId(cio_id), _) => Ok(Some(cio_id.clone())),
            (_, Some(key)) => self.owner(&key).await,
            (_, None) => Ok(None),
        }
    }

    async fn owner(&self, key: &IndexKey) -> Result<Option<String>, StoreError> {
        Ok(self.objects.index(key, IndexCall::Get).await?.cio_id)
    }

    async fn claim(&self, key: &IndexKey, cio_id: &str) -> Result<String, StoreError> {
        let call = IndexCall::Claim(cio_id.to_owned());
        self.objects
            .index(key, call)
            .await?
            .cio_id
            .ok_or_else(|| StoreError::unavailable("claim left no owner"))
    }

    async fn release(&self, key: &IndexKey, cio_id: &str) -> Result<(), StoreError> {
        let call = IndexCall::Release(cio_id.to_owned());
        self.objects.index(key, call).await.map(|_| ())
    }

    /// The cio_id for a cookie's identifier: the KV cache first, then the
    /// index. Answers whether it came from the cache.
    async fn resolve(&self, identifier: &Identifier) -> Result<Option<(String, bool)>, StoreError> {
        let Some(key) = IndexKey::of(identifier) else {
            return Ok(self.find(identifier).await?.map(|cio| (cio, false)));
        };
        if let Some(cio) = self.cache.owner(&key).await {
            return Ok(Some((cio, true)));
        }
        Ok(self.owner(&key).await?.map(|cio| (cio, false)))
    }

    pub async fn profile(&self, identifier: &Identifier) -> Result<PersonView, StoreError> {
        let cio_id = self.find(identifier).await?.ok_or_else(not_found)?;
        match self.objects.person(&cio_id, PersonCall::Profile).await? {
            PersonReply::View(view) => Ok(*view),
            PersonReply::Gone(_) | PersonReply::Missing => Err(not_found()),
            _ => Err(unexpected("profile")),
        }
    }

    /// A page of a person's activity, newest first, from `before` on.
    pub async fn activity(
        &self,
        identifier: &Identifier,
        limit: u32,
        before: Option<Position>,
    ) -> Result<Activity, StoreError> {
        let cio_id = self.find(identifier).await?.ok_or_else(not_found)?;
        match self
            .objects
            .person(&cio_id, PersonCall::Activity { limit, before })
            .await?
        {
            PersonReply::Activity(activity) => Ok(activity),
            PersonReply::Gone(_) | PersonReply::Missing => Err(not_found()),
            _ => Err(unexpected("activity")),
        }
    }

    pub async fn visitor_activity(
        &self,
        anon_id: &str,
        limit: u32,
        before: Option<Position>,
    ) -> Result<VisitorActivity, StoreError> {
        match self
            .objects
            .visitor(anon_id, VisitorCall::Activity { limit, before })
            .await?
        {
            VisitorReply::Activity(activity) => Ok(activity),
            _ => Err(unexpected("visitor activity")),
        }
    }

    /// A page of people: the listing comes from the cache, each person from
    /// its object (a cached person that is gone is skipped and forgotten).
    pub async fn list_people(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<PersonView>, Option<String>), StoreError> {
        let (ids, next) = self.cache.list_people(limit, cursor).await?;
        let mut people = Vec::with_capacity(ids.len());
        for cio_id in ids {
            match self.objects.person(&cio_id, PersonCall::Profile).await? {
                PersonReply::View(view) => people.push(*view),
                _ => {
                    let cache = self.cache.clone();
                    self.background
                        .spawn(Box::pin(async move { cache.forget_person(&cio_id).await }));
                }
            }
        }
        Ok((people, next))
    }

    // ---- cache upkeep, off the response path ----

    fn cache_person(&self, person: &PersonView, identifiers_changed: bool) {
        let cache = self.cache.clone();
        let person = person.clone();
        self.background.spawn(Box::pin(async move {
            if identifiers_changed {
                for key in IndexKey::all_of(person.id.as_deref(), person.email.as_deref()) {
                    cache.remember_owner(&key, &person.cio_id).await;
                }
            }
            cache.remember_person(&person).await;
        }));
    }

    fn cache_owner(&self, key: IndexKey, cio_id: Option<String>) {
        let cache = self.cache.clone();
        self.background.spawn(Box::pin(async move {
            match cio_id {
                Some(cio_id) => cache.remember_owner(&key, &cio_id).await,
                None => cache.forget_owner(&key).await,
            }
        }));
    }

    fn forget_person(&self, cio_id: &str, keys: Vec<IndexKey>) {
        let cache = self.cache.clone();
        let cio_id = cio_id.to_owned();
        self.background.spawn(Box::pin(async move {
            for key in &keys {
                cache.forget_owner(key).await;
            }
            cache.forget_person(&cio_id).await;
        }));
    }

    // ---- identify ----

    /// Identify (API rules 6.2-6.6): create or update the person the identifier
    /// names and merge the visitor's anonymous activity into it. Nothing is
    /// applied when the call is rejected. A person deleted or merged while
    /// this runs is never brought back: the identify starts over.
    pub async fn identify(
        &self,
        identify: &Identify,
        options: IdentifyOptions<'_>,
    ) -> Result<Identified, StoreError> {
        for attempt in 0..ATTEMPTS {
            let mut claims = Vec::new();
            // The first attempt may find an existing person through the cache
            // and skip the index claim; a retry always asks the index.
            let use_cache = attempt == 0;
            match self
                .identify_once(&mut claims, identify, options, use_cache)
                .await
            {
                Ok(Attempt::Done(done, upkeep)) => {
                    if upkeep.snapshot || upkeep.identifiers {
                        self.cache_person(&done.person, upkeep.identifiers);
                    }
                    return Ok(*done);
                }
                Ok(Attempt::Stale(key)) => {
                    self.roll_back(&mut claims).await;
                    self.cache_owner(key, None);
                }
                Ok(Attempt::Gone(gone)) => {
                    self.roll_back(&mut claims).await;
                    // The gone person's claims are stale for good: free them
                    // now rather than wait for its delete to finish.
                    for key in identify_keys(identify) {
                        self.release(&key, &gone).await?;
                    }
                }
                Err(e) => {
                    self.roll_back(&mut claims).await;
                    return Err(e);
                }
            }
        }
        Err(StoreError::unavailable(
            "the person kept being deleted or merged during identify",
        ))
    }

    async fn roll_back(&self, claims: &mut Vec<(IndexKey, String)>) {
        for (key, cio_id) in claims.drain(..) {
            let _ = self.release(&key, &cio_id).await;
        }
    }

    /// Claims `key` for `cio_id`, remembering a won claim for roll-back.
    async fn claim_for(
        &self,
        claims: &mut Vec<(IndexKey, String)>,
        key: &IndexKey,
        cio_id: &str,
    ) -> Result<String, StoreError> {
        let owner = self.claim(key, cio_id).await?;
        if owner == cio_id {
            claims.push((key.clone(), cio_id.to_owned()));
        }
        Ok(owner)
    }

    /// One attempt at an identify, by step: who the person is, the index
    /// claims its identifiers need, then the write to the person.
    async fn identify_once(
        &self,
        claims: &mut Vec<(IndexKey, String)>,
        identify: &Identify,
        options: IdentifyOptions<'_>,
        use_cache: bool,
    ) -> Result<Attempt, StoreError> {
        let mut who = self.who(claims, identify, options, use_cache).await?;
        self.claim_identifiers(claims, identify, &mut who).await?;
        self.write_person(claims, identify, options, who).await
    }

    /// Who: the cio_id itself, or the owner of the identifier, claimed for a
    /// fresh cio_id when creating (the claim decides any race).
    async fn who(
        &self,
        claims: &mut Vec<(IndexKey, String)>,
        identify: &Identify,
        options: IdentifyOptions<'_>,
        use_cache: bool,
    ) -> Result<Who, StoreError> {
        let primary = IndexKey::of(&identify.identifier);
        let cached = match (&primary, use_cache) {
            (Some(key), true) => self.cache.owner(key).await,
            _ => None,
        };
        let must_hold = cached.as_ref().and(primary.clone());
        let (target, created) = match (&identify.identifier, &primary) {
            (Identifier::CioId(cio_id), _) => (cio_id.clone(), false),
            // An existing person found through the cache; it checks it still
            // holds the identifier, which saves the index round trip.
            (_, Some(_)) if cached.is_some() => (cached.clone().unwrap_or_default(), false),
            (_, Some(key)) if options.create => {
                let fresh = new_cio_id();
                let owner = self.claim_for(claims, key, &fresh).await?;
                let created = owner == fresh;
                (owner, created)
            }
            (_, Some(key)) => (self.owner(key).await?.ok_or_else(not_found)?, false),
            (_, None) => return Err(not_found()),
        };
        Ok(Who {
            target,
            created,
            must_hold,
            email_claimed: matches!(identify.identifier, Identifier::Email(_)),
            adopting_lead: false,
        })
    }

    /// The index claims beside the primary identifier's.
    async fn claim_identifiers(
        &self,
        claims: &mut Vec<(IndexKey, String)>,
        identify: &Identify,
        who: &mut Who,
    ) -> Result<(), StoreError> {
        let update = &identify.update;
        let primary = IndexKey::of(&identify.identifier);
        // A new id with an email that someone already has: that person (a lead
        // identified by email) gets the id, unless it has another one (then the
        // person answers 409 and the claims are rolled back).
        if let (true, Identifier::Id(_), Some(email), Some(primary)) =
            (who.created, &identify.identifier, &update.email, &primary)
        {
            let email_key = IndexKey::Email(email.clone());
            let email_owner = self.claim_for(claims, &email_key, &who.target).await?;
            if email_owner != who.target {
                self.roll_back(claims).await;
                if self.claim_for(claims, primary, &email_owner).await? != email_owner {
                    return Err(conflict("id"));
                }
                who.target = email_owner;
                who.adopting_lead = true;
            }
            who.email_claimed = true;
        }
        // An id given beside another identifier (Track API): claim it for the target.
        if let (Some(id), false) = (&update.id, matches!(identify.identifier, Identifier::Id(_))) {
            if self
                .claim_for(claims, &IndexKey::Id(id.clone()), &who.target)
                .await?
                != who.target
            {
                return Err(conflict("id"));
            }
        }

        Ok(())
    }

    /// The identify written to the person, claiming its new email first when
    /// the person asks.
    async fn write_person(
        &self,
        claims: &mut Vec<(IndexKey, String)>,
        identify: &Identify,
        options: IdentifyOptions<'_>,
        who: Who,
    ) -> Result<Attempt, StoreError> {
        let update = &identify.update;
        let Who {
            target,
            created,
            must_hold,
            mut email_claimed,
            adopting_lead,
        } = who;
        loop {
            let call = IdentifyCall {
                cio_id: target.clone(),
                update: update.clone(),
                // A lead is adopted only once it exists: one still being
                // created belongs to the identify creating it.
                create: options.create && !adopting_lead,
                email_claimed,
                anonymous_id: options.anonymous_id.map(str::to_owned),
                now: options.now,
                must_hold: must_hold.clone(),
            };
            let reply = match self
                .objects
                .person(&target, PersonCall::Identify(call))
                .await
            {
                // The email's person has an id of its own: the email is taken.
                Err(StoreError::Client(ClientError::Conflict { .. })) if adopting_lead => {
                    return Err(conflict("email"))
                }
                // The person may have committed before the failure: its
                // claims stay, and a retry of the same call converges on it.
                Err(e @ StoreError::Unavailable(_)) => {
                    claims.clear();
                    return Err(e);
                }
                other => other?,
            };
            match (reply, &must_hold) {
                (PersonReply::Missing | PersonReply::Gone(_), Some(key)) => {
                    return Ok(Attempt::Stale(key.clone()))
                }
                (reply, _) => match reply {
                    PersonReply::Missing if adopting_lead => return Err(conflict("email")),
                    PersonReply::Missing => return Err(not_found()),
                    PersonReply::Gone(_) if created => {
                        return Err(StoreError::unavailable("a new person was gone at once"))
                    }
                    PersonReply::Gone(_) => return Ok(Attempt::Gone(target)),
                    PersonReply::Identified(IdentifyReply::NeedsEmailClaim) if !email_claimed => {
                        let email = IndexKey::Email(update.email.clone().unwrap_or_default());
                        if self.claim_for(claims, &email, &target).await? != target {
                            return Err(conflict("email"));
                        }
                        email_claimed = true;
                    }
                    PersonReply::Identified(IdentifyReply::Done {
                        person,
                        released_email,
                        rotate_anon,
                        identifiers_changed,
                        profile_changed,
                    }) => {
                        if let Some(old) = released_email {
                            let key = IndexKey::Email(old);
                            self.release(&key, &person.cio_id).await?;
                            self.cache_owner(key, None);
                        }
                        let done = Identified {
                            person: *person,
                            rotate_anon,
                        };
                        let upkeep = CacheUpkeep {
                            identifiers: identifiers_changed,
                            snapshot: profile_changed,
                        };
                        return Ok(Attempt::Done(Box::new(done), upkeep));
                    }
                    _ => return Err(unexpected("identify")),
                },
            }
        }
    }

    /// A tracked-link click (`_cio_id`): the person that cio_id names, for the
    /// `_cioid` cookie; `None` when no such person exists. One lookup, cache
    /// first; it changes nothing (a link never merges a visitor's history).
    pub async fn link(&self, cio_id: &str) -> Result<Option<PersonView>, StoreError> {
        if let Some(person) = self.cache.person(cio_id).await {
            return Ok(Some(person));
        }
        match self.objects.person(cio_id, PersonCall::Profile).await? {
            PersonReply::View(view) => {
                self.cache_person(&view, false);
                Ok(Some(*view))
            }
            _ => Ok(None),
        }
    }

    // ---- Customer.io links (forwarding on, docs/FORWARDING.md) ----

    /// An event from a browser a Customer.io link identified as `cio_id`, a
    /// person the edge may not know. The person for that external cio_id is
    /// made by the first such event (never by the link: a link stores
    /// nothing); one deleted or merged here is not made again and the event
    /// goes the ordinary way (rules 6.13, 6.14).
    /// `merge_history` (`LINK_MERGES_HISTORY`): the person is made with the
    /// visitor's earlier activity merged into it.
    pub async fn record_linked(
        &self,
        cio_id: &str,
        anonymous_id: &str,
        event: Event,
        now: i64,
        merge_history: bool,
    ) -> Result<(), StoreError> {
        if self.track_cio(cio_id, &event).await?.is_some() {
            return Ok(());
        }
        let create = IdentifyCall {
            cio_id: cio_id.to_owned(),
            update: ProfileUpdate::default(),
            create: true,
            email_claimed: false,
            anonymous_id: merge_history.then(|| anonymous_id.to_owned()),
            now,
            must_hold: None,
        };
        self.objects
            .person(cio_id, PersonCall::Identify(create))
            .await?;
        let linked = Identifier::CioId(cio_id.to_owned());
        self.record(Some(&linked), anonymous_id, event).await
    }

    /// `LINK_MERGES_HISTORY`: a link to a person here merges the visitor's
    /// earlier activity into that person, as Customer.io's own snippet does.
    /// Nothing happens when the visitor belongs to someone else already.
    pub async fn link_merge(
        &self,
        cio_id: &str,
        anonymous_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let identify = Identify {
            identifier: Identifier::CioId(cio_id.to_owned()),
            update: ProfileUpdate::default(),
        };
        let options = IdentifyOptions {
            create: false,
            anonymous_id: Some(anonymous_id),
            now,
        };
        self.identify(&identify, options).await.map(|_| ())
    }

    // ---- events ----

    /// Stores an event on `cio_id` or, when that person was merged, on its
    /// successor. Answers where it was stored; `None` when the person is gone.
    async fn track_cio(&self, cio_id: &str, event: &Event) -> Result<Option<String>, StoreError> {
        let mut target = cio_id.to_owned();
        for _ in 0..MAX_HOPS {
            let call = PersonCall::Track(event.clone());
            match self.objects.person(&target, call).await? {
                PersonReply::Tracked => return Ok(Some(target)),
                PersonReply::Gone(Some(next)) => target = next,
                PersonReply::Gone(None) | PersonReply::Missing => return Ok(None),
                _ => return Err(unexpected("track")),
            }
        }
        Ok(None)
    }

    /// Records an event for the identified person, else for the anonymous
    /// visitor (sent on to its person when the visitor was merged). A browser's
    /// event is never refused for what is stored: when the person is gone the
    /// visitor is anonymous again and keeps the event. Answers once durable.
    pub async fn record(
        &self,
        identifier: Option<&Identifier>,
        anonymous_id: &str,
        mut event: Event,
    ) -> Result<(), StoreError> {
        if let Some(identifier) = identifier {
            if let Some((cio_id, cached)) = self.resolve(identifier).await? {
                let key = IndexKey::of(identifier);
                match (self.track_cio(&cio_id, &event).await?, key) {
                    (Some(_), Some(key)) if !cached => {
                        self.cache_owner(key, Some(cio_id));
                        return Ok(());
                    }
                    (Some(_), _) => return Ok(()),
                    // A stale cached owner: forget it and ask the index.
                    (None, Some(key)) if cached => {
                        self.cache_owner(key.clone(), None);
                        if let Some(owner) = self.owner(&key).await? {
                            if owner != cio_id && self.track_cio(&owner, &event).await?.is_some() {
                                return Ok(());
                            }
                        }
                    }
                    (None, _) => {}
                }
            }
        }
        event.anonymous_id = Some(anonymous_id.to_owned());
        for _ in 0..ATTEMPTS {
            let call = VisitorCall::Record(event.clone());
            match self.objects.visitor(anonymous_id, call).await? {
                VisitorReply::Recorded(None) => return Ok(()),
                VisitorReply::Recorded(Some(cio_id)) => {
                    if self.track_cio(&cio_id, &event).await?.is_some() {
                        return Ok(());
                    }
                    // Its person is gone: the visitor is anonymous again.
                    let repoint = VisitorCall::Repoint {
                        from: cio_id,
                        to: None,
                    };
                    self.objects.visitor(anonymous_id, repoint).await?;
                }
                _ => return Err(unexpected("record")),
            }
        }
        Err(StoreError::unavailable(
            "the visitor's person kept vanishing",
        ))
    }

    /// An event for a person named by the Track API; an id or email that names
    /// nobody yet creates the person, as Customer.io does.
    pub async fn track_person(
        &self,
        identifier: &Identifier,
        event: &Event,
        now: i64,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let cio_id = self.person_for(identifier, now).await?;
            if self.track_cio(&cio_id, event).await?.is_some() {
                return Ok(());
            }
            match IndexKey::of(identifier) {
                // The owner was deleted a moment ago: its claim is stale.
                Some(key) => self.release(&key, &cio_id).await?,
                None => return Err(not_found()),
            }
        }
        Err(StoreError::unavailable("the person kept vanishing"))
    }

    /// The person an identifier names; an id or email that names nobody yet
    /// creates it, as Customer.io does.
    async fn person_for(&self, identifier: &Identifier, now: i64) -> Result<String, StoreError> {
        match self.find(identifier).await? {
            Some(cio_id) => Ok(cio_id),
            None if !matches!(identifier, Identifier::CioId(_)) => {
                let mut update = ProfileUpdate::default();
                match identifier {
                    Identifier::Id(id) => update.id = Some(id.clone()),
                    Identifier::Email(email) => update.email = Some(email.clone()),
                    Identifier::CioId(_) => {}
                }
                let create = Identify {
                    identifier: identifier.clone(),
                    update,
                };
                let options = IdentifyOptions {
                    create: true,
                    anonymous_id: None,
                    now,
                };
                Ok(self.identify(&create, options).await?.person.cio_id)
            }
            None => Err(not_found()),
        }
    }

    /// A device or suppression operation (Customer.io's alone): nothing is
    /// stored; with forwarding on the person's object sends it on, addressed
    /// as that person. An id or email naming nobody creates the person.
    pub async fn relay(
        &self,
        identifier: &Identifier,
        op: &crate::core::body::Object,
        now: i64,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let cio_id = self.person_for(identifier, now).await?;
            let mut target = cio_id.clone();
            for _ in 0..MAX_HOPS {
                let call = PersonCall::Forward(op.clone());
                match self.objects.person(&target, call).await? {
                    PersonReply::Done => return Ok(()),
                    PersonReply::Gone(Some(next)) => target = next,
                    _ => break,
                }
            }
            match IndexKey::of(identifier) {
                Some(key) => self.release(&key, &cio_id).await?,
                None => return Err(not_found()),
            }
        }
        Err(StoreError::unavailable("the person kept vanishing"))
    }

    // ---- delete and merge ----

    /// Removes a person and frees its identifiers (`keep` moves to the
    /// successor instead); its former visitors follow `successor` or become
    /// anonymous again. Answers whether someone was removed.
    async fn remove(
        &self,
        cio_id: &str,
        successor: Option<&str>,
        keep: &[IndexKey],
    ) -> Result<bool, StoreError> {
        let person = match self.objects.person(cio_id, PersonCall::Delete).await? {
            PersonReply::View(person) => person,
            PersonReply::Gone(_) | PersonReply::Missing => return Ok(false),
            _ => return Err(unexpected("delete")),
        };
        let keys = IndexKey::all_of(person.id.as_deref(), person.email.as_deref());
        for key in &keys {
            match successor {
                Some(to) if keep.contains(key) => {
                    let call = IndexCall::Transfer {
                        from: cio_id.to_owned(),
                        to: to.to_owned(),
                    };
                    self.objects.index(key, call).await?;
                }
                _ => self.release(key, cio_id).await?,
            }
        }
        self.forget_person(cio_id, keys);
        for anon in &person.anonymous_ids {
            let call = VisitorCall::Repoint {
                from: cio_id.to_owned(),
                to: successor.map(str::to_owned),
            };
            self.objects.visitor(anon, call).await?;
        }
        Ok(true)
    }

    /// `DELETE /customers/{identifier}`: the person, its events and
    /// relationships are gone, its identifiers free, its cio_id never reused.
    pub async fn delete(&self, identifier: &Identifier) -> Result<bool, StoreError> {
        match self.find(identifier).await? {
            Some(cio_id) => self.remove(&cio_id, None, &[]).await,
            None => Ok(false),
        }
    }

    /// `merge_customers`: the secondary is sealed (from then on its events go
    /// to the primary), its attributes the primary lacks, its email when the
    /// primary has none, events, anonymous ids and relationships move to the
    /// primary; then the secondary is deleted. Missing people make it a no-op,
    /// so it is idempotent; a retry after a failure finishes the job.
    pub async fn merge(
        &self,
        primary: &Identifier,
        secondary: &Identifier,
        now: i64,
    ) -> Result<(), StoreError> {
        let (Some(primary), Some(secondary)) =
            (self.find(primary).await?, self.find(secondary).await?)
        else {
            return Ok(());
        };
        if primary == secondary {
            return Ok(());
        }
        let seal = PersonCall::Seal(primary.clone());
        let dump = match self.objects.person(&secondary, seal).await? {
            PersonReply::Dump(dump) => dump,
            PersonReply::Gone(_) | PersonReply::Missing => return Ok(()),
            _ => return Err(unexpected("seal")),
        };
        let secondary_email = dump.profile.email.clone();
        let mut next = dump.next;
        let absorb = PersonCall::Absorb { dump, now };
        let view = match self.objects.person(&primary, absorb).await? {
            PersonReply::View(view) => view,
            gone @ (PersonReply::Gone(_) | PersonReply::Missing) => {
                let successor = match gone {
                    PersonReply::Gone(successor) => successor,
                    _ => None,
                };
                let unseal = PersonCall::Unseal(primary);
                self.objects.person(&secondary, unseal).await?;
                return match successor {
                    None => Ok(()),
                    Some(_) => Err(ClientError::conflict(
                        "primary",
                        "the primary person was merged into another at the same time; retry",
                    )
                    .into()),
                };
            }
            _ => return Err(unexpected("absorb")),
        };
        // The rest of the secondary's events, a page at a time. A failure
        // here leaves the secondary sealed with its data: the retry of the
        // merge moves it all again (deduplicated).
        while let Some(after) = next {
            let page = match self
                .objects
                .person(&secondary, PersonCall::DumpEvents(after))
                .await?
            {
                PersonReply::Events { events, next } => (events, next),
                _ => break,
            };
            next = page.1;
            let absorb = PersonCall::AbsorbEvents(page.0);
            if !matches!(
                self.objects.person(&primary, absorb).await?,
                PersonReply::Done
            ) {
                return Err(StoreError::unavailable(
                    "the primary went away during the merge",
                ));
            }
        }
        let keep: Vec<IndexKey> = secondary_email
            .filter(|e| view.email.as_ref() == Some(e))
            .map(IndexKey::Email)
            .into_iter()
            .collect();
        self.cache_person(&view, !keep.is_empty());
        self.remove(&secondary, Some(&primary), &keep).await?;
        Ok(())
    }
}

/// The index keys an identify may have claimed.
fn identify_keys(identify: &Identify) -> Vec<IndexKey> {
    let mut keys: Vec<IndexKey> = Vec::new();
    let all = IndexKey::of(&identify.identifier)
        .into_iter()
        .chain(IndexKey::all_of(
            identify.update.id.as_deref(),
            identify.update.email.as_deref(),
        ));
    // Sorted and without repeats. Inserted in place: a few keys at most, and
    // a slice sort is a 3.5 KB instantiation of its own in the wasm.
    for key in all {
        if let Err(at) = keys.binary_search(&key) {
            keys.insert(at, key);
        }
    }
    keys
}
