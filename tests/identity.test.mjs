// Identify people (API.md sections 1-3, 5 and 6): browser endpoints, merges,
// links, reset, relationships, arrays, dedup, admin access, KV as a cache and
// storage failure, through the built worker with real local KV and SQLite
// Durable Objects in front of a real origin on 127.0.0.1.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { startWorker } from "./support/worker.mjs";
import {
  Browser, admin, person, activity, visitorActivity, eventually, uid, cookiesNamed, wipeKv, sleep,
  ADMIN_TOKEN, UUID_V4,
} from "./support/people.mjs";

const { edge, origin, another } = withEdge({ secrets: { ADMIN_TOKEN } });

async function workerWith(vars, secrets = { ADMIN_TOKEN }) {
  return another({ vars, secrets });
}

const names = (events) => events.map((e) => e.name).sort();
const nowSecs = () => Math.floor(Date.now() / 1000);

/// The last request the origin saw for a path (ignoring the query).
const originSaw = (path) => origin.requests.filter((r) => r.url.split("?")[0] === path).at(-1);

// ---------------------------------------------------------------------------
// 1. The full journey, with and without edge page views.

async function journey(w, { edgePageViews }) {
  const b = new Browser(w);
  const home = await b.visit("/");
  assert.equal(home.status, 200);
  const anon = b.anon;
  assert.match(anon, UUID_V4, "the first page view issued _cioanonid");
  const pricing = await b.visit("/pricing.html");
  assert.equal(pricing.status, 200);
  assert.equal(b.anon, anon, "the anonymous id is kept across pages");
  assert.equal(originSaw("/pricing.html").headers["x-cio-anon-id"], anon);
  assert.equal(originSaw("/pricing.html").headers["x-cio-id"], undefined);

  const page = await b.page("/pricing", { section: "top" });
  assert.equal(page.status, 200);
  assert.deepEqual(page.json, { ok: true });
  const trackId = uid("evt");
  const track = await b.track("viewed_plan", { plan: "pro", seats: 3 }, { id: trackId });
  assert.equal(track.status, 200);
  assert.deepEqual(track.json, { ok: true });

  const expectedBefore = edgePageViews ? 4 : 2;
  if (edgePageViews) {
    await eventually(async () => (await visitorActivity(w, anon)).events.length >= 4, "two edge page views", 2500);
  } else {
    await sleep(300); // room for a (wrong) background page view to show up
  }
  assert.equal((await visitorActivity(w, anon)).events.length, expectedBefore);

  const id = uid("journey");
  const email = `${id}@example.com`;
  const res = await b.identify({ id, email, created_at: 1339438758, first_name: "Ada", plan_name: "premium", score: 7.5 });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { ok: true }, "a browser endpoint never returns profile data");
  const [idCookie] = cookiesNamed(res, "_cioid");
  assert.ok(idCookie, "identify sets _cioid");
  assert.equal(idCookie.value, encodeURIComponent(id));
  assert.equal(idCookie.attrs.path, "/");
  assert.equal(idCookie.attrs["max-age"], "31536000");
  assert.equal(idCookie.attrs.samesite, "Lax");
  assert.equal(b.cioid, id);
  assert.equal(b.anon, anon, "the first identify does not rotate the anonymous id");

  const p = (await person(w, id)).body;
  assert.match(p.cio_id, /^\S+$/);
  assert.equal(typeof p.updated_at, "number");
  assert.ok(Math.abs(p.updated_at - nowSecs()) < 120, "updated_at is unix seconds, now");
  assert.deepEqual(p, {
    cio_id: p.cio_id,
    id,
    email,
    created_at: 1339438758,
    attributes: { first_name: "Ada", plan_name: "premium", score: 7.5 },
    relationships: [],
    anonymous_ids: [anon],
    updated_at: p.updated_at,
  });
  assert.deepEqual((await person(w, email)).body, p, "the same person by email");
  assert.deepEqual((await person(w, `cio_${p.cio_id}`)).body, p, "the same person by cio_id");

  const events = await activity(w, id);
  const expectedNames = ["/pricing", "viewed_plan"];
  if (edgePageViews) expectedNames.push(`${w.url}/`, `${w.url}/pricing.html`);
  assert.deepEqual(names(events), expectedNames.sort(), "every anonymous event, once");
  for (const e of events) {
    assert.equal(e.anonymous_id, anon, `${e.name} keeps the anonymous id it was recorded under`);
    assert.equal(typeof e.id, "string");
    assert.ok(e.id.length > 0);
    assert.ok(Math.abs(e.timestamp - nowSecs()) < 120, `${e.name} timestamp`);
  }
  const pageEvent = events.find((e) => e.name === "/pricing");
  assert.equal(pageEvent.type, "page");
  assert.deepEqual(pageEvent.data, { section: "top" });
  const trackEvent = events.find((e) => e.name === "viewed_plan");
  assert.equal(trackEvent.type, "event");
  assert.equal(trackEvent.id, `browser:${trackId}`, "a browser's event id, in its own key space");
  assert.deepEqual(trackEvent.data, { plan: "pro", seats: 3 });
  if (edgePageViews) {
    for (const e of events.filter((x) => x.name.startsWith(w.url))) assert.equal(e.type, "page");
  }
  assert.deepEqual(await visitorActivity(w, anon), { merged_into: p.cio_id, events: [] });

  // Once identified, events land on the person and the origin is told.
  assert.equal((await b.track("after_identify")).status, 200);
  const after = await activity(w, id);
  assert.equal(after.filter((e) => e.name === "after_identify").length, 1);
  assert.deepEqual(await visitorActivity(w, anon), { merged_into: p.cio_id, events: [] });
  await b.visit("/account/");
  assert.equal(originSaw("/account/").headers["x-cio-id"], id);
  assert.equal(originSaw("/account/").headers["x-cio-anon-id"], anon);
  return { b, id, p };
}

