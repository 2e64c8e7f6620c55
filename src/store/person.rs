//! One person (Durable Object named by cio_id, SQLite-backed): the profile,
//! relationships, events (deduplicated by event id) and the anonymous ids
//! merged into it. Every rule that needs the stored state runs here, inside the
//! object, so concurrent calls for one person cannot interleave a check and its
//! write.

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::rpc::{call, read_call, reply, Done, StoreError};
use super::visitor::VisitorStore;
use crate::core::event::Event;
use crate::core::profile::{Profile, ProfileUpdate, Relationship};
use crate::core::Error as ClientError;

pub const BINDING: &str = "PERSON";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum PersonCall {
    Identify(IdentifyCall),
    Track {
        event: Event,
    },
    Profile,
    Activity {
        limit: u32,
    },
    /// Everything this person holds, for a merge into another person.
    Dump,
    /// Take in a merged secondary person.
    Absorb {
        dump: Box<PersonDump>,
        now: i64,
    },
    /// Forget everything; answers the person as it was.
    Delete,
}

/// A whole person, as a merge moves it.
#[derive(Serialize, Deserialize)]
pub struct PersonDump {
    pub profile: Profile,
    pub relationships: Vec<Relationship>,
    pub anonymous_ids: Vec<String>,
    pub events: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
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
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IdentifyReply {
    Done {
        person: PersonView,
        /// The email the person held before this call, to be released.
        released_email: Option<String>,
        /// The visitor already belongs to another person: rotate its id.
        rotate_anon: bool,
        /// The person was created or got a new id or email: the cached
        /// identifier keys need writing, not only the snapshot.
        identifiers_changed: bool,
    },
    /// The update gives the person a new email: claim it in the index first.
    NeedsEmailClaim,
}

/// A person as the admin API shows it and as KV caches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonView {
    pub cio_id: String,
    pub id: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
    pub attributes: crate::core::body::Object,
    pub relationships: Vec<Relationship>,
    pub anonymous_ids: Vec<String>,
    pub updated_at: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Activity {
    pub events: Vec<Event>,
}

#[durable_object]
pub struct Person {
    state: State,
    env: Env,
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

const TABLES: [&str; 4] = ["profile", "relationships", "anonymous_ids", "events"];

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS profile (k INTEGER PRIMARY KEY CHECK (k = 1), body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS relationships (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS anonymous_ids (id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, body TEXT NOT NULL)",
];

impl Person {
    fn profile(&self) -> worker::Result<Option<Profile>> {
        let rows: Vec<BodyRow> = self
            .sql
            .exec("SELECT body FROM profile WHERE k = 1", None)?
            .to_array()?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => Ok(Some(serde_json::from_str(&row.body)?)),
        }
    }

    fn relationships(&self) -> worker::Result<Vec<Relationship>> {
        let rows: Vec<BodyRow> = self
            .sql
            .exec("SELECT body FROM relationships ORDER BY seq", None)?
            .to_array()?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect())
    }

    fn anonymous_ids(&self) -> worker::Result<Vec<String>> {
        let rows: Vec<IdRow> = self
            .sql
            .exec("SELECT id FROM anonymous_ids ORDER BY id", None)?
            .to_array()?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    fn view(&self, profile: Profile) -> worker::Result<PersonView> {
        Ok(PersonView {
            cio_id: profile.cio_id,
            id: profile.id,
            email: profile.email,
            created_at: profile.created_at,
            attributes: profile.attributes,
            relationships: self.relationships()?,
            anonymous_ids: self.anonymous_ids()?,
            updated_at: profile.updated_at,
        })
    }

    fn all_events(&self) -> worker::Result<Vec<Event>> {
        let rows: Vec<BodyRow> = self
            .sql
            .exec("SELECT body FROM events ORDER BY seq", None)?
            .to_array()?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect())
    }

    fn save_profile(&self, profile: &Profile) -> worker::Result<()> {
        self.sql.exec(
            "INSERT OR REPLACE INTO profile (k, body) VALUES (1, ?)",
            vec![serde_json::to_string(profile)?.into()],
        )?;
        Ok(())
    }

    fn save_relationships(&self, relationships: &[Relationship]) -> worker::Result<()> {
        self.sql.exec("DELETE FROM relationships", None)?;
        for rel in relationships {
            self.sql.exec(
                "INSERT INTO relationships (body) VALUES (?)",
                vec![serde_json::to_string(rel)?.into()],
            )?;
        }
        Ok(())
    }

