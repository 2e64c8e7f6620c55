// Forwarding checked against Customer.io's side: the edge forwards to a
// workspace stand-in built from Customer.io's published Track API schema
// and documentation (tests/support/cio-workspace.mjs), never from this
// project's code. A journey of every write kind must be accepted whole, and
// must mean there what it means here: the visitor's history joined to the
// person (also after an outage longer than the five-minute join window), no
// created_at overwritten, no person renamed by a link, no event id shared.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { withEdge } from "./support/edge.mjs";
import { startWorkspace } from "./support/cio-workspace.mjs";
import { api, adminGet, basic, email, ADMIN_TOKEN } from "./support/api.mjs";
import { Browser, eventually, uid } from "./support/people.mjs";

const WORKSPACE = { siteId: "ws-site", apiKey: "ws-key" };
const EDGE_API = { SITE_ID: "edge-site", API_KEY: "edge-key" };
const EDGE_AUTH = basic(EDGE_API.SITE_ID, EDGE_API.API_KEY);

let ws;

// The site: HTML pages, a sign-up form target, and `/login?as=<json>`
// answering X-Cio-Identify (docs/API.md rule 10.1).
async function startSite() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const url = new URL(req.url, "http://site");
      const headers = { "content-type": "text/html; charset=utf-8" };
      if (url.pathname === "/login") headers["x-cio-identify"] = url.searchParams.get("as");
      res.writeHead(200, headers);
      res.end("<!doctype html><html><head><title>t</title></head><body>hi</body></html>");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

const { edge, another } = withEdge(async () => {
  // A workspace with "Allow updates to email using ID" on (docs/FORWARDING.md
  // set-up); one test below turns it off.
  ws = await startWorkspace({ ...WORKSPACE, emailUpdatesById: true });
  return {
    origin: startSite,
    secrets: { ...EDGE_API, ADMIN_TOKEN, CIO_SITE_ID: WORKSPACE.siteId, CIO_API_KEY: WORKSPACE.apiKey },
    vars: { CIO_TRACK_URL: ws.url, AUTO_IDENTIFY_FORMS: "true" },
    queues: true,
    close: () => ws.close(),
  };
});

