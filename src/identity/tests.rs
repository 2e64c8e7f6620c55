//! The identity rules and their races, natively against the in-memory store:
//! the twins of the Miniflare identity tests that are about rules, not HTTP.
//! Races run every pair of operations side by side under many scheduler
//! seeds, then check the invariants.

use futures::executor::block_on;
use futures::future::join;
use serde_json::json;

use super::memory::{Mem, MemStore};
use super::*;
use crate::core::event::Event;
use crate::core::identifier::Identifier;
use crate::core::Error as ClientError;

use super::test_kit::{event, id, identify, identify_body, opts, run, NOW};

fn conflict_field(e: StoreError) -> String {
    match e {
        StoreError::Client(ClientError::Conflict { field, .. }) => field.into_owned(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The invariants every quiet state keeps:
/// - every index entry names a live person that holds that identifier, and
///   every live person's identifiers are indexed to it;
/// - every merged visitor points at a live person that lists it;
/// - no event is stored twice in one place.
fn check_invariants(mem: &Mem) {
    let live = mem.live_people();
    for (key, owner) in mem.index_entries() {
        let person = live
            .iter()
            .find(|(cio, _)| *cio == owner)
            .unwrap_or_else(|| panic!("{key} points at {owner}, which is not a live person"));
        let p = person.1.profile.as_ref().unwrap();
        let held = IndexKey::all_of(p.id.as_deref(), p.email.as_deref());
        assert!(
            held.iter().any(|k| k.to_string() == key),
            "{key} points at {owner}, which does not hold it"
        );
    }
    for (cio, data) in &live {
        let p = data.profile.as_ref().unwrap();
        for key in IndexKey::all_of(p.id.as_deref(), p.email.as_deref()) {
            assert_eq!(
                mem.owner(&key).as_deref(),
                Some(cio.as_str()),
                "{key} not indexed to {cio}"
            );
        }
        let mut ids: Vec<&str> = data.events.iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "an event stored twice on {cio}");
    }
    for (anon, v) in mem.0.visitors.borrow().iter() {
        let v = v.borrow();
        if let Some(cio) = &v.merged_into {
            let person = live
                .iter()
                .find(|(c, _)| c == cio)
                .unwrap_or_else(|| panic!("visitor {anon} merged into {cio}, not a live person"));
            assert!(
                person.1.anonymous_ids.contains(anon),
                "{cio} does not list {anon}"
            );
        }
    }
}

/// Where an event can be read back: on live people, or on visitors not merged.
fn copies_of(mem: &Mem, event_id: &str) -> usize {
    let on_people: usize = mem
        .live_people()
        .iter()
        .map(|(_, p)| p.events.iter().filter(|e| e.id == event_id).count())
        .sum();
    let on_visitors: usize = mem
        .0
        .visitors
        .borrow()
        .values()
        .map(|v| v.borrow())
        .filter(|v| v.merged_into.is_none())
        .map(|v| v.events.iter().filter(|e| e.id == event_id).count())
        .sum();
    on_people + on_visitors
}

// ------------------------------------------------------------------ rules --

#[test]
fn identify_creates_then_updates_one_person() {
    let mem = Mem::new(0);
    let first = identify(&mem, json!({"id": "u1", "plan": "free", "keep": 1}), None).unwrap();
    let second = identify(&mem, json!({"id": "u1", "plan": "pro", "seats": 3}), None).unwrap();
    assert_eq!(
        first.person.cio_id, second.person.cio_id,
        "cio_id never changes"
    );
    assert_eq!(first.person.created_at, NOW);
    let attrs = second.person.attributes;
    assert_eq!(
        (
            attrs["plan"].clone(),
            attrs["keep"].clone(),
            attrs["seats"].clone()
        ),
        (json!("pro"), json!(1), json!(3))
    );
    assert_eq!(
        mem.owner(&IndexKey::Id("u1".into())),
        Some(first.person.cio_id)
    );
    check_invariants(&mem);
}

#[test]
fn email_as_id_makes_an_email_person_without_id() {
    let mem = Mem::new(0);
    let done = identify(&mem, json!({"id": "Ann@Example.com"}), None).unwrap();
    assert_eq!(done.person.id, None);
    assert_eq!(done.person.email.as_deref(), Some("ann@example.com"));
    let again = identify(&mem, json!({"id": "ann@EXAMPLE.com"}), None).unwrap();
    assert_eq!(again.person.cio_id, done.person.cio_id);
    check_invariants(&mem);
}

#[test]
fn an_email_owned_by_another_person_is_409_and_changes_nothing() {
    let mem = Mem::new(0);
    identify(&mem, json!({"id": "a", "email": "a@x.io"}), None).unwrap();
    let b = identify(&mem, json!({"id": "b", "email": "b@x.io"}), None).unwrap();
    let index_before = mem.index_entries();
    let b_before = mem.person_data(&b.person.cio_id).unwrap().profile;
    let err = identify(&mem, json!({"id": "b", "email": "a@x.io", "x": 1}), None)
        .err()
        .unwrap();
    assert_eq!(conflict_field(err), "email");
    assert_eq!(mem.index_entries(), index_before, "the index is as it was");
    assert_eq!(mem.person_data(&b.person.cio_id).unwrap().profile, b_before);
    // A new id with a taken email creates nobody either.
    let err = identify(&mem, json!({"id": "c", "email": "b@x.io"}), None)
        .err()
        .unwrap();
    assert_eq!(conflict_field(err), "email");
    assert_eq!(mem.index_entries(), index_before);
    assert_eq!(mem.live_people().len(), 2);
    check_invariants(&mem);
}

#[test]
fn a_lead_known_by_email_gets_the_new_id() {
    let mem = Mem::new(0);
    let lead = identify(&mem, json!({"id": "lead@x.io", "source": "form"}), None).unwrap();
    let done = identify(&mem, json!({"id": "u9", "email": "lead@x.io"}), None).unwrap();
    assert_eq!(done.person.cio_id, lead.person.cio_id);
    assert_eq!(done.person.id.as_deref(), Some("u9"));
    assert_eq!(done.person.attributes["source"], json!("form"));
    assert_eq!(mem.live_people().len(), 1);
    check_invariants(&mem);
}

#[test]
fn id_and_email_owned_by_two_people_is_409_and_the_index_stays() {
    let mem = Mem::new(0);
    identify(&mem, json!({"id": "p1", "email": "p1@x.io"}), None).unwrap();
    identify(&mem, json!({"id": "p2", "email": "p2@x.io"}), None).unwrap();
    let before = mem.index_entries();
    let err = identify(&mem, json!({"id": "p3", "email": "p1@x.io"}), None)
        .err()
        .unwrap();
    assert_eq!(
        conflict_field(err),
        "email",
        "the email's person has an id of its own"
    );
    let err = identify(&mem, json!({"id": "p1", "email": "p2@x.io"}), None)
        .err()
        .unwrap();
    assert_eq!(conflict_field(err), "email");
    assert_eq!(mem.index_entries(), before);
    check_invariants(&mem);
}

#[test]
fn changing_the_email_frees_the_old_one() {
    let mem = Mem::new(0);
    let a = identify(&mem, json!({"id": "a", "email": "old@x.io"}), None).unwrap();
    identify(&mem, json!({"id": "a", "email": "new@x.io"}), None).unwrap();
    assert_eq!(mem.owner(&IndexKey::Email("old@x.io".into())), None);
    assert_eq!(
        mem.owner(&IndexKey::Email("new@x.io".into())),
        Some(a.person.cio_id)
    );
    let other = identify(&mem, json!({"id": "b", "email": "old@x.io"}), None);
    assert!(other.is_ok(), "the old email is free for someone else");
    check_invariants(&mem);
}

#[test]
fn anonymous_events_merge_once_and_a_second_person_rotates() {
    let mem = Mem::new(0);
    let store = mem.store();
    for e in ["e1", "e2"] {
        run(&mem, store.record(None, "anon-1", event(e))).unwrap();
    }
    let a = identify(&mem, json!({"id": "a"}), Some("anon-1")).unwrap();
    assert!(!a.rotate_anon);
    let p = mem.person_data(&a.person.cio_id).unwrap();
    assert_eq!(p.events.len(), 2);
    assert!(p
        .events
        .iter()
        .all(|e| e.anonymous_id.as_deref() == Some("anon-1")));
    assert_eq!(
        mem.visitor_data("anon-1").unwrap().events,
        vec![],
        "acknowledged and dropped"
    );
    // Later anonymous events from the same visitor reach the person.
    run(&mem, store.record(None, "anon-1", event("e3"))).unwrap();
    assert_eq!(copies_of(&mem, "e3"), 1);
    assert_eq!(mem.person_data(&a.person.cio_id).unwrap().events.len(), 3);
    // The same browser identifying as someone else does not merge again.
    let b = identify(&mem, json!({"id": "b"}), Some("anon-1")).unwrap();
    assert!(b.rotate_anon);
    assert!(b.person.anonymous_ids.is_empty());
    check_invariants(&mem);
}

#[test]
fn events_dedup_by_id_for_person_and_visitor() {
    let mem = Mem::new(0);
    let store = mem.store();
    identify(&mem, json!({"id": "d"}), None).unwrap();
    for _ in 0..3 {
        run(&mem, store.record(Some(&id("d")), "anon-d", event("same"))).unwrap();
        run(&mem, store.record(None, "anon-x", event("same-anon"))).unwrap();
    }
    assert_eq!(copies_of(&mem, "same"), 1);
    assert_eq!(copies_of(&mem, "same-anon"), 1);
}

#[test]
fn a_retry_after_a_partial_failure_converges() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-r", event("before"))).unwrap();
    // The visitor is unreachable during the merge: the identify fails...
    mem.0.fail_visitor_calls.set(1);
    assert!(matches!(
        identify(&mem, json!({"id": "r", "email": "r@x.io"}), Some("anon-r")),
        Err(StoreError::Unavailable(_))
    ));
    // ...and the same call again finishes the job, nothing doubled.
    let done = identify(&mem, json!({"id": "r", "email": "r@x.io"}), Some("anon-r")).unwrap();
    assert_eq!(copies_of(&mem, "before"), 1);
    assert!(done.person.anonymous_ids.contains(&"anon-r".to_owned()));
    assert_eq!(mem.live_people().len(), 1);
    check_invariants(&mem);
}

#[test]
fn an_acknowledgement_lost_with_the_isolate_is_harmless() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-k", event("k1"))).unwrap();
    let done =
        block_on(store.identify(&identify_body(json!({"id": "k"})), opts(Some("anon-k")))).unwrap();
    mem.drop_background(); // the visitor never hears the person stored its events
    assert_eq!(
        copies_of(&mem, "k1"),
        1,
        "read through the merged visitor, once"
    );
    assert_eq!(
        mem.person_data(&done.person.cio_id).unwrap().events.len(),
        1
    );
    check_invariants(&mem);
}

