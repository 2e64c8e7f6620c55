// Identify people (API.md sections 1-3, 5-7): browser endpoints, merges,
// links, reset, relationships, arrays and KV as a cache, through the built
// worker with real local KV and SQLite Durable Objects.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/worker.mjs";
import { startOrigin } from "./support/origin.mjs";
import { Browser, admin, person, activity, visitorActivity, eventually, uid, ADMIN_TOKEN } from "./support/people.mjs";

let origin;
let edge;
const others = [];

before(async () => {
  origin = await startOrigin();
  edge = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
});

after(async () => {
  await edge?.dispose();
  for (const w of others) await w.dispose();
  await origin?.close();
});

async function workerWith(vars, secrets = { ADMIN_TOKEN }) {
  const w = await startWorker({ originUrl: origin.url, vars, secrets });
  others.push(w);
  return w;
}

const names = (events) => events.map((e) => e.name).sort();

test("a visitor browses anonymously, then identifies: everything merges into the person", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  await b.visit("/pricing.html");
  const anon = b.anon;
  assert.ok(anon);
  assert.equal((await b.page("/pricing", { section: "top" })).status, 200);
  assert.deepEqual((await b.track("viewed_plan", { plan: "pro" })).json, { ok: true });
  assert.equal((await visitorActivity(edge, anon)).events.length, 2);

  const id = uid();
  const res = await b.identify({ id, email: `${id}@Example.com`, created_at: 1339438758, first_name: "Ada", plan_name: "premium" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { ok: true }, "no profile data in the answer");
  assert.equal(b.cioid, id);

  const p = (await person(edge, id)).body;
  assert.equal(p.id, id);
  assert.equal(p.email, `${id}@example.com`);
  assert.equal(p.created_at, 1339438758);
  assert.deepEqual(p.attributes, { first_name: "Ada", plan_name: "premium" });
  assert.deepEqual(p.relationships, []);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.match(p.cio_id, /^[0-9a-f]{20}$/);
  assert.equal(typeof p.updated_at, "number");
  assert.deepEqual((await person(edge, `${id}@example.com`)).body, p, "found by email");
  assert.deepEqual((await person(edge, `cio_${p.cio_id}`)).body, p, "found by cio_id");

  const events = await activity(edge, id);
  assert.deepEqual(names(events), ["/pricing", "viewed_plan"]);
  assert.ok(events.every((e) => e.anonymous_id === anon));
  assert.deepEqual(events.find((e) => e.name === "viewed_plan").data, { plan: "pro" });
  assert.deepEqual(await visitorActivity(edge, anon), { merged_into: p.cio_id, events: [] });

  // After identify, events land on the person; the proxy tells the origin.
  await b.track("after_identify");
  assert.ok((await activity(edge, id)).some((e) => e.name === "after_identify" && !e.anonymous_id));
  await b.visit("/account");
  assert.equal(origin.last().headers["x-cio-id"], id);
  assert.equal(origin.last().headers["x-cio-anon-id"], anon);
});

test("EDGE_PAGE_VIEWS: proxied HTML navigations are recorded and merge too", async () => {
  const w = await workerWith({ EDGE_PAGE_VIEWS: "true" });
  const b = new Browser(w);
  await b.visit("/");
  await b.visit("/pricing.html");
  const anon = b.anon;
  await eventually(async () => (await visitorActivity(w, anon)).events.length === 2, "two edge page views");
  const id = uid();
  await b.identify({ id });
  const events = await activity(w, id);
  assert.deepEqual(names(events), [`${w.url}/`, `${w.url}/pricing.html`].sort());
  assert.ok(events.every((e) => e.type === "page"));
  // Not for non-navigations.
  await b.post("track", { name: "x" });
  const res = await w.fetch("/echo", { headers: { accept: "application/json", cookie: b.jar.header() } });
  await res.text();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await activity(w, id)).filter((e) => e.type === "page").length, 2);
});