const w = () => ws.workspace;
const edgeApi = async (method, path, body) => {
  const res = await api(edge, method, path, body, { auth: EDGE_AUTH });
  assert.ok(res.status === 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res;
};
const forwarding = async () => (await adminGet(edge, "forwarding")).body;
const there = (key, value) => w().find(key, value);
const names = (p) => (p?.events ?? []).map((e) => e.name).sort();

/// Waits until the edge has handed everything over and the workspace has
/// taken it (nothing pending, nothing held).
async function settled(what, ms = 60000) {
  let quiet = 0;
  await eventually(async () => {
    const s = await forwarding();
    quiet = s.pending === 0 ? quiet + 1 : 0;
    await new Promise((r) => setTimeout(r, 300));
    return quiet >= 4;
  }, what, ms);
}

test("a journey of every write kind: every operation accepted, and it means the same there", async () => {
  // A returning customer Customer.io already knows, created long ago, and a
  // person whose email a tracked link carries.
  w().apply({ type: "person", action: "identify", identifiers: { id: "returning-1" }, attributes: { created_at: 1500000000, email: "returning@example.com" } });
  w().apply({ type: "person", action: "identify", identifiers: { id: "recipient-1" }, attributes: { email: "recipient@example.com" } });
  const recipient = there("id", "recipient-1");

  // Browser: anonymous pages and an event, then an identify.
  const b = new Browser(edge);
  await b.visit("/");
  assert.equal((await b.page("/pricing", { plan: "pro" })).status, 200);
  assert.equal((await b.track("viewed_video", { video: "intro" })).status, 200);
  const shopper = uid("shopper");
  assert.equal((await b.identify({ id: shopper, email: email("shopper"), first_name: "Ada" })).status, 200);
  assert.equal((await b.track("checkout", { total: 42 })).status, 200);
  // The returning customer logs in: no created_at sent, none overwritten.
  const r = new Browser(edge);
  await r.visit("/");
  assert.equal((await r.page("/login-page")).status, 200);
  assert.equal((await r.identify({ id: "returning-1", plan: "gold" })).status, 200);

  // Forms: a sign-up form identifies by email.
  const f = new Browser(edge);
  await f.visit("/");
  const signup = email("form");
  const posted = await edge.raw("/signup", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: f.jar.header() },
    body: `email=${encodeURIComponent(signup)}`,
  });
  assert.equal(posted.status, 200);

  // Origin headers: the site identifies the visitor on its own response.
  const o = new Browser(edge);
  await o.visit("/");
  assert.equal((await o.page("/before-login")).status, 200);
  const member = uid("member");
  await o.visit(`/login?as=${encodeURIComponent(JSON.stringify({ id: member, tier: "a" }))}`);
  assert.equal(o.cioid, member);

  // A link from an email: the clicker's events are the recipient's; when the
  // clicker identifies as someone else, that is their own person.
  const l = new Browser(edge);
  await l.visit("/");
  await l.visit(`/welcome?_cio_id=${recipient.cio_id}`);
  assert.equal((await l.page("/welcome")).status, 200);
  const clicker = email("clicker");
  assert.equal((await l.identify({ id: clicker })).status, 200);

  // Track API v1 into the edge.
  const [p1, p2, gone] = [uid("p1"), uid("p2"), uid("gone")];
  await edgeApi("PUT", `v1/customers/${p1}`, { email: email("p1"), created_at: 1600000000 });
  await edgeApi("PUT", `v1/customers/${p2}`, { city: "Oslo" });
  // The same client event id for two people: two events there.
  await edgeApi("POST", `v1/customers/${p1}/events`, { name: "order", id: "order-1001" });
  await edgeApi("POST", `v1/customers/${p2}/events`, { name: "order", id: "order-1001" });
  await edgeApi("POST", `v1/customers/${p1}/events`, { name: "Home", type: "screen" });
  const anonApi = uid("anon-api");
  await edgeApi("POST", "v1/events", { anonymous_id: anonApi, name: "app_opened" });
  await edgeApi("PUT", `v1/customers/${p1}/devices`, { device: { id: "tok-1", platform: "ios", last_used: 1700000000 } });
  await edgeApi("PUT", `v1/customers/${p1}/devices`, { device: { id: "tok-2", platform: "android" } });
  await edgeApi("DELETE", `v1/customers/${p1}/devices/tok-2`);
  await edgeApi("PUT", `v1/customers/${gone}`, { doomed: true });
  const sup = uid("sup");
  await edgeApi("PUT", `v1/customers/${sup}`, { x: 1 });
  // Track API v2: an identify carrying the anonymous_id attribute merges
  // that visitor (as Customer.io's clients send it); relationships; a
  // screen; a device; suppression.
  const v2 = uid("v2");
  const res = await api(edge, "POST", "v2/batch", {
    batch: [
      { type: "person", action: "identify", identifiers: { id: v2 }, attributes: { anonymous_id: anonApi, plan: "team" } },
      { type: "person", action: "add_relationships", identifiers: { id: v2 }, cio_relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] },
      { type: "person", action: "screen", identifiers: { id: v2 }, name: "Settings" },
      { type: "person", action: "event", identifiers: { anonymous_id: uid("anon-v2") }, name: "browsed" },
      { type: "person", action: "add_device", identifiers: { id: v2 }, device: { token: "tok-3", platform: "android" } },
      { type: "person", action: "suppress", identifiers: { id: sup } },
      { type: "person", action: "unsuppress", identifiers: { id: sup } },
    ],
  }, { auth: EDGE_AUTH });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  await settled("the first writes forwarded");
  // Merge and delete once both sides know the people (docs/FORWARDING.md, order).
  await edgeApi("POST", "v1/merge_customers", { primary: { id: p1 }, secondary: { id: p2 } });
  await edgeApi("DELETE", `v1/customers/${gone}`);
  // An email change addressed by id (applied: the workspace allows it).
  const newMail = email("p1new");
  await edgeApi("PUT", `v1/customers/${p1}`, { email: newMail });
  await settled("everything forwarded");

  const status = await forwarding();
  const outcomes = w().log.map((l) => l.outcome);
  console.log(`journey: ${w().log.length} operations accepted, ${w().refused.length} refused; forwarding ${JSON.stringify({ enqueued: status.enqueued, delivered: status.delivered, failed: status.failed })}`);
  assert.deepEqual(w().refused, [], "no operation refused");
  assert.equal(status.failed, 0, JSON.stringify(status.dead_letters));
  assert.ok(status.workspace_settings.some((x) => x.startsWith("Allow updates to email using ID")), JSON.stringify(status));
  assert.deepEqual(outcomes.filter((o) => /orphaned|dropped/.test(o)), []);
  for (const action of ["identify", "event", "page", "screen", "add_relationships", "add_device", "delete_device", "merge", "delete", "suppress", "unsuppress"]) {
    assert.ok(w().log.some((l) => l.op.action === action), `a forwarded ${action}`);
  }

  // The visitor's pre-login history is the person's there.
  const shopperThere = there("id", shopper);
  assert.deepEqual(names(shopperThere), ["/pricing", "checkout", "viewed_video"]);
  assert.equal(shopperThere.attributes.anonymous_id, b.anon);
  assert.deepEqual(names(there("id", member)), ["/before-login"]);
  assert.deepEqual(names(there("email", signup)), []);
  assert.ok(there("email", signup), "the form's person");
  assert.deepEqual(names(there("id", v2)).includes("app_opened"), true, "attributes.anonymous_id joined the API visitor");
  // created_at: only what a caller sent.
  const returning = there("id", "returning-1");
  assert.deepEqual(returning.created_at_writes, [1500000000], "Customer.io's created_at stands");
  assert.equal(returning.attributes.plan, "gold");
  assert.deepEqual(names(returning), ["/login-page"]);
  assert.deepEqual(there("id", p1).created_at_writes, [1600000000]);
  // The link: the recipient got the clicker's linked page view but keeps
  // its own id and email; the clicker is a person of its own.
  const recipientNow = there("cio_id", recipient.cio_id);
  assert.equal(recipientNow.id, "recipient-1");
  assert.equal(recipientNow.email, "recipient@example.com");
  assert.deepEqual(names(recipientNow), ["/welcome"]);
  assert.ok(there("email", clicker), "the clicker's own person");
  // Two people's order-1001 are two events (the merge brought p2's to p1).
  const p1There = there("id", p1);
  assert.equal(p1There.events.filter((e) => e.name === "order").length, 2);
  assert.equal(p1There.email, newMail);
  assert.equal(p1There.attributes.city, "Oslo");
  assert.equal(there("id", p2), undefined);
  assert.equal(there("id", gone), undefined);
  assert.deepEqual(Object.keys(p1There.devices), ["tok-1"]);
  assert.deepEqual(Object.keys(there("id", v2).devices), ["tok-3"]);
  assert.deepEqual(there("id", v2).relationships.map((x) => x.identifiers.object_id), ["acme"]);
  // Suppress deletes the person there; unsuppress only lifts the ban.
  assert.equal(there("id", sup), undefined);
  assert.deepEqual(w().log.filter((l) => l.op.identifiers?.id === sup).map((l) => l.outcome), ["identified", "suppressed", "unsuppressed"]);
});

