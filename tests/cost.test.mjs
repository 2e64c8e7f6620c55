// What the storage bills: the counts bench/counting.mjs takes from the
// bindings of the built worker (workerd's own rowsRead / rowsWritten of
// every SQLite cursor, KV and Durable Object calls) for the paths whose
// cost the objects keep down.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, counters, identifySplit } from "../bench/cost.mjs";
import { startOrigin } from "./support/origin.mjs";

let origin, w;
before(async () => {
  origin = await startOrigin();
  w = await start({ counting: true, originUrl: origin.url });
});
after(async () => {
  await w?.mf.dispose();
  await origin?.close();
});

const post = async (path, body, cookie) => {
  const res = await fetch(w.url + path, { method: "POST", headers: { "content-type": "application/json", cookie }, body: JSON.stringify(body) });
  await res.text();
  assert.equal(res.status, 200);
};

test("a page view is one Worker request and touches no storage", async () => {
  await counters(w);
  const res = await fetch(w.url + "/", { headers: { cookie: `_cioanonid=${crypto.randomUUID()}` } });
  await res.text();
  const c = await counters(w);
  assert.equal(c.worker_requests, 1);
  assert.equal(c.do_requests + c.kv_reads + c.kv_writes + c.rows_read + c.rows_written, 0);
});

test("a new person creates only the tables it writes: the person object writes far fewer rows than its whole schema", async () => {
  const anon = crypto.randomUUID();
  await counters(w);
  await post("/_cio/identify", { id: `cost-${Date.now()}`, plan: "x" }, `_cioanonid=${anon}`);
  const c = await counters(w);
  // The whole person schema (five tables, two of them AUTOINCREMENT with
  // their unique indexes) is over 10 rows written before any data; the
  // profile and anonymous-id tables and their two rows are 8.
  assert.ok(c.objects.Person.rows_written <= 8, `person rows written: ${c.objects.Person.rows_written}`);
  // The visitor, never written before, only gets its merged marker.
  assert.ok(c.objects.Visitor.rows_written <= 3, `visitor rows written: ${c.objects.Visitor.rows_written}`);
  assert.equal(c.objects.Person.requests, 1);
  assert.equal(c.objects.IdentityIndex.requests, 1);
});

test("the capacity check reads the same few rows however many events a person holds", async () => {
  const anon = crypto.randomUUID();
  const id = `cost-many-${Date.now()}`;
  await post("/_cio/identify", { id }, `_cioanonid=${anon}`);
  const cookie = `_cioanonid=${anon}; _cioid=${id}`;
  const readsOneTrack = async () => {
    await counters(w);
    await post("/_cio/track", { name: "e" }, cookie);
    return (await counters(w)).objects.Person.rows_read;
  };
  await post("/_cio/track", { name: "first" }, cookie);
  const early = await readsOneTrack();
  for (let i = 0; i < 60; i++) await post("/_cio/track", { name: "fill", data: { i } }, cookie);
  const later = await readsOneTrack();
  assert.equal(later, early, `rows read per track: ${early} with 2 events, ${later} with 63`);
});

test("an event stored on a new person is two rows written: the row and its id's index entry", async () => {
  const anon = crypto.randomUUID();
  const id = `cost-rows-${Date.now()}`;
  await post("/_cio/identify", { id }, `_cioanonid=${anon}`);
  const cookie = `_cioanonid=${anon}; _cioid=${id}`;
  await post("/_cio/track", { name: "creates the table" }, cookie);
  await counters(w);
  await post("/_cio/track", { name: "e" }, cookie);
  const c = await counters(w);
  assert.equal(c.objects.Person.rows_written, 2);
  assert.equal(c.rows_written, 2, "no other object writes");
});

test("the bench's identify split speaks the objects' wire: every step answers Ok and stores what it should", async () => {
  // Each call goes straight to its object in the shape src/identity/wire.rs
  // reads; a step in another shape answers an error and throws.
  const steps = await identifySplit(w, 1);
  assert.equal(steps.length, 6);
  const byName = Object.fromEntries(steps.map((s) => [s.name.split(" (")[0], s]));
  assert.equal(byName["index: look up an unknown value"].rows_written, 0);
  assert.ok(byName["index: claim a new value"].rows_written >= 1, JSON.stringify(byName["index: claim a new value"]));
  assert.ok(byName["person: identify, creating it"].rows_written >= 1);
  assert.ok(byName["person: identify again, changing an attribute"].rows_written >= 1);
});
