// Invariants 1, 3 and 4 under concurrency: one identifier value, one person;
// no accepted event lost or doubled, whatever races with the identify. All
// requests are real HTTP requests to the worker, sent at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import crypto from "node:crypto";
import { Browser, person, activity, visitorActivity, uid, sleep, ADMIN_TOKEN } from "./support/people.mjs";

const { edge, origin, another } = withEdge({ secrets: { ADMIN_TOKEN } });

const tally = (values) => values.reduce((t, v) => ({ ...t, [v]: (t[v] ?? 0) + 1 }), {});

/// Asserts every id in `expected` occurs exactly once among `events`, and
/// nothing else does (ids as the browser sent them: recorded as `browser:<id>`).
function assertOnceEach(events, expected, what) {
  const counts = tally(events.map((e) => e.id.replace(/^browser:/, "")));
  const missing = expected.filter((id) => !counts[id]);
  const doubled = Object.entries(counts).filter(([, n]) => n > 1).map(([id]) => id);
  const unexpected = Object.keys(counts).filter((id) => !expected.includes(id));
  assert.deepEqual({ missing, doubled, unexpected }, { missing: [], doubled: [], unexpected: [] }, what);
  assert.equal(events.length, expected.length, what);
}

test("200 browsers identify with one new email at once: one person, 200 merges, 200 events once each", async () => {
  const browsers = Array.from({ length: 200 }, () => new Browser(edge));
  const eventIds = browsers.map((_, i) => `pre-${i}-${crypto.randomUUID()}`);
  const tracked = await Promise.all(browsers.map((b, i) => b.track("browsed", { i }, { id: eventIds[i] })));
  assert.deepEqual(tally(tracked.map((r) => r.status)), { 200: 200 });
  const anons = browsers.map((b) => b.anon);
  assert.equal(new Set(anons).size, 200, "each browser has its own anonymous id");

  const local = uid("race");
  const email = `${local}@example.com`;
  // The same email, written in different cases by different browsers.
  const spelled = (i) => (i % 3 === 0 ? email : i % 3 === 1 ? email.toUpperCase() : `${local.toUpperCase()}@Example.com`);
  const results = await Promise.all(browsers.map((b, i) => b.identify({ id: spelled(i), n: 1 })));
  const statuses = tally(results.map((r) => r.status));

  const res = await person(edge, email);
  const p = res.body;
  const events = await activity(edge, email, 1000);
  console.log(`identify race: ${results.length} identifies ${JSON.stringify(statuses)} -> person ${p?.cio_id}, ${p?.anonymous_ids?.length} anonymous ids, ${events?.length} events`);
  assert.deepEqual(statuses, { 200: 200 }, "every identify answered 200");
  assert.equal(res.status, 200);
  assert.equal(p.id, null);
  assert.equal(p.email, email);
  assert.deepEqual(p.attributes, { n: 1 });
  assert.equal(p.anonymous_ids.length, 200);
  assert.deepEqual([...p.anonymous_ids].sort(), [...anons].sort());
  assert.deepEqual((await person(edge, `cio_${p.cio_id}`)).body, p);
  assertOnceEach(events, eventIds, "the 200 anonymous events, once each");
  assert.ok(events.every((e) => e.name === "browsed" && anons.includes(e.anonymous_id)));

  // One person: every browser names it and every visitor points at it.
  assert.ok(browsers.every((b) => b.cioid === email));
  const visitors = await Promise.all(anons.map((a) => visitorActivity(edge, a)));
  const notMerged = visitors.filter((v) => !(v.merged_into === p.cio_id && Array.isArray(v.events) && v.events.length === 0 && Object.keys(v).length === 2));
  assert.deepEqual(notMerged, [], "every visitor answers merged_into the person");
});

