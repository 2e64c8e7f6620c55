// Customer.io Track API compatibility (API.md sections 4, 5, 6): the real npm
// customerio-node client pointed at the worker, raw HTTP for the rules the
// client cannot express, every result read back through the admin API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { TrackClient } from "customerio-node";
import { startWorker } from "./support/worker.mjs";
import { startOrigin } from "./support/origin.mjs";
import { Browser, eventually, uid } from "./support/people.mjs";

const SITE_ID = "site-test";
const API_KEY = "key-test";
const ADMIN_TOKEN = "admin-test";
const SECRETS = { SITE_ID, API_KEY, ADMIN_TOKEN };
const basic = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
const AUTH = basic(SITE_ID, API_KEY);
const TRACK_HOST = "track.example.test";

let origin;
let edge;
let cio;

before(async () => {
  origin = await startOrigin();
  edge = await startWorker({ originUrl: origin.url, secrets: SECRETS });
  cio = new TrackClient(SITE_ID, API_KEY, { url: `${edge.url}/_cio/api/v1` });
});

after(async () => {
  await edge?.dispose();
  await origin?.close();
});

const now = () => Math.floor(Date.now() / 1000);
const email = (prefix) => `${uid(prefix)}@example.com`;

function parse(text) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return { unparsed: text };
  }
}