    /// Merge: missing attributes, relationships, anonymous ids and events of
    /// the secondary move here (events deduplicated by id, so a repeated merge
    /// changes nothing).
    fn absorb(
        &self,
        dump: &PersonDump,
        now: i64,
    ) -> worker::Result<Result<PersonView, ClientError>> {
        let Some(mut profile) = self.profile()? else {
            return Ok(Err(ClientError::not_found("no such person")));
        };
        profile.absorb(&dump.profile, now);
        let mut relationships = self.relationships()?;
        for rel in &dump.relationships {
            if !relationships
                .iter()
                .any(|r| r.object_type_id == rel.object_type_id && r.object_id == rel.object_id)
            {
                relationships.push(rel.clone());
            }
        }
        self.save_relationships(&relationships)?;
        for anon in &dump.anonymous_ids {
            self.sql.exec(
                "INSERT OR IGNORE INTO anonymous_ids (id) VALUES (?)",
                vec![anon.clone().into()],
            )?;
        }
        for event in &dump.events {
            self.insert_event(event)?;
        }
        self.save_profile(&profile)?;
        Ok(Ok(self.view(profile)?))
    }

    fn insert_event(&self, event: &Event) -> worker::Result<()> {
        let body = serde_json::to_string(event)?;
        self.sql.exec(
            "INSERT OR IGNORE INTO events (id, ts, body) VALUES (?, ?, ?)",
            vec![event.id.clone().into(), event.timestamp.into(), body.into()],
        )?;
        Ok(())
    }

    /// Checks and applies the profile part of an identify; synchronous, so it
    /// commits as one unit.
    /// Answers the email released and whether the identifiers changed.
    fn apply_update(
        &self,
        call: &IdentifyCall,
    ) -> worker::Result<Result<(Option<String>, bool), ApplyStop>> {
        let (mut profile, created) = match self.profile()? {
            // Nothing to change (a link click): leave updated_at alone.
            Some(_) if call.update == ProfileUpdate::default() => return Ok(Ok((None, false))),
            Some(profile) => (profile, false),
            None if call.create => (
                Profile::new(&call.cio_id, call.update.created_at, call.now),
                true,
            ),
            None => {
                return Ok(Err(ApplyStop::Client(ClientError::not_found(
                    "no such person",
                ))))
            }
        };
        if let Some(email) = &call.update.email {
            if profile.email.as_ref() != Some(email) && !call.email_claimed {
                return Ok(Err(ApplyStop::NeedsEmailClaim));
            }
        }
        let identifiers_before = (profile.id.clone(), profile.email.clone());
        let applied = match profile.apply(&call.update, call.now) {
            Ok(applied) => applied,
            Err(e) => return Ok(Err(ApplyStop::Client(e))),
        };
        if let Some(change) = &call.update.relationships {
            let mut relationships = self.relationships()?;
            change.apply_to(&mut relationships);
            self.save_relationships(&relationships)?;
        }
        let identifiers_changed =
            created || (profile.id.clone(), profile.email.clone()) != identifiers_before;
        self.save_profile(&profile)?;
        Ok(Ok((applied.released_email, identifiers_changed)))
    }

    /// Takes over the visitor's anonymous activity. Answers true when the
    /// visitor already belongs to someone else.
    async fn merge_visitor(&self, cio_id: &str, anon_id: &str) -> Result<bool, StoreError> {
        let known: Vec<IdRow> = self
            .sql
            .exec(
                "SELECT id FROM anonymous_ids WHERE id = ?",
                vec![anon_id.to_owned().into()],
            )?
            .to_array()?;
        if !known.is_empty() {
            return Ok(false);
        }
        let visitors = VisitorStore { env: &self.env };
        let merged = visitors.merge(anon_id, cio_id).await?;
        if merged.merged_into != cio_id {
            return Ok(true);
        }
        for event in &merged.events {
            self.insert_event(event)?;
        }
        self.sql.exec(
            "INSERT OR IGNORE INTO anonymous_ids (id) VALUES (?)",
            vec![anon_id.to_owned().into()],
        )?;
        // The events are stored here now; the visitor may drop its copies.
        // Should this fail, the next merge hands them over again, deduplicated.
        let env = self.env.clone();
        let (anon_id, cio_id) = (anon_id.to_owned(), cio_id.to_owned());
        self.state.wait_until(async move {
            let _ = VisitorStore { env: &env }.ack(&anon_id, &cio_id).await;
        });
        Ok(false)
    }

