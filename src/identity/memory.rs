//! The storage seam in memory, for native tests: the same object code as the
//! Durable Objects (`objects`), the cache as a map, background work queued
//! until the test runs it. A seeded scheduler yields at every call, so
//! operations run side by side interleave the way concurrent requests do,
//! and faults can be injected to stand for a storage call that fails.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::core::event::Event;
use crate::core::profile::{Profile, Relationship};

use super::backend::{Background, Cache, Objects, Task};
use super::key::IndexKey;
use super::objects::*;
use super::retention::{self, PersonClock, Retention, VisitorClock};
use super::wire::*;
use super::Store;

#[derive(Default, Clone, Debug)]
pub struct PersonData {
    pub profile: Option<Profile>,
    pub relationships: Vec<Relationship>,
    pub anonymous_ids: BTreeSet<String>,
    pub events: Vec<Event>,
    /// The stored seq of each event, parallel to `events`.
    pub seqs: Vec<i64>,
    pub next_seq: i64,
    pub tombstone: Option<Tombstone>,
    /// Outbound Customer.io operations, in commit order (forwarding on).
    pub outbox: Vec<serde_json::Value>,
}

#[derive(Default, Clone, Debug)]
pub struct VisitorData {
    pub merged_into: Option<String>,
    pub last_active: Option<i64>,
    pub expired: Option<i64>,
    pub events: Vec<Event>,
    pub seqs: Vec<i64>,
    pub next_seq: i64,
    pub outbox: Vec<serde_json::Value>,
}

/// The event tables of both objects, in memory: insertion with dedup and a
/// growing seq, pages both ways.
fn insert(events: &mut Vec<Event>, seqs: &mut Vec<i64>, next: &mut i64, event: &Event) {
    if !events.iter().any(|e| e.id == event.id) {
        *next += 1;
        events.push(event.clone());
        seqs.push(*next);
    }
}

fn desc(
    events: &[Event],
    seqs: &[i64],
    limit: u32,
    before: Option<Position>,
) -> Vec<(Event, Position)> {
    let mut rows: Vec<(Event, Position)> = events
        .iter()
        .zip(seqs)
        .map(|(e, seq)| {
            (
                e.clone(),
                Position {
                    ts: e.timestamp,
                    seq: *seq,
                },
            )
        })
        .filter(|(_, p)| before.is_none_or(|b| (p.ts, p.seq) < (b.ts, b.seq)))
        .collect();
    rows.sort_by_key(|(_, p)| std::cmp::Reverse((p.ts, p.seq)));
    rows.truncate(limit as usize);
    rows
}

fn asc(events: &[Event], seqs: &[i64], after: Option<i64>, limit: u32) -> Vec<(Event, i64)> {
    events
        .iter()
        .zip(seqs)
        .filter(|(_, seq)| after.is_none_or(|a| **seq > a))
        .take(limit as usize)
        .map(|(e, seq)| (e.clone(), *seq))
        .collect()
}

#[derive(Default)]
pub struct Memory {
    pub index: RefCell<BTreeMap<String, Rc<RefCell<Option<String>>>>>,
    pub people: RefCell<BTreeMap<String, Rc<RefCell<PersonData>>>>,
    pub visitors: RefCell<BTreeMap<String, Rc<RefCell<VisitorData>>>>,
    pub kv: RefCell<BTreeMap<String, String>>,
    /// xorshift state; 0 runs every call without yielding.
    rng: Cell<u64>,
    /// The next this many visitor calls fail as if storage were down.
    pub fail_visitor_calls: Cell<usize>,
    pending: RefCell<Vec<Task>>,
    /// Object calls made, for round-trip counts.
    pub calls: Cell<usize>,
    /// The objects' clock (unix seconds) and retention settings, and each
    /// object's alarm (`(is_person, name)` to when), as Durable Objects have.
    pub clock: Cell<i64>,
    pub retention: Cell<Retention>,
    pub alarms: RefCell<BTreeMap<(bool, String), i64>>,
    /// Forwarding on: the objects write their outbox.
    pub forwarding: Cell<bool>,
}