/// A Track API call over real HTTP; `path` is relative to `/_cio/api/`.
async function api(method, path, body, { auth = AUTH, worker = edge } = {}) {
  const res = await worker.fetch(`/_cio/api/${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: parse(await res.text()) };
}

async function adminGet(path, { worker = edge, token = ADMIN_TOKEN } = {}) {
  const res = await worker.fetch(`/_cio/admin/${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/// The admin view of a person: `{status, body}`.
async function person(identifier, worker = edge) {
  const res = await adminGet(`people/${encodeURIComponent(identifier)}`, { worker });
  return { status: res.status, body: parse(res.text) };
}

/// The person's profile, failing when there is none.
async function profile(identifier, worker = edge) {
  const res = await person(identifier, worker);
  assert.equal(res.status, 200, `person ${identifier} should exist, got ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function activity(identifier, worker = edge) {
  const res = await adminGet(`people/${encodeURIComponent(identifier)}/activity?limit=1000`, { worker });
  return { status: res.status, events: parse(res.text)?.events };
}

async function events(identifier, worker = edge) {
  const res = await activity(identifier, worker);
  assert.equal(res.status, 200, `activity of ${identifier} should exist, got ${res.status}`);
  return res.events;
}

/// Every person of the KV listing, following the cursor.
async function listAll(worker = edge, limit = 1000) {
  const people = [];
  let cursor = null;
  let pages = 0;
  do {
    const q = `people?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const res = await adminGet(q, { worker });
    assert.equal(res.status, 200, `listing answered ${res.status} ${res.text}`);
    const page = JSON.parse(res.text);
    assert.ok(Array.isArray(page.people));
    assert.ok(page.people.length <= limit, `a page of ${page.people.length} over limit ${limit}`);
    assert.ok(page.cursor === null || typeof page.cursor === "string");
    people.push(...page.people);
    cursor = page.cursor;
    pages++;
    assert.ok(pages < 1000, "the cursor never ends");
  } while (cursor);
  return { people, pages };
}

const sortedNames = (evs) => evs.map((e) => e.name).sort();

function assertV1Error(res, status) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`);
  assert.ok(Array.isArray(res.body?.meta?.errors), `v1 error shape: ${JSON.stringify(res.body)}`);
  assert.ok(res.body.meta.errors.length > 0);
  for (const e of res.body.meta.errors) assert.ok(typeof e === "string" && e.length > 0);
}

function assertV2Error(error) {
  assert.equal(typeof error.reason, "string", JSON.stringify(error));
  assert.ok(error.reason.length > 0);
  assert.equal(typeof error.message, "string", JSON.stringify(error));
  assert.ok(error.message.length > 0);
  if ("field" in error) assert.equal(typeof error.field, "string");
}

// ---------------------------------------------------------------------------
// The official client

test("customerio-node identify: create, overwrite/add/keep, by email, by cio_<id>, arrays, relationships", async () => {
  const id = uid("node");
  const mail = email("node");
  const t0 = now();
  assert.equal((await person(id)).status, 404);

  assert.deepEqual(
    await cio.identify(id, { email: mail, created_at: 1339438758, plan: "basic", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] } }),
    {},
  );
  const created = await profile(id);
  assert.equal(created.id, id);
  assert.equal(created.email, mail);
  assert.equal(created.created_at, 1339438758, "created_at stored as sent");
  assert.deepEqual(created.attributes, { plan: "basic", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] } });
  assert.deepEqual(created.relationships, []);
  assert.deepEqual(created.anonymous_ids, []);
  assert.equal(typeof created.cio_id, "string");
  assert.ok(created.cio_id.length > 0);
  assert.ok(created.updated_at >= t0 && created.updated_at <= now() + 1, `updated_at ${created.updated_at}`);

  // Overwrite one, add one, keep the rest.
  await cio.identify(id, { plan: "premium", added: true });
  const updated = await profile(id);
  assert.equal(updated.cio_id, created.cio_id);
  assert.equal(updated.created_at, 1339438758);
  assert.deepEqual(updated.attributes, { plan: "premium", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] }, added: true });

  // By email (compared case-insensitively) and by cio_<cio_id>: the same person.
  await cio.identify(mail.toUpperCase(), { via_email: true });
  await cio.identify(`cio_${created.cio_id}`, { via_cio: true });
  const same = await profile(id);
  assert.equal(same.cio_id, created.cio_id);
  assert.equal(same.id, id);
  assert.equal(same.email, mail);
  assert.equal(same.attributes.via_email, true);
  assert.equal(same.attributes.via_cio, true);
  assert.equal((await profile(mail)).cio_id, created.cio_id);
  assert.equal((await profile(`cio_${created.cio_id}`)).cio_id, created.cio_id);

  // An email as the identifier creates a person with that email and no id,
  // created now.
  const lead = email("lead");
  await cio.identify(lead, { source: "ads" });
  const leadProfile = await profile(lead);
  assert.ok(leadProfile.id === null || leadProfile.id === "", `a lead has no id, got ${JSON.stringify(leadProfile.id)}`);
  assert.equal(leadProfile.email, lead);
  assert.notEqual(leadProfile.cio_id, created.cio_id);
  assert.deepEqual(leadProfile.attributes, { source: "ads" });
  assert.ok(leadProfile.created_at >= t0 && leadProfile.created_at <= now() + 1, `default created_at ${leadProfile.created_at}`);

  // cio_relationships: add (idempotent on the pair, with attributes), delete.
  const rel = (object_id, relationship_attributes) => ({
    identifiers: { object_type_id: "1", object_id },
    ...(relationship_attributes ? { relationship_attributes } : {}),
  });
  await cio.identify(id, { cio_relationships: { action: "add_relationships", relationships: [rel("acme", { role: "admin" }), rel("globex")] } });
  await cio.identify(id, { cio_relationships: { action: "add_relationships", relationships: [rel("acme", { role: "admin" })] } });
  let withRels = await profile(id);
  assert.ok(!("cio_relationships" in withRels.attributes));
  const byObject = Object.fromEntries(withRels.relationships.map((r) => [r.object_id, r]));
  assert.equal(withRels.relationships.length, 2, JSON.stringify(withRels.relationships));
  assert.equal(byObject.acme.object_type_id, "1");
  assert.deepEqual(byObject.acme.attributes, { role: "admin" });
  assert.equal(byObject.globex.object_type_id, "1");
  await cio.identify(id, { cio_relationships: { action: "delete_relationships", relationships: [rel("acme")] } });
  withRels = await profile(id);
  assert.deepEqual(withRels.relationships.map((r) => r.object_id), ["globex"]);
});

test("customerio-node track, trackPageView, trackAnonymous merged by identify's anonymous_id", async () => {
  const id = uid("events");
  const t0 = now();
  await cio.identify(id, {});
  assert.deepEqual(await cio.track(id, { name: "purchase", data: { price: 23.45, items: ["x", "y"] }, timestamp: 1700000100 }), {});
  await cio.track(id, { name: "older", timestamp: 1700000000 });
  // The same event id twice: recorded once, the first one kept.
  await cio.track(id, { name: "deduped", id: "evt-1", data: { n: 1 }, timestamp: 1700000050 });
  await cio.track(id, { name: "deduped", id: "evt-1", data: { n: 2 }, timestamp: 1700000050 });
  assert.deepEqual(await cio.trackPageView(id, "/pricing"), {});

  const anon = `anon-${crypto.randomUUID()}`;
  assert.deepEqual(await cio.trackAnonymous(anon, { name: "browsed", data: { step: 1 }, timestamp: 1700000200 }), {});
  // Not on the person before the identify.
  assert.ok(!(await events(id)).some((e) => e.name === "browsed"));
  assert.deepEqual(await cio.identify(id, { anonymous_id: anon }), {});
  await cio.trackAnonymous(anon, { name: "late_anonymous", data: { after: true } });

  const p = await profile(id);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.ok(!("anonymous_id" in p.attributes), "anonymous_id is not an attribute");
  assert.deepEqual(p.attributes, {});

  const evs = await events(id);
  assert.deepEqual(sortedNames(evs), ["/pricing", "browsed", "deduped", "late_anonymous", "older", "purchase"]);
  const byName = Object.fromEntries(evs.map((e) => [e.name, e]));
  assert.equal(byName.purchase.type, "event");
  assert.deepEqual(byName.purchase.data, { price: 23.45, items: ["x", "y"] });
  assert.equal(byName.purchase.timestamp, 1700000100);
  assert.equal(byName.older.timestamp, 1700000000);
  assert.deepEqual(byName.deduped.data, { n: 1 });
  assert.equal(byName.deduped.id, "evt-1");
  assert.equal(byName["/pricing"].type, "page");
  assert.ok(byName["/pricing"].timestamp >= t0, "no timestamp: the time received");
  assert.equal(byName.browsed.anonymous_id, anon);
  assert.deepEqual(byName.browsed.data, { step: 1 });
  assert.equal(byName.browsed.timestamp, 1700000200);
  assert.equal(byName.late_anonymous.anonymous_id, anon, "an anonymous event after the identify lands on the person");
  assert.deepEqual(byName.late_anonymous.data, { after: true });
  for (const e of evs) assert.equal(typeof e.id, "string");
  // Newest first.
  for (let i = 1; i < evs.length; i++) {
    assert.ok(evs[i - 1].timestamp >= evs[i].timestamp, `newest first: ${evs.map((e) => `${e.name}@${e.timestamp}`).join(", ")}`);
  }
  assert.deepEqual(
    evs.filter((e) => e.timestamp < t0).map((e) => e.name),
    ["browsed", "purchase", "deduped", "older"],
  );
});

test("customerio-node destroy: person, events and relationships gone, identifiers freed", async () => {
  const gone = uid("gone");
  const mail = email("gone");
  const anon = `anon-${crypto.randomUUID()}`;
  await cio.trackAnonymous(anon, { name: "anon_before" });
  await cio.identify(gone, {
    email: mail,
    plan: "old",
    anonymous_id: anon,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] },
  });
  await cio.track(gone, { name: "x" });
  const old = await profile(gone);
  assert.equal(old.relationships.length, 1);
  assert.equal((await events(gone)).length, 2);

  assert.deepEqual(await cio.destroy(gone), {});
  for (const identifier of [gone, mail, `cio_${old.cio_id}`]) {
    assert.equal((await person(identifier)).status, 404, `${identifier} is gone`);
  }
  assert.equal((await activity(gone)).status, 404, "activity by id is gone");
  assert.equal((await activity(mail)).status, 404, "activity by email is gone");
  // By cio_<id> the activity read answers 404 or an empty list; either way no event is left.
  const byCio = await activity(`cio_${old.cio_id}`);
  assert.ok(byCio.status === 404 || (byCio.status === 200 && byCio.events.length === 0), JSON.stringify(byCio));

  // The id starts a new person with nothing of the old one.
  await cio.identify(gone, {});
  const reborn = await profile(gone);
  assert.notEqual(reborn.cio_id, old.cio_id, "a new person");
  assert.deepEqual(reborn.attributes, {});
  assert.equal(reborn.email, null);
  assert.deepEqual(reborn.relationships, []);
  assert.deepEqual(reborn.anonymous_ids, []);
  assert.deepEqual(await events(gone), []);
  assert.equal((await person(`cio_${old.cio_id}`)).status, 404);

  // The email is free for someone else: no conflict.
  const other = uid("other");
  assert.deepEqual(await cio.identify(other, { email: mail }), {});
  assert.equal((await profile(mail)).id, other);
});

test("customerio-node mergeCustomers: the primary takes what it lacks, events, anonymous ids, relationships; idempotent", async () => {
  const primary = uid("primary");
  const secondaryEmail = email("secondary");
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
  const before = await profile(primary);
  const secondary = await profile(secondaryEmail);

  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});
  const merged = await profile(primary);
  assert.equal(merged.cio_id, before.cio_id);
  assert.equal(merged.id, primary);
  assert.deepEqual(merged.attributes, { plan: "primary-plan", only_primary: 1, only_secondary: 2 });
  assert.deepEqual(merged.relationships, [{ object_type_id: "1", object_id: "acme" }]);
  assert.deepEqual(merged.anonymous_ids, [anon]);
  const mergedEvents = await events(primary);
  assert.deepEqual(sortedNames(mergedEvents), ["primary_event", "secondary_anon", "secondary_event"]);
  assert.equal(mergedEvents.find((e) => e.name === "secondary_anon").anonymous_id, anon);
  // The primary had no email: it takes the secondary's (identity rule 11).
  assert.equal(merged.email, secondaryEmail);
  assert.equal((await profile(secondaryEmail)).cio_id, before.cio_id, "the email names the primary");
  assert.equal((await person(`cio_${secondary.cio_id}`)).status, 404, "the secondary is deleted");

  // Repeating the call: 200, nothing changed.
  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});
  assert.deepEqual(await profile(primary), merged);
  assert.deepEqual(await events(primary), mergedEvents);

  // The secondary's anonymous visitor now follows the primary.
  await cio.trackAnonymous(anon, { name: "after_merge" });
  assert.ok((await events(primary)).some((e) => e.name === "after_merge"));

  // The email went with the merge: identifying by it reaches the primary.
  await cio.identify(secondaryEmail, {});
  const byEmail = await profile(secondaryEmail);
  assert.equal(byEmail.cio_id, merged.cio_id);
  assert.notEqual(byEmail.cio_id, secondary.cio_id);

  // By cio_id on both sides.
  const a = uid("ma");
  const b = uid("mb");
  await cio.identify(a, { from_a: 1 });
  await cio.identify(b, { from_b: 1, shared: "b" });
  const [pa, pb] = [await profile(a), await profile(b)];
  assert.deepEqual(await cio.mergeCustomers("cio_id", pa.cio_id, "cio_id", pb.cio_id), {});
  assert.deepEqual((await profile(a)).attributes, { from_a: 1, from_b: 1, shared: "b" });
  assert.equal((await person(b)).status, 404);
  // Its id is free again.
  await cio.identify(b, {});
  assert.notEqual((await profile(b)).cio_id, pb.cio_id);
});

test("customerio-node: wrong credentials are the client's error with statusCode 401", async () => {
  for (const [site, key] of [[SITE_ID, "not-the-key"], ["other-site", API_KEY]]) {
    const wrong = new TrackClient(site, key, { url: `${edge.url}/_cio/api/v1` });
    const id = uid("nokey");
    await assert.rejects(wrong.identify(id, { a: 1 }), (e) => {
      assert.equal(e.statusCode, 401);
      return true;
    });
    await assert.rejects(wrong.track(id, { name: "x" }), (e) => e.statusCode === 401);
    await assert.rejects(wrong.mergeCustomers("id", id, "id", uid()), (e) => e.statusCode === 401);
    assert.equal((await person(id)).status, 404, "nothing written without the key");
  }
});

test("customerio-node v2: entity and batch", async () => {
  const id = uid("cv2");
  assert.deepEqual(await cio.entity({ type: "person", identifiers: { id }, action: "identify", attributes: { plan: "v2" } }), {});
  assert.deepEqual(
    await cio.batch([
      { type: "person", identifiers: { id }, action: "event", name: "batched", attributes: { k: "v" } },
      { type: "person", identifiers: { id }, action: "identify", attributes: { more: true } },
    ]),
    {},
  );
  assert.deepEqual((await profile(id)).attributes, { plan: "v2", more: true });
  const [ev] = await events(id);
  assert.equal(ev.name, "batched");
  assert.deepEqual(ev.data, { k: "v" });

  // A 207 is a 2xx: the client hands back the per-operation errors.
  const partial = await cio.batch([
    { type: "person", identifiers: { id }, action: "identify", attributes: { third: 3 } },
    { type: "person", identifiers: { id }, action: "no_such_action" },
  ]);
  assert.deepEqual(partial.errors.map((e) => e.batch_index), [1]);
  assert.equal((await profile(id)).attributes.third, 3);
});

// ---------------------------------------------------------------------------
// Raw HTTP, v1

test("raw v1: Basic auth; 401 with the v1 error shape", async () => {
  const cases = [
    null,
    basic(SITE_ID, "wrong"),
    basic("wrong", API_KEY),
    basic(SITE_ID, ""),
    `Bearer ${API_KEY}`,
    "Basic !!!not-base64",
  ];
  for (const auth of cases) {
    const id = uid("auth");
    const res = await api("PUT", `v1/customers/${id}`, { a: 1 }, { auth });
    assertV1Error(res, 401);
    assert.equal((await person(id)).status, 404);
  }
  const ok = uid("auth-ok");
  const res = await api("PUT", `v1/customers/${ok}`, { a: 1 });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.deepEqual((await profile(ok)).attributes, { a: 1 });
});

test("raw v1: _update never creates (404); updates an existing person", async () => {
  const missing = uid("missing");
  const upd = await api("PUT", `v1/customers/${missing}`, { _update: true, a: 1 });
  assertV1Error(upd, 404);
  assert.equal((await person(missing)).status, 404, "nothing created");
  const missingEmail = email("missing");
  assertV1Error(await api("PUT", `v1/customers/${missingEmail}`, { _update: true }), 404);
  assert.equal((await person(missingEmail)).status, 404);

  const present = uid("present");
  await api("PUT", `v1/customers/${present}`, { a: 1 });
  const res = await api("PUT", `v1/customers/${present}`, { _update: true, b: 2 });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.deepEqual((await profile(present)).attributes, { a: 1, b: 2 });
});

test("raw v1: path id and body email of two people is a 409 with nothing applied", async () => {
  const a = uid("a");
  const b = uid("b");
  const ea = email("a");
  const eb = email("b");
  assert.equal((await api("PUT", `v1/customers/${a}`, { email: ea, v: 1 })).status, 200);
  assert.equal((await api("PUT", `v1/customers/${b}`, { email: eb, v: 1 })).status, 200);
  const anon = `anon-${crypto.randomUUID()}`;
  assert.equal((await api("POST", "v1/events", { anonymous_id: anon, name: "waiting" })).status, 200);
  const [beforeA, beforeB] = [await profile(a), await profile(b)];
  const [eventsA, eventsB] = [await events(a), await events(b)];

  const conflict = await api("PUT", `v1/customers/${b}`, {
    email: ea,
    v: 2,
    new_attr: true,
    anonymous_id: anon,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "x" } }] },
  });
  assertV1Error(conflict, 409);
  assert.deepEqual(await profile(a), beforeA, "a unchanged");
  assert.deepEqual(await profile(b), beforeB, "b unchanged");
  assert.deepEqual(await events(a), eventsA);
  assert.deepEqual(await events(b), eventsB, "the anonymous visitor was not merged");

  // An unknown path id with the email of a person who has an id: also a
  // conflict (rule 5), and no person is created.
  const c = uid("c");
  assertV1Error(await api("PUT", `v1/customers/${c}`, { email: ea, v: 3 }), 409);
  assert.equal((await person(c)).status, 404);
  assert.deepEqual(await profile(a), beforeA);

  // The visitor is still free: it merges into b when b identifies with it.
  assert.equal((await api("PUT", `v1/customers/${b}`, { anonymous_id: anon })).status, 200);
  assert.ok((await events(b)).some((e) => e.name === "waiting"));
});

test("raw v1: an unknown path id adopts the lead created by its email; a path email with a body id", async () => {
  const mail = email("lead");
  await api("PUT", `v1/customers/${mail}`, { source: "ads" });
  const lead = await profile(mail);
  const newId = uid("newid");
  const res = await api("PUT", `v1/customers/${newId}`, { email: mail, plan: "paid" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const adopted = await profile(newId);
  assert.equal(adopted.cio_id, lead.cio_id, "no new person");
  assert.equal(adopted.id, newId);
  assert.equal(adopted.email, mail);
  assert.deepEqual(adopted.attributes, { source: "ads", plan: "paid" });
  assert.equal((await profile(mail)).cio_id, lead.cio_id);

  const e2 = email("e2");
  await api("PUT", `v1/customers/${e2}`, { x: 1 });
  const before = await profile(e2);
  const id2 = uid("id2");
  assert.equal((await api("PUT", `v1/customers/${e2}`, { id: id2 })).status, 200);
  const got = await profile(id2);
  assert.equal(got.cio_id, before.cio_id);
  assert.equal(got.id, id2);
  assert.equal(got.email, e2);
  assert.deepEqual(got.attributes, { x: 1 });
});

test("raw v1: bad bodies are 400 with the v1 error shape; over 256 KiB is 413; nothing written", async () => {
  const bad = [
    "{",
    "[1,2]",
    '"a string"',
    JSON.stringify({ created_at: "yesterday" }),
    JSON.stringify({ ["k".repeat(151)]: 1 }),
    JSON.stringify({ big: "v".repeat(1001) }),
  ];
  for (const body of bad) {
    const id = uid("bad");
    const res = await api("PUT", `v1/customers/${id}`, body);
    assertV1Error(res, 400);
    assert.equal((await person(id)).status, 404, `nothing created for ${body.slice(0, 40)}`);
  }
  assertV1Error(await api("PUT", `v1/customers/${"i".repeat(151)}`, {}), 400);

  const big = uid("big");
  const tooLarge = await api("PUT", `v1/customers/${big}`, { pad: "p".repeat(256 * 1024) });
  assertV1Error(tooLarge, 413);
  assert.equal((await person(big)).status, 404);
  // Just under the limit is read (and then judged by the attribute limits).
  const fine = uid("fine");
  const many = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`a${i}`, "x".repeat(900)]));
  assert.ok(JSON.stringify(many).length < 256 * 1024);
  assert.equal((await api("PUT", `v1/customers/${fine}`, many)).status, 200);
  assert.equal(Object.keys((await profile(fine)).attributes).length, 200);

  const evId = uid("ev");
  assertV1Error(await api("POST", "v1/events", { name: "no-anon" }), 400);
  assertV1Error(await api("POST", `v1/customers/${evId}/events`, { name: "" }), 400);
  assertV1Error(await api("POST", `v1/customers/${evId}/events`, { data: {} }), 400);
  assertV1Error(await api("POST", `v1/customers/${evId}/events`, { name: "n".repeat(101) }), 400);
  assertV1Error(await api("POST", `v1/customers/${evId}/events`, { name: "big", data: { s: "d".repeat(100_001) } }), 400);
  assert.equal((await person(evId)).status, 404, "a rejected event creates nobody");
  assertV1Error(await api("GET", "v1/merge_customers"), 405);
});

test("raw v1 events: unknown id or email creates the person; id dedups; timestamp and type kept", async () => {
  const id = uid("ev");
  for (let i = 0; i < 2; i++) {
    const res = await api("POST", `v1/customers/${id}/events`, { name: "signup", id: "ev-1", timestamp: 1500000000, data: { i } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {});
  }
  assert.equal((await api("POST", `v1/customers/${id}/events`, { name: "/docs", type: "page" })).status, 200);
  const evs = await events(id);
  assert.equal(evs.length, 2);
  const signup = evs.find((e) => e.name === "signup");
  assert.equal(signup.timestamp, 1500000000);
  assert.equal(signup.type, "event");
  assert.equal(signup.id, "ev-1");
  assert.deepEqual(signup.data, { i: 0 });
  assert.equal(evs.find((e) => e.name === "/docs").type, "page");
  assert.equal((await profile(id)).id, id);

  const mail = email("evmail");
  assert.equal((await api("POST", `v1/customers/${mail}/events`, { name: "clicked" })).status, 200);
  const byEmail = await profile(mail);
  assert.equal(byEmail.email, mail);
  assert.ok(!byEmail.id);
  assert.deepEqual(sortedNames(await events(mail)), ["clicked"]);

  assertV1Error(await api("POST", `v1/customers/cio_ffffffffffffffffffff/events`, { name: "x" }), 404);
});

test("raw v1: anonymous events merge on PUT with anonymous_id, later ones are forwarded", async () => {
  const anon = `anon-${crypto.randomUUID()}`;
  assert.equal((await api("POST", "v1/events", { anonymous_id: anon, name: "viewed", data: { p: 1 }, timestamp: 1600000000 })).status, 200);
  assert.equal((await api("POST", "v1/events", { anonymous_id: anon, name: "/landing", type: "page", id: "pv-1" })).status, 200);
  assert.equal((await api("POST", "v1/events", { anonymous_id: anon, name: "/landing", type: "page", id: "pv-1" })).status, 200);
  const id = uid("anonmerge");
  const res = await api("PUT", `v1/customers/${id}`, { anonymous_id: anon, plan: "x" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const p = await profile(id);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.deepEqual(p.attributes, { plan: "x" });
  assert.equal((await api("POST", "v1/events", { anonymous_id: anon, name: "later" })).status, 200);
  const evs = await events(id);
  assert.deepEqual(sortedNames(evs), ["/landing", "later", "viewed"]);
  for (const e of evs) assert.equal(e.anonymous_id, anon);
  assert.equal(evs.find((e) => e.name === "viewed").timestamp, 1600000000);
  assert.equal(evs.find((e) => e.name === "/landing").type, "page");
});

test("raw v1 merge_customers: identifier validation, missing sides, idempotence, identifiers freed", async () => {
  const merge = (primary, secondary) => api("POST", "v1/merge_customers", { primary, secondary });
  const p = uid("mp");
  const s = uid("ms");
  const se = email("ms");
  await api("PUT", `v1/customers/${p}`, { own: "p", shared: "p" });
  await api("PUT", `v1/customers/${s}`, { email: se, own_s: "s", shared: "s" });
  await api("POST", `v1/customers/${s}/events`, { name: "s_event" });
  const [beforeP, beforeS] = [await profile(p), await profile(s)];

  // Exactly one identifier per side.
  for (const [primary, secondary] of [
    [{ id: p, email: "x@example.com" }, { id: s }],
    [{ id: p }, { id: s, cio_id: beforeS.cio_id }],
    [{}, { id: s }],
    [{ id: p }, {}],
    [{ id: p }, undefined],
    [{ phone: "1" }, { id: s }],
  ]) {
    assertV1Error(await merge(primary, secondary), 400);
  }
  assert.deepEqual(await profile(p), beforeP);
  assert.deepEqual(await profile(s), beforeS);

  // A missing side is a 200 no-op.
  for (const [primary, secondary] of [
    [{ id: uid("nobody") }, { id: s }],
    [{ id: p }, { email: email("nobody") }],
    [{ id: uid("nobody") }, { id: uid("nobody") }],
  ]) {
    const res = await merge(primary, secondary);
    assert.equal(res.status, 200, JSON.stringify([primary, secondary, res.body]));
    assert.deepEqual(res.body, {});
  }
  assert.deepEqual(await profile(p), beforeP, "primary untouched by no-op merges");
  assert.deepEqual(await profile(s), beforeS, "secondary untouched by no-op merges");

  // The real merge, then the same call again changes nothing.
  const first = await merge({ id: p }, { email: se });
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, {});
  const merged = await profile(p);
  assert.deepEqual(merged.attributes, { own: "p", shared: "p", own_s: "s" });
  assert.deepEqual(sortedNames(await events(p)), ["s_event"]);
  assert.equal((await person(s)).status, 404);
  assert.equal(merged.email, se, "a primary without email takes the secondary's");
  assert.equal((await profile(se)).cio_id, beforeP.cio_id);
  const mergedEvents = await events(p);
  for (const again of [{ email: se }, { id: s }, { cio_id: beforeS.cio_id }]) {
    const res = await merge({ id: p }, again);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {});
  }
  assert.deepEqual(await profile(p), merged, "repeating the merge changed nothing");
  assert.deepEqual(await events(p), mergedEvents);

  // The secondary's id is free; its email stays the primary's.
  assert.equal((await api("PUT", `v1/customers/${s}`, { email: se })).status, 409);
  await api("PUT", `v1/customers/${s}`, {});
  const reborn = await profile(s);
  assert.notEqual(reborn.cio_id, beforeS.cio_id);
  assert.notEqual(reborn.cio_id, merged.cio_id);
  assert.deepEqual(reborn.attributes, {});
  assert.deepEqual(await events(s), []);
});

test("raw v1 DELETE frees the identifiers: the same id is a new person with none of the old", async () => {
  const id = uid("del");
  const mail = email("del");
  await api("PUT", `v1/customers/${id}`, {
    email: mail,
    old: true,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "2", object_id: "o" } }] },
  });
  await api("POST", `v1/customers/${id}/events`, { name: "old_event" });
  const old = await profile(id);
  const res = await api("DELETE", `v1/customers/${id}`);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.equal((await person(id)).status, 404);
  assert.equal((await person(mail)).status, 404);
  assert.equal((await activity(id)).status, 404);

  // Deleting by email and by cio_<id> works too.
  const byMail = email("delmail");
  await api("PUT", `v1/customers/${byMail}`, {});
  assert.equal((await api("DELETE", `v1/customers/${byMail}`)).status, 200);
  assert.equal((await person(byMail)).status, 404);
  const byCio = uid("delcio");
  await api("PUT", `v1/customers/${byCio}`, {});
  const cioId = (await profile(byCio)).cio_id;
  assert.equal((await api("DELETE", `v1/customers/cio_${cioId}`)).status, 200);
  assert.equal((await person(byCio)).status, 404);

  await api("PUT", `v1/customers/${id}`, { fresh: 1 });
  const reborn = await profile(id);
  assert.notEqual(reborn.cio_id, old.cio_id);
  assert.deepEqual(reborn.attributes, { fresh: 1 });
  assert.equal(reborn.email, null);
  assert.deepEqual(reborn.relationships, []);
  assert.deepEqual(await events(id), []);
  // The old email goes to whoever claims it.
  assert.equal((await api("PUT", `v1/customers/${id}`, { email: mail })).status, 200);
  assert.equal((await profile(mail)).cio_id, reborn.cio_id);
});

// ---------------------------------------------------------------------------
// Raw HTTP, v2

test("v2 entity: every action, read back; errors in the v2 shape", async () => {
  const id = uid("v2");
  const op = (action, extra = {}) => ({ type: "person", identifiers: { id }, action, ...extra });
  const entity = async (body) => {
    const res = await api("POST", "v2/entity", body);
    assert.equal(res.status, 200, `${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(res.body)}`);
    assert.deepEqual(res.body, {});
  };

  await entity(op("identify", { attributes: { plan: "a", created_at: 1400000000, tags: ["t"] } }));
  let p = await profile(id);
  assert.equal(p.id, id);
  assert.equal(p.created_at, 1400000000);
  assert.deepEqual(p.attributes, { plan: "a", tags: ["t"] });
  // Give it an email (v1) so it can be addressed by email below.
  assert.equal((await api("PUT", `v1/customers/${id}`, { email: `${id}@example.com`, tags: [] })).status, 200);
  p = await profile(id);
  assert.equal(p.email, `${id}@example.com`);

  await entity(op("event", { name: "bought", attributes: { sku: 1 }, timestamp: 1650000000, id: "v2-ev" }));
  await entity(op("event", { name: "bought", attributes: { sku: 2 }, timestamp: 1650000000, id: "v2-ev" }));
  await entity(op("page", { name: "/home", attributes: { ref: "x" } }));
  const evs = await events(id);
  assert.deepEqual(evs.map((e) => [e.type, e.name]).sort(), [["event", "bought"], ["page", "/home"]]);
  const bought = evs.find((e) => e.name === "bought");
  assert.deepEqual(bought.data, { sku: 1 });
  assert.equal(bought.timestamp, 1650000000);
  assert.equal(bought.id, "v2-ev");
  assert.deepEqual(evs.find((e) => e.name === "/home").data, { ref: "x" });

  const rel = (object_id, relationship_attributes) => ({
    identifiers: { object_type_id: "1", object_id },
    ...(relationship_attributes ? { relationship_attributes } : {}),
  });
  await entity(op("add_relationships", { cio_relationships: [rel("acme", { seat: 3 }), rel("globex")] }));
  p = await profile(id);
  assert.deepEqual(
    p.relationships.map((r) => r.object_id).sort(),
    ["acme", "globex"],
  );
  assert.deepEqual(p.relationships.find((r) => r.object_id === "acme").attributes, { seat: 3 });
  await entity(op("delete_relationships", { cio_relationships: [rel("acme")] }));
  assert.deepEqual((await profile(id)).relationships.map((r) => r.object_id), ["globex"]);

  // Identifiers by email and by cio_id address the same person.
  await entity({ type: "person", identifiers: { email: `${id}@example.com` }, action: "identify", attributes: { by_email: 1 } });
  await entity({ type: "person", identifiers: { cio_id: p.cio_id }, action: "identify", attributes: { by_cio: 1 } });
  assert.deepEqual((await profile(id)).attributes, { plan: "a", tags: [], by_email: 1, by_cio: 1 });

  // Merge as an entity operation.
  const other = uid("v2other");
  await entity({ type: "person", identifiers: { id: other }, action: "identify", attributes: { from_other: true, plan: "b" } });
  await entity({ type: "person", identifiers: { id: other }, action: "event", name: "other_event" });
  await entity({ type: "person", action: "merge", primary: { id }, secondary: { id: other } });
  assert.deepEqual((await profile(id)).attributes, { plan: "a", tags: [], by_email: 1, by_cio: 1, from_other: true });
  assert.ok((await events(id)).some((e) => e.name === "other_event"));
  assert.equal((await person(other)).status, 404);

  // Delete.
  const cioId = (await profile(id)).cio_id;
  await entity(op("delete"));
  assert.equal((await person(id)).status, 404);
  assert.equal((await person(`cio_${cioId}`)).status, 404);

  // Errors: {"errors":[{reason, field?, message}]}.
  for (const [body, field] of [
    [{ type: "person", identifiers: { id }, action: "teleport" }, "action"],
    [{ type: "person", identifiers: { id, email: "two@example.com" }, action: "identify" }, undefined],
    [{ type: "person", identifiers: {}, action: "identify" }, undefined],
    [{ type: "person", identifiers: { id }, action: "event" }, undefined],
    [{ type: "person", action: "merge", primary: { id, email: "x@example.com" }, secondary: { id: other } }, undefined],
  ]) {
    const res = await api("POST", "v2/entity", body);
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(res.body)}`);
    assert.ok(Array.isArray(res.body.errors) && res.body.errors.length === 1, JSON.stringify(res.body));
    assertV2Error(res.body.errors[0]);
    if (field) assert.equal(res.body.errors[0].field, field);
  }
  assert.equal((await person(id)).status, 404, "no rejected operation created anything");
  const bad = await api("POST", "v2/entity", "{");
  assert.equal(bad.status, 400);
  assertV2Error(bad.body.errors[0]);
  const unauth = await api("POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify" }, { auth: basic(SITE_ID, "x") });
  assert.equal(unauth.status, 401);
  assertV2Error(unauth.body.errors[0]);
  assert.equal((await person(id)).status, 404);
  const huge = await api("POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify", attributes: { pad: "p".repeat(256 * 1024) } });
  assert.equal(huge.status, 413);
  assertV2Error(huge.body.errors[0]);
});