test("journey: two pages, a page and a track, then identify: one person with everything merged", async () => {
  await journey(edge, { edgePageViews: false });
});

test("journey with EDGE_PAGE_VIEWS=true: the proxied HTML navigations are recorded and merged too", async () => {
  const w = await workerWith({ EDGE_PAGE_VIEWS: "true" });
  const { b, id } = await journey(w, { edgePageViews: true });
  // After identify, a navigation is recorded on the person; a non-navigation is not.
  await eventually(async () => (await activity(w, id)).some((e) => e.name === `${w.url}/account/`), "page view of /account/", 2500);
  const res = await w.fetch("/echo", { headers: { accept: "application/json", cookie: b.jar.header() } });
  await res.text();
  await sleep(300);
  const pages = (await activity(w, id)).filter((e) => e.type === "page").map((e) => e.name).sort();
  assert.deepEqual(pages, ["/pricing", `${w.url}/`, `${w.url}/account/`, `${w.url}/pricing.html`].sort());
});

// ---------------------------------------------------------------------------
// 2. Updates.

test("a second identify overwrites sent attributes, adds new ones, keeps the rest, cio_id and created_at", async () => {
  const b = new Browser(edge);
  const id = uid();
  const email = `${id}@example.com`;
  await b.identify({ id, email, created_at: 1500000000, a: 1, b: "two", nested: { x: 1 } });
  const first = (await person(edge, id)).body;
  const res = await b.identify({ id, b: "TWO", c: [3], nested: { y: 2 } });
  assert.equal(res.status, 200);
  const second = (await person(edge, id)).body;
  assert.equal(second.cio_id, first.cio_id);
  assert.equal(second.id, id);
  assert.equal(second.email, email, "email not resent: kept");
  assert.equal(second.created_at, 1500000000, "created_at not resent: kept");
  assert.deepEqual(second.attributes, { a: 1, b: "TWO", c: [3], nested: { y: 2 } });
  assert.deepEqual(second.anonymous_ids, first.anonymous_ids);
  assert.ok(second.updated_at >= first.updated_at);

  // Created without created_at: gets the time of creation, kept on update.
  const other = uid();
  const t0 = nowSecs();
  await new Browser(edge).identify({ id: other, v: 1 });
  const made = (await person(edge, other)).body;
  assert.ok(made.created_at >= t0 - 2 && made.created_at <= nowSecs() + 2, `created_at ${made.created_at} ~ ${t0}`);
  await sleep(1100);
  await new Browser(edge).identify({ id: other, v: 2 });
  const updated = (await person(edge, other)).body;
  assert.equal(updated.created_at, made.created_at);
  assert.equal(updated.cio_id, made.cio_id);
  assert.deepEqual(updated.attributes, { v: 2 });
});

test("a numeric id is its decimal string; ids are trimmed", async () => {
  const n = Math.floor(Math.random() * 1e12) + 1e12;
  const b = new Browser(edge);
  assert.equal((await b.identify({ id: n, kind: "number" })).status, 200);
  assert.equal(b.cioid, String(n));
  assert.equal((await person(edge, String(n))).body.id, String(n));
  const c = new Browser(edge);
  const id = uid();
  assert.equal((await c.identify({ id: `  ${id}  ` })).status, 200);
  assert.equal(c.cioid, id);
  assert.equal((await person(edge, id)).body.id, id);
});