/// A handle on one in-memory world; clones share it.
#[derive(Clone, Default)]
pub struct Mem(pub Rc<Memory>);

pub type MemStore = Store<Mem, Mem, Mem>;

impl Mem {
    pub fn new(seed: u64) -> Self {
        let mem = Mem::default();
        mem.0.rng.set(seed);
        mem
    }

    pub fn store(&self) -> MemStore {
        Store {
            objects: self.clone(),
            cache: self.clone(),
            background: self.clone(),
        }
    }

    fn next_random(&self) -> u64 {
        let mut x = self.0.rng.get();
        if x == 0 {
            return 0;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.rng.set(x);
        x
    }

    /// Gives other tasks a chance to run, as a network round trip would.
    async fn jitter(&self) {
        for _ in 0..(self.next_random() % 3) {
            YieldNow(false).await;
        }
    }

    /// Runs queued background work (and what it queues) to the end.
    pub async fn settle(&self) {
        loop {
            let tasks: Vec<Task> = self.0.pending.borrow_mut().drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            futures::future::join_all(tasks).await;
        }
    }

    /// Drops queued background work, as an isolate that dies after answering.
    pub fn drop_background(&self) {
        self.0.pending.borrow_mut().clear();
    }

    pub fn person_data(&self, cio_id: &str) -> Option<PersonData> {
        self.0
            .people
            .borrow()
            .get(cio_id)
            .map(|p| p.borrow().clone())
    }

    pub fn visitor_data(&self, anon_id: &str) -> Option<VisitorData> {
        self.0
            .visitors
            .borrow()
            .get(anon_id)
            .map(|v| v.borrow().clone())
    }

    pub fn owner(&self, key: &IndexKey) -> Option<String> {
        self.0
            .index
            .borrow()
            .get(&key.to_string())
            .and_then(|o| o.borrow().clone())
    }

    /// Every index entry with an owner.
    pub fn index_entries(&self) -> Vec<(String, String)> {
        self.0
            .index
            .borrow()
            .iter()
            .filter_map(|(k, o)| o.borrow().clone().map(|o| (k.clone(), o)))
            .collect()
    }

    /// The people with a profile and no tombstone.
    pub fn live_people(&self) -> Vec<(String, PersonData)> {
        self.0
            .people
            .borrow()
            .iter()
            .map(|(k, p)| (k.clone(), p.borrow().clone()))
            .filter(|(_, p)| p.profile.is_some() && p.tombstone.is_none())
            .collect()
    }
}

struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

struct MemIndex(Rc<RefCell<Option<String>>>);

impl IndexTables for MemIndex {
    fn owner(&self) -> Result<Option<String>, StoreError> {
        Ok(self.0.borrow().clone())
    }
    fn set_owner(&self, cio_id: Option<&str>) -> Result<(), StoreError> {
        *self.0.borrow_mut() = cio_id.map(str::to_owned);
        Ok(())
    }
}

/// An object in memory: its data, and whether forwarding is on.
struct MemObject<D>(Rc<RefCell<D>>, bool);
type MemVisitor = MemObject<VisitorData>;
type MemPerson = MemObject<PersonData>;

/// The data of an object that keeps events.
trait EventData {
    fn events(&self) -> (&[Event], &[i64]);
    fn events_mut(&mut self) -> (&mut Vec<Event>, &mut Vec<i64>, &mut i64);
}

impl EventData for VisitorData {
    fn events(&self) -> (&[Event], &[i64]) {
        (&self.events, &self.seqs)
    }
    fn events_mut(&mut self) -> (&mut Vec<Event>, &mut Vec<i64>, &mut i64) {
        (&mut self.events, &mut self.seqs, &mut self.next_seq)
    }
}

impl EventData for PersonData {
    fn events(&self) -> (&[Event], &[i64]) {
        (&self.events, &self.seqs)
    }
    fn events_mut(&mut self) -> (&mut Vec<Event>, &mut Vec<i64>, &mut i64) {
        (&mut self.events, &mut self.seqs, &mut self.next_seq)
    }
}

/// The one event table in memory, the visitor's and the person's.
impl<D: EventData> EventTable for MemObject<D> {
    fn insert_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut data = self.0.borrow_mut();
        let (events, seqs, next) = data.events_mut();
        insert(events, seqs, next, event);
        Ok(())
    }
    fn has_event(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.0.borrow().events().0.iter().any(|e| e.id == id))
    }
    fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.0.borrow().events().0.len() as u64)
    }
    fn events_desc(
        &self,
        limit: u32,
        before: Option<Position>,
    ) -> Result<Vec<(Event, Position)>, StoreError> {
        let data = self.0.borrow();
        let (events, seqs) = data.events();
        Ok(desc(events, seqs, limit, before))
    }
    fn events_asc(&self, after: Option<i64>, limit: u32) -> Result<Vec<(Event, i64)>, StoreError> {
        let data = self.0.borrow();
        let (events, seqs) = data.events();
        Ok(asc(events, seqs, after, limit))
    }
}

