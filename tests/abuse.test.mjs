// Abuse limits and bounded work (docs/API.md section 8): rate limits with
// Cloudflare's binding (simulated by Miniflare), the event caps, activity
// pages bounded in bytes with a cursor, bounded v2 batches with a status for
// every failed operation, and lookups that create nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { mkdtempSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Browser, uid } from "./support/people.mjs";
import { SECRETS, api, adminGet } from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });

async function workerWith(options) {
  return another(options);
}

const op = (id, name) => ({ type: "person", identifiers: { id }, action: "event", name });

test("v2 batch: over 100 operations is a 400 naming batch and applies nothing; 100 run, in order per person", async () => {
  const id = uid("batch");
  const tooMany = Array.from({ length: 101 }, (_, i) => op(id, `e${i}`));
  const refused = await api(edge, "POST", "v2/batch", { batch: tooMany });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.errors[0].field, "batch");
  assert.match(refused.body.errors[0].message, /100/);
  assert.equal((await adminGet(edge, `people/${id}`)).status, 404, "nothing applied");

  // 100 operations over 10 people: identify each, then 9 events each.
  const people = Array.from({ length: 10 }, () => uid("bp"));
  const ops = [];
  for (let round = 0; round < 10; round++) {
    for (const p of people) {
      ops.push(round === 0
        ? { type: "person", identifiers: { id: p }, action: "identify", attributes: { round } }
        : op(p, `r${round}`));
    }
  }
  const ok = await api(edge, "POST", "v2/batch", { batch: ops });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  for (const p of people) {
    const evs = (await adminGet(edge, `people/${p}/activity?limit=100`)).body.events;
    assert.equal(evs.length, 9, `${p} has its 9 events`);
  }
});

test("v2 batch with storage down: 207 naming every operation, never a 5xx for the batch", async () => {
  const w = await workerWith({ durableObjects: false });
  const res = await api(w, "POST", "v2/batch", { batch: [op("a", "x"), { type: "nope" }, op("b", "y")] });
  assert.equal(res.status, 207);
  assert.deepEqual(res.body.errors.map((e) => [e.batch_index, e.reason]), [
    [0, "storage_unavailable"],
    [1, "invalid"],
    [2, "storage_unavailable"],
  ]);
});

test("rate limits: a visitor past its limit gets 429 with Retry-After; another visitor and pages are untouched", async () => {
  const w = await workerWith({
    ratelimits: {
      VISITOR_RATE_LIMIT: { simple: { limit: 5, period: 60 } },
      CLIENT_RATE_LIMIT: { simple: { limit: 1000, period: 60 } },
    },
  });
  const b = new Browser(w);
  await b.visit("/");
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await b.track(`t${i}`)).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429]);
  const limited = await b.track("again");
  assert.equal(limited.status, 429);
  assert.equal(limited.res.headers.get("retry-after"), "60");
  assert.equal(limited.json.errors[0].reason, "rate_limited");
  assert.equal((await b.visit("/")).status, 200, "pages are never limited");
  const other = new Browser(w);
  await other.visit("/");
  assert.equal((await other.track("fine")).status, 200, "another visitor is not limited");
  const recorded = (await adminGet(w, `visitors/${b.anon}/activity?limit=100`)).body.events;
  assert.equal(recorded.length, 5, "refused events were not stored");
});

test("rate limits: one address creating visitors is limited per address", async () => {
  const w = await workerWith({
    ratelimits: {
      VISITOR_RATE_LIMIT: { simple: { limit: 1000, period: 60 } },
      CLIENT_RATE_LIMIT: { simple: { limit: 10, period: 60 } },
    },
  });
  const statuses = [];
  for (let i = 0; i < 12; i++) {
    const res = await w.fetch("/_cio/page", { method: "POST", body: '{"name":"/p"}', headers: { "cf-connecting-ip": "203.0.113.9" } });
    statuses.push(res.status);
    await res.arrayBuffer();
  }
  assert.deepEqual(statuses.slice(0, 10), Array(10).fill(200));
  assert.deepEqual(statuses.slice(10), [429, 429]);
  const elsewhere = await w.fetch("/_cio/page", { method: "POST", body: '{"name":"/p"}', headers: { "cf-connecting-ip": "198.51.100.7" } });
  assert.equal(elsewhere.status, 200);
});