#[test]
fn delete_frees_identifiers_and_the_cio_id_never_comes_back() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-del", event("x1"))).unwrap();
    let old = identify(
        &mem,
        json!({"id": "del", "email": "del@x.io"}),
        Some("anon-del"),
    )
    .unwrap();
    assert!(run(&mem, store.delete(&id("del"))).unwrap());
    assert!(
        !run(&mem, store.delete(&id("del"))).unwrap(),
        "nothing left to delete"
    );
    assert_eq!(mem.index_entries(), vec![]);
    let cio = Identifier::CioId(old.person.cio_id.clone());
    assert!(run(&mem, store.profile(&cio)).is_err());
    // The visitor is anonymous again; its new events stay with it.
    run(&mem, store.record(None, "anon-del", event("x2"))).unwrap();
    assert_eq!(mem.visitor_data("anon-del").unwrap().merged_into, None);
    assert_eq!(copies_of(&mem, "x2"), 1);
    // Identifying again makes a new person; the old cio_id stays gone.
    let new = identify(&mem, json!({"id": "del"}), None).unwrap();
    assert_ne!(new.person.cio_id, old.person.cio_id);
    let stale = crate::identity::wire::PersonCall::Track(event("x3"));
    let reply = block_on(Objects::person(&mem, &old.person.cio_id, stale)).unwrap();
    assert!(matches!(reply, wire::PersonReply::Gone(None)));
    check_invariants(&mem);
}