test("anonymous events delivered more than five minutes after the identify still join the person", async () => {
  const d = new Browser(edge);
  await d.visit("/");
  const anon = d.anon;
  // The workspace throttles (429) every batch holding this visitor's events.
  ws.state.hold = (op) => op.identifiers?.anonymous_id === anon;
  // Operations of several objects share a request: a long Retry-After keeps
  // the held events out of the way while the person's identify travels.
  ws.state.retryAfter = 8;
  const heldBefore = ws.state.held;
  assert.equal((await d.page("/compare")).status, 200);
  assert.equal((await d.track("added_to_cart", { sku: "s1" })).status, 200);
  await eventually(() => ws.state.held > heldBefore, "the anonymous events turned away", 20000);
  const late = uid("late");
  assert.equal((await d.identify({ id: late })).status, 200);
  await eventually(() => there("id", late)?.attributes.anonymous_id === anon, "the identify with the anonymous_id attribute", 20000);
  assert.deepEqual(names(there("id", late)), [], "nothing joined yet: the events are held");
  // Six minutes pass at the workspace, then it takes the events again.
  w().advance(6 * 60);
  ws.state.hold = null;
  ws.state.retryAfter = 1;
  await eventually(() => names(there("id", late)).length === 2, "the late events joined to the person", 30000);
  assert.deepEqual(names(there("id", late)), ["/compare", "added_to_cart"]);
  // They arrived outside the window and were kept anonymous: the identify
  // sent again after them is what joined them.
  const anonOps = w().log.filter((l) => l.op.identifiers?.anonymous_id === anon);
  assert.deepEqual(anonOps.map((l) => l.outcome), ["anonymous event kept", "anonymous event kept"]);
  const joins = w().log.filter((l) => l.op.action === "identify" && l.op.attributes?.anonymous_id === anon);
  assert.ok(joins.length >= 2, "the join identify was sent again");
  assert.ok(joins.at(-1).at >= anonOps.at(-1).at);
  assert.deepEqual(w().refused, []);
  console.log(`late join: ${anonOps.length} events held ${ws.state.held - heldBefore} times, joined after ${joins.length} join identifies`);
});

