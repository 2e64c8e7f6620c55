// Track API: raw HTTP against Track API v1: every rule and error the client cannot express.
// docs/API.md sections 4 to 7; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { uid } from "./support/people.mjs";
import {
  api, person, profile, activity, events, assertV1Error, sortedNames, email, basic, SITE_ID, API_KEY, SECRETS,
} from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });

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
    const res = await api(edge, "PUT", `v1/customers/${id}`, { a: 1 }, { auth });
    assertV1Error(res, 401);
    assert.equal((await person(edge, id)).status, 404);
  }
  const ok = uid("auth-ok");
  const res = await api(edge, "PUT", `v1/customers/${ok}`, { a: 1 });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.deepEqual((await profile(edge, ok)).attributes, { a: 1 });
});

test("raw v1: _update never creates (404); updates an existing person", async () => {
  const missing = uid("missing");
  const upd = await api(edge, "PUT", `v1/customers/${missing}`, { _update: true, a: 1 });
  assertV1Error(upd, 404);
  assert.equal((await person(edge, missing)).status, 404, "nothing created");
  const missingEmail = email("missing");
  assertV1Error(await api(edge, "PUT", `v1/customers/${missingEmail}`, { _update: true }), 404);
  assert.equal((await person(edge, missingEmail)).status, 404);

  const present = uid("present");
  await api(edge, "PUT", `v1/customers/${present}`, { a: 1 });
  const res = await api(edge, "PUT", `v1/customers/${present}`, { _update: true, b: 2 });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.deepEqual((await profile(edge, present)).attributes, { a: 1, b: 2 });
});

test("raw v1: path id and body email of two people is a 409 with nothing applied", async () => {
  const a = uid("a");
  const b = uid("b");
  const ea = email("a");
  const eb = email("b");
  assert.equal((await api(edge, "PUT", `v1/customers/${a}`, { email: ea, v: 1 })).status, 200);
  assert.equal((await api(edge, "PUT", `v1/customers/${b}`, { email: eb, v: 1 })).status, 200);
  const anon = `anon-${crypto.randomUUID()}`;
  assert.equal((await api(edge, "POST", "v1/events", { anonymous_id: anon, name: "waiting" })).status, 200);
  const [beforeA, beforeB] = [await profile(edge, a), await profile(edge, b)];
  const [eventsA, eventsB] = [await events(edge, a), await events(edge, b)];

  const conflict = await api(edge, "PUT", `v1/customers/${b}`, {
    email: ea,
    v: 2,
    new_attr: true,
    anonymous_id: anon,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "x" } }] },
  });
  assertV1Error(conflict, 409);
  assert.deepEqual(await profile(edge, a), beforeA, "a unchanged");
  assert.deepEqual(await profile(edge, b), beforeB, "b unchanged");
  assert.deepEqual(await events(edge, a), eventsA);
  assert.deepEqual(await events(edge, b), eventsB, "the anonymous visitor was not merged");

  // An unknown path id with the email of a person who has an id: also a
  // conflict (rule 5), and no person is created.
  const c = uid("c");
  assertV1Error(await api(edge, "PUT", `v1/customers/${c}`, { email: ea, v: 3 }), 409);
  assert.equal((await person(edge, c)).status, 404);
  assert.deepEqual(await profile(edge, a), beforeA);

  // The visitor is still free: it merges into b when b identifies with it.
  assert.equal((await api(edge, "PUT", `v1/customers/${b}`, { anonymous_id: anon })).status, 200);
  assert.ok((await events(edge, b)).some((e) => e.name === "waiting"));
});

