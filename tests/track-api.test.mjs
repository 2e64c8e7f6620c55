// Customer.io Track API compatibility (API.md section 4): the real npm
// customerio-node client pointed at the worker, plus raw HTTP for the rules
// the client cannot express.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { TrackClient } from "customerio-node";
import { startWorker } from "./support/worker.mjs";
import { startOrigin } from "./support/origin.mjs";
import { Browser, admin, person, activity, eventually, uid, ADMIN_TOKEN } from "./support/people.mjs";

const SITE_ID = "site-test";
const API_KEY = "key-test";
const AUTH = `Basic ${Buffer.from(`${SITE_ID}:${API_KEY}`).toString("base64")}`;
const TRACK_HOST = "track.example.test";

let origin;
let edge;
let cio;

before(async () => {
  origin = await startOrigin();
  edge = await startWorker({
    originUrl: origin.url,
    vars: { TRACK_API_HOST: TRACK_HOST },
    secrets: { ADMIN_TOKEN, SITE_ID, API_KEY },
  });
  cio = new TrackClient(SITE_ID, API_KEY, { url: `${edge.url}/_cio/api/v1` });
});

after(async () => {
  await edge?.dispose();
  await origin?.close();
});

async function api(method, path, body, auth = AUTH) {
  const res = await edge.fetch(`/_cio/api/${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

test("customerio-node: identify creates, updates, and works by email and cio_", async () => {
  const id = uid("node");
  assert.deepEqual(await cio.identify(id, { email: `${id}@Example.com`, created_at: 1339438758, plan: "basic", keep: 1 }), {});
  let p = (await person(edge, id)).body;
  assert.equal(p.email, `${id}@example.com`);
  assert.equal(p.created_at, 1339438758);
  assert.deepEqual(p.attributes, { plan: "basic", keep: 1 });

  await cio.identify(id, { plan: "premium", added: true });
  p = (await person(edge, id)).body;
  assert.deepEqual(p.attributes, { plan: "premium", keep: 1, added: true });

  await cio.identify(`${id}@example.com`, { via_email: true });
  await cio.identify(`cio_${p.cio_id}`, { via_cio: true });
  const after = (await person(edge, id)).body;
  assert.equal(after.cio_id, p.cio_id);
  assert.equal(after.attributes.via_email, true);
  assert.equal(after.attributes.via_cio, true);

  const email = `${uid("byemail")}@example.com`;
  await cio.identify(email, { lead: true });
  const lead = (await person(edge, email)).body;
  assert.equal(lead.id, null);
  assert.equal(lead.email, email);
});

test("customerio-node: track, page views, anonymous events merged by anonymous_id", async () => {
  const id = uid("events");
  await cio.identify(id, {});
  await cio.track(id, { name: "purchase", data: { price: 23.45 } });
  await cio.trackPageView(id, "/pricing");
  const anon = `anon-${crypto.randomUUID()}`;
  await cio.trackAnonymous(anon, { name: "browsed", data: { step: 1 } });
  assert.deepEqual(await cio.identify(id, { anonymous_id: anon }), {});
  await cio.trackAnonymous(anon, { name: "late_anonymous", data: {} });

  const p = (await person(edge, id)).body;
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.ok(!("anonymous_id" in p.attributes));
  const events = await activity(edge, id);
  const byName = Object.fromEntries(events.map((e) => [e.name, e]));
  assert.equal(byName.purchase.type, "event");
  assert.deepEqual(byName.purchase.data, { price: 23.45 });
  assert.equal(byName["/pricing"].type, "page");
  assert.equal(byName.browsed.anonymous_id, anon);
  assert.ok(byName.late_anonymous, "an anonymous event after the identify lands on the person");
  assert.equal(events.length, 4);
});

test("customerio-node: destroy and mergeCustomers; wrong credentials are the client's 401", async () => {
  const gone = uid("gone");
  await cio.identify(gone, { email: `${gone}@example.com` });
  await cio.track(gone, { name: "x" });
  const old = (await person(edge, gone)).body;
  assert.deepEqual(await cio.destroy(gone), {});
  assert.equal((await person(edge, gone)).status, 404);
  await cio.identify(gone, {});
  const reborn = (await person(edge, gone)).body;
  assert.notEqual(reborn.cio_id, old.cio_id, "the identifiers were freed");
  assert.deepEqual(reborn.attributes, {});
  assert.equal(reborn.email, null);
  assert.deepEqual(await activity(edge, gone), []);

  const primary = uid("primary");
  const secondaryEmail = `${uid("secondary")}@example.com`;
  await cio.identify(primary, { plan: "primary-plan", only_primary: 1 });
  await cio.identify(secondaryEmail, {
    plan: "secondary-plan",
    only_secondary: 2,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] },
  });
  const anon = `anon-${crypto.randomUUID()}`;
  await cio.trackAnonymous(anon, { name: "secondary_anon" });
  await cio.identify(secondaryEmail, { anonymous_id: anon });
  await cio.track(secondaryEmail, { name: "secondary_event" });
  await cio.track(primary, { name: "primary_event" });
  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});

  const merged = (await person(edge, primary)).body;
  assert.deepEqual(merged.attributes, { plan: "primary-plan", only_primary: 1, only_secondary: 2 });
  assert.deepEqual(merged.relationships, [{ object_type_id: "1", object_id: "acme" }]);
  assert.deepEqual(merged.anonymous_ids, [anon]);
  assert.deepEqual((await activity(edge, primary)).map((e) => e.name).sort(), ["primary_event", "secondary_anon", "secondary_event"]);
  assert.equal((await person(edge, secondaryEmail)).status, 404);
  // Idempotent.
  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});
  assert.deepEqual((await person(edge, primary)).body.attributes, merged.attributes);
  assert.equal((await activity(edge, primary)).length, 3);
  // Released: the email can start a new person.
  await cio.identify(secondaryEmail, {});
  assert.notEqual((await person(edge, secondaryEmail)).body.cio_id, merged.cio_id);
  // The secondary's anonymous visitor now follows the primary.
  await cio.trackAnonymous(anon, { name: "after_merge" });
  assert.ok((await activity(edge, primary)).some((e) => e.name === "after_merge"));

  const wrong = new TrackClient(SITE_ID, "not-the-key", { url: `${edge.url}/_cio/api/v1` });
  await assert.rejects(wrong.identify(uid(), {}), (e) => e.statusCode === 401);
});

test("raw v1: auth, _update, conflicts, lead adoption, errors, limits", async () => {
  assert.equal((await api("PUT", `v1/customers/${uid()}`, {}, null)).status, 401);
  assert.equal((await api("PUT", `v1/customers/${uid()}`, {}, `Basic ${Buffer.from(`${SITE_ID}:x`).toString("base64")}`)).status, 401);

  const missing = uid("missing");
  const upd = await api("PUT", `v1/customers/${missing}`, { _update: true, a: 1 });
  assert.equal(upd.status, 404);
  assert.ok(Array.isArray(upd.body.meta.errors));
  assert.equal((await person(edge, missing)).status, 404);
  const present = uid("present");
  await api("PUT", `v1/customers/${present}`, { a: 1 });
  assert.equal((await api("PUT", `v1/customers/${present}`, { _update: true, b: 2 })).status, 200);
  assert.deepEqual((await person(edge, present)).body.attributes, { a: 1, b: 2 });

  // Path id and body email belong to two people: 409, nothing applied.
  const a = uid("a");
  const b = uid("b");
  await api("PUT", `v1/customers/${a}`, { email: `${a}@example.com` });
  await api("PUT", `v1/customers/${b}`, { email: `${b}@example.com`, v: 1 });
  const [beforeA, beforeB] = [(await person(edge, a)).body, (await person(edge, b)).body];
  const conflict = await api("PUT", `v1/customers/${b}`, { email: `${a}@example.com`, v: 2 });
  assert.equal(conflict.status, 409);
  assert.ok(conflict.body.meta.errors[0].length > 0);
  assert.deepEqual((await person(edge, a)).body, beforeA);
  assert.deepEqual((await person(edge, b)).body, beforeB);

  // Unknown path id with the email of a person created by email: that person gets the id.
  const email = `${uid("lead")}@example.com`;
  await api("PUT", `v1/customers/${email}`, { source: "ads" });
  const lead = (await person(edge, email)).body;
  const newId = uid("newid");
  assert.equal((await api("PUT", `v1/customers/${newId}`, { email, plan: "paid" })).status, 200);
  const adopted = (await person(edge, newId)).body;
  assert.equal(adopted.cio_id, lead.cio_id);
  assert.deepEqual(adopted.attributes, { source: "ads", plan: "paid" });
  // Path email with a body id gives the person that id.
  const e2 = `${uid("e2")}@example.com`;
  await api("PUT", `v1/customers/${e2}`, {});
  const id2 = uid("id2");
  await api("PUT", `v1/customers/${e2}`, { id: id2 });
  assert.equal((await person(edge, id2)).body.email, e2);

  const bad = await api("PUT", `v1/customers/${uid()}`, "{");
  assert.equal(bad.status, 400);
  assert.ok(Array.isArray(bad.body.meta.errors));
  assert.equal((await api("PUT", `v1/customers/${uid()}`, { created_at: "yesterday" })).status, 400);
  assert.equal((await api("PUT", `v1/customers/${uid()}`, { pad: "p".repeat(256 * 1024) })).status, 413);
  assert.equal((await api("POST", "v1/events", { name: "no-anon" })).status, 400);
  assert.equal((await api("POST", `v1/customers/${uid()}/events`, { name: "" })).status, 400);
  assert.equal((await api("GET", "v1/merge_customers")).status, 405);
  assert.equal((await api("POST", "v1/merge_customers", { primary: { id: "1", email: "a@b.co" }, secondary: { id: "2" } })).status, 400);
  assert.equal((await api("POST", "v1/merge_customers", { primary: { id: uid() }, secondary: { id: uid() } })).status, 200, "missing people: no-op");
});

test("raw v1 events: timestamps kept, id dedup, unknown id creates the person", async () => {
  const id = uid("ev");
  for (let i = 0; i < 2; i++) {
    assert.equal((await api("POST", `v1/customers/${id}/events`, { name: "signup", id: "ev-1", timestamp: 1500000000, data: { i } })).status, 200);
  }
  assert.equal((await api("POST", `v1/customers/${id}/events`, { name: "/docs", type: "page" })).status, 200);
  const events = await activity(edge, id);
  assert.equal(events.length, 2);
  const signup = events.find((e) => e.name === "signup");
  assert.equal(signup.timestamp, 1500000000);
  assert.deepEqual(signup.data, { i: 0 });
  assert.equal(events.find((e) => e.name === "/docs").type, "page");
  assert.equal((await person(edge, id)).body.id, id);
  assert.equal((await api("POST", `v1/customers/cio_ffffffffffffffffffff/events`, { name: "x" })).status, 404);
});

test("v2 entity and batch: every action; a bad operation among good ones is a 207", async () => {
  const id = uid("v2");
  const op = (action, extra = {}) => ({ type: "person", identifiers: { id }, action, ...extra });
  assert.equal((await api("POST", "v2/entity", op("identify", { attributes: { plan: "a" } }))).status, 200);
  assert.equal((await api("POST", "v2/entity", op("event", { name: "bought", attributes: { sku: 1 } }))).status, 200);
  assert.equal((await api("POST", "v2/entity", op("page", { name: "/home" }))).status, 200);
  assert.equal((await api("POST", "v2/entity", op("add_relationships", { cio_relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] }))).status, 200);
  let p = (await person(edge, id)).body;
  assert.deepEqual(p.attributes, { plan: "a" });
  assert.deepEqual(p.relationships, [{ object_type_id: "1", object_id: "acme" }]);
  const events = await activity(edge, id);
  assert.deepEqual(events.map((e) => [e.type, e.name]).sort(), [["event", "bought"], ["page", "/home"]]);
  assert.deepEqual(events.find((e) => e.name === "bought").data, { sku: 1 });
  assert.equal((await api("POST", "v2/entity", op("delete_relationships", { cio_relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] }))).status, 200);
  assert.deepEqual((await person(edge, id)).body.relationships, []);

  const other = uid("v2other");
  const badOp = await api("POST", "v2/entity", { type: "person", identifiers: { id }, action: "teleport" });
  assert.equal(badOp.status, 400);
  assert.equal(badOp.body.errors[0].field, "action");

  const batch = await api("POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: other }, action: "identify", attributes: { n: 1 } },
      { type: "person", identifiers: { id: other }, action: "fly" },
      { type: "person", identifiers: { id: other }, action: "event", name: "in_batch" },
      { type: "person", identifiers: { id: other, email: "two@ids.example" }, action: "identify" },
      { type: "person", action: "merge", primary: { id }, secondary: { id: other } },
    ],
  });
  assert.equal(batch.status, 207);
  assert.deepEqual(batch.body.errors.map((e) => e.batch_index), [1, 3]);
  assert.equal(batch.body.errors[0].field, "action");
  p = (await person(edge, id)).body;
  assert.deepEqual(p.attributes, { plan: "a", n: 1 }, "merged: the primary took what it lacked");
  assert.ok((await activity(edge, id)).some((e) => e.name === "in_batch"));
  assert.equal((await person(edge, other)).status, 404);

  assert.equal((await api("POST", "v2/batch", { batch: [op("identify", { attributes: { z: 1 } })] })).status, 200);
  assert.equal((await api("POST", "v2/entity", op("delete"))).status, 200);
  assert.equal((await person(edge, id)).status, 404);
});

test("the site's /api/ paths stay the site's; TRACK_API_HOST serves the API at /api/", async () => {
  const res = await edge.fetch("/api/v1/customers/x", { method: "PUT", body: "site body", headers: { authorization: AUTH } });
  assert.equal(await res.text(), "ok PUT /api/v1/customers/x");
  assert.equal(origin.last().body.toString(), "site body");

  const id = uid("host");
  const onHost = await edge.dispatch(`http://${TRACK_HOST}/api/v1/customers/${id}`, {
    method: "PUT",
    headers: { authorization: AUTH, "content-type": "application/json" },
    body: JSON.stringify({ from_host: true }),
  });
  assert.equal(onHost.status, 200);
  assert.deepEqual(await onHost.json(), {});
  assert.equal((await person(edge, id)).body.attributes.from_host, true);
  const before = origin.requests.length;
  const elsewhere = await edge.dispatch(`http://www.example.test/api/v1/customers/${id}`, { method: "PUT", body: "{}" });
  assert.equal(await elsewhere.text(), `ok PUT /api/v1/customers/${id}`);
  assert.equal(origin.requests.length, before + 1);
});