test("v2 identify: an email in attributes is the person's email, as a v1 body's email is", async () => {
  const id = uid("v2mail");
  const mail = email("v2mail");
  const res = await api("POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify", attributes: { email: mail, plan: "x" } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const p = await profile(id);
  assert.deepEqual(p.attributes, { plan: "x" });
  assert.equal(p.email, mail, "the email was stored");
  assert.equal((await profile(mail)).cio_id, p.cio_id, "the person is found by its email");

  // And it is held to rule 5: another person's email is a 409, nothing applied.
  const other = uid("v2mail-other");
  await api("PUT", `v1/customers/${other}`, { keep: 1 });
  const before = await profile(other);
  const conflict = await api("POST", "v2/entity", { type: "person", identifiers: { id: other }, action: "identify", attributes: { email: mail, keep: 2 } });
  assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
  assertV2Error(conflict.body.errors[0]);
  assert.deepEqual(await profile(other), before);
});

test("v2 batch: all good is 200; one bad operation among good ones is a 207 naming it, the good ones applied", async () => {
  const a = uid("ba");
  const b = uid("bb");
  const doomed = uid("bdoomed");
  await api("PUT", `v1/customers/${doomed}`, { d: 1 });
  const good = await api("POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: a }, action: "identify", attributes: { n: 1 } },
      { type: "person", identifiers: { id: b }, action: "identify", attributes: { m: 1 } },
    ],
  });
  assert.equal(good.status, 200);
  assert.deepEqual(good.body, {});
  assert.deepEqual((await profile(a)).attributes, { n: 1 });
  assert.deepEqual((await profile(b)).attributes, { m: 1 });

  const res = await api("POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: a }, action: "identify", attributes: { n: 2, added: "yes" } },
      { type: "person", identifiers: { id: a }, action: "event", name: "in_batch", attributes: { q: 1 } },
      { type: "person", identifiers: { id: a }, action: "fly" },
      { type: "person", identifiers: { id: a }, action: "page", name: "/batched" },
      { type: "person", identifiers: { id: a }, action: "add_relationships", cio_relationships: [{ identifiers: { object_type_id: "3", object_id: "team" } }] },
      { type: "person", identifiers: { id: doomed }, action: "delete" },
      { type: "person", action: "merge", primary: { id: a }, secondary: { id: b } },
    ],
  });
  assert.equal(res.status, 207, JSON.stringify(res.body));
  assert.equal(res.body.errors.length, 1, JSON.stringify(res.body));
  assert.equal(res.body.errors[0].batch_index, 2);
  assert.equal(res.body.errors[0].field, "action");
  assertV2Error(res.body.errors[0]);

  const pa = await profile(a);
  assert.deepEqual(pa.attributes, { n: 2, added: "yes", m: 1 });
  assert.deepEqual(pa.relationships, [{ object_type_id: "3", object_id: "team" }]);
  const evs = await events(a);
  assert.deepEqual(evs.map((e) => [e.type, e.name]).sort(), [["event", "in_batch"], ["page", "/batched"]]);
  assert.deepEqual(evs.find((e) => e.name === "in_batch").data, { q: 1 });
  assert.equal((await person(doomed)).status, 404);
  assert.equal((await person(b)).status, 404);

  // Several bad ones: each named by its index, in order.
  const c = uid("bc");
  const several = await api("POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: c, email: "both@example.com" }, action: "identify" },
      { type: "person", identifiers: { id: c }, action: "identify", attributes: { ok: true } },
      { type: "person", identifiers: { id: c }, action: "event" },
      { type: "person", identifiers: { id: uid("absent") }, action: "identify", _update: true },
      "not an object",
    ],
  });
  assert.equal(several.status, 207, JSON.stringify(several.body));
  const indexes = several.body.errors.map((e) => e.batch_index);
  assert.ok(indexes.includes(0) && indexes.includes(2) && indexes.includes(4), JSON.stringify(several.body));
  assert.ok(!indexes.includes(1));
  assert.deepEqual(indexes, [...indexes].sort((x, y) => x - y));
  for (const e of several.body.errors) assertV2Error(e);
  assert.deepEqual((await profile(c)).attributes, { ok: true });

  const notBatch = await api("POST", "v2/batch", { batch: "nope" });
  assert.equal(notBatch.status, 400);
  assertV2Error(notBatch.body.errors[0]);
});