test("raw v1: an unknown path id adopts the lead created by its email; a path email with a body id", async () => {
  const mail = email("lead");
  await api(edge, "PUT", `v1/customers/${mail}`, { source: "ads" });
  const lead = await profile(edge, mail);
  const newId = uid("newid");
  const res = await api(edge, "PUT", `v1/customers/${newId}`, { email: mail, plan: "paid" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const adopted = await profile(edge, newId);
  assert.equal(adopted.cio_id, lead.cio_id, "no new person");
  assert.equal(adopted.id, newId);
  assert.equal(adopted.email, mail);
  assert.deepEqual(adopted.attributes, { source: "ads", plan: "paid" });
  assert.equal((await profile(edge, mail)).cio_id, lead.cio_id);

  const e2 = email("e2");
  await api(edge, "PUT", `v1/customers/${e2}`, { x: 1 });
  const before = await profile(edge, e2);
  const id2 = uid("id2");
  assert.equal((await api(edge, "PUT", `v1/customers/${e2}`, { id: id2 })).status, 200);
  const got = await profile(edge, id2);
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
    const res = await api(edge, "PUT", `v1/customers/${id}`, body);
    assertV1Error(res, 400);
    assert.equal((await person(edge, id)).status, 404, `nothing created for ${body.slice(0, 40)}`);
  }
  assertV1Error(await api(edge, "PUT", `v1/customers/${"i".repeat(151)}`, {}), 400);

  const big = uid("big");
  const tooLarge = await api(edge, "PUT", `v1/customers/${big}`, { pad: "p".repeat(256 * 1024) });
  assertV1Error(tooLarge, 413);
  assert.equal((await person(edge, big)).status, 404);
  // Just under the limit is read (and then judged by the attribute limits).
  const fine = uid("fine");
  const many = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`a${i}`, "x".repeat(900)]));
  assert.ok(JSON.stringify(many).length < 256 * 1024);
  assert.equal((await api(edge, "PUT", `v1/customers/${fine}`, many)).status, 200);
  assert.equal(Object.keys((await profile(edge, fine)).attributes).length, 200);

  const evId = uid("ev");
  assertV1Error(await api(edge, "POST", "v1/events", { name: "no-anon" }), 400);
  assertV1Error(await api(edge, "POST", `v1/customers/${evId}/events`, { name: "" }), 400);
  assertV1Error(await api(edge, "POST", `v1/customers/${evId}/events`, { data: {} }), 400);
  assertV1Error(await api(edge, "POST", `v1/customers/${evId}/events`, { name: "n".repeat(101) }), 400);
  assertV1Error(await api(edge, "POST", `v1/customers/${evId}/events`, { name: "big", data: { s: "d".repeat(100_001) } }), 400);
  assert.equal((await person(edge, evId)).status, 404, "a rejected event creates nobody");
  assertV1Error(await api(edge, "GET", "v1/merge_customers"), 405);
});

