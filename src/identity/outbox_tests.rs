//! The transactional outbox, natively: with forwarding on every accepted
//! write leaves exactly one outbound operation in the outbox of the object
//! that committed it (a visitor merged by an identify adds its own), repeats
//! and refused writes leave none, and with forwarding off nothing is written.

use serde_json::{json, Value};

use super::memory::Mem;
use super::*;
use crate::core::identifier::Identifier;
use crate::core::profile::parse_identify;

use super::test_kit::{event_with as event, identify, opts, run, NOW};

/// Every outbound operation of every object, in no particular order.
fn all_ops(mem: &Mem) -> Vec<Value> {
    let mut ops = Vec::new();
    for p in mem.0.people.borrow().values() {
        ops.extend(p.borrow().outbox.iter().cloned());
    }
    for v in mem.0.visitors.borrow().values() {
        ops.extend(v.borrow().outbox.iter().cloned());
    }
    ops
}

/// How many operations forward the event recorded as `id` (named `e-<id>`).
fn forwarded(ops: &[Value], id: &str) -> usize {
    let name = format!("e-{id}");
    ops.iter()
        .filter(|o| o["name"] == json!(name))
        .inspect(|o| assert_eq!(o["id"].as_str().map(str::len), Some(26), "a ULID id"))
        .count()
}

fn actions(ops: &[Value]) -> Vec<String> {
    let mut a: Vec<String> = ops
        .iter()
        .map(|o| o["action"].as_str().unwrap().to_owned())
        .collect();
    a.sort();
    a
}

fn forwarding(seed: u64) -> Mem {
    let mem = Mem::new(seed);
    mem.0.forwarding.set(true);
    mem
}