// ---------------------------------------------------------------------------
// Routing

test("the site's /api/ paths go to the origin untouched; TRACK_API_HOST serves the API at /api/", async () => {
  const siteBody = JSON.stringify({ site: "payload" });
  const sitePut = async (worker, url) => {
    const before = origin.requests.length;
    const res = await worker.dispatch(url, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json", "x-site": "1" },
    });
    const text = await res.text();
    assert.equal(origin.requests.length, before + 1, `${url} reached the origin`);
    const got = origin.requests.at(-1);
    return { res, text, got };
  };

  // No TRACK_API_HOST: /api/ is the site's everywhere.
  const plainX = uid("x");
  {
    const res = await edge.fetch(`/api/v1/customers/${plainX}`, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json" },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `ok PUT /api/v1/customers/${plainX}`);
    const got = origin.last();
    assert.equal(got.method, "PUT");
    assert.equal(got.url, `/api/v1/customers/${plainX}`);
    assert.equal(got.body.toString(), siteBody);
    assert.equal(got.headers.authorization, AUTH, "the site's own auth header passes untouched");
    const onTrackHost = await sitePut(edge, `http://${TRACK_HOST}/api/v1/customers/${plainX}`);
    assert.equal(onTrackHost.text, `ok PUT /api/v1/customers/${plainX}`);
    assert.equal((await person(plainX)).status, 404, "no person from a site path");
  }

  const hosted = await startWorker({ originUrl: origin.url, vars: { TRACK_API_HOST: TRACK_HOST }, secrets: SECRETS });
  try {
    // Normal host: still the site's.
    const x = uid("x");
    const res = await hosted.fetch(`/api/v1/customers/${x}`, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json", "x-site": "1" },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `ok PUT /api/v1/customers/${x}`);
    const got = origin.last();
    assert.equal(got.method, "PUT");
    assert.equal(got.url, `/api/v1/customers/${x}`);
    assert.equal(got.body.toString(), siteBody);
    assert.equal(got.headers.authorization, AUTH);
    assert.equal(got.headers["x-site"], "1");
    assert.equal((await person(x, hosted)).status, 404);

    // The track host: the API.
    const id = uid("host");
    const before = origin.requests.length;
    const onHost = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${id}`, {
      method: "PUT",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ from_host: true }),
    });
    assert.equal(onHost.status, 200);
    assert.deepEqual(await onHost.json(), {});
    assert.deepEqual((await profile(id, hosted)).attributes, { from_host: true });
    const event = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${id}/events`, {
      method: "POST",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ name: "via_host" }),
    });
    assert.equal(event.status, 200);
    await event.text();
    const v2 = await hosted.dispatch(`http://${TRACK_HOST}/api/v2/entity`, {
      method: "POST",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ type: "person", identifiers: { id }, action: "identify", attributes: { v2_host: 1 } }),
    });
    assert.equal(v2.status, 200);
    assert.deepEqual(await v2.json(), {});
    assert.deepEqual((await profile(id, hosted)).attributes, { from_host: true, v2_host: 1 });
    assert.deepEqual(sortedNames(await events(id, hosted)), ["via_host"]);
    const noAuth = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${uid()}`, { method: "PUT", body: "{}" });
    assert.equal(noAuth.status, 401);
    assert.ok(Array.isArray((await noAuth.json()).meta.errors));
    assert.equal(origin.requests.length, before, "the track host's API calls never reach the origin");

    // Another host: the site's.
    const elsewhere = await sitePut(hosted, `http://www.example.test/api/v1/customers/${id}`);
    assert.equal(elsewhere.text, `ok PUT /api/v1/customers/${id}`);
    assert.equal(elsewhere.got.url, `/api/v1/customers/${id}`);
    assert.equal(elsewhere.got.body.toString(), siteBody);
    assert.deepEqual((await profile(id, hosted)).attributes, { from_host: true, v2_host: 1 });

    // /_cio/api/ is served on every host.
    const reserved = await hosted.dispatch(`http://www.example.test/_cio/api/v1/customers/${id}`, {
      method: "PUT",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ via_reserved: true }),
    });
    assert.equal(reserved.status, 200);
    await reserved.text();
    assert.equal((await profile(id, hosted)).attributes.via_reserved, true);
  } finally {
    await hosted.dispose();
  }
});