test("a second identify overwrites, adds and keeps the rest; cio_id and created_at stay", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.identify({ id, a: 1, b: "two", nested: { x: 1 } });
  const first = (await person(edge, id)).body;
  await b.identify({ id, b: "TWO", c: [3] });
  const second = (await person(edge, id)).body;
  assert.equal(second.cio_id, first.cio_id);
  assert.equal(second.created_at, first.created_at);
  assert.deepEqual(second.attributes, { a: 1, b: "TWO", c: [3], nested: { x: 1 } });
  assert.ok(second.updated_at >= first.updated_at);
});

test("email as id, mixed case, from two browsers: one person, id null, found lowercased", async () => {
  const local = uid("Mixed");
  const one = new Browser(edge);
  const two = new Browser(edge);
  await one.visit("/");
  await two.visit("/");
  assert.equal((await one.identify({ id: `${local}@Example.COM`, plan: "a" })).status, 200);
  assert.equal((await two.identify({ id: `${local.toUpperCase()}@EXAMPLE.com`, seats: 3 })).status, 200);
  const email = `${local.toLowerCase()}@example.com`;
  const p = (await person(edge, email)).body;
  assert.equal(p.id, null);
  assert.equal(p.email, email);
  assert.deepEqual(p.attributes, { plan: "a", seats: 3 });
  assert.deepEqual(p.anonymous_ids.sort(), [one.anon, two.anon].sort());
  assert.equal(one.cioid, email);
});

test("an email that belongs to another person: 409, nothing applied", async () => {
  const owner = new Browser(edge);
  const idA = uid();
  const email = `${uid("taken")}@example.com`;
  await owner.identify({ id: idA, email, keep: 1 });
  const other = new Browser(edge);
  await other.track("anon_event");
  const idB = uid();
  await other.identify({ id: idB, plan: "x" });
  const beforeA = (await person(edge, idA)).body;
  const beforeB = (await person(edge, idB)).body;
  const cookieBefore = other.jar.header();

  const res = await other.identify({ id: idB, email, plan: "changed", extra: true });
  assert.equal(res.status, 409);
  assert.equal(res.json.errors[0].field, "email");
  assert.equal(res.json.errors[0].reason, "conflict");
  assert.deepEqual((await person(edge, idA)).body, beforeA);
  assert.deepEqual((await person(edge, idB)).body, beforeB);
  assert.equal(other.jar.header(), cookieBefore, "no cookie changed");

  // A new id with that email is refused too (the email's person has an id).
  const third = new Browser(edge);
  const idC = uid();
  const r3 = await third.identify({ id: idC, email });
  assert.equal(r3.status, 409);
  assert.equal(r3.json.errors[0].field, "email");
  assert.equal((await person(edge, idC)).status, 404, "no person created");
  assert.equal(third.cioid, undefined);
});

test("a person created by email gets the id later (lead -> customer)", async () => {
  const email = `${uid("lead")}@example.com`;
  const lead = new Browser(edge);
  await lead.identify({ id: email, source: "webinar" });
  const before = (await person(edge, email)).body;
  const customer = new Browser(edge);
  const id = uid("cust");
  assert.equal((await customer.identify({ id, email, plan: "paid" })).status, 200);
  const after = (await person(edge, id)).body;
  assert.equal(after.cio_id, before.cio_id);
  assert.equal(after.id, id);
  assert.deepEqual(after.attributes, { source: "webinar", plan: "paid" });
});

test("_cio_id on a landing page identifies a fresh browser and merges its activity", async () => {
  const known = new Browser(edge);
  const id = uid();
  await known.identify({ id });
  const { cio_id } = (await person(edge, id)).body;

  const fresh = new Browser(edge);
  await fresh.visit("/");
  await fresh.track("before_click");
  const anon = fresh.anon;
  const res = await fresh.visit(`/landing?utm=x&_cio_id=${cio_id}`);
  assert.equal(res.status, 200);
  assert.equal(fresh.cioid, id);
  assert.equal(origin.last().headers["x-cio-id"], id);
  assert.equal(origin.last().url, `/landing?utm=x&_cio_id=${cio_id}`, "the query reaches the origin unchanged");
  const p = (await person(edge, id)).body;
  assert.ok(p.anonymous_ids.includes(anon));
  assert.ok((await activity(edge, id)).some((e) => e.name === "before_click"));

  // A person without id is named by email, else by cio_<id>.
  const email = `${uid("e")}@example.com`;
  await new Browser(edge).identify({ id: email });
  const byEmail = (await person(edge, email)).body;
  const visitor = new Browser(edge);
  await visitor.visit(`/?_cio_id=${byEmail.cio_id}`);
  assert.equal(visitor.cioid, email);
});