test("an anonymous visitor at 1,000 events gets 429 at_capacity for new ones; identifying moves all 1,000", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  for (let i = 0; i < 1000; i += 50) {
    const batch = [];
    for (let j = i; j < i + 50; j++) batch.push(b.track("e", {}, { id: `cap-${b.anon}-${j}` }));
    for (const r of await Promise.all(batch)) assert.equal(r.status, 200);
  }
  const refused = await b.track("one_more");
  assert.equal(refused.status, 429);
  assert.equal(refused.json.errors[0].reason, "at_capacity");
  assert.equal((await b.track("e", {}, { id: `cap-${b.anon}-0` })).status, 200, "a repeat is still a 200");
  const id = uid("capped");
  assert.equal((await b.identify({ id })).status, 200);
  // Read every page back through the cursor.
  let cursor;
  const seen = new Set();
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await adminGet(edge, `people/${id}/activity?limit=300${q}`);
    assert.equal(page.status, 200);
    for (const e of page.body.events) seen.add(e.id);
    cursor = page.body.cursor;
  } while (cursor);
  assert.equal(seen.size, 1000, "all 1,000 merged, each once");
  assert.equal((await b.track("after_identify")).status, 200);
});

test("activity pages stay under about 1 MB and a cursor walks them; a garbage cursor is a 400", async () => {
  const id = uid("big");
  await api(edge, "PUT", `v1/customers/${id}`, {});
  const pad = "x".repeat(90_000);
  for (let i = 0; i < 25; i++) {
    const res = await api(edge, "POST", `v1/customers/${id}/events`, { name: "big", id: `${id}-${i}`, data: { pad } });
    assert.equal(res.status, 200);
  }
  let cursor;
  let pages = 0;
  const seen = new Set();
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const res = await edge.fetch(`/_cio/admin/people/${id}/activity?limit=1000${q}`, {
      headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` },
    });
    const text = await res.text();
    assert.ok(text.length < 1.2 * 1024 * 1024, `page ${pages} is ${text.length} bytes`);
    const body = JSON.parse(text);
    for (const e of body.events) seen.add(e.id);
    cursor = body.cursor;
    pages++;
  } while (cursor);
  assert.ok(pages >= 2, `${pages} pages`);
  assert.equal(seen.size, 25);
  const bad = await adminGet(edge, `people/${id}/activity?cursor=garbage`);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errors[0].field, "cursor");
});

/// Objects holding data on disk. workerd opens an empty database file for
/// every object addressed; one that was never written stays a bare 4 KiB
/// header with an empty write-ahead log.
function objectsWithData(dir) {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) n += objectsWithData(p);
    else if (name.endsWith(".sqlite") && name !== "metadata.sqlite") {
      let wal = 0;
      try {
        wal = statSync(`${p}-wal`).size;
      } catch {}
      if (statSync(p).size > 4096 || wal > 0) n++;
    }
  }
  return n;
}

test("lookups create nothing: unknown _cio_id links and cio_ cookies leave no object on disk", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "cio-edge-do-"));
  const w = await workerWith({ persist: dir });
  const b = new Browser(w);
  await b.visit("/");
  await b.track("first"); // the visitor's own object
  const before = objectsWithData(dir);
  assert.equal(before, 1, "the visitor's object holds its event");
  for (let i = 0; i < 20; i++) {
    const random = crypto.randomUUID().replaceAll("-", "").slice(0, 20);
    assert.equal((await b.visit(`/?_cio_id=${random}`)).status, 200);
  }
  assert.equal(objectsWithData(dir), before, "no object per unknown link");
  for (let i = 0; i < 5; i++) {
    const random = crypto.randomUUID().replaceAll("-", "").slice(0, 20);
    const res = await w.fetch("/_cio/track", {
      method: "POST",
      body: JSON.stringify({ name: "with_fake_cookie" }),
      headers: { cookie: `_cioanonid=${b.anon}; _cioid=cio_${random}` },
    });
    assert.equal(res.status, 200);
  }
  assert.equal(objectsWithData(dir), before, "no person object for a made-up cio_id");
  const events = (await adminGet(w, `visitors/${b.anon}/activity`)).body.events;
  assert.equal(events.filter((e) => e.name === "with_fake_cookie").length, 5, "the events are the visitor's");
});
