// Invariants 1, 3 and 4 under concurrency: one identifier, one person; no
// accepted event lost or doubled, whatever races with the identify.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/worker.mjs";
import { startOrigin } from "./support/origin.mjs";
import { Browser, person, activity, uid, ADMIN_TOKEN } from "./support/people.mjs";

let origin;
let edge;

before(async () => {
  origin = await startOrigin();
  edge = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
});

after(async () => {
  await edge?.dispose();
  await origin?.close();
});

test("200 browsers identify with one new email at once: one person, 200 merges, 200 events once each", async () => {
  const browsers = Array.from({ length: 200 }, () => new Browser(edge));
  const eventIds = [];
  for (const [i, b] of browsers.entries()) {
    const id = `pre-${i}-${crypto.randomUUID()}`;
    eventIds.push(id);
    assert.equal((await b.track("browsed", { i }, { id })).status, 200);
  }
  const email = `${uid("race")}@example.com`;
  const results = await Promise.all(browsers.map((b) => b.identify({ id: email, n: 1 })));
  const statuses = results.map((r) => r.status);
  assert.deepEqual([...new Set(statuses)], [200], `statuses: ${statuses.join(",")}`);

  const p = (await person(edge, email)).body;
  const events = await activity(edge, email);
  console.log(`race: ${results.length} identifies -> person ${p.cio_id}, ${p.anonymous_ids.length} anonymous ids, ${events.length} events`);
  assert.equal(new Set(browsers.map((b) => b.anon)).size, 200);
  assert.deepEqual([...p.anonymous_ids].sort(), browsers.map((b) => b.anon).sort());
  assert.equal(events.length, 200);
  assert.deepEqual(events.map((e) => e.id).sort(), [...eventIds].sort());
  // Every browser now names the same person.
  assert.ok(browsers.every((b) => b.cioid === email));
});

test("tracks racing an identify: every accepted event is found exactly once on the person", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  const id = uid("racer");
  const sent = [];
  const tracks = Array.from({ length: 50 }, (_, i) => {
    const eventId = `r-${i}-${crypto.randomUUID()}`;
    sent.push(eventId);
    // Each track carries the cookies the browser had before the identify.
    return b.post("track", { name: "raced", id: eventId, data: { i } });
  });
  const [identify, ...answers] = await Promise.all([b.identify({ id }), ...tracks]);
  assert.equal(identify.status, 200);
  const accepted = sent.filter((_, i) => answers[i].status === 200);
  assert.equal(accepted.length, 50);
  // Late anonymous events (the old anon cookie, after the merge) are forwarded.
  const late = new Browser(edge);
  late.jar.set("_cioanonid", b.anon);
  const lateId = `late-${crypto.randomUUID()}`;
  assert.equal((await late.post("track", { name: "late", id: lateId })).status, 200);

  const events = await activity(edge, id);
  const ids = events.map((e) => e.id);
  console.log(`race: 50 tracks around one identify -> ${ids.filter((x) => x.startsWith("r-")).length} on the person`);
  for (const eventId of [...accepted, lateId]) {
    assert.equal(ids.filter((x) => x === eventId).length, 1, `event ${eventId}`);
  }
  assert.equal(events.length, accepted.length + 1);
});
