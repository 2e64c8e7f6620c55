// Customer.io's Data Pipelines node SDK (@customerio/cdp-analytics-node)
// pointed at the edge, and the Pipelines endpoints' answers to bad input.
// docs/API.md section 11; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Analytics } from "@customerio/cdp-analytics-node";
import { withEdge } from "./support/edge.mjs";
import { uid } from "./support/people.mjs";
import { adminGet, profile, events, person, basic, sortedNames, ADMIN_TOKEN } from "./support/api.mjs";

const WRITE_KEY = "nodeWriteKey42";
const { edge, another } = withEdge({ vars: { CIO_CDP_WRITE_KEY: WRITE_KEY }, secrets: { ADMIN_TOKEN } });

/// The SDK as the docs tell a backend to point it at the edge: the site as
/// `host`, the edge's batch path as `path` (the SDK resolves `path` against
/// `host`, dropping any path `host` has).
function sdk(writeKey = WRITE_KEY, more = {}) {
  const analytics = new Analytics({ writeKey, host: edge.url, path: "/_cio/cdp/v1/batch", maxRetries: 0, flushInterval: 10, ...more });
  const errors = [];
  const requests = [];
  analytics.on("error", (e) => errors.push(e));
  analytics.on("http_request", (r) => requests.push(r));
  return { analytics, errors, requests };
}

const call = (analytics, method, params) =>
  new Promise((resolve, reject) => analytics[method](params, (err, ctx) => (err ? reject(err) : resolve(ctx))));