impl VisitorTables for MemVisitor {
    fn merged_into(&self) -> Result<Option<String>, StoreError> {
        Ok(self.0.borrow().merged_into.clone())
    }
    fn expired(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.0.borrow().expired)
    }
    fn set_merged_into(&self, cio_id: Option<&str>) -> Result<(), StoreError> {
        self.0.borrow_mut().merged_into = cio_id.map(str::to_owned);
        Ok(())
    }
    fn clear_events(&self) -> Result<(), StoreError> {
        let mut v = self.0.borrow_mut();
        v.events.clear();
        v.seqs.clear();
        Ok(())
    }
    fn forwarding(&self) -> bool {
        self.1
    }
    fn outbox_push(&self, op: &serde_json::Value) -> Result<(), StoreError> {
        self.0.borrow_mut().outbox.push(op.clone());
        Ok(())
    }
}

impl PersonTables for MemPerson {
    fn profile(&self) -> Result<Option<Profile>, StoreError> {
        Ok(self.0.borrow().profile.clone())
    }
    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        self.0.borrow_mut().profile = Some(profile.clone());
        Ok(())
    }
    fn relationships(&self) -> Result<Vec<Relationship>, StoreError> {
        Ok(self.0.borrow().relationships.clone())
    }
    fn save_relationships(&self, relationships: &[Relationship]) -> Result<(), StoreError> {
        self.0.borrow_mut().relationships = relationships.to_vec();
        Ok(())
    }
    fn anonymous_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.0.borrow().anonymous_ids.iter().cloned().collect())
    }
    fn has_anonymous_id(&self, anon_id: &str) -> Result<bool, StoreError> {
        Ok(self.0.borrow().anonymous_ids.contains(anon_id))
    }
    fn add_anonymous_id(&self, anon_id: &str) -> Result<(), StoreError> {
        self.0.borrow_mut().anonymous_ids.insert(anon_id.to_owned());
        Ok(())
    }
    fn drop_earliest_browser_event(&self) -> Result<bool, StoreError> {
        let p = &mut *self.0.borrow_mut();
        let prefix = crate::core::event::BROWSER_ID_PREFIX;
        let earliest = p
            .seqs
            .iter()
            .zip(&p.events)
            .enumerate()
            .filter(|(_, (_, e))| e.id.starts_with(prefix))
            .min_by_key(|(_, (seq, _))| **seq)
            .map(|(i, _)| i);
        Ok(earliest
            .map(|i| {
                p.events.remove(i);
                p.seqs.remove(i);
            })
            .is_some())
    }
    fn tombstone(&self) -> Result<Option<Tombstone>, StoreError> {
        Ok(self.0.borrow().tombstone.clone())
    }
    fn set_tombstone(&self, tombstone: Option<&Tombstone>) -> Result<(), StoreError> {
        self.0.borrow_mut().tombstone = tombstone.cloned();
        Ok(())
    }
    fn wipe(&self) -> Result<(), StoreError> {
        let mut p = self.0.borrow_mut();
        let tombstone = p.tombstone.take();
        let next_seq = p.next_seq;
        let outbox = std::mem::take(&mut p.outbox);
        *p = PersonData {
            tombstone,
            next_seq,
            outbox,
            ..PersonData::default()
        };
        Ok(())
    }
    fn forwarding(&self) -> bool {
        self.1
    }
    fn outbox_push(&self, op: &serde_json::Value) -> Result<(), StoreError> {
        self.0.borrow_mut().outbox.push(op.clone());
        Ok(())
    }
}