test("no SITE_ID/API_KEY configured: the API answers 404, never open", async () => {
  const closed = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
  try {
    const id = uid("closed");
    for (const auth of [AUTH, null]) {
      const res = await api("PUT", `v1/customers/${id}`, { a: 1 }, { auth, worker: closed });
      assertV1Error(res, 404);
    }
    assert.equal((await person(id, closed)).status, 404);
  } finally {
    await closed.dispose();
  }
});

// ---------------------------------------------------------------------------
// Concurrency and listing

test("100 simultaneous API PUTs and browser identifies for one new id make exactly one person", async () => {
  const id = uid("together");
  const calls = [];
  for (let i = 0; i < 50; i++) {
    calls.push(api("PUT", `v1/customers/${id}`, { [`api_${i}`]: i }).then((r) => ({ kind: "api", ...r })));
    calls.push(new Browser(edge).identify({ id, [`browser_${i}`]: i }).then((r) => ({ kind: "browser", status: r.status, body: r.json })));
  }
  const results = await Promise.all(calls);
  const counts = {};
  for (const r of results) counts[`${r.kind} ${r.status}`] = (counts[`${r.kind} ${r.status}`] ?? 0) + 1;
  console.log(`race for one new id: ${JSON.stringify(counts)}`);
  assert.deepEqual(counts, { "api 200": 50, "browser 200": 50 });
  for (const r of results) assert.deepEqual(r.body, r.kind === "api" ? {} : { ok: true });

  const p = await profile(id);
  assert.equal(p.id, id);
  assert.equal(Object.keys(p.attributes).length, 100, "every call applied to the one person");
  assert.equal(p.anonymous_ids.length, 50, "every browser's visitor merged into it");

  const mine = await eventually(async () => {
    const { people } = await listAll();
    const found = people.filter((x) => x.id === id);
    return found.length > 0 && found;
  }, "the person in the listing", 5000);
  // Give the cache a moment more, then count again.
  await new Promise((r) => setTimeout(r, 300));
  const { people } = await listAll();
  const final = people.filter((x) => x.id === id);
  console.log(`listing: ${final.length} person(s) with id ${id} (cio_id ${p.cio_id}), first seen ${mine.length}`);
  assert.equal(mine.length, 1);
  assert.equal(final.length, 1);
  assert.equal(final[0].cio_id, p.cio_id);
  assert.equal(people.filter((x) => x.cio_id === p.cio_id).length, 1);
});