test("without \"Allow updates to email using ID\" an email change addressed by id is not applied there", async () => {
  const ws2 = await startWorkspace(WORKSPACE);
  const edge2 = await another({
    secrets: { ...EDGE_API, ADMIN_TOKEN, CIO_SITE_ID: WORKSPACE.siteId, CIO_API_KEY: WORKSPACE.apiKey },
    vars: { CIO_TRACK_URL: ws2.url },
    queues: true,
  });
  try {
    const id = uid("mail");
    const [first, second] = [email("first"), email("second")];
    assert.equal((await api(edge2, "PUT", `v1/customers/${id}`, { email: first }, { auth: EDGE_AUTH })).status, 200);
    assert.equal((await api(edge2, "PUT", `v1/customers/${id}`, { email: second }, { auth: EDGE_AUTH })).status, 200);
    await eventually(() => ws2.workspace.log.length >= 2, "both identifies", 20000);
    assert.equal(ws2.workspace.find("id", id).email, first, "the workspace setting decides");
    assert.match(ws2.workspace.log.at(-1).outcome, /ignored email change/);
    assert.deepEqual(ws2.workspace.refused, []);
  } finally {
    await ws2.close();
  }
});

test("LINK_MERGES_HISTORY=true: a link joins the visitor's earlier history to the linked person, here and there", async () => {
  const linking = await another({
    secrets: { ...EDGE_API, ADMIN_TOKEN, CIO_SITE_ID: WORKSPACE.siteId, CIO_API_KEY: WORKSPACE.apiKey },
    vars: { CIO_TRACK_URL: ws.url, LINK_MERGES_HISTORY: "true" },
    queues: true,
  });
  const admin = async (path) => (await adminGet(linking, path)).body;
  // A person this edge knows.
  const known = uid("known");
  assert.equal((await api(linking, "PUT", `v1/customers/${known}`, { plan: "p" }, { auth: EDGE_AUTH })).status, 200);
  const cio = (await admin(`people/${known}`)).cio_id;
  const a = new Browser(linking);
  await a.visit("/");
  assert.equal((await a.page("/early")).status, 200);
  await a.visit(`/promo?_cio_id=${cio}`);
  assert.equal(a.cioid, known);
  await eventually(async () => ((await admin(`people/${known}/activity`)).events ?? []).length === 1, "the history merged here", 20000);
  await eventually(() => names(there("id", known)).includes("/early"), "the history joined there", 20000);
  // A Customer.io person this edge never saw: made with the history by its first event.
  w().apply({ type: "person", action: "identify", identifiers: { id: "ext-linked" }, attributes: {} });
  const ext = there("id", "ext-linked");
  const b = new Browser(linking);
  await b.visit("/");
  assert.equal((await b.page("/early2")).status, 200);
  await b.visit(`/promo?_cio_id=${ext.cio_id}`);
  assert.equal((await b.page("/after")).status, 200);
  assert.deepEqual(((await admin(`people/cio_${ext.cio_id}/activity`)).events ?? []).map((e) => e.name).sort(), ["/after", "/early2"]);
  await eventually(() => names(there("id", "ext-linked")).length === 2, "both page views there", 20000);
  assert.deepEqual(names(there("id", "ext-linked")), ["/after", "/early2"]);
  assert.equal(there("id", "ext-linked").attributes.anonymous_id, b.anon);
  assert.deepEqual(w().refused, []);
});