impl VisitorClock for MemVisitor {
    fn last_active(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.0.borrow().last_active)
    }
    fn touch(&self, now: i64) -> Result<(), StoreError> {
        self.0.borrow_mut().last_active = Some(now);
        Ok(())
    }
    fn forget(&self, last_active: i64) -> Result<(), StoreError> {
        let v = &mut *self.0.borrow_mut();
        *v = VisitorData {
            expired: Some(last_active),
            outbox: std::mem::take(&mut v.outbox),
            ..VisitorData::default()
        };
        Ok(())
    }
}

impl PersonClock for MemPerson {
    fn delete_events_before(&self, ts: i64) -> Result<(), StoreError> {
        let mut p = self.0.borrow_mut();
        let keep: Vec<bool> = p.events.iter().map(|e| e.timestamp >= ts).collect();
        let mut k = keep.iter();
        p.events.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep.iter();
        p.seqs.retain(|_| *k.next().unwrap_or(&true));
        Ok(())
    }
    fn oldest_event(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.0.borrow().events.iter().map(|e| e.timestamp).min())
    }
}

fn entry<T: Default>(
    map: &RefCell<BTreeMap<String, Rc<RefCell<T>>>>,
    name: &str,
) -> Rc<RefCell<T>> {
    map.borrow_mut().entry(name.to_owned()).or_default().clone()
}

impl Objects for Mem {
    async fn index(&self, key: &IndexKey, call: IndexCall) -> Result<IndexReply, StoreError> {
        self.jitter().await;
        self.0.calls.set(self.0.calls.get() + 1);
        index_call(&MemIndex(entry(&self.0.index, &key.to_string())), call)
    }

    async fn person(&self, cio_id: &str, call: PersonCall) -> Result<PersonReply, StoreError> {
        self.jitter().await;
        self.0.calls.set(self.0.calls.get() + 1);
        let person = MemObject(entry(&self.0.people, cio_id), self.0.forwarding.get());
        let wake = retention::person_after(&call, self.0.clock.get(), self.0.retention.get());
        let answered = person_call(&person, self, call).await;
        if let (Some(at), Ok(_)) = (wake, &answered.reply) {
            self.0
                .alarms
                .borrow_mut()
                .entry((true, cio_id.to_owned()))
                .and_modify(|set| *set = (*set).min(at))
                .or_insert(at);
        }
        for follow_up in answered.follow_up {
            let FollowUp::AckVisitor {
                anonymous_id,
                cio_id,
            } = follow_up;
            let mem = self.clone();
            self.spawn(Box::pin(async move {
                let _ = mem.visitor(&anonymous_id, VisitorCall::Ack(cio_id)).await;
            }));
        }
        answered.reply
    }

