// Input hardening (docs/API.md rules 6.1, 6.2, 6.9, 6.10, sections 3 and 5): long page names, event ids and
// timestamps a browser cannot abuse, ids that cannot be mistaken for a cio_id
// or folded into another, one person per email spelling, a checked admin
// cursor, and merges that keep the secondary's email.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { Browser, activity, admin, person, uid } from "./support/people.mjs";

const SITE_ID = "site-harden";
const API_KEY = "key-harden";
const ADMIN_TOKEN = "test-admin-token";
const AUTH = `Basic ${Buffer.from(`${SITE_ID}:${API_KEY}`).toString("base64")}`;

const { edge, origin, another } = withEdge({ secrets: { SITE_ID, API_KEY, ADMIN_TOKEN } });

const nowSecs = () => Math.floor(Date.now() / 1000);

/// A Track API call; `path` is relative to `/_cio/api/`; `body` a string is
/// sent as is (for number spellings JSON.stringify cannot produce).
async function api(method, path, body) {
  const res = await edge.fetch(`/_cio/api/${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: AUTH },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/// A browser endpoint's 400 naming `field`.
function assertInvalid(res, field, what) {
  assert.equal(res.status, 400, `${what}: status (${res.text?.slice(0, 200)})`);
  assert.equal(res.json?.errors?.[0]?.reason, "invalid", `${what}: reason`);
  assert.equal(res.json.errors[0].field, field, `${what}: field`);
}

/// A Track API v1 400 whose message names `field`.
function assertV1Invalid(res, field, what) {
  assert.equal(res.status, 400, `${what}: status ${JSON.stringify(res.body)}`);
  assert.match(res.body.meta.errors[0], new RegExp(`^${field}: `), `${what}: names ${field}`);
}

test("page views take a long marketing URL as their name; event names keep 100 bytes", async () => {
  const b = new Browser(edge);
  const url = "https://shop.example.com/products/blue-widget?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2026";
  assert.ok(url.length > 100);
  const res = await b.page(url, {});
  assert.equal(res.status, 200, res.text);
  const long = `https://shop.example.com/?${"q".repeat(8192 - 26)}`;
  assert.equal(long.length, 8192);
  assert.equal((await b.page(long, {})).status, 200, "8192 bytes");
  assertInvalid(await b.page(`${long}x`, {}), "name", "8193 bytes");
  // The default name, a Referer, is cut to the limit rather than refused.
  const referer = `https://shop.example.com/?${"r".repeat(9000)}`;
  assert.equal((await b.post("page", { data: {} }, { referer })).status, 200, "a long Referer");
  // Track API page views too.
  const id = uid("pages");
  assert.equal((await api("POST", `v1/customers/${id}/events`, { name: url, type: "page" })).status, 200);
  assertV1Invalid(await api("POST", `v1/customers/${id}/events`, { name: url }), "name", "an event name of 117 bytes");
  assertInvalid(await b.track("e".repeat(101), {}), "name", "browser event name of 101 bytes");

  const { events } = (await admin(edge, `visitors/${b.anon}/activity?limit=100`)).body;
  const pages = events.filter((e) => e.type === "page").map((e) => e.name);
  assert.ok(pages.includes(url), "the marketing URL is recorded");
  assert.ok(pages.includes(long), "the 8192-byte name is recorded");
  assert.ok(pages.includes(referer.slice(0, 8192)), "the Referer, cut to 8192 bytes");
  assert.ok((await activity(edge, id)).some((e) => e.type === "page" && e.name === url));
});