// ---------------------------------------------------------------------------
// 3. Email as the id.

test("email as id, mixed case, from two browsers: one person, id null, found by the lowercased email", async () => {
  const local = uid("Mixed");
  const email = `${local.toLowerCase()}@example.com`;
  const one = new Browser(edge);
  const two = new Browser(edge);
  await one.visit("/");
  await two.visit("/");
  await one.track("one_was_here");
  await two.track("two_was_here");
  const r1 = await one.identify({ id: `${local}@Example.COM`, plan: "a" });
  assert.equal(r1.status, 200);
  const r2 = await two.identify({ id: `${local.toUpperCase()}@EXAMPLE.com`, seats: 3 });
  assert.equal(r2.status, 200);
  for (const [b, r] of [[one, r1], [two, r2]]) {
    assert.equal(cookiesNamed(r, "_cioid")[0].value, encodeURIComponent(email), "_cioid is the lowercased email, percent-encoded");
    assert.equal(b.cioid, email);
  }
  const res = await person(edge, email);
  assert.equal(res.status, 200);
  const p = res.body;
  assert.equal(p.id, null);
  assert.equal(p.email, email);
  assert.deepEqual(p.attributes, { plan: "a", seats: 3 });
  assert.deepEqual([...p.anonymous_ids].sort(), [one.anon, two.anon].sort());
  assert.deepEqual((await person(edge, `${local.toUpperCase()}@example.COM`)).body, p, "lookups ignore case");
  assert.deepEqual(names(await activity(edge, email)), ["one_was_here", "two_was_here"]);
  assert.deepEqual(await visitorActivity(edge, one.anon), { merged_into: p.cio_id, events: [] });
  assert.deepEqual(await visitorActivity(edge, two.anon), { merged_into: p.cio_id, events: [] });
});

// ---------------------------------------------------------------------------
// 4. Email conflicts, and the lead that becomes a customer.

test("an email that belongs to another person: 409 field email, both profiles unchanged, no _cioid", async () => {
  const owner = new Browser(edge);
  const idA = uid("A");
  const email = `${uid("taken")}@example.com`;
  assert.equal((await owner.identify({ id: idA, email, keep: 1 })).status, 200);
  const other = new Browser(edge);
  await other.track("b_anon_event");
  const idB = uid("B");
  assert.equal((await other.identify({ id: idB, plan: "x" })).status, 200);
  const beforeA = (await person(edge, idA)).body;
  const beforeB = (await person(edge, idB)).body;
  const activityA = await activity(edge, idA);
  const activityB = await activity(edge, idB);
  const cookieBefore = other.jar.header();

  const res = await other.identify({ id: idB, email: email.toUpperCase(), plan: "changed", extra: true });
  assert.equal(res.status, 409);
  assert.equal(res.json.errors[0].reason, "conflict");
  assert.equal(res.json.errors[0].field, "email");
  assert.equal(typeof res.json.errors[0].message, "string");
  assert.deepEqual(cookiesNamed(res, "_cioid"), [], "no _cioid Set-Cookie");
  assert.deepEqual((await person(edge, idA)).body, beforeA);
  assert.deepEqual((await person(edge, idB)).body, beforeB);
  assert.deepEqual((await person(edge, email)).body, beforeA, "the email still finds its owner");
  assert.deepEqual(await activity(edge, idA), activityA);
  assert.deepEqual(await activity(edge, idB), activityB);
  assert.equal(other.jar.header(), cookieBefore, "no cookie changed");

  // A fresh visitor with a new id and that email: refused, nothing created,
  // its anonymous activity not merged anywhere.
  const third = new Browser(edge);
  await third.visit("/");
  await third.track("c_anon_event");
  const idC = uid("C");
  const r3 = await third.identify({ id: idC, email, plan: "y" });
  assert.equal(r3.status, 409);
  assert.equal(r3.json.errors[0].field, "email");
  assert.deepEqual(cookiesNamed(r3, "_cioid"), []);
  assert.equal(third.cioid, undefined);
  assert.equal((await person(edge, idC)).status, 404, "no person created");
  assert.deepEqual((await person(edge, idA)).body, beforeA);
  const v = await visitorActivity(edge, third.anon);
  assert.equal(v.merged_into, undefined);
  assert.deepEqual(names(v.events), ["c_anon_event"]);
});