#[test]
fn every_accepted_write_has_exactly_one_outbox_row() {
    let mem = forwarding(0);
    let store = mem.store();
    let anon = "0f8fad5b-d9cb-469f-a165-70867728950e";
    // Anonymous activity: two events, one repeated.
    for id in ["a1", "a2", "a1"] {
        run(&mem, store.record(None, anon, event(id, json!({"k": 1})))).unwrap();
    }
    assert_eq!(mem.visitor_data(anon).unwrap().outbox.len(), 2);
    // Identify with a visitor to merge: the identify, then the merge of the
    // visitor (its events were forwarded as its own; they are not resent).
    let who = identify(
        &mem,
        json!({"id": "u1", "email": "u1@x.co", "plan": "pro"}),
        Some(anon),
    )
    .unwrap();
    let cio = who.person.cio_id.clone();
    let ops = mem.person_data(&cio).unwrap().outbox;
    assert_eq!(actions(&ops), ["identify", "identify"]);
    assert_eq!(ops[0]["identifiers"], json!({"id": "u1"}));
    assert_eq!(
        ops[0]["attributes"],
        json!({"plan": "pro", "email": "u1@x.co"})
    );
    assert_eq!(
        ops[1],
        json!({"type": "person", "action": "identify", "identifiers": {"id": "u1"}, "attributes": {"anonymous_id": anon}})
    );
    // Events for the person, one repeated: one row each.
    let u1 = Identifier::parse("u1").unwrap();
    for id in ["p1", "p2", "p2"] {
        run(&mem, store.track_person(&u1, &event(id, json!({})), NOW)).unwrap();
    }
    // Relationships, an email change, a second person and a merge, a delete.
    identify(&mem, json!({"id": "u1", "cio_relationships": {"action": "add_relationships", "relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}}), None).unwrap();
    identify(&mem, json!({"id": "u1", "email": "new@x.co"}), None).unwrap();
    identify(&mem, json!({"id": "u2", "tier": 2}), None).unwrap();
    let u2 = Identifier::parse("u2").unwrap();
    run(&mem, store.track_person(&u2, &event("q1", json!({})), NOW)).unwrap();
    run(&mem, store.merge(&u1, &u2, NOW)).unwrap();
    run(&mem, store.merge(&u1, &u2, NOW)).unwrap();
    run(&mem, store.delete(&u1)).unwrap();
    run(&mem, store.delete(&u1)).unwrap();

    let ops = all_ops(&mem);
    assert_eq!(
        actions(&ops),
        [
            "add_relationships",
            "delete",
            "event",
            "event",
            "event",
            "event",
            "event",
            "identify",
            "identify",
            "identify",
            "identify",
            "identify",
            "merge",
        ]
    );
    // Each accepted event once, under the ULID Customer.io deduplicates by.
    for id in ["a1", "a2", "p1", "p2", "q1"] {
        assert_eq!(forwarded(&ops, id), 1, "{id}");
    }
    let merge = ops.iter().find(|o| o["action"] == "merge").unwrap();
    assert_eq!(merge["primary"], json!({"id": "u1"}));
    assert_eq!(merge["secondary"], json!({"id": "u2"}));
    let change = ops
        .iter()
        .find(|o| o["attributes"]["email"] == "new@x.co")
        .unwrap();
    assert_eq!(change["identifiers"], json!({"id": "u1"}));
    // The delete (not the merge's removal of the secondary) is forwarded.
    let delete = ops.iter().find(|o| o["action"] == "delete").unwrap();
    assert_eq!(delete["identifiers"], json!({"id": "u1"}));
}

#[test]
fn refused_writes_leave_no_row_and_an_oversized_operation_is_refused() {
    let mem = forwarding(0);
    let store = mem.store();
    identify(&mem, json!({"id": "a", "email": "same@x.co"}), None).unwrap();
    let before = all_ops(&mem).len();
    // 409: another person's email.
    assert!(identify(&mem, json!({"id": "b", "email": "same@x.co"}), None).is_err());
    // Over 32 KB once forwarded (fine locally, rule 6.9 allows 100,000).
    let big = event("big", json!({"blob": "x".repeat(40_000)}));
    let a = Identifier::parse("a").unwrap();
    let err = run(&mem, store.track_person(&a, &big, NOW)).unwrap_err();
    assert!(
        matches!(err, StoreError::Client(ref e) if e.status() == 413),
        "{err:?}"
    );
    let err = run(&mem, store.record(None, "anon-1", big)).unwrap_err();
    assert!(
        matches!(err, StoreError::Client(ref e) if e.status() == 413),
        "{err:?}"
    );
    assert_eq!(all_ops(&mem).len(), before);
    let cio = mem.live_people()[0].0.clone();
    assert!(
        mem.person_data(&cio).unwrap().events.is_empty(),
        "nothing stored"
    );
}

#[test]
fn forwarding_off_writes_no_outbox() {
    let mem = Mem::new(0);
    let store = mem.store();
    run(&mem, store.record(None, "anon-2", event("x", json!({})))).unwrap();
    identify(&mem, json!({"id": "u"}), Some("anon-2")).unwrap();
    run(&mem, store.delete(&Identifier::parse("u").unwrap())).unwrap();
    assert!(all_ops(&mem).is_empty());
}

/// Under racing identifies and tracks, each stored event is in exactly one
/// outbox once, wherever it ended up.
#[test]
fn racing_writes_forward_each_stored_event_once() {
    for seed in 1..=150u64 {
        let mem = forwarding(seed);
        let store = mem.store();
        let anon = "7c9e6679-7425-40de-944d-e07fc1f77de4";
        let u = Identifier::parse("u").unwrap();
        run(&mem, async {
            let a = store.record(None, anon, event("e1", json!({})));
            let who = parse_identify(json!({"id": "u"}).as_object().unwrap(), true).unwrap();
            let b = store.identify(&who, opts(Some(anon)));
            let c = store.record(Some(&u), anon, event("e2", json!({})));
            let ((ra, rb), rc) = futures::future::join(futures::future::join(a, b), c).await;
            ra.unwrap();
            rb.unwrap();
            rc.unwrap();
        });
        let ops = all_ops(&mem);
        for id in ["e1", "e2"] {
            let n = forwarded(&ops, id);
            assert_eq!(n, 1, "seed {seed}: {id} forwarded {n} times");
        }
    }
}

/// A Customer.io link's cio_id: its first event makes the person for it
/// (forwarded by `cio_id`, without the edge's creation time); an identify
/// from that browser is that identifier's own person, never the link's
/// (a link renames no one), and merges the visitor as any identify does.
#[test]
fn a_linked_cio_id_is_its_own_person_and_an_identify_never_renames_it() {
    let mem = forwarding(0);
    let store = mem.store();
    let anon = "2c1b7a9e-3f0d-4f5e-9a8b-1c2d3e4f5a6b";
    run(&mem, store.record(None, anon, event("before", json!({})))).unwrap();
    let x = "ext0cio0id0123";
    assert!(mem.person_data(x).is_none(), "nothing made before an event");
    run(
        &mem,
        store.record_linked(x, anon, event("after", json!({})), NOW, false),
    )
    .unwrap();
    run(
        &mem,
        store.record_linked(x, anon, event("after2", json!({})), NOW, false),
    )
    .unwrap();
    let p = mem.person_data(x).unwrap();
    assert_eq!(p.events.len(), 2);
    assert_eq!(
        p.outbox[0],
        json!({"type": "person", "action": "identify", "identifiers": {"cio_id": x}, "attributes": {}})
    );
    assert_eq!(p.outbox[1]["identifiers"], json!({"cio_id": x}));
    assert_eq!(
        mem.visitor_data(anon).unwrap().events.len(),
        1,
        "the link merged nothing"
    );
    let who = parse_identify(
        json!({"id": "ext@x.co", "plan": "p"}).as_object().unwrap(),
        true,
    )
    .unwrap();
    let done = run(&mem, store.identify(&who, opts(Some(anon)))).unwrap();
    assert_ne!(done.person.cio_id, x);
    assert_eq!(done.person.email.as_deref(), Some("ext@x.co"));
    let linked = mem.person_data(x).unwrap();
    assert!(
        linked.profile.unwrap().email.is_none(),
        "the link's person keeps its identifiers"
    );
    assert!(linked
        .outbox
        .iter()
        .all(|o| o["identifiers"] == json!({"cio_id": x})));
    let ops = mem.person_data(&done.person.cio_id).unwrap().outbox;
    assert_eq!(ops[0]["identifiers"], json!({"email": "ext@x.co"}));
    assert_eq!(ops[1]["attributes"], json!({"anonymous_id": anon}));
    assert_eq!(done.person.anonymous_ids, vec![anon.to_owned()]);
}

/// `LINK_MERGES_HISTORY`: the link's person is made with the visitor's
/// earlier activity, and Customer.io gets the join for it by `cio_id`.
#[test]
fn with_link_merges_history_the_first_linked_event_joins_the_visitor() {
    let mem = forwarding(0);
    let store = mem.store();
    let anon = "3c1b7a9e-3f0d-4f5e-9a8b-1c2d3e4f5a6b";
    run(&mem, store.record(None, anon, event("before", json!({})))).unwrap();
    let x = "ext0cio0id0789";
    run(
        &mem,
        store.record_linked(x, anon, event("after", json!({})), NOW, true),
    )
    .unwrap();
    let p = mem.person_data(x).unwrap();
    let names: Vec<&str> = p.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(p
        .outbox
        .iter()
        .any(|o| o["attributes"] == json!({"anonymous_id": anon})
            && o["identifiers"] == json!({"cio_id": x})));
    // A known person's link does the same through `link_merge`.
    let other = "4c1b7a9e-3f0d-4f5e-9a8b-1c2d3e4f5a6b";
    run(&mem, store.record(None, other, event("o1", json!({})))).unwrap();
    let u = identify(&mem, json!({"id": "known"}), None).unwrap();
    run(&mem, store.link_merge(&u.person.cio_id, other, NOW)).unwrap();
    let p = mem.person_data(&u.person.cio_id).unwrap();
    assert_eq!(p.events.len(), 1);
    assert_eq!(
        p.outbox.last().unwrap()["attributes"],
        json!({"anonymous_id": other})
    );
}

/// A late anonymous delivery: the person the visitor merged into sends the
/// join identify again; a visitor never merged, or merged into a person
/// later merged away, is followed to whoever holds it now.
#[test]
fn rejoin_sends_the_join_again_from_whoever_holds_the_visitor() {
    let mem = forwarding(0);
    let store = mem.store();
    let anon = "5c1b7a9e-3f0d-4f5e-9a8b-1c2d3e4f5a6b";
    run(&mem, store.record(None, anon, event("a", json!({})))).unwrap();
    assert!(
        !run(&mem, super::store::rejoin(&mem, anon)).unwrap(),
        "not merged: nothing"
    );
    let u = identify(&mem, json!({"id": "late"}), Some(anon)).unwrap();
    let before = mem.person_data(&u.person.cio_id).unwrap().outbox.len();
    assert!(run(&mem, super::store::rejoin(&mem, anon)).unwrap());
    let ops = mem.person_data(&u.person.cio_id).unwrap().outbox;
    assert_eq!(ops.len(), before + 1);
    assert_eq!(
        ops.last().unwrap(),
        &json!({"type": "person", "action": "identify", "identifiers": {"id": "late"}, "attributes": {"anonymous_id": anon}})
    );
    identify(&mem, json!({"id": "primary"}), None).unwrap();
    let (p, l) = (
        Identifier::parse("primary").unwrap(),
        Identifier::parse("late").unwrap(),
    );
    run(&mem, store.merge(&p, &l, NOW)).unwrap();
    assert!(run(&mem, super::store::rejoin(&mem, anon)).unwrap());
    let primary = store_find(&mem, "primary");
    let last = mem
        .person_data(&primary)
        .unwrap()
        .outbox
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["identifiers"], json!({"id": "primary"}));
    assert_eq!(last["attributes"], json!({"anonymous_id": anon}));
}

fn store_find(mem: &Mem, id: &str) -> String {
    run(mem, mem.store().find(&Identifier::parse(id).unwrap()))
        .unwrap()
        .unwrap()
}

#[test]
fn a_visitor_retention_deleted_is_not_joined_at_customer_io_while_it_may_hold_the_events() {
    let mem = forwarding(0);
    mem.0.clock.set(NOW);
    mem.0.retention.set(retention::Retention {
        anonymous_secs: 100,
        event_secs: 0,
    });
    let store = mem.store();
    let (gone, later) = (
        "1f8fad5b-d9cb-469f-a165-70867728950e",
        "2f8fad5b-d9cb-469f-a165-70867728950e",
    );
    for anon in [gone, later] {
        run(&mem, store.record(None, anon, event(anon, json!({})))).unwrap();
    }
    mem.run_alarms(NOW + 101).unwrap();
    assert!(
        mem.visitor_data(gone).unwrap().events.is_empty(),
        "deleted here"
    );
    let joins = |mem: &Mem, cio: &str, anon: &str| {
        mem.person_data(cio)
            .unwrap()
            .outbox
            .iter()
            .filter(|op| op["attributes"]["anonymous_id"] == json!(anon))
            .count()
    };
    let at = |now: i64, id: &str, anon: &'static str| {
        let body = parse_identify(json!({ "id": id }).as_object().unwrap(), true).unwrap();
        let opts = IdentifyOptions {
            create: true,
            anonymous_id: Some(anon),
            now,
        };
        run(&mem, store.identify(&body, opts))
            .unwrap()
            .person
            .cio_id
    };
    // A day later Customer.io still holds the deleted events: no join.
    let cio = at(NOW + 86_400, "u-gone", gone);
    assert_eq!(joins(&mem, &cio, gone), 0);
    // Once Customer.io has let them go, the join is sent as usual.
    let cio = at(NOW + 100 + crate::cio::CIO_ANONYMOUS_SECS, "u-later", later);
    assert_eq!(joins(&mem, &cio, later), 1);
}