test("unknown or malformed _cio_id changes nothing; AUTO_IDENTIFY_LINKS=false ignores links", async () => {
  for (const value of ["ffffffffffffffffffff", "%3Cscript%3E", "a-b", ""]) {
    const b = new Browser(edge);
    const res = await b.visit(`/?_cio_id=${value}`);
    assert.equal(res.status, 200);
    assert.equal(b.cioid, undefined, value);
    assert.equal(origin.last().headers["x-cio-id"], undefined);
  }
  const off = await workerWith({ AUTO_IDENTIFY_LINKS: "false" });
  const id = uid();
  await new Browser(off).identify({ id });
  const { cio_id } = (await person(off, id)).body;
  const b = new Browser(off);
  await b.visit(`/?_cio_id=${cio_id}`);
  assert.equal(b.cioid, undefined);
});

test("reset clears _cioid and rotates the anonymous id; later events go to the new visitor", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.track("anon");
  await b.identify({ id });
  const oldAnon = b.anon;
  const before = await activity(edge, id);
  const res = await b.reset();
  assert.equal(res.status, 200);
  const cleared = res.res.headers.getSetCookie().find((c) => c.startsWith("_cioid="));
  assert.match(cleared, /Max-Age=0/);
  assert.equal(b.cioid, undefined);
  assert.notEqual(b.anon, oldAnon);
  await b.track("after_reset");
  assert.deepEqual(await activity(edge, id), before);
  assert.deepEqual(names((await visitorActivity(edge, b.anon)).events), ["after_reset"]);
});

test("identify as B after A from one browser: anonymous id rotated, no double merge", async () => {
  const b = new Browser(edge);
  await b.track("while_anonymous");
  const anon = b.anon;
  const idA = uid("A");
  const idB = uid("B");
  await b.identify({ id: idA });
  assert.equal(b.anon, anon, "no rotation for the first identify");
  await b.identify({ id: idA, again: true });
  assert.equal(b.anon, anon, "nor for identifying as the same person again");
  const aBefore = await activity(edge, idA);
  const res = await b.identify({ id: idB });
  assert.equal(res.status, 200);
  assert.equal(b.cioid, idB);
  assert.notEqual(b.anon, anon, "rotated");
  const pB = (await person(edge, idB)).body;
  assert.ok(!pB.anonymous_ids.includes(anon));
  assert.deepEqual(await activity(edge, idB), []);
  assert.deepEqual(await activity(edge, idA), aBefore);
  assert.deepEqual((await person(edge, idA)).body.anonymous_ids, [anon]);
});

test("arrays are kept by default and reshaped with USE_ARRAY_PARAMS=false", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.identify({ id, my_array: ["one", "two"], deep: { list: [[1], { x: [true] }] } });
  assert.deepEqual((await person(edge, id)).body.attributes, { my_array: ["one", "two"], deep: { list: [[1], { x: [true] }] } });

  const off = await workerWith({ USE_ARRAY_PARAMS: "false" });
  const c = new Browser(off);
  await c.identify({ id, my_array: ["one", "two"], deep: { list: [[1], { x: [true] }] } });
  await c.track("t", { items: ["a"] });
  assert.deepEqual((await person(off, id)).body.attributes, {
    my_array: { 0: "one", 1: "two" },
    deep: { list: { 0: { 0: 1 }, 1: { x: { 0: true } } } },
  });
  assert.deepEqual((await activity(off, id))[0].data, { items: { 0: "a" } });
});