test("admin listing pages with limit=2 over 5 people following the cursor; export is NDJSON", async () => {
  const lister = await startWorker({ originUrl: origin.url, secrets: SECRETS });
  try {
    const ids = Array.from({ length: 5 }, () => uid("list"));
    for (const id of ids) {
      const res = await api("PUT", `v1/customers/${id}`, { n: ids.indexOf(id) }, { worker: lister });
      assert.equal(res.status, 200);
    }
    assert.equal((await adminGet("people?limit=2", { worker: lister, token: "wrong" })).status, 401);
    assert.equal((await adminGet("people?limit=2", { worker: lister, token: null })).status, 401);

    const { people, pages } = await eventually(async () => {
      const got = await listAll(lister, 2);
      return got.people.length >= 5 && got;
    }, "five people listed", 5000);
    const seen = people.map((p) => p.id);
    assert.deepEqual([...seen].sort(), [...ids].sort(), "each person exactly once");
    assert.equal(pages, 3);
    for (const p of people) {
      assert.equal(typeof p.cio_id, "string");
      assert.equal(p.attributes.n, ids.indexOf(p.id));
    }

    const res = await lister.fetch("/_cio/admin/export", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^application\/x-ndjson/);
    const text = await res.text();
    const lines = text.split("\n").filter((l) => l.length > 0);
    assert.equal(lines.length, 5, text);
    const exported = lines.map((l) => JSON.parse(l));
    assert.deepEqual(exported.map((p) => p.id).sort(), [...ids].sort());
    for (const p of exported) {
      assert.deepEqual(p, await profile(p.id, lister), "an export line is the person's admin view");
    }
    assert.equal((await lister.fetch("/_cio/admin/export")).status, 401);
  } finally {
    await lister.dispose();
  }
});