    async fn visitor(&self, anon_id: &str, call: VisitorCall) -> Result<VisitorReply, StoreError> {
        self.jitter().await;
        self.0.calls.set(self.0.calls.get() + 1);
        let failing = self.0.fail_visitor_calls.get();
        if failing > 0 {
            self.0.fail_visitor_calls.set(failing - 1);
            return Err(StoreError::unavailable(
                "visitor object unreachable (injected)",
            ));
        }
        let visitor = MemObject(entry(&self.0.visitors, anon_id), self.0.forwarding.get());
        let (now, r) = (self.0.clock.get(), self.0.retention.get());
        let activity = retention::visitor_activity(&call);
        let reply = visitor_call(&visitor, call)?;
        if activity {
            if let Some(at) = retention::visitor_after(&visitor, now, r)? {
                self.0
                    .alarms
                    .borrow_mut()
                    .entry((false, anon_id.to_owned()))
                    .and_modify(|set| *set = (*set).min(at))
                    .or_insert(at);
            }
        }
        Ok(reply)
    }
}

impl Cache for Mem {
    async fn owner(&self, key: &IndexKey) -> Option<String> {
        self.0.kv.borrow().get(&format!("ident:{key}")).cloned()
    }
    async fn remember_owner(&self, key: &IndexKey, cio_id: &str) {
        self.0
            .kv
            .borrow_mut()
            .insert(format!("ident:{key}"), cio_id.to_owned());
    }
    async fn forget_owner(&self, key: &IndexKey) {
        self.0.kv.borrow_mut().remove(&format!("ident:{key}"));
    }
    async fn person(&self, cio_id: &str) -> Option<PersonView> {
        let kv = self.0.kv.borrow();
        serde_json::from_str(kv.get(&format!("person:{cio_id}"))?).ok()
    }
    async fn remember_person(&self, person: &PersonView) {
        let json = serde_json::to_string(person).unwrap_or_default();
        self.0
            .kv
            .borrow_mut()
            .insert(format!("person:{}", person.cio_id), json);
    }
    async fn forget_person(&self, cio_id: &str) {
        self.0.kv.borrow_mut().remove(&format!("person:{cio_id}"));
    }
    async fn list_people(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let kv = self.0.kv.borrow();
        let after = cursor.unwrap_or_default();
        let ids: Vec<String> = kv
            .keys()
            .filter_map(|k| k.strip_prefix("person:"))
            .filter(|id| *id > after.as_str())
            .take(limit as usize + 1)
            .map(str::to_owned)
            .collect();
        let more = ids.len() > limit as usize;
        let ids: Vec<String> = ids.into_iter().take(limit as usize).collect();
        let next = if more { ids.last().cloned() } else { None };
        Ok((ids, next))
    }
}

impl Background for Mem {
    fn spawn(&self, task: Task) {
        self.0.pending.borrow_mut().push(task);
    }
}

impl Mem {
    /// Moves the clock to `now` and rings every alarm due by then, as the
    /// runtime would; an alarm set again for later waits.
    pub fn run_alarms(&self, now: i64) -> Result<(), StoreError> {
        self.0.clock.set(now);
        let r = self.0.retention.get();
        let due: Vec<(bool, String)> = self
            .0
            .alarms
            .borrow()
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.0.alarms.borrow_mut().remove(&key);
            let (is_person, name) = &key;
            let next = if *is_person {
                retention::person_alarm(
                    &MemObject(entry(&self.0.people, name), self.0.forwarding.get()),
                    now,
                    r,
                )?
            } else {
                retention::visitor_alarm(
                    &MemObject(entry(&self.0.visitors, name), self.0.forwarding.get()),
                    now,
                    r,
                )?
            };
            if let Some(at) = next {
                self.0.alarms.borrow_mut().insert(key, at);
            }
        }
        Ok(())
    }

    /// Reseeds the scheduler: from now on calls yield at random.
    pub fn reseed(&self, seed: u64) {
        self.0.rng.set(seed.max(1));
    }

    /// Writes a cache entry directly, as a late write from a lost race would.
    pub async fn remember_owner_for_test(&self, key: &IndexKey, cio_id: &str) {
        Cache::remember_owner(self, key, cio_id).await;
    }
}