test("50 new ids claim one new email at once: exactly one wins, the others get 409 and create nobody", async () => {
  const browsers = Array.from({ length: 50 }, () => new Browser(edge));
  await Promise.all(browsers.map((b) => b.visit("/")));
  const email = `${uid("contested")}@example.com`;
  const ids = browsers.map(() => uid("claimant"));
  const results = await Promise.all(browsers.map((b, i) => b.identify({ id: ids[i], email })));
  const statuses = tally(results.map((r) => r.status));
  console.log(`email claim race: ${JSON.stringify(statuses)}`);
  assert.deepEqual(statuses, { 200: 1, 409: 49 });
  const winner = results.findIndex((r) => r.status === 200);
  for (const [i, r] of results.entries()) {
    if (i === winner) continue;
    assert.equal(r.json.errors[0].field, "email");
    assert.equal(browsers[i].cioid, undefined);
  }
  const p = (await person(edge, email)).body;
  assert.equal(p.id, ids[winner]);
  assert.deepEqual(p.anonymous_ids, [browsers[winner].anon]);
  const lookups = await Promise.all(ids.map((id) => person(edge, id)));
  assert.deepEqual(tally(lookups.map((l) => l.status)), { 200: 1, 404: 49 });
});

test("tracks racing an identify: every accepted event is found exactly once on the person", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  const anon = b.anon;
  const id = uid("racer");
  const sent = [];
  const track = (i, delay) => {
    const eventId = `r-${i}-${crypto.randomUUID()}`;
    sent.push(eventId);
    // Sent at once, each track carries the cookies the browser had then:
    // the anonymous ones before the identify answered, _cioid after.
    return (delay ? sleep(delay) : Promise.resolve()).then(() => b.post("track", { name: "raced", id: eventId, data: { i } }));
  };
  const tracks = Array.from({ length: 50 }, (_, i) => track(i, 0));
  const staggered = Array.from({ length: 20 }, (_, i) => track(50 + i, i * 5));
  const [identify, ...answers] = await Promise.all([b.identify({ id }), ...tracks, ...staggered]);
  assert.equal(identify.status, 200);
  const accepted = sent.filter((_, i) => answers[i].status === 200);

  // Late anonymous events (the old anon cookie, after the merge) are forwarded.
  const late = new Browser(edge);
  late.jar.set("_cioanonid", anon);
  const lateId = `late-${crypto.randomUUID()}`;
  const lateAnswer = await late.post("track", { name: "late", id: lateId });

  const events = await activity(edge, id, 1000);
  const raced = events.filter((e) => e.id.startsWith("browser:r-")).length;
  console.log(`tracks around one identify: ${JSON.stringify(tally(answers.map((a) => a.status)))} answered, ${raced} raced events on the person, late forward ${lateAnswer.status}`);
  assert.equal(accepted.length, 70, "every track answered 200");
  assert.equal(lateAnswer.status, 200);
  assertOnceEach(events, [...accepted, lateId], "every accepted event once on the person");
  assert.deepEqual(await visitorActivity(edge, anon), { merged_into: (await person(edge, id)).body.cio_id, events: [] });
});

test("20 browsers, each tracking 10 events while identifying as one new email: one person, 200 events once each", async () => {
  const browsers = Array.from({ length: 20 }, () => new Browser(edge));
  await Promise.all(browsers.map((b) => b.visit("/")));
  const email = `${uid("crowd")}@example.com`;
  const sent = [];
  const calls = [];
  for (const [n, b] of browsers.entries()) {
    calls.push(b.identify({ id: email }).then((r) => ({ kind: "identify", r })));
    for (let i = 0; i < 10; i++) {
      const eventId = `c-${n}-${i}-${crypto.randomUUID()}`;
      calls.push(sleep(i * 3).then(() => b.post("track", { name: "crowd", id: eventId })).then((r) => ({ kind: "track", r, eventId })));
    }
  }
  const done = await Promise.all(calls);
  const identifies = done.filter((d) => d.kind === "identify");
  const tracks = done.filter((d) => d.kind === "track");
  for (const t of tracks) if (t.r.status === 200) sent.push(t.eventId);
  const p = (await person(edge, email)).body;
  const events = await activity(edge, email, 1000);
  console.log(`crowd: identifies ${JSON.stringify(tally(identifies.map((d) => d.r.status)))}, tracks ${JSON.stringify(tally(tracks.map((d) => d.r.status)))}, ${p.anonymous_ids.length} anonymous ids, ${events.length} events on the person`);
  assert.deepEqual(tally(identifies.map((d) => d.r.status)), { 200: 20 });
  assert.equal(sent.length, 200, "every track answered 200");
  assert.deepEqual([...p.anonymous_ids].sort(), browsers.map((b) => b.anon).sort());
  assertOnceEach(events, sent, "every accepted event once on the person");
});
