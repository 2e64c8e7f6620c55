// Races on one person through the built worker (docs/API.md rules 6.11,
// 6.13, 6.14): each pair of writes run side by side many times, then the
// invariants read back through the admin API: no orphan, nothing reachable
// after a 200 DELETE, no visitor stuck on a gone person, no event lost or
// doubled. The native twins (identity::tests::race_*) run 300 schedules each.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { Browser, uid } from "./support/people.mjs";
import { SECRETS, api, adminGet } from "./support/api.mjs";

const TRIES = 40;
const { edge, origin, another } = withEdge({ secrets: SECRETS });

const person = async (identifier) => adminGet(edge, `people/${encodeURIComponent(identifier)}`);
const events = async (identifier) =>
  (await adminGet(edge, `people/${encodeURIComponent(identifier)}/activity?limit=1000`)).body?.events ?? [];
const visitor = async (anon) => (await adminGet(edge, `visitors/${anon}/activity?limit=1000`)).body;

test(`identify racing a Track API DELETE, ${TRIES} times: nothing resurrected, no visitor stuck`, async () => {
  const outcomes = {};
  for (let i = 0; i < TRIES; i++) {
    const id = uid("race");
    const b = new Browser(edge);
    await b.identify({ id });
    const old = (await person(id)).body;
    const [identified, deleted] = await Promise.all([
      b.identify({ id, phone: "555" }),
      api(edge, "DELETE", `v1/customers/${encodeURIComponent(id)}`),
    ]);
    const key = `identify ${identified.status} / delete ${deleted.status}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    assert.equal(identified.status, 200, "an identify never fails for a delete");
    assert.equal(deleted.status, 200);

    // The old cio_id is gone for good, whatever the order.
    assert.equal((await person(`cio_${old.cio_id}`)).status, 404, "the deleted cio_id stays deleted");
    const now = await person(id);
    if (now.status === 200) {
      assert.notEqual(now.body.cio_id, old.cio_id);
      assert.equal(now.body.attributes.phone, "555", "the live person is the identify's");
    }
    // The browser keeps working, and its events are readable somewhere.
    const evId = uid("after");
    assert.equal((await b.track("after_race", {}, { id: evId })).status, 200);
    const onPerson = now.status === 200 && (await events(id)).some((e) => e.id === `browser:${evId}`);
    const onVisitor = (await visitor(b.anon)).events.some((e) => e.id === `browser:${evId}`);
    assert.ok(onPerson !== onVisitor, `the event is in exactly one place (person ${onPerson}, visitor ${onVisitor})`);
    // A second DELETE reaches whatever is live.
    assert.equal((await api(edge, "DELETE", `v1/customers/${encodeURIComponent(id)}`)).status, 200);
    assert.equal((await person(id)).status, 404);
  }
  console.log(`# identify vs delete: ${JSON.stringify(outcomes)}`);
});

test(`browser track racing a DELETE, ${TRIES} times: every event answered 200 is readable once`, async () => {
  for (let i = 0; i < TRIES; i++) {
    const id = uid("trk");
    const b = new Browser(edge);
    await b.identify({ id });
    const evId = uid("ev");
    const [tracked, deleted] = await Promise.all([
      b.track("raced", {}, { id: evId }),
      api(edge, "DELETE", `v1/customers/${encodeURIComponent(id)}`),
    ]);
    assert.equal(tracked.status, 200, "a browser event is never refused for what is stored");
    assert.equal(deleted.status, 200);
    // Deleted with the person, or kept by the visitor: never both, never stuck.
    const v = await visitor(b.anon);
    assert.equal(v.merged_into, undefined, "the visitor is anonymous again");
    assert.ok(v.events.filter((e) => e.id === `browser:${evId}`).length <= 1);
    const next = uid("next");
    assert.equal((await b.track("next", {}, { id: next })).status, 200);
    assert.equal((await visitor(b.anon)).events.filter((e) => e.id === `browser:${next}`).length, 1);
  }
});

test(`merges of one pair in both directions at once, ${TRIES} times: one person keeps everything`, async () => {
  const outcomes = {};
  for (let i = 0; i < TRIES; i++) {
    const [a, b] = [uid("ma"), uid("mb")];
    await api(edge, "PUT", `v1/customers/${a}`, { from: "a" });
    await api(edge, "PUT", `v1/customers/${b}`, { from: "b" });
    await api(edge, "POST", `v1/customers/${a}/events`, { name: "ev_a", id: `${a}-ev` });
    await api(edge, "POST", `v1/customers/${b}/events`, { name: "ev_b", id: `${b}-ev` });
    const merge = (p, s) => api(edge, "POST", "v1/merge_customers", { primary: { id: p }, secondary: { id: s } });
    const [ab, ba] = await Promise.all([merge(a, b), merge(b, a)]);
    const key = `${ab.status}/${ba.status}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    for (const r of [ab, ba]) assert.ok([200, 409].includes(r.status), JSON.stringify(r.body));
    const live = [];
    for (const id of [a, b]) if ((await person(id)).status === 200) live.push(id);
    assert.ok(live.length >= 1, "someone is left");
    const all = (await Promise.all(live.map(events))).flat().map((e) => e.id).sort();
    assert.deepEqual(all, [`${a}-ev`, `${b}-ev`].sort(), "both events, once each");
  }
  console.log(`# merge vs merge: ${JSON.stringify(outcomes)}`);
});

test("right after an identify or a link click answers, the admin reads see everything (no waiting), 20 times", async () => {
  for (let i = 0; i < 20; i++) {
    const b = new Browser(edge);
    await b.visit("/");
    const ids = [uid("m1"), uid("m2"), uid("m3")];
    for (const id of ids) assert.equal((await b.track("before", {}, { id })).status, 200);
    const who = uid("now");
    assert.equal((await b.identify({ id: who })).status, 200);
    const seen = (await events(who)).map((e) => e.id).filter((id) => id.startsWith("browser:m"));
    assert.deepEqual(seen.sort(), ids.map((id) => `browser:${id}`).sort(), "every merged event, at once");

    const { cio_id } = (await person(who)).body;
    const fresh = new Browser(edge);
    const click = await fresh.visit(`/?_cio_id=${cio_id}`);
    assert.equal(click.status, 200);
    assert.equal(fresh.cioid, who);
    const after = uid("click");
    assert.equal((await fresh.track("after_click", {}, { id: after })).status, 200);
    assert.ok((await events(who)).some((e) => e.id === `browser:${after}`), "the clicked browser's event is the person's at once");
  }
});