test("a new id sent with the email of a person created by email only: that person gets the id", async () => {
  const email = `${uid("lead")}@example.com`;
  const lead = new Browser(edge);
  await lead.track("webinar_signup");
  await lead.identify({ id: email, source: "webinar" });
  const before = (await person(edge, email)).body;
  assert.equal(before.id, null);
  const customer = new Browser(edge);
  await customer.track("checkout");
  const id = uid("cust");
  const res = await customer.identify({ id, email, plan: "paid" });
  assert.equal(res.status, 200);
  assert.equal(customer.cioid, id);
  const after = (await person(edge, id)).body;
  assert.equal(after.cio_id, before.cio_id, "no new person");
  assert.equal(after.id, id);
  assert.equal(after.email, email);
  assert.deepEqual(after.attributes, { source: "webinar", plan: "paid" });
  assert.deepEqual([...after.anonymous_ids].sort(), [lead.anon, customer.anon].sort());
  assert.deepEqual((await person(edge, email)).body, after);
  assert.deepEqual(names(await activity(edge, id)), ["checkout", "webinar_signup"]);
});

// ---------------------------------------------------------------------------
// 5. Links with _cio_id.

test("_cio_id on a landing page identifies a fresh browser; its earlier activity joins the person only when it identifies", async () => {
  const id = uid("linked");
  await new Browser(edge).identify({ id, email: `${id}@example.com` });
  const { cio_id } = (await person(edge, id)).body;

  const fresh = new Browser(edge);
  await fresh.visit("/");
  const anon = fresh.anon;
  assert.ok(anon);
  const eventId = uid("evt");
  assert.equal((await fresh.track("before_click", { from: "ad" }, { id: eventId })).status, 200);
  const res = await fresh.visit(`/landing?utm=x&_cio_id=${cio_id}`);
  assert.equal(res.status, 200);
  const [idCookie] = cookiesNamed(res, "_cioid");
  assert.ok(idCookie, "Set-Cookie _cioid");
  assert.equal(idCookie.value, encodeURIComponent(id), "named by the person's id");
  assert.equal(fresh.cioid, id);
  const seen = originSaw("/landing");
  assert.equal(seen.headers["x-cio-id"], id, "the origin saw X-Cio-Id");
  assert.equal(seen.headers["x-cio-anon-id"], anon);
  assert.equal(seen.url, `/landing?utm=x&_cio_id=${cio_id}`, "the query reaches the origin unchanged");

  // A link merges nothing (identity rule 12): the history stays the visitor's.
  let p = (await person(edge, id)).body;
  assert.equal(p.cio_id, cio_id);
  assert.ok(!p.anonymous_ids.includes(anon));
  assert.deepEqual(names((await visitorActivity(edge, anon)).events), ["before_click"]);
  // Events after the click are the person's.
  await fresh.track("after_click");
  assert.ok((await activity(edge, id)).some((e) => e.name === "after_click"));
  // Identifying as that person merges the history.
  assert.equal((await fresh.identify({ id })).status, 200);
  p = (await person(edge, id)).body;
  assert.ok(p.anonymous_ids.includes(anon));
  const merged = (await activity(edge, id)).filter((e) => e.id === `browser:${eventId}`);
  assert.equal(merged.length, 1);
  assert.equal(merged[0].name, "before_click");
  assert.equal(merged[0].anonymous_id, anon);
  assert.deepEqual(await visitorActivity(edge, anon), { merged_into: cio_id, events: [] });

  // A person without id is named by email.
  const email = `${uid("e")}@example.com`;
  await new Browser(edge).identify({ id: email });
  const byEmail = (await person(edge, email)).body;
  const visitor = new Browser(edge);
  const r2 = await visitor.visit(`/?_cio_id=${byEmail.cio_id}`);
  assert.equal(r2.status, 200);
  assert.equal(visitor.cioid, email);
  assert.equal(cookiesNamed(r2, "_cioid")[0].value, encodeURIComponent(email));
});

test("a _cio_id link never switches an identified browser to another person", async () => {
  const victim = uid("victim");
  const attacker = uid("attacker");
  await new Browser(edge).identify({ id: attacker });
  const attackerBefore = (await person(edge, attacker)).body;
  const attackerCio = attackerBefore.cio_id;
  const b = new Browser(edge);
  await b.identify({ id: victim });
  const res = await b.visit(`/shared-link?_cio_id=${attackerCio}`);
  assert.equal(res.status, 200);
  assert.deepEqual(cookiesNamed(res, "_cioid"), [], "no _cioid change");
  assert.equal(b.cioid, victim);
  assert.equal(originSaw("/shared-link").headers["x-cio-id"], victim);
  await b.track("after_link");
  assert.ok((await activity(edge, victim)).some((e) => e.name === "after_link"));
  assert.ok(!(await activity(edge, attacker)).some((e) => e.name === "after_link"));
  assert.deepEqual((await person(edge, attacker)).body.anonymous_ids, attackerBefore.anonymous_ids, "nothing merged into the link's person");
});