test("a browser's event id cannot shadow the backend's event with the same id; timestamps are bounded", async () => {
  const b = new Browser(edge);
  const id = uid("squat");
  assert.equal((await b.identify({ id })).status, 200);
  // The attack as reported: far-future timestamp, the backend's order id.
  assertInvalid(await b.track("fake_order", { total: 0 }, { id: "order-1001", timestamp: 9223372036854775807 }), "timestamp", "far future");
  assert.equal((await b.track("fake_order", { total: 0 }, { id: "order-1001" })).status, 200);
  // The backend's own event with that id is recorded, and deduplicated on retry.
  for (let i = 0; i < 2; i++) {
    const res = await api("POST", `v1/customers/${id}/events`, { name: "order", id: "order-1001", data: { total: 99 } });
    assert.equal(res.status, 200);
  }
  const events = await activity(edge, id);
  const backend = events.filter((e) => e.id === "order-1001");
  assert.equal(backend.length, 1, `the Track API's event is recorded once: ${JSON.stringify(events)}`);
  assert.equal(backend[0].name, "order");
  assert.deepEqual(backend[0].data, { total: 99 });
  assert.equal(events.filter((e) => e.id === "browser:order-1001").length, 1, "the browser's is kept apart");
  // The Track API cannot name an id in the browser's space.
  assertV1Invalid(await api("POST", `v1/customers/${id}/events`, { name: "x", id: "browser:order-1001" }), "id", "reserved prefix");

  // Timestamp bounds, on both sides: 2000-01-01 to a day ahead.
  const now = nowSecs();
  for (const [ts, ok] of [[946684800, true], [946684799, false], [0, false], [now + 3600, true], [now + 2 * 86400, false], [-5, false]]) {
    const fromBrowser = await b.track("ts", {}, { timestamp: ts });
    const fromApi = await api("POST", `v1/customers/${id}/events`, { name: "ts", timestamp: ts });
    const anon = await api("POST", "v1/events", { anonymous_id: `anon-${id}`, name: "ts", timestamp: ts });
    if (ok) {
      assert.deepEqual([fromBrowser.status, fromApi.status, anon.status], [200, 200, 200], `${ts} accepted`);
    } else {
      assertInvalid(fromBrowser, "timestamp", `browser ${ts}`);
      assertV1Invalid(fromApi, "timestamp", `api ${ts}`);
      assertV1Invalid(anon, "timestamp", `anonymous api ${ts}`);
    }
  }
  // The newest event is a real one, not a pinned fake.
  const [newest] = await activity(edge, id);
  assert.ok(newest.timestamp <= nowSecs() + 86400);
});

test("ids of the form cio_<cio_id> are refused naming id, in every place an id is given", async () => {
  const b = new Browser(edge);
  assertInvalid(await b.identify({ id: "cio_abc123" }), "id", "browser identify");
  assert.equal(b.cioid, undefined, "no _cioid set");
  const email = `${uid("cioid")}@example.com`;
  assertV1Invalid(await api("PUT", `v1/customers/${encodeURIComponent(email)}`, { id: "cio_abc123" }), "id", "v1 body id");
  const v2 = await api("POST", "v2/entity", { type: "person", identifiers: { id: "cio_abc123" }, action: "identify", attributes: {} });
  assert.equal(v2.status, 400);
  assert.equal(v2.body.errors[0].field, "id", "v2 identifiers");
  assertV1Invalid(await api("POST", "v1/merge_customers", { primary: { id: "cio_abc123" }, secondary: { id: "x" } }), "id", "merge");
  assert.equal((await person(edge, email)).status, 404, "nothing created");
  // Ids that cannot be read as a cio_id stay ids.
  for (const fine of [`cio_${uid("a")}`, `CIO_${uid("a").replaceAll("-", "")}`]) {
    const c = new Browser(edge);
    assert.equal((await c.identify({ id: fine })).status, 200, fine);
    assert.equal((await person(edge, fine)).body.id, fine);
    assert.equal(c.cioid, fine);
  }
});

test("numeric ids: integers kept exact as their decimal text, other numbers refused naming id", async () => {
  const b = new Browser(edge);
  for (const raw of ["42.5", "42.0", "1e2", "-0", "123456789012345678901234567890"]) {
    assertInvalid(await b.post("identify", `{"id":${raw}}`), "id", `identify ${raw}`);
    assertV1Invalid(await api("POST", "v1/merge_customers", `{"primary":{"id":${raw}},"secondary":{"id":"x"}}`), "id", `merge ${raw}`);
    assertInvalid(await b.post("track", `{"name":"n","id":${raw}}`), "id", `event id ${raw}`);
  }
  // Two ids beyond 2^53 that a float folds into one are two people.
  const base = 9007199254740992n + BigInt(Math.floor(Math.random() * 1e6)) * 2n;
  const [x, y] = [base, base + 1n].map(String);
  const bx = new Browser(edge);
  const by = new Browser(edge);
  assert.equal((await bx.post("identify", `{"id":${x}}`)).status, 200);
  assert.equal((await by.post("identify", `{"id":${y}}`)).status, 200);
  const [px, py] = [(await person(edge, x)).body, (await person(edge, y)).body];
  assert.equal(px.id, x);
  assert.equal(py.id, y);
  assert.notEqual(px.cio_id, py.cio_id);
  // The largest u64 through the Track API's identifiers.
  const max = "18446744073709551615";
  const v2 = await api("POST", "v2/entity", `{"type":"person","identifiers":{"id":${max}},"action":"identify","attributes":{"n":1}}`);
  assert.equal(v2.status, 200, JSON.stringify(v2.body));
  assert.equal((await person(edge, max)).body.id, max);
});