    async fn identify(&self, call: IdentifyCall) -> worker::Result<Response> {
        let (released_email, identifiers_changed) = match self.apply_update(&call)? {
            Ok(applied) => applied,
            Err(ApplyStop::NeedsEmailClaim) => return reply(Ok(IdentifyReply::NeedsEmailClaim)),
            Err(ApplyStop::Client(e)) => return reply::<IdentifyReply>(Err(e)),
        };
        let rotate_anon = match &call.anonymous_id {
            Some(anon_id) => match self.merge_visitor(&call.cio_id, anon_id).await {
                Ok(rotate) => rotate,
                Err(e) => return Err(worker::Error::RustError(e.to_string())),
            },
            None => false,
        };
        let profile = self
            .profile()?
            .ok_or_else(|| worker::Error::RustError("profile vanished".into()))?;
        reply(Ok(IdentifyReply::Done {
            person: self.view(profile)?,
            released_email,
            rotate_anon,
            identifiers_changed,
        }))
    }
}

enum ApplyStop {
    NeedsEmailClaim,
    Client(ClientError),
}

impl DurableObject for Person {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in SCHEMA {
            let _ = sql.exec(statement, None);
        }
        Self { state, env, sql }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match read_call::<PersonCall>(req).await? {
            PersonCall::Identify(call) => self.identify(call).await,
            PersonCall::Track { event } => {
                if self.profile()?.is_none() {
                    return reply::<Done>(Err(ClientError::not_found("no such person")));
                }
                self.insert_event(&event)?;
                reply(Ok(Done {}))
            }
            PersonCall::Profile => match self.profile()? {
                Some(profile) => reply(Ok(self.view(profile)?)),
                None => reply::<PersonView>(Err(ClientError::not_found("no such person"))),
            },
            PersonCall::Activity { limit } => {
                if self.profile()?.is_none() {
                    return reply::<Activity>(Err(ClientError::not_found("no such person")));
                }
                let rows: Vec<BodyRow> = self
                    .sql
                    .exec(
                        "SELECT body FROM events ORDER BY ts DESC, seq DESC LIMIT ?",
                        vec![i64::from(limit).into()],
                    )?
                    .to_array()?;
                let events = rows
                    .iter()
                    .filter_map(|r| serde_json::from_str(&r.body).ok())
                    .collect();
                reply(Ok(Activity { events }))
            }
            PersonCall::Dump => match self.profile()? {
                Some(profile) => reply(Ok(PersonDump {
                    profile,
                    relationships: self.relationships()?,
                    anonymous_ids: self.anonymous_ids()?,
                    events: self.all_events()?,
                })),
                None => reply::<PersonDump>(Err(ClientError::not_found("no such person"))),
            },
            PersonCall::Absorb { dump, now } => reply(self.absorb(&dump, now)?),
            PersonCall::Delete => match self.profile()? {
                Some(profile) => {
                    let view = self.view(profile)?;
                    for table in TABLES {
                        self.sql.exec(&format!("DELETE FROM {table}"), None)?;
                    }
                    reply(Ok(view))
                }
                None => reply::<PersonView>(Err(ClientError::not_found("no such person"))),
            },
        }
    }
}

/// Client side: people, as the worker uses them.
pub struct People<'a> {
    pub env: &'a Env,
}

impl People<'_> {
    pub async fn identify(&self, call: IdentifyCall) -> Result<IdentifyReply, StoreError> {
        let name = call.cio_id.clone();
        self.call(&name, &PersonCall::Identify(call)).await
    }

    /// Records an event; `NotFound` when the person does not exist.
    pub async fn track(&self, cio_id: &str, event: &Event) -> Result<(), StoreError> {
        let _: Done = self
            .call(
                cio_id,
                &PersonCall::Track {
                    event: event.clone(),
                },
            )
            .await?;
        Ok(())
    }

    pub async fn profile(&self, cio_id: &str) -> Result<PersonView, StoreError> {
        self.call(cio_id, &PersonCall::Profile).await
    }

    pub async fn activity(&self, cio_id: &str, limit: u32) -> Result<Activity, StoreError> {
        self.call(cio_id, &PersonCall::Activity { limit }).await
    }

    pub async fn dump(&self, cio_id: &str) -> Result<PersonDump, StoreError> {
        self.call(cio_id, &PersonCall::Dump).await
    }

    pub async fn absorb(
        &self,
        cio_id: &str,
        dump: PersonDump,
        now: i64,
    ) -> Result<PersonView, StoreError> {
        self.call(
            cio_id,
            &PersonCall::Absorb {
                dump: Box::new(dump),
                now,
            },
        )
        .await
    }

    /// Deletes the person; answers it as it was (`NotFound` if none).
    pub async fn delete(&self, cio_id: &str) -> Result<PersonView, StoreError> {
        self.call(cio_id, &PersonCall::Delete).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        cio_id: &str,
        c: &PersonCall,
    ) -> Result<T, StoreError> {
        call(self.env, BINDING, cio_id, c).await
    }
}