async function assertLinkIgnored(w, query, label) {
  const b = new Browser(w);
  await b.visit("/");
  const anon = b.anon;
  await b.track("anon_before_link");
  const path = `/landing-${label}/`;
  const res = await b.visit(`${path}?${query}`);
  assert.equal(res.status, 200, `${label}: the page is served`);
  assert.match(res.body.toString(), /<body>hello<\/body>/, `${label}: the origin's page`);
  assert.deepEqual(cookiesNamed(res, "_cioid"), [], `${label}: no _cioid cookie`);
  assert.equal(b.cioid, undefined);
  assert.equal(b.anon, anon, `${label}: the anonymous id is kept`);
  assert.equal(originSaw(path).headers["x-cio-id"], undefined, `${label}: no X-Cio-Id`);
  const v = await visitorActivity(w, anon);
  assert.equal(v.merged_into, undefined, `${label}: not merged`);
  assert.deepEqual(names(v.events), ["anon_before_link"]);
}

test("an unknown or malformed _cio_id changes nothing and the page is served", async () => {
  await assertLinkIgnored(edge, "_cio_id=ffffffffffffffffffff", "unknown");
  await assertLinkIgnored(edge, "_cio_id=<script>", "script");
  await assertLinkIgnored(edge, "_cio_id=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "encoded-script");
  await assertLinkIgnored(edge, "_cio_id=", "empty");
  await assertLinkIgnored(edge, `_cio_id=${"a".repeat(5000)}`, "huge");
});

test("AUTO_IDENTIFY_LINKS=false: a valid _cio_id does nothing", async () => {
  const off = await workerWith({ AUTO_IDENTIFY_LINKS: "false" });
  const id = uid();
  await new Browser(off).identify({ id });
  const p = (await person(off, id)).body;
  await assertLinkIgnored(off, `_cio_id=${p.cio_id}`, "disabled");
  assert.deepEqual((await person(off, id)).body, p, "the person is unchanged");
});

// ---------------------------------------------------------------------------
// 6. reset, and identifying as someone else.

test("reset clears _cioid and rotates the anonymous id; later events go to the new visitor only", async () => {
  const b = new Browser(edge);
  const id = uid();
  await b.track("anon");
  await b.identify({ id });
  await b.track("identified");
  const oldAnon = b.anon;
  const before = await activity(edge, id);
  const personBefore = (await person(edge, id)).body;
  assert.deepEqual(names(before), ["anon", "identified"]);

  const res = await b.reset();
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { ok: true });
  const cleared = cookiesNamed(res, "_cioid");
  assert.equal(cleared.length, 1);
  assert.equal(cleared[0].attrs["max-age"], "0");
  const rotated = cookiesNamed(res, "_cioanonid");
  assert.equal(rotated.length, 1);
  assert.match(rotated[0].value, UUID_V4);
  assert.notEqual(rotated[0].value, oldAnon);
  assert.equal(b.cioid, undefined);
  assert.equal(b.anon, rotated[0].value);

  assert.equal((await b.track("after_reset")).status, 200);
  await b.visit("/after-reset/");
  assert.equal(originSaw("/after-reset/").headers["x-cio-id"], undefined);
  assert.equal(originSaw("/after-reset/").headers["x-cio-anon-id"], b.anon);
  assert.deepEqual(await activity(edge, id), before, "the person's activity is unchanged");
  assert.deepEqual((await person(edge, id)).body, personBefore);
  const v = await visitorActivity(edge, b.anon);
  assert.equal(v.merged_into, undefined);
  assert.deepEqual(names(v.events), ["after_reset"]);
});