test("an email in NFC and in NFD spelling is one person", async () => {
  const local = `jos\u00e9-${crypto.randomUUID()}`;
  const nfc = `${local}@caf\u00e9.example`.normalize("NFC");
  const nfd = nfc.normalize("NFD").toUpperCase();
  assert.notEqual(nfc, nfd);
  const b1 = new Browser(edge);
  const b2 = new Browser(edge);
  assert.equal((await b1.identify({ id: nfc })).status, 200);
  assert.equal((await b2.identify({ id: nfd, from: "nfd" })).status, 200);
  const p1 = (await person(edge, nfc)).body;
  const p2 = (await person(edge, nfd)).body;
  assert.equal(p1.cio_id, p2.cio_id, "one person");
  assert.equal(p2.email, nfc.toLowerCase().normalize("NFC"));
  assert.equal(p2.attributes.from, "nfd");
  // The email attribute of an id-identified person too.
  const id = uid("nfd");
  const mail = `r\u00e9sum\u00e9-${crypto.randomUUID()}@x.example`;
  assert.equal((await new Browser(edge).identify({ id, email: mail.normalize("NFD") })).status, 200);
  assert.equal((await person(edge, mail)).body.cio_id, (await person(edge, id)).body.cio_id);
});

test("admin listing: a cursor it did not hand out is 400 naming cursor", async () => {
  for (const bad of ["garbage", "AAAA", "x.0000000000000000", "%00"]) {
    const res = await admin(edge, `people?cursor=${encodeURIComponent(bad)}`);
    assert.equal(res.status, 400, bad);
    assert.equal(res.body.errors[0].field, "cursor", bad);
  }
  for (let i = 0; i < 3; i++) await api("PUT", `v1/customers/${uid("list")}`, { n: i });
  const first = await admin(edge, "people?limit=1");
  assert.equal(first.status, 200);
  assert.equal(typeof first.body.cursor, "string", "more than one person: a cursor");
  const next = await admin(edge, `people?limit=1&cursor=${encodeURIComponent(first.body.cursor)}`);
  assert.equal(next.status, 200);
  assert.equal(next.body.people.length, 1);
  assert.notEqual(next.body.people[0].cio_id, first.body.people[0].cio_id);
  assert.equal((await admin(edge, "people?cursor=")).status, 200, "an empty cursor is the first page");
});

test("merge_customers: a primary without an email takes the secondary's, claimed in the index", async () => {
  const primary = uid("mprimary");
  const email = `${uid("msecondary")}@example.com`;
  assert.equal((await api("PUT", `v1/customers/${primary}`, { plan: "p" })).status, 200);
  assert.equal((await api("PUT", `v1/customers/${encodeURIComponent(email)}`, { only_secondary: 1 })).status, 200);
  const secondary = (await person(edge, email)).body;
  assert.equal((await api("POST", "v1/merge_customers", { primary: { id: primary }, secondary: { email } })).status, 200);
  const merged = (await person(edge, primary)).body;
  assert.equal(merged.email, email, "the email moved");
  assert.equal(merged.attributes.only_secondary, 1);
  assert.equal((await person(edge, email)).body.cio_id, merged.cio_id, "the index names the primary");
  assert.equal((await person(edge, `cio_${secondary.cio_id}`)).status, 404);
  // A browser identifying by that email reaches the primary.
  const b = new Browser(edge);
  assert.equal((await b.identify({ id: email, via: "browser" })).status, 200);
  assert.equal((await person(edge, primary)).body.attributes.via, "browser");
  // A primary with its own email keeps it; the secondary's is released.
  const own = `${uid("own")}@example.com`;
  const other = `${uid("other")}@example.com`;
  const p2 = uid("mprimary2");
  await api("PUT", `v1/customers/${p2}`, { email: own });
  await api("PUT", `v1/customers/${encodeURIComponent(other)}`, {});
  assert.equal((await api("POST", "v1/merge_customers", { primary: { id: p2 }, secondary: { email: other } })).status, 200);
  assert.equal((await person(edge, p2)).body.email, own);
  assert.equal((await person(edge, other)).status, 404, "released");
});