#[test]
fn a_stale_cached_owner_is_healed_by_the_next_event() {
    let mem = Mem::new(0);
    let store = mem.store();
    let old = identify(&mem, json!({"id": "kv"}), None).unwrap();
    run(&mem, store.delete(&id("kv"))).unwrap();
    // A cache write that lost the race with the delete.
    block_on(mem.remember_owner_for_test(&IndexKey::Id("kv".into()), &old.person.cio_id));
    let new = identify(&mem, json!({"id": "kv"}), None).unwrap();
    block_on(mem.remember_owner_for_test(&IndexKey::Id("kv".into()), &old.person.cio_id));
    run(
        &mem,
        store.record(Some(&id("kv")), "anon-kv", event("after")),
    )
    .unwrap();
    assert_eq!(
        mem.person_data(&new.person.cio_id).unwrap().events.len(),
        1,
        "reached the live person"
    );
    assert_eq!(copies_of(&mem, "after"), 1);
}

#[test]
fn merge_moves_everything_and_keeps_the_secondary_email_when_primary_has_none() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-s", event("s1"))).unwrap();
    let primary = identify(&mem, json!({"id": "prim", "a": 1}), None).unwrap();
    let secondary = identify(
        &mem,
        json!({"id": "sec", "email": "sec@x.io", "a": 2, "b": 2}),
        Some("anon-s"),
    )
    .unwrap();
    run(&mem, store.merge(&id("prim"), &id("sec"), NOW)).unwrap();
    let p = run(&mem, store.profile(&id("prim"))).unwrap();
    assert_eq!(p.cio_id, primary.person.cio_id);
    assert_eq!(
        (p.attributes["a"].clone(), p.attributes["b"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        p.email.as_deref(),
        Some("sec@x.io"),
        "the email moved with the merge"
    );
    assert_eq!(
        mem.owner(&IndexKey::Email("sec@x.io".into())),
        Some(p.cio_id.clone())
    );
    assert_eq!(mem.owner(&IndexKey::Id("sec".into())), None);
    assert!(p.anonymous_ids.contains(&"anon-s".to_owned()));
    assert_eq!(copies_of(&mem, "s1"), 1);
    // Events for the merged-away cio_id and its visitor reach the primary.
    let secondary_cio = Identifier::CioId(secondary.person.cio_id);
    run(
        &mem,
        store.track_person(&secondary_cio, &event("late"), NOW),
    )
    .unwrap();
    run(&mem, store.record(None, "anon-s", event("late-anon"))).unwrap();
    assert_eq!(copies_of(&mem, "late"), 1);
    assert_eq!(mem.person_data(&p.cio_id).unwrap().events.len(), 3);
    // Merging again is a no-op.
    run(&mem, store.merge(&id("prim"), &id("sec"), NOW)).unwrap();
    check_invariants(&mem);
}

#[test]
fn a_link_resolves_the_person_and_merges_nothing() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-l", event("l1"))).unwrap();
    let person = identify(&mem, json!({"id": "linked"}), None).unwrap();
    mem.0.calls.set(0);
    let found = run(&mem, store.link(&person.person.cio_id))
        .unwrap()
        .unwrap();
    assert_eq!(found.id.as_deref(), Some("linked"));
    assert!(mem.0.calls.get() <= 1, "one round trip at most");
    assert_eq!(mem.visitor_data("anon-l").unwrap().merged_into, None);
    assert_eq!(run(&mem, store.link("ffffffffffffffffffff")).unwrap(), None);
}