test("identify as B after A from one browser: anonymous id rotated, B lacks A's anon id, A unchanged", async () => {
  const b = new Browser(edge);
  await b.track("while_anonymous");
  const anon = b.anon;
  const idA = uid("A");
  const idB = uid("B");
  await b.identify({ id: idA });
  assert.equal(b.anon, anon, "no rotation for the first identify");
  const again = await b.identify({ id: idA, again: true });
  assert.equal(again.status, 200);
  assert.deepEqual(cookiesNamed(again, "_cioanonid"), [], "nor for identifying as the same person again");
  assert.equal(b.anon, anon);
  const aBefore = await activity(edge, idA);
  const pA = (await person(edge, idA)).body;

  const res = await b.identify({ id: idB });
  assert.equal(res.status, 200);
  const rotated = cookiesNamed(res, "_cioanonid");
  assert.equal(rotated.length, 1, "a new _cioanonid is set");
  assert.match(rotated[0].value, UUID_V4);
  assert.notEqual(rotated[0].value, anon);
  assert.equal(b.cioid, idB);
  const pB = (await person(edge, idB)).body;
  assert.notEqual(pB.cio_id, pA.cio_id);
  assert.ok(!pB.anonymous_ids.includes(anon), "B does not get A's anonymous id");
  assert.deepEqual(await activity(edge, idB), [], "none of A's events went to B");
  assert.deepEqual(await activity(edge, idA), aBefore);
  assert.deepEqual((await person(edge, idA)).body, pA);
  assert.deepEqual(await visitorActivity(edge, anon), { merged_into: pA.cio_id, events: [] });

  await b.track("as_b");
  assert.deepEqual(names(await activity(edge, idB)), ["as_b"]);
  assert.deepEqual(await activity(edge, idA), aBefore);
});

// ---------------------------------------------------------------------------
// 7. Arrays and relationships.

test("arrays keep their shape by default, in attributes and event data", async () => {
  const b = new Browser(edge);
  const id = uid();
  const attrs = { my_array: ["one", "two"], deep: { list: [[1], { x: [true] }] }, empty: [] };
  await b.identify({ id, ...attrs });
  assert.deepEqual((await person(edge, id)).body.attributes, attrs);
  await b.track("t", { items: ["a", { b: [1, 2] }] });
  assert.deepEqual((await activity(edge, id))[0].data, { items: ["a", { b: [1, 2] }] });
});

test("USE_ARRAY_PARAMS=false reshapes every array, at any depth, into an object keyed by index", async () => {
  const off = await workerWith({ USE_ARRAY_PARAMS: "false" });
  const c = new Browser(off);
  const id = uid();
  await c.track("anon_t", { list: [["x"]] });
  await c.identify({ id, my_array: ["one", "two"], deep: { list: [[1], { x: [true] }] }, plain: "s" });
  await c.track("t", { items: ["a", { b: [1, 2] }] });
  await c.page("/p", { tags: ["x", "y"] });
  assert.deepEqual((await person(off, id)).body.attributes, {
    my_array: { 0: "one", 1: "two" },
    deep: { list: { 0: { 0: 1 }, 1: { x: { 0: true } } } },
    plain: "s",
  });
  const events = await activity(off, id);
  assert.deepEqual(events.find((e) => e.name === "t").data, { items: { 0: "a", 1: { b: { 0: 1, 1: 2 } } } });
  assert.deepEqual(events.find((e) => e.name === "/p").data, { tags: { 0: "x", 1: "y" } });
  assert.deepEqual(events.find((e) => e.name === "anon_t").data, { list: { 0: { 0: "x" } } });
});

test("relationships: add twice is one entry, delete and the remove alias take it away, a bad action is 400", async () => {
  const b = new Browser(edge);
  const id = uid();
  const rel = (action, objectId, attrs) => ({
    id,
    cio_relationships: {
      action,
      relationships: [{ identifiers: { object_type_id: "1", object_id: objectId }, ...(attrs ? { relationship_attributes: attrs } : {}) }],
    },
  });
  assert.equal((await b.identify(rel("add_relationships", "acme", { role: "admin" }))).status, 200);
  assert.equal((await b.identify(rel("add_relationships", "acme", { role: "admin" }))).status, 200);
  assert.deepEqual((await person(edge, id)).body.relationships, [{ object_type_id: "1", object_id: "acme", attributes: { role: "admin" } }]);
  assert.equal((await b.identify(rel("add_relationships", "globex"))).status, 200);
  const both = (await person(edge, id)).body.relationships;
  assert.equal(both.length, 2);
  assert.deepEqual(both.find((r) => r.object_id === "globex"), { object_type_id: "1", object_id: "globex" });
  assert.deepEqual(both.find((r) => r.object_id === "acme"), { object_type_id: "1", object_id: "acme", attributes: { role: "admin" } });
  assert.deepEqual((await person(edge, id)).body.attributes, {}, "cio_relationships is not an attribute");

  assert.equal((await b.identify(rel("delete_relationships", "acme"))).status, 200);
  assert.deepEqual((await person(edge, id)).body.relationships, [{ object_type_id: "1", object_id: "globex" }]);
  assert.equal((await b.identify(rel("remove_relationships", "globex"))).status, 200);
  assert.deepEqual((await person(edge, id)).body.relationships, []);

  await b.identify(rel("add_relationships", "initech"));
  const before = (await person(edge, id)).body;
  const bad = await b.identify({ ...rel("befriend", "x"), extra: "not applied" });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.errors[0].reason, "invalid");
  assert.equal(bad.json.errors[0].field, "cio_relationships.action");
  assert.deepEqual((await person(edge, id)).body, before);
});