test("no SITE_ID/API_KEY configured: the API answers 404, never open", async () => {
  const closed = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
  try {
    const res = await closed.fetch(`/_cio/api/v1/customers/${uid()}`, { method: "PUT", body: "{}", headers: { authorization: AUTH } });
    assert.equal(res.status, 404);
    assert.ok(Array.isArray((await res.json()).meta.errors));
  } finally {
    await closed.dispose();
  }
});

test("100 simultaneous PUTs and browser identifies for one new id make one person", async () => {
  const id = uid("together");
  const requests = [];
  for (let i = 0; i < 50; i++) {
    requests.push(api("PUT", `v1/customers/${id}`, { [`api_${i}`]: i }));
    requests.push(new Browser(edge).identify({ id, [`browser_${i}`]: i }));
  }
  const results = await Promise.all(requests);
  assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
  const p = (await person(edge, id)).body;
  assert.equal(Object.keys(p.attributes).length, 100, "every call applied to the one person");
  assert.equal(p.anonymous_ids.length, 50);
  const listed = await eventually(async () => {
    const all = [];
    let cursor = null;
    do {
      const page = (await admin(edge, `people?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`)).body;
      all.push(...page.people);
      cursor = page.cursor;
    } while (cursor);
    const mine = all.filter((x) => x.id === id);
    return mine.length > 0 && mine;
  }, "the person in the listing");
  console.log(`api+browser race: ${results.length} calls -> ${listed.length} person listed (${p.cio_id})`);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].cio_id, p.cio_id);
});

test("admin people listing pages with a cursor; export streams NDJSON", async () => {
  const lister = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN, SITE_ID, API_KEY } });
  try {
    const ids = Array.from({ length: 5 }, () => uid("list"));
    for (const id of ids) {
      const res = await lister.fetch(`/_cio/api/v1/customers/${id}`, { method: "PUT", body: "{}", headers: { authorization: AUTH } });
      assert.equal(res.status, 200);
    }
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const page = (await admin(lister, `people?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`)).body;
      assert.ok(page.people.length <= 2);
      seen.push(...page.people.map((p) => p.id));
      cursor = page.cursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen.sort(), [...ids].sort());
    assert.equal(pages, 3);
    const res = await lister.fetch("/_cio/admin/export", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.match(res.headers.get("content-type"), /application\/x-ndjson/);
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((p) => p.id).sort(), [...ids].sort());
    assert.ok(lines.every((p) => p.cio_id && Array.isArray(p.anonymous_ids)));
  } finally {
    await lister.dispose();
  }
});