#[test]
fn round_trips_per_identify() {
    let mem = Mem::new(0);
    identify(&mem, json!({"id": "rt", "email": "rt@x.io"}), None).unwrap();
    let store = mem.store();
    let again = || identify_body(json!({"id": "rt", "plan": "x"}));
    mem.0.calls.set(0);
    block_on(store.identify(&again(), opts(None))).unwrap();
    assert_eq!(
        mem.0.calls.get(),
        1,
        "existing person, owner cached: the person alone"
    );
    mem.0.kv.borrow_mut().clear();
    mem.0.calls.set(0);
    block_on(store.identify(&again(), opts(None))).unwrap();
    assert_eq!(mem.0.calls.get(), 2, "nothing cached: index claim, person");
}

#[test]
fn an_identify_that_changes_nothing_writes_nothing() {
    let mem = Mem::new(0);
    let first = identify(
        &mem,
        json!({"id": "same", "plan": "a", "tags": ["x"]}),
        None,
    )
    .unwrap();
    let cio_id = first.person.cio_id.clone();
    let key = format!("person:{cio_id}");
    let snapshot = || mem.0.kv.borrow().get(&key).cloned();
    let forget = || mem.0.kv.borrow_mut().remove(&key);
    assert!(snapshot().is_some());
    // A minute later: the same attributes write no snapshot, keep updated_at.
    let store = mem.store();
    let later = |body: serde_json::Value| {
        let options = IdentifyOptions {
            now: NOW + 60,
            ..opts(None)
        };
        run(&mem, store.identify(&identify_body(body), options)).unwrap()
    };
    forget();
    let again = later(json!({"id": "same", "plan": "a", "tags": ["x"]}));
    assert_eq!(again.person.updated_at, first.person.updated_at);
    assert_eq!(again.person.attributes, first.person.attributes);
    assert!(snapshot().is_none(), "nothing changed: nothing written");
    // A change writes the profile and the snapshot, on the new clock.
    let changed = later(json!({"id": "same", "plan": "b", "tags": ["x"]}));
    assert_eq!(changed.person.updated_at, NOW + 60);
    assert!(snapshot().is_some_and(|s| s.contains(r#""plan":"b""#)));
    // A relationship the person did not have is a change; the same again is not.
    let rel = json!({"id": "same", "cio_relationships": {"action": "add_relationships",
        "relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}});
    forget();
    assert_eq!(later(rel.clone()).person.relationships.len(), 1);
    assert!(snapshot().is_some(), "a new relationship is a change");
    forget();
    later(rel);
    assert!(snapshot().is_none(), "the same relationship again is not");
}

#[test]
fn a_stale_cached_owner_never_misdirects_an_identify() {
    let mem = Mem::new(0);
    let a = identify(&mem, json!({"id": "a", "email": "old@x.io"}), None).unwrap();
    identify(&mem, json!({"id": "a", "email": "new@x.io"}), None).unwrap();
    let b = identify(&mem, json!({"id": "b", "email": "old@x.io"}), None).unwrap();
    // A cache write that lost a race: old@ still cached as A's.
    block_on(mem.remember_owner_for_test(&IndexKey::Email("old@x.io".into()), &a.person.cio_id));
    let done = identify(&mem, json!({"id": "old@x.io", "seen": true}), None).unwrap();
    assert_eq!(
        done.person.cio_id, b.person.cio_id,
        "the index decides, not the stale cache"
    );
    assert_eq!(
        mem.person_data(&a.person.cio_id)
            .unwrap()
            .profile
            .unwrap()
            .attributes
            .get("seen"),
        None
    );
    check_invariants(&mem);
}

// ------------------------------------------------------------------ races --

const SEEDS: u64 = 300;

/// Runs `a` and `b` side by side under `SEEDS` schedules; `setup` prepares
/// each world, `after` checks it.
fn race<S, A, B, FA, FB, R1, R2>(setup: S, a: A, b: B, after: impl Fn(&Mem, &R1, &R2))
where
    S: Fn(&Mem),
    A: Fn(MemStore) -> FA,
    B: Fn(MemStore) -> FB,
    FA: std::future::Future<Output = R1>,
    FB: std::future::Future<Output = R2>,
{
    for seed in 1..=SEEDS {
        let mem = Mem::new(0);
        setup(&mem);
        block_on(mem.settle());
        let mem2 = Mem(mem.0.clone());
        mem2.reseed(seed * 7919);
        let (ra, rb) = block_on(async {
            let out = join(a(mem2.store()), b(mem2.store())).await;
            mem2.settle().await;
            out
        });
        check_invariants(&mem);
        after(&mem, &ra, &rb);
    }
}

fn setup_person(mem: &Mem) {
    let store = mem.store();
    block_on(store.record(None, "anon-old", event("old-1"))).unwrap();
    block_on(store.identify(&identify_body(json!({"id": "X"})), opts(Some("anon-old")))).unwrap();
    block_on(store.record(None, "anon-new", event("new-1"))).unwrap();
}

#[test]
fn race_identify_vs_delete() {
    race(
        setup_person,
        |s| async move {
            s.identify(
                &identify_body(json!({"id": "X", "phone": "555"})),
                opts(Some("anon-new")),
            )
            .await
            .map(|_| ())
        },
        |s| async move { s.delete(&id("X")).await },
        |mem, identified, deleted| {
            assert!(
                identified.is_ok(),
                "identify never fails for a delete: {identified:?}"
            );
            assert!(deleted.is_ok());
            // Either order is fine; what is left is consistent and reachable.
            let live = mem.live_people();
            assert!(live.len() <= 1);
            if let Some((cio, p)) = live.first() {
                assert_eq!(p.profile.as_ref().unwrap().id.as_deref(), Some("X"));
                assert_eq!(
                    mem.owner(&IndexKey::Id("X".into())).as_deref(),
                    Some(cio.as_str())
                );
            }
            // The visitor's event is on the live person or still its own.
            let v = mem.visitor_data("anon-new").unwrap();
            let on_person = live
                .iter()
                .any(|(_, p)| p.events.iter().any(|e| e.id == "new-1"));
            assert!(
                on_person
                    || (v.merged_into.is_none() && v.events.iter().any(|e| e.id == "new-1"))
                    || live.is_empty(),
                "the visitor's event is lost"
            );
        },
    );
}

#[test]
fn race_track_vs_delete_never_refuses_a_browser_event() {
    race(
        setup_person,
        |s| async move { s.record(Some(&id("X")), "anon-old", event("t-1")).await },
        |s| async move { s.delete(&id("X")).await.map(|_| ()) },
        |mem, tracked, deleted| {
            assert!(tracked.is_ok(), "{tracked:?}");
            assert!(deleted.is_ok());
            assert!(copies_of(mem, "t-1") <= 1);
            // Afterwards the visitor works as an anonymous one.
            let s = mem.store();
            block_on(s.record(Some(&id("X")), "anon-old", event("t-2"))).unwrap();
            assert_eq!(copies_of(mem, "t-2"), 1);
        },
    );
}

#[test]
fn race_anonymous_track_vs_identify_loses_nothing() {
    race(
        |_| {},
        |s| async move { s.record(None, "anon-r", event("r-1")).await },
        |s| async move {
            s.identify(&identify_body(json!({"id": "R"})), opts(Some("anon-r")))
                .await
                .map(|_| ())
        },
        |mem, tracked, identified| {
            assert!(tracked.is_ok() && identified.is_ok());
            assert_eq!(copies_of(mem, "r-1"), 1, "accepted once, found once");
        },
    );
}

#[test]
fn race_identify_vs_merge() {
    race(
        |mem| {
            setup_person(mem);
            block_on(
                mem.store()
                    .identify(&identify_body(json!({"id": "P"})), opts(None)),
            )
            .unwrap();
        },
        |s| async move {
            s.identify(
                &identify_body(json!({"id": "X", "vip": true})),
                opts(Some("anon-new")),
            )
            .await
            .map(|_| ())
        },
        |s| async move { s.merge(&id("P"), &id("X"), NOW).await },
        |mem, identified, merged| {
            assert!(identified.is_ok(), "{identified:?}");
            assert!(merged.is_ok(), "{merged:?}");
            let p = block_on(mem.store().profile(&id("P"))).unwrap();
            assert!(
                p.anonymous_ids.contains(&"anon-old".to_owned()),
                "the secondary's history moved"
            );
            assert_eq!(copies_of(mem, "old-1"), 1);
            assert!(
                copies_of(mem, "new-1") == 1,
                "the new visitor's event is somewhere, once"
            );
        },
    );
}

#[test]
fn race_merge_vs_merge_both_ways() {
    race(
        |mem| {
            let s = mem.store();
            block_on(s.record(None, "anon-a", event("a-1"))).unwrap();
            block_on(s.record(None, "anon-b", event("b-1"))).unwrap();
            block_on(s.identify(&identify_body(json!({"id": "A"})), opts(Some("anon-a")))).unwrap();
            block_on(s.identify(&identify_body(json!({"id": "B"})), opts(Some("anon-b")))).unwrap();
        },
        |s| async move { s.merge(&id("A"), &id("B"), NOW).await },
        |s| async move { s.merge(&id("B"), &id("A"), NOW).await },
        |mem, ab, ba| {
            assert!(ab.is_ok() || ba.is_ok() || (ab.is_err() && ba.is_err()));
            // Nothing is lost whichever way it went: both events are live once.
            assert_eq!(copies_of(mem, "a-1"), 1);
            assert_eq!(copies_of(mem, "b-1"), 1);
            assert!(!mem.live_people().is_empty());
        },
    );
}

#[test]
fn race_two_new_people_claim_one_email() {
    race(
        |_| {},
        |s| async move {
            s.identify(
                &identify_body(json!({"id": "n1", "email": "one@x.io"})),
                opts(Some("a1")),
            )
            .await
            .map(|_| ())
        },
        |s| async move {
            s.identify(
                &identify_body(json!({"id": "n2", "email": "one@x.io"})),
                opts(Some("a2")),
            )
            .await
            .map(|_| ())
        },
        |mem, r1, r2| {
            assert_eq!(
                r1.is_ok() as u8 + r2.is_ok() as u8,
                1,
                "exactly one wins: {r1:?} {r2:?}"
            );
            assert_eq!(mem.live_people().len(), 1);
        },
    );
}

// ------------------------------------------------------------ limits ----

fn sized_event(id: &str, ts: i64, bytes: usize) -> Event {
    let mut e = event(id);
    e.timestamp = ts;
    e.data.insert("pad".into(), json!("x".repeat(bytes)));
    e
}

#[test]
fn a_visitor_at_its_cap_refuses_new_events_and_merges_them_all_in_pages() {
    let mem = Mem::new(0);
    let store = mem.store();
    let cap = objects::MAX_VISITOR_EVENTS as usize;
    for i in 0..cap {
        run(
            &mem,
            store.record(None, "anon-cap", event(&format!("c{i}"))),
        )
        .unwrap();
    }
    let refused = run(&mem, store.record(None, "anon-cap", event("one-more")));
    assert!(
        matches!(
            refused,
            Err(StoreError::Client(ClientError::AtCapacity { .. }))
        ),
        "{refused:?}"
    );
    // A repeat of an accepted event is still a 200 (dedup), not a refusal.
    run(&mem, store.record(None, "anon-cap", event("c0"))).unwrap();
    mem.0.calls.set(0);
    let done = identify(&mem, json!({"id": "capped"}), Some("anon-cap")).unwrap();
    assert_eq!(
        mem.person_data(&done.person.cio_id).unwrap().events.len(),
        cap
    );
    let pages = cap.div_ceil(objects::MERGE_PAGE_EVENTS as usize);
    assert!(mem.0.calls.get() >= pages, "moved in {pages} pages or more");
    // Identified, the events go to the person, well under its own cap.
    run(
        &mem,
        store.record(Some(&id("capped")), "anon-cap", event("one-more")),
    )
    .unwrap();
    check_invariants(&mem);
}

#[test]
fn activity_pages_are_bounded_in_bytes_and_a_cursor_reaches_everything_once() {
    let mem = Mem::new(0);
    let store = mem.store();
    identify(&mem, json!({"id": "pages"}), None).unwrap();
    // 30 events of ~100 KB: about 3 MB, so a page of 1000 cannot hold them.
    for i in 0..30 {
        let e = sized_event(&format!("p{i:02}"), NOW + i % 3, 100_000);
        run(&mem, store.record(Some(&id("pages")), "anon-p", e)).unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = run(&mem, store.activity(&id("pages"), 1000, before)).unwrap();
        let bytes: usize = page
            .events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap().len())
            .sum();
        assert!(
            bytes <= objects::MAX_PAGE_BYTES + 110_000,
            "a page is bounded: {bytes}"
        );
        seen.extend(page.events.iter().map(|e| e.id.clone()));
        pages += 1;
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 30, "every event once");
    assert_eq!(seen.len(), 30);
}

#[test]
fn a_merge_moves_a_person_with_many_events_page_by_page() {
    let mem = Mem::new(0);
    let store = mem.store();
    identify(&mem, json!({"id": "big-p"}), None).unwrap();
    identify(&mem, json!({"id": "big-s"}), None).unwrap();
    let n = objects::MERGE_PAGE_EVENTS as usize * 2 + 17;
    for i in 0..n {
        run(
            &mem,
            store.record(Some(&id("big-s")), "anon-b", event(&format!("b{i}"))),
        )
        .unwrap();
    }
    run(&mem, store.merge(&id("big-p"), &id("big-s"), NOW)).unwrap();
    let p = run(&mem, store.profile(&id("big-p"))).unwrap();
    assert_eq!(mem.person_data(&p.cio_id).unwrap().events.len(), n);
    check_invariants(&mem);
}

// ---- retention: alarms with a moved clock ----

fn event_at(id: &str, ts: i64) -> Event {
    Event {
        timestamp: ts,
        ..event(id)
    }
}

const DAY: i64 = 86_400;

#[test]
fn anonymous_retention_deletes_idle_never_identified_visitors_only() {
    let mem = Mem::new(0);
    mem.0.retention.set(retention::Retention {
        anonymous_secs: 30 * DAY,
        event_secs: 0,
    });
    mem.0.clock.set(NOW);
    let store = mem.store();
    let (idle, busy, merged) = (
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "1f8fad5b-d9cb-469f-a165-70867728950e",
        "2f8fad5b-d9cb-469f-a165-70867728950e",
    );
    for anon in [idle, busy, merged] {
        run(&mem, store.record(None, anon, event(&format!("{anon}-1")))).unwrap();
    }
    let person = identify(&mem, json!({"id": "kept"}), Some(merged))
        .unwrap()
        .person;
    // The busy visitor comes back after 20 days.
    mem.run_alarms(NOW + 20 * DAY).unwrap();
    run(
        &mem,
        store.record(None, busy, event_at("busy-2", NOW + 20 * DAY)),
    )
    .unwrap();

    mem.run_alarms(NOW + 30 * DAY).unwrap();
    assert!(
        mem.visitor_data(idle).unwrap().events.is_empty(),
        "idle deleted"
    );
    assert_eq!(mem.visitor_data(idle).unwrap().last_active, None);
    assert_eq!(
        mem.visitor_data(busy).unwrap().events.len(),
        2,
        "active 10 days ago: kept"
    );
    assert_eq!(
        mem.visitor_data(merged).unwrap().merged_into,
        Some(person.cio_id.clone())
    );
    let p = mem.person_data(&person.cio_id).unwrap();
    assert_eq!(p.events.len(), 1, "the person keeps the merged events");

    mem.run_alarms(NOW + 50 * DAY).unwrap();
    assert!(
        mem.visitor_data(busy).unwrap().events.is_empty(),
        "now idle 30 days"
    );
    assert_eq!(
        mem.visitor_data(merged).unwrap().merged_into,
        Some(person.cio_id.clone())
    );
    assert_eq!(mem.person_data(&person.cio_id).unwrap().events.len(), 1);
    assert!(mem.0.alarms.borrow().is_empty(), "nothing left to ring");
}

#[test]
fn event_retention_deletes_a_persons_old_events_and_nothing_else() {
    let mem = Mem::new(0);
    mem.0.retention.set(retention::Retention {
        anonymous_secs: 0,
        event_secs: 7 * DAY,
    });
    mem.0.clock.set(NOW);
    let store = mem.store();
    let cio = identify(&mem, json!({"id": "p", "plan": "x"}), None)
        .unwrap()
        .person
        .cio_id;
    let who = Some(id("p"));
    for (name, ts) in [("old", NOW - 10 * DAY), ("week", NOW - DAY), ("new", NOW)] {
        run(
            &mem,
            store.record(
                who.as_ref(),
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                event_at(name, ts),
            ),
        )
        .unwrap();
    }
    let names = |mem: &Mem| -> Vec<String> {
        mem.person_data(&cio)
            .unwrap()
            .events
            .iter()
            .map(|e| e.id.clone())
            .collect()
    };
    // An anonymous visitor is untouched by event retention (no alarm).
    run(
        &mem,
        store.record(
            None,
            "9f8fad5b-d9cb-469f-a165-70867728950e",
            event_at("anon", NOW - 30 * DAY),
        ),
    )
    .unwrap();
    mem.run_alarms(NOW + 6 * DAY).unwrap();
    assert_eq!(names(&mem), ["old", "week", "new"], "not yet rung");
    mem.run_alarms(NOW + 7 * DAY).unwrap();
    assert_eq!(names(&mem), ["new"], "older than 7 days gone");
    let p = mem.person_data(&cio).unwrap();
    assert_eq!(
        p.profile.unwrap().attributes["plan"],
        json!("x"),
        "the profile stays"
    );
    mem.run_alarms(NOW + 7 * DAY + 1).unwrap();
    assert!(names(&mem).is_empty());
    assert_eq!(
        mem.visitor_data("9f8fad5b-d9cb-469f-a165-70867728950e")
            .unwrap()
            .events
            .len(),
        1
    );
    assert!(mem.0.alarms.borrow().is_empty());
}

#[test]
fn retention_off_sets_no_alarm() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(
        &mem,
        store.record(None, "0f8fad5b-d9cb-469f-a165-70867728950e", event("a")),
    )
    .unwrap();
    identify(
        &mem,
        json!({"id": "q"}),
        Some("0f8fad5b-d9cb-469f-a165-70867728950e"),
    )
    .unwrap();
    assert!(mem.0.alarms.borrow().is_empty());
}

/// Fills a person's stored events to its cap directly: `browser(i)` says
/// which are a browser's.
fn fill_person(mem: &Mem, cio_id: &str, browser: impl Fn(usize) -> bool) {
    let people = mem.0.people.borrow();
    let mut p = people.get(cio_id).unwrap().borrow_mut();
    for i in 0..objects::MAX_PERSON_EVENTS as usize {
        let id = if browser(i) {
            format!("browser:forged-{i}")
        } else {
            format!("backend-{i}")
        };
        p.next_seq += 1;
        let seq = p.next_seq;
        p.events.push(event(&id));
        p.seqs.push(seq);
    }
}

/// Item: a stranger with a forged `_cioid` cannot lock a person out. At the
/// cap a browser's event drops the earliest browser event; the backend's
/// events are never dropped, and a backend write is refused as before.
#[test]
fn a_person_at_its_cap_makes_room_for_a_browser_by_dropping_the_earliest_browser_event() {
    let mem = Mem::new(0);
    let store = mem.store();
    let cio = identify(&mem, json!({"id": "capped"}), None)
        .unwrap()
        .person
        .cio_id;
    fill_person(&mem, &cio, |i| i >= 2);
    let who = id("capped");
    let refused = run(
        &mem,
        store.record(Some(&who), "anon-x", event("backend-new")),
    );
    assert!(
        matches!(
            refused,
            Err(StoreError::Client(ClientError::AtCapacity { .. }))
        ),
        "{refused:?}"
    );
    for real in ["browser:real-1", "browser:real-2"] {
        run(&mem, store.record(Some(&who), "anon-real", event(real))).unwrap();
    }
    let p = mem.person_data(&cio).unwrap();
    let has = |id: &str| p.events.iter().any(|e| e.id == id);
    assert_eq!(p.events.len(), objects::MAX_PERSON_EVENTS as usize);
    assert!(has("browser:real-1") && has("browser:real-2"));
    assert!(!has("browser:forged-2") && !has("browser:forged-3") && has("browser:forged-4"));
    assert!(
        has("backend-0") && has("backend-1"),
        "the backend's are kept"
    );
    // A repeat is still answered 200 and recorded once.
    run(
        &mem,
        store.record(Some(&who), "anon-real", event("browser:real-1")),
    )
    .unwrap();
    assert_eq!(
        mem.person_data(&cio).unwrap().events.len(),
        objects::MAX_PERSON_EVENTS as usize
    );

    // With only the backend's events, a browser's is refused: nothing to drop.
    let cio = identify(&mem, json!({"id": "backend-only"}), None)
        .unwrap()
        .person
        .cio_id;
    fill_person(&mem, &cio, |_| false);
    let refused = run(
        &mem,
        store.record(Some(&id("backend-only")), "anon-y", event("browser:b")),
    );
    assert!(matches!(
        refused,
        Err(StoreError::Client(ClientError::AtCapacity { .. }))
    ));
}