// ---------------------------------------------------------------------------
// 10. Events: dedup, timestamps, sendBeacon bodies, page names.

test("event dedup by id (person and visitor); timestamps kept; text/plain bodies accepted; page name from Referer", async () => {
  const b = new Browser(edge);
  // Anonymous dedup, then merged once.
  for (let i = 0; i < 2; i++) {
    const r = await b.track("anon_dup", { n: i }, { id: "anon-evt-1" });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { ok: true });
  }
  assert.equal((await visitorActivity(edge, b.anon)).events.filter((e) => e.id === "browser:anon-evt-1").length, 1);

  const id = uid();
  await b.identify({ id });
  for (let i = 0; i < 3; i++) {
    const r = await b.track("purchase", { n: i }, { id: "evt-1", timestamp: 1600000000 });
    assert.equal(r.status, 200, "a repeat is still 200");
  }
  const beacon = await b.post("track", JSON.stringify({ name: "beacon", data: { via: "sendBeacon" } }), { "content-type": "text/plain;charset=UTF-8" });
  assert.equal(beacon.status, 200);
  const noType = await b.post("page", JSON.stringify({ name: "/beacon-page" }), { "content-type": "" });
  assert.equal(noType.status, 200);
  const page = await b.post("page", {}, { referer: "https://site.example/from?q=1" });
  assert.equal(page.status, 200);
  const noName = await b.post("page", { data: { a: 1 } });
  assert.equal(noName.status, 400, "no name and no Referer");
  assert.equal(noName.json.errors[0].field, "name");

  const events = await activity(edge, id);
  const purchases = events.filter((e) => e.id === "browser:evt-1");
  assert.equal(purchases.length, 1);
  assert.equal(purchases[0].name, "purchase");
  assert.equal(purchases[0].timestamp, 1600000000, "the timestamp sent is kept");
  assert.deepEqual(purchases[0].data, { n: 0 }, "the first one wins");
  assert.equal(events.filter((e) => e.id === "browser:anon-evt-1").length, 1);
  const beaconEvent = events.find((e) => e.name === "beacon");
  assert.deepEqual(beaconEvent.data, { via: "sendBeacon" });
  assert.ok(Math.abs(beaconEvent.timestamp - nowSecs()) < 60, "no timestamp: the time received");
  assert.ok(events.some((e) => e.type === "page" && e.name === "/beacon-page"));
  assert.ok(events.some((e) => e.type === "page" && e.name === "https://site.example/from?q=1"));
  assert.equal(events.length, 5);
  assert.equal(events[0].name, "https://site.example/from?q=1", "newest first");
  const one = await admin(edge, `people/${id}/activity?limit=1`);
  assert.equal(one.status, 200);
  assert.deepEqual(one.body.events, [events[0]]);
});

// ---------------------------------------------------------------------------
// 11. Admin access.

test("admin: 401 without or with a wrong token, 404 for an unknown person, 404 when no token is configured", async () => {
  const id = uid();
  await new Browser(edge).identify({ id });
  for (const path of [`people/${id}`, `people/${id}/activity`, `visitors/${crypto.randomUUID()}/activity`]) {
    for (const token of [null, "wrong", `${ADMIN_TOKEN}x`, ""]) {
      const res = await admin(edge, path, token);
      assert.equal(res.status, 401, `${path} with ${token}`);
      assert.ok(Array.isArray(res.body.errors), "JSON error");
      assert.equal(res.body.cio_id, undefined, "no profile data");
      assert.equal(res.body.events, undefined, "no activity");
    }
  }
  const basic = await edge.fetch(`/_cio/admin/people/${id}`, { headers: { authorization: `Basic ${Buffer.from(`x:${ADMIN_TOKEN}`).toString("base64")}` } });
  assert.equal(basic.status, 401);
  await basic.text();
  assert.equal((await admin(edge, `people/${id}`)).status, 200);
  for (const nobody of [uid(), `${uid()}@example.com`, "cio_ffffffffffffffffffff"]) {
    const res = await admin(edge, `people/${encodeURIComponent(nobody)}`);
    assert.equal(res.status, 404, nobody);
    assert.equal(res.body.errors[0].reason, "not_found");
  }

  const open = await workerWith({}, {});
  const pid = uid();
  await new Browser(open).identify({ id: pid });
  assert.equal((await admin(open, `people/${pid}`)).status, 404, "no ADMIN_TOKEN: the admin API does not exist");
  assert.equal((await admin(open, `people/${pid}`, null)).status, 404);
  assert.equal((await admin(open, `people/${pid}`, "")).status, 404);
});