test("raw v1 events: unknown id or email creates the person; id dedups; timestamp and type kept", async () => {
  const id = uid("ev");
  for (let i = 0; i < 2; i++) {
    const res = await api(edge, "POST", `v1/customers/${id}/events`, { name: "signup", id: "ev-1", timestamp: 1500000000, data: { i } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {});
  }
  assert.equal((await api(edge, "POST", `v1/customers/${id}/events`, { name: "/docs", type: "page" })).status, 200);
  const evs = await events(edge, id);
  assert.equal(evs.length, 2);
  const signup = evs.find((e) => e.name === "signup");
  assert.equal(signup.timestamp, 1500000000);
  assert.equal(signup.type, "event");
  assert.equal(signup.id, "ev-1");
  assert.deepEqual(signup.data, { i: 0 });
  assert.equal(evs.find((e) => e.name === "/docs").type, "page");
  assert.equal((await profile(edge, id)).id, id);

  const mail = email("evmail");
  assert.equal((await api(edge, "POST", `v1/customers/${mail}/events`, { name: "clicked" })).status, 200);
  const byEmail = await profile(edge, mail);
  assert.equal(byEmail.email, mail);
  assert.ok(!byEmail.id);
  assert.deepEqual(sortedNames(await events(edge, mail)), ["clicked"]);

  assertV1Error(await api(edge, "POST", `v1/customers/cio_ffffffffffffffffffff/events`, { name: "x" }), 404);
});

test("raw v1: anonymous events merge on PUT with anonymous_id, later ones are forwarded", async () => {
  const anon = `anon-${crypto.randomUUID()}`;
  assert.equal((await api(edge, "POST", "v1/events", { anonymous_id: anon, name: "viewed", data: { p: 1 }, timestamp: 1600000000 })).status, 200);
  assert.equal((await api(edge, "POST", "v1/events", { anonymous_id: anon, name: "/landing", type: "page", id: "pv-1" })).status, 200);
  assert.equal((await api(edge, "POST", "v1/events", { anonymous_id: anon, name: "/landing", type: "page", id: "pv-1" })).status, 200);
  const id = uid("anonmerge");
  const res = await api(edge, "PUT", `v1/customers/${id}`, { anonymous_id: anon, plan: "x" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const p = await profile(edge, id);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.deepEqual(p.attributes, { plan: "x" });
  assert.equal((await api(edge, "POST", "v1/events", { anonymous_id: anon, name: "later" })).status, 200);
  const evs = await events(edge, id);
  assert.deepEqual(sortedNames(evs), ["/landing", "later", "viewed"]);
  for (const e of evs) assert.equal(e.anonymous_id, anon);
  assert.equal(evs.find((e) => e.name === "viewed").timestamp, 1600000000);
  assert.equal(evs.find((e) => e.name === "/landing").type, "page");
});

test("raw v1 merge_customers: identifier validation, missing sides, idempotence, identifiers freed", async () => {
  const merge = (primary, secondary) => api(edge, "POST", "v1/merge_customers", { primary, secondary });
  const p = uid("mp");
  const s = uid("ms");
  const se = email("ms");
  await api(edge, "PUT", `v1/customers/${p}`, { own: "p", shared: "p" });
  await api(edge, "PUT", `v1/customers/${s}`, { email: se, own_s: "s", shared: "s" });
  await api(edge, "POST", `v1/customers/${s}/events`, { name: "s_event" });
  const [beforeP, beforeS] = [await profile(edge, p), await profile(edge, s)];

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
  assert.deepEqual(await profile(edge, p), beforeP);
  assert.deepEqual(await profile(edge, s), beforeS);

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
  assert.deepEqual(await profile(edge, p), beforeP, "primary untouched by no-op merges");
  assert.deepEqual(await profile(edge, s), beforeS, "secondary untouched by no-op merges");

  // The real merge, then the same call again changes nothing.
  const first = await merge({ id: p }, { email: se });
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, {});
  const merged = await profile(edge, p);
  assert.deepEqual(merged.attributes, { own: "p", shared: "p", own_s: "s" });
  assert.deepEqual(sortedNames(await events(edge, p)), ["s_event"]);
  assert.equal((await person(edge, s)).status, 404);
  assert.equal(merged.email, se, "a primary without email takes the secondary's");
  assert.equal((await profile(edge, se)).cio_id, beforeP.cio_id);
  const mergedEvents = await events(edge, p);
  for (const again of [{ email: se }, { id: s }, { cio_id: beforeS.cio_id }]) {
    const res = await merge({ id: p }, again);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {});
  }
  assert.deepEqual(await profile(edge, p), merged, "repeating the merge changed nothing");
  assert.deepEqual(await events(edge, p), mergedEvents);

  // The secondary's id is free; its email stays the primary's.
  assert.equal((await api(edge, "PUT", `v1/customers/${s}`, { email: se })).status, 409);
  await api(edge, "PUT", `v1/customers/${s}`, {});
  const reborn = await profile(edge, s);
  assert.notEqual(reborn.cio_id, beforeS.cio_id);
  assert.notEqual(reborn.cio_id, merged.cio_id);
  assert.deepEqual(reborn.attributes, {});
  assert.deepEqual(await events(edge, s), []);
});

test("raw v1 DELETE frees the identifiers: the same id is a new person with none of the old", async () => {
  const id = uid("del");
  const mail = email("del");
  await api(edge, "PUT", `v1/customers/${id}`, {
    email: mail,
    old: true,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "2", object_id: "o" } }] },
  });
  await api(edge, "POST", `v1/customers/${id}/events`, { name: "old_event" });
  const old = await profile(edge, id);
  const res = await api(edge, "DELETE", `v1/customers/${id}`);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  assert.equal((await person(edge, id)).status, 404);
  assert.equal((await person(edge, mail)).status, 404);
  assert.equal((await activity(edge, id)).status, 404);

  // Deleting by email and by cio_<id> works too.
  const byMail = email("delmail");
  await api(edge, "PUT", `v1/customers/${byMail}`, {});
  assert.equal((await api(edge, "DELETE", `v1/customers/${byMail}`)).status, 200);
  assert.equal((await person(edge, byMail)).status, 404);
  const byCio = uid("delcio");
  await api(edge, "PUT", `v1/customers/${byCio}`, {});
  const cioId = (await profile(edge, byCio)).cio_id;
  assert.equal((await api(edge, "DELETE", `v1/customers/cio_${cioId}`)).status, 200);
  assert.equal((await person(edge, byCio)).status, 404);

  await api(edge, "PUT", `v1/customers/${id}`, { fresh: 1 });
  const reborn = await profile(edge, id);
  assert.notEqual(reborn.cio_id, old.cio_id);
  assert.deepEqual(reborn.attributes, { fresh: 1 });
  assert.equal(reborn.email, null);
  assert.deepEqual(reborn.relationships, []);
  assert.deepEqual(await events(edge, id), []);
  // The old email goes to whoever claims it.
  assert.equal((await api(edge, "PUT", `v1/customers/${id}`, { email: mail })).status, 200);
  assert.equal((await profile(edge, mail)).cio_id, reborn.cio_id);
});