test("relationships: add twice is one, delete and its alias remove, a bad action is 400", async () => {
  const b = new Browser(edge);
  const id = uid();
  const rel = (action, objectId, attrs) => ({
    id,
    cio_relationships: {
      action,
      relationships: [{ identifiers: { object_type_id: "1", object_id: objectId }, ...(attrs ? { relationship_attributes: attrs } : {}) }],
    },
  });
  await b.identify(rel("add_relationships", "acme", { role: "admin" }));
  await b.identify(rel("add_relationships", "acme"));
  await b.identify(rel("add_relationships", "globex"));
  assert.deepEqual((await person(edge, id)).body.relationships, [
    { object_type_id: "1", object_id: "acme", attributes: { role: "admin" } },
    { object_type_id: "1", object_id: "globex" },
  ]);
  await b.identify(rel("delete_relationships", "acme"));
  assert.deepEqual((await person(edge, id)).body.relationships.map((r) => r.object_id), ["globex"]);
  await b.identify(rel("remove_relationships", "globex"));
  assert.deepEqual((await person(edge, id)).body.relationships, []);
  const before = (await person(edge, id)).body;
  const bad = await b.identify({ ...rel("add_relationships", "x"), cio_relationships: { action: "befriend", relationships: [] } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.errors[0].field, "cio_relationships.action");
  assert.deepEqual((await person(edge, id)).body, before);
});

test("every limit of rule 9, on its own: 400 (413 for the body) naming the field, nothing changed", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.identify({ id, base: 1 });
  await b.track("seed");
  const snapshot = async () => [(await person(edge, id)).body, await activity(edge, id)];
  const before = await snapshot();
  const cases = [
    ["identify", { id: "x".repeat(151) }, 400, "id"],
    ["identify", { id, ["n".repeat(151)]: 1 }, 400, /^attributes\./],
    ["identify", { id, big: "v".repeat(1000) }, 400, "big"],
    ["identify", { id, ...Object.fromEntries(Array.from({ length: 301 }, (_, i) => [`a${i}`, i])) }, 400, "attributes"],
    ["track", { name: "" }, 400, "name"],
    ["track", { name: "n".repeat(101) }, 400, "name"],
    ["track", { name: "ok", data: { blob: "d".repeat(100_001) } }, 400, "data"],
    ["track", { name: "ok", data: "not-an-object" }, 400, "data"],
    ["page", { name: "p", data: { blob: "d".repeat(100_001) } }, 400, "data"],
    ["track", { name: "ok", pad: "p".repeat(256 * 1024) }, 413, undefined],
    ["identify", { id, pad: "p".repeat(256 * 1024) }, 413, undefined],
  ];
  for (const [endpoint, body, status, field] of cases) {
    const res = await b.post(endpoint, body);
    assert.equal(res.status, status, `${endpoint} ${JSON.stringify(body).slice(0, 60)}`);
    const error = res.json.errors[0];
    if (field instanceof RegExp) assert.match(error.field, field);
    else assert.equal(error.field, field);
    assert.ok(error.message);
  }
  assert.deepEqual(await snapshot(), before);

  // The 300-attribute cap across two identifies.
  await b.identify({ id, ...Object.fromEntries(Array.from({ length: 299 }, (_, i) => [`k${i}`, i])) });
  const full = (await person(edge, id)).body;
  assert.equal(Object.keys(full.attributes).length, 300);
  const over = await b.identify({ id, one_more: true });
  assert.equal(over.status, 400);
  assert.equal(over.json.errors[0].field, "attributes");
  assert.deepEqual((await person(edge, id)).body, full);
  assert.equal((await b.identify({ id, base: 2 })).status, 200, "overwriting stays within the cap");
});

test("malformed bodies to every endpoint: 400 JSON, and the worker keeps serving", async () => {
  const junk = Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x80, 0x22]);
  const bodies = ["{", "null", "[]", "42", '"text"', '{"id":{"a":1}}', '{"id":"x","created_at":"123"}', junk, ""];
  const b = new Browser(edge);
  for (const endpoint of ["identify", "track", "page"]) {
    for (const body of bodies) {
      const res = await b.post(endpoint, body);
      if (endpoint === "page" && (body === '{"id":{"a":1}}' || body === '{"id":"x","created_at":"123"}')) {
        // Those are valid page bodies (extra fields ignored) but have no name or Referer.
        assert.equal(res.status, 400);
        continue;
      }
      assert.equal(res.status, 400, `${endpoint} ${String(body)}`);
      assert.ok(Array.isArray(res.json.errors), "JSON error");
    }
  }
  const wrongMethod = await edge.fetch("/_cio/identify");
  assert.equal(wrongMethod.status, 405);
  assert.equal((await wrongMethod.json()).errors[0].reason, "method_not_allowed");
  const still = await new Browser(edge).identify({ id: uid() });
  assert.equal(still.status, 200);
  assert.equal((await edge.fetch("/html")).status, 200);
});