// ---------------------------------------------------------------------------
// 12. KV is only a cache.

test("KV is a cache: with every key deleted, admin reads, identify, links and track stay correct", async () => {
  const b = new Browser(edge);
  const id = uid();
  const email = `${id}@example.com`;
  await b.track("pre");
  await b.identify({ id, email, v: 1, keep: "me" });
  await b.track("cached_path");
  const lead = new Browser(edge);
  const leadEmail = `${uid("lead")}@example.com`;
  await lead.identify({ id: leadEmail, source: "kv" });
  // Read everything once so the cache is warm.
  const before = (await person(edge, id)).body;
  const leadBefore = (await person(edge, leadEmail)).body;
  const reads = async () => ({
    byId: (await person(edge, id)).body,
    byEmail: (await person(edge, email)).body,
    byCio: (await person(edge, `cio_${before.cio_id}`)).body,
    lead: (await person(edge, leadEmail)).body,
    leadByCio: (await person(edge, `cio_${leadBefore.cio_id}`)).body,
    activity: await activity(edge, id),
    visitor: await visitorActivity(edge, b.anon),
  });
  const warm = await reads();

  const deleted = await wipeKv(edge);
  assert.ok(deleted > 0, "there was something cached");
  assert.equal((await (await edge.mf.getKVNamespace("CIO_KV")).list()).keys.length, 0);
  assert.deepEqual(await reads(), warm, "every admin read is unchanged");
  await wipeKv(edge);

  // The identified cookie still resolves to the person.
  assert.equal((await b.track("after_wipe")).status, 200);
  assert.deepEqual(names(await activity(edge, id)), ["after_wipe", "cached_path", "pre"]);
  await wipeKv(edge);

  // An update finds the same person.
  assert.equal((await b.identify({ id, v: 2 })).status, 200);
  const after = (await person(edge, id)).body;
  assert.equal(after.cio_id, before.cio_id);
  assert.deepEqual(after.attributes, { v: 2, keep: "me" });
  assert.equal(after.email, email);
  await wipeKv(edge);

  // The email-only person is found again by email (no duplicate), and a link still works.
  const again = new Browser(edge);
  assert.equal((await again.identify({ id: leadEmail.toUpperCase(), more: 1 })).status, 200);
  const leadAfter = (await person(edge, leadEmail)).body;
  assert.equal(leadAfter.cio_id, leadBefore.cio_id);
  assert.deepEqual(leadAfter.attributes, { source: "kv", more: 1 });
  await wipeKv(edge);
  const clicker = new Browser(edge);
  await clicker.visit(`/?_cio_id=${before.cio_id}`);
  assert.equal(clicker.cioid, id);
  await wipeKv(edge);

  // The email is still owned by the person: a conflict, not a second owner.
  const thief = new Browser(edge);
  const conflict = await thief.identify({ id: uid(), email });
  assert.equal(conflict.status, 409);
  assert.equal(conflict.json.errors[0].field, "email");
});

// ---------------------------------------------------------------------------
// 13. Storage unavailable.

test("storage unbound: pages are still served with _cioanonid, /_cio/identify answers 503 JSON", async () => {
  const broken = await another({ durableObjects: false });
  const b = new Browser(broken);
  const page = await b.visit("/html");
  assert.equal(page.status, 200);
  assert.match(page.body.toString(), /hello/);
  assert.match(b.anon, UUID_V4);
  assert.equal(originSaw("/html").headers["x-cio-anon-id"], b.anon);
  const other = await b.visit("/other.txt");
  assert.equal(other.status, 200);
  assert.equal(other.body.toString(), "ok GET /other.txt");

  const res = await b.identify({ id: uid() });
  assert.equal(res.status, 503);
  assert.match(res.res.headers.get("content-type"), /application\/json/);
  assert.equal(res.json.errors[0].reason, "storage_unavailable");
  assert.equal(b.cioid, undefined, "no _cioid for an identify that did not happen");
  const track = await b.track("x");
  assert.equal(track.status, 503);
  assert.equal(track.json.errors[0].reason, "storage_unavailable");
  const link = await b.visit("/?_cio_id=abcdef0123456789abcd");
  assert.equal(link.status, 200, "a link click still serves the page");
  // Bad input is still the client's fault, not a 503.
  assert.equal((await b.post("identify", "{")).status, 400);
});