const post = (path, body, headers = {}) =>
  edge.fetch(`/_cio/cdp/v1/${path}`, {
    method: "POST",
    headers: { "content-type": "text/plain", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

test("cdp-analytics-node: identify, track, page and a batch accepted and recorded, anonymous history merged", async () => {
  const { analytics, errors } = sdk();
  const anon = `anon-${uid("node")}`;
  const id = uid("cdpnode");

  await call(analytics, "track", { anonymousId: anon, event: "Browsed", properties: { sku: "A1" } });
  await call(analytics, "page", { anonymousId: anon, name: "Pricing", properties: { url: "https://shop.example/pricing" } });
  const visitor = await adminGet(edge, `visitors/${anon}/activity`);
  assert.deepEqual(sortedNames(visitor.body.events), ["Browsed", "https://shop.example/pricing"]);

  await call(analytics, "identify", {
    userId: id, anonymousId: anon, traits: { email: `${id}@example.com`, plan: "pro", createdAt: "2026-01-02T03:04:05.000Z" },
  });
  const created = await profile(edge, id);
  assert.equal(created.email, `${id}@example.com`);
  assert.equal(created.created_at, 1767323045);
  assert.deepEqual(created.attributes, { plan: "pro" });
  assert.deepEqual(created.anonymous_ids, [anon]);

  const when = new Date(Date.now() - 3600_000);
  await call(analytics, "track", { userId: id, event: "Upgraded", properties: { to: "team" }, timestamp: when, messageId: "upgrade-1" });
  await call(analytics, "page", { userId: id, name: "Account", properties: { url: "https://shop.example/account" } });
  const history = await events(edge, id);
  assert.deepEqual(sortedNames(history), ["Browsed", "Upgraded", "https://shop.example/account", "https://shop.example/pricing"]);
  const upgraded = history.find((e) => e.name === "Upgraded");
  assert.equal(upgraded.timestamp, Math.floor(when.getTime() / 1000));
  assert.deepEqual(upgraded.data, { to: "team" });
  assert.equal(upgraded.id, "browser:upgrade-1");

  // Several calls flushed together: one request, a batch of three.
  const batching = sdk(WRITE_KEY, { maxEventsInBatch: 10, flushInterval: 60_000 });
  batching.analytics.track({ userId: id, event: "Batched 1" });
  batching.analytics.track({ userId: id, event: "Batched 2" });
  batching.analytics.identify({ userId: id, traits: { seats: 5 } });
  await batching.analytics.closeAndFlush();
  const sent = batching.requests;
  assert.equal(sent.length, 1);
  assert.equal(sent[0].url, `${edge.url}/_cio/cdp/v1/batch`);
  assert.equal(JSON.parse(sent[0].body).batch.length, 3);
  const after = await events(edge, id);
  assert.ok(after.some((e) => e.name === "Batched 1") && after.some((e) => e.name === "Batched 2"));
  assert.equal((await profile(edge, id)).attributes.seats, 5);

  // A redelivered batch (same messageIds) is recorded once.
  const again = JSON.parse(sent[0].body);
  const res = await post("batch", again, { authorization: basic(WRITE_KEY, "") });
  assert.equal(res.status, 200);
  assert.equal((await events(edge, id)).filter((e) => e.name === "Batched 1").length, 1);
  assert.deepEqual(errors, []);
  assert.deepEqual(batching.errors, []);
  await analytics.closeAndFlush();
});

test("cdp-analytics-node with another write key: refused with 400 naming writeKey, nothing stored", async () => {
  const { analytics } = sdk("wrongKey");
  const id = uid("wrongkey");
  await assert.rejects(call(analytics, "identify", { userId: id, traits: { plan: "x" } }), (err) => {
    assert.match(String(err.reason ?? err.message ?? err), /\[400\]/);
    return true;
  });
  assert.equal((await person(edge, id)).status, 404);
  await analytics.closeAndFlush();
});

test("browser bodies: text/plain JSON with writeKey, the short paths, group and alias", async () => {
  const id = uid("short");
  const anon = crypto.randomUUID();
  const common = { writeKey: WRITE_KEY, anonymousId: anon, messageId: `m-${id}`, timestamp: new Date().toISOString(), sentAt: new Date().toISOString() };
  let res = await post("t", { ...common, type: "track", event: "Short Path", properties: { a: 1 } });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  // The SDK's anonymous id becomes the edge's visitor cookie.
  assert.ok(res.headers.getSetCookie().some((c) => c.startsWith(`_cioanonid=${anon};`)));
  res = await post("i", { ...common, messageId: `i-${id}`, type: "identify", userId: id, traits: { email: `${id}@example.com` } });
  assert.equal(res.status, 200);
  assert.ok(res.headers.getSetCookie().some((c) => c.startsWith(`_cioid=${id};`)));
  assert.deepEqual(sortedNames(await events(edge, id)), ["Short Path"]);

  res = await post("g", { writeKey: WRITE_KEY, type: "group", userId: id, groupId: "acme", traits: { object_type_id: "2", relationshipAttributes: { role: "owner" } } });
  assert.equal(res.status, 200);
  assert.deepEqual((await profile(edge, id)).relationships, [{ object_type_id: "2", object_id: "acme", attributes: { role: "owner" } }]);

  // alias: the visitor previousId joins the person; another person named
  // by previousId is never merged away by a public key.
  const earlier = `anon-${uid("aliased")}`;
  assert.equal((await post("t", { writeKey: WRITE_KEY, anonymousId: earlier, event: "Before Alias" })).status, 200);
  assert.equal((await post("a", { writeKey: WRITE_KEY, type: "alias", userId: id, previousId: earlier })).status, 200);
  assert.ok((await events(edge, id)).some((e) => e.name === "Before Alias"));
  assert.ok((await profile(edge, id)).anonymous_ids.includes(earlier));
  const other = uid("kept");
  assert.equal((await post("identify", { writeKey: WRITE_KEY, userId: other })).status, 200);
  assert.equal((await post("alias", { writeKey: WRITE_KEY, userId: id, previousId: other })).status, 200);
  assert.equal((await person(edge, other)).status, 200);
});

test("bad calls: a clear 4xx naming the field, nothing stored; wrong methods; no source without the setting", async () => {
  const id = uid("bad");
  const cases = [
    ["t", "not json", 400, undefined],
    ["t", { writeKey: "nope", userId: id, event: "x" }, 400, "writeKey"],
    ["t", { userId: id, event: "x" }, 400, "writeKey"],
    ["t", { writeKey: WRITE_KEY, userId: id }, 400, "event"],
    ["t", { writeKey: WRITE_KEY, event: "x" }, 400, "anonymousId"],
    ["t", { writeKey: WRITE_KEY, userId: id, event: "x", properties: [1] }, 400, "properties"],
    ["t", { writeKey: WRITE_KEY, userId: id, event: "x", timestamp: "tomorrow-ish" }, 400, "timestamp"],
    ["i", { writeKey: WRITE_KEY, userId: 4.5 }, 400, "userId"],
    ["i", { writeKey: WRITE_KEY, userId: id, traits: { email: "not-an-email" } }, 400, "traits.email"],
    ["batch", { writeKey: WRITE_KEY, batch: [{ type: "track", userId: id, event: "ok" }, { type: "track", userId: id }] }, 400, "batch[1].event"],
    ["batch", { writeKey: WRITE_KEY, batch: [{ type: "nope" }] }, 400, "batch[0].type"],
  ];
  for (const [path, body, status, field] of cases) {
    const res = await post(path, body);
    assert.equal(res.status, status, `${path} ${JSON.stringify(body)}`);
    const answer = await res.json();
    assert.equal(answer.errors[0].field, field, JSON.stringify(answer));
  }
  // Nothing of the refused batch was applied.
  assert.equal((await person(edge, id)).status, 404);

  // Settings with another key: 400; the wrong method: 405.
  assert.equal((await edge.fetch("/_cio/cdp/v1/projects/nope/settings")).status, 400);
  assert.equal((await edge.fetch("/_cio/cdp/v1/t")).status, 405);
  assert.equal((await edge.fetch("/_cio/cdp/v1/analytics-js/nope.js")).status, 404);
  const settings = await (await edge.fetch(`/_cio/cdp/v1/projects/${WRITE_KEY}/settings`)).json();
  const host = new URL(edge.url).host;
  assert.deepEqual(settings.integrations["Customer.io Data Pipelines"], { apiKey: WRITE_KEY, apiHost: `${host}/_cio/cdp/v1`, protocol: "http" });

  // Unset: /_cio/cdp/ does not exist, as before.
  const off = await another({ vars: {} });
  for (const path of [`/_cio/cdp/v1/projects/${WRITE_KEY}/settings`, `/_cio/cdp/v1/analytics-js/snippet/${WRITE_KEY}/analytics.min.js`]) {
    assert.equal((await off.fetch(path)).status, 404, path);
  }
  const res = await off.fetch("/_cio/cdp/v1/t", { method: "POST", body: JSON.stringify({ writeKey: WRITE_KEY, anonymousId: "a", event: "x" }) });
  assert.equal(res.status, 404);
  // And no ajs cookie on its pages.
  const page = await off.fetch("/html", { headers: { accept: "text/html" } });
  assert.ok(!page.headers.getSetCookie().some((c) => c.startsWith("ajs_")));
});

test("the bundle: the write key embedded, the edge as its CDN, cached by ETag; a wrong key is 400", async () => {
  const res = await edge.fetch(`/_cio/cdp/v1/analytics-js/snippet/${WRITE_KEY}/analytics.min.js`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /javascript/);
  const text = await res.text();
  assert.ok(text.includes(`window.analyticsWriteKey="${WRITE_KEY}"`));
  assert.ok(!text.includes("__WRITE_KEY__"));
  assert.ok(text.includes(JSON.stringify(`${edge.url}/_cio/cdp`)));
  const etag = res.headers.get("etag");
  assert.equal((await edge.fetch(`/_cio/cdp/v1/analytics-js/snippet/${WRITE_KEY}/analytics.min.js`, { headers: { "if-none-match": etag } })).status, 304);
  const chunk = await edge.fetch("/_cio/cdp/v1/analytics-js/ajs-destination.js");
  assert.equal(chunk.status, 200);
  assert.equal((await edge.fetch("/_cio/cdp/v1/analytics-js/snippet/other/analytics.min.js")).status, 400);
});

test("secure mode: an identify needs traits.user_hash; an unvouched userId is the visitor's. Consent: 204, nothing stored", async () => {
  const SECRET = "cdp-secure-secret";
  const secure = await another({ vars: { CIO_CDP_WRITE_KEY: WRITE_KEY }, secrets: { ADMIN_TOKEN, IDENTIFY_SECRET: SECRET } });
  const send = (w, path, body, headers = {}) =>
    w.fetch(`/_cio/cdp/v1/${path}`, { method: "POST", headers: { "content-type": "text/plain", ...headers }, body: JSON.stringify({ writeKey: WRITE_KEY, ...body }) });
  const id = uid("secure");
  assert.equal((await send(secure, "i", { userId: id, traits: { plan: "x" } })).status, 401);
  assert.equal((await send(secure, "i", { userId: id, traits: { user_hash: "0".repeat(64) } })).status, 401);
  assert.equal((await person(secure, id)).status, 404);
  const { createHmac } = await import("node:crypto");
  const hash = createHmac("sha256", SECRET).update(id).digest("hex");
  const ok = await send(secure, "i", { userId: id, traits: { plan: "x", user_hash: hash } });
  assert.equal(ok.status, 200);
  assert.ok(ok.headers.getSetCookie().some((c) => c.startsWith("_cioidsig=")));
  assert.deepEqual((await profile(secure, id)).attributes, { plan: "x" });

  // A track claiming that userId without the signed cookie: the visitor's.
  const anon = crypto.randomUUID();
  assert.equal((await send(secure, "t", { userId: id, anonymousId: anon, event: "Claimed" })).status, 200);
  assert.deepEqual(await events(secure, id), []);
  assert.deepEqual(sortedNames((await adminGet(secure, `visitors/${anon}/activity`)).body.events), ["Claimed"]);
  // alias and group name a person too: refused without the signed cookie.
  assert.equal((await send(secure, "a", { userId: id, previousId: anon })).status, 401);
  assert.equal((await send(secure, "g", { userId: id, groupId: "acme" })).status, 401);
  assert.deepEqual((await profile(secure, id)).anonymous_ids, []);

  const gpc = await another({ vars: { CIO_CDP_WRITE_KEY: WRITE_KEY, CONSENT: "gpc" }, secrets: { ADMIN_TOKEN } });
  const quiet = crypto.randomUUID();
  const res = await send(gpc, "t", { anonymousId: quiet, event: "No Consent" }, { "sec-gpc": "1" });
  assert.equal(res.status, 204);
  assert.deepEqual(res.headers.getSetCookie(), []);
  assert.deepEqual((await adminGet(gpc, `visitors/${quiet}/activity`)).body.events, []);
});