test("event dedup by id; timestamps kept; text/plain (sendBeacon) bodies accepted; page name from Referer", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.identify({ id });
  for (let i = 0; i < 3; i++) {
    assert.equal((await b.track("purchase", { n: i }, { id: "evt-1", timestamp: 1600000000 })).status, 200);
  }
  const beacon = await b.post("track", JSON.stringify({ name: "beacon" }), { "content-type": "text/plain;charset=UTF-8" });
  assert.equal(beacon.status, 200);
  const page = await b.post("page", {}, { referer: "https://site.example/from" });
  assert.equal(page.status, 200);
  const events = await activity(edge, id);
  const purchases = events.filter((e) => e.name === "purchase");
  assert.equal(purchases.length, 1);
  assert.equal(purchases[0].id, "evt-1");
  assert.equal(purchases[0].timestamp, 1600000000);
  assert.deepEqual(purchases[0].data, { n: 0 });
  assert.ok(events.some((e) => e.name === "beacon"));
  assert.ok(events.some((e) => e.type === "page" && e.name === "https://site.example/from"));
  const now = Date.now() / 1000;
  assert.ok(Math.abs(events.find((e) => e.name === "beacon").timestamp - now) < 60);
  assert.equal(events[0].name, "https://site.example/from", "newest first");
  assert.equal((await admin(edge, `people/${id}/activity?limit=1`)).body.events.length, 1);
  assert.equal((await admin(edge, `people/${id}/activity?limit=0`)).status, 400);
});

test("admin: 401 without or with a wrong token, 404 for nobody, 404 when no token is configured", async () => {
  assert.equal((await admin(edge, "people/someone", null)).status, 401);
  assert.equal((await admin(edge, "people/someone", "wrong")).status, 401);
  assert.equal((await admin(edge, `people/${uid()}`)).status, 404);
  const open = await workerWith({}, {});
  assert.equal((await admin(open, "people/someone")).status, 404);
  assert.equal((await admin(open, "people/someone", null)).status, 404);
});

test("KV is a cache: with every key deleted, admin reads, identify and track stay correct", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.track("pre");
  await b.identify({ id, email: `${id}@example.com`, v: 1 });
  await b.track("cached_path");
  const before = (await person(edge, id)).body;
  const kv = await edge.mf.getKVNamespace("CIO_KV");
  let cursor;
  let deleted = 0;
  do {
    const page = await kv.list({ cursor });
    for (const key of page.keys) {
      await kv.delete(key.name);
      deleted++;
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  assert.ok(deleted > 0, "there was something cached");
  assert.equal((await kv.list()).keys.length, 0);

  assert.deepEqual((await person(edge, id)).body, before);
  assert.deepEqual((await person(edge, `${id}@example.com`)).body, before);
  await b.track("after_wipe");
  assert.deepEqual(names(await activity(edge, id)), ["after_wipe", "cached_path", "pre"]);
  await b.identify({ id, v: 2 });
  const after = (await person(edge, id)).body;
  assert.equal(after.cio_id, before.cio_id);
  assert.equal(after.attributes.v, 2);
});

test("storage unbound: pages are still served with cookies, /_cio/ calls answer 503 JSON", async () => {
  const broken = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN }, durableObjects: false });
  others.push(broken);
  const b = new Browser(broken);
  const page = await b.visit("/html");
  assert.equal(page.status, 200);
  assert.ok(b.anon);
  const res = await b.identify({ id: uid() });
  assert.equal(res.status, 503);
  assert.equal(res.json.errors[0].reason, "storage_unavailable");
  assert.equal((await b.track("x")).status, 503);
  const link = await b.visit("/?_cio_id=abcdef0123456789abcd");
  assert.equal(link.status, 200, "a link click still serves the page");
  // Bad input is still the client's fault, not a 503.
  assert.equal((await b.post("identify", "{")).status, 400);
});
