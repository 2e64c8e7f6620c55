// In-app messages in a real browser: Debian's Chromium runs /_cio/track.js
// and the pinned Gist web SDK served at /_cio/gist.js, in env "local", whose
// three hosts (queue API localhost:3010, realtime localhost:3009, renderer
// localhost:9998, customerio-gist-web 3.26.0 dist/gist.min.js settings) are
// stubbed with Playwright's route: no network. The stubs play Gist's side as
// the bundle itself calls it: POST /api/v4/users with the base64 user token
// in X-Gist-Encoded-User-Token answers {inAppMessages, inboxMessages}; the
// renderer iframe (RENDERER_HOST/index.html) receives {options} by
// postMessage and answers {gist: {instanceId, method, parameters}}.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { startWorker } from "./support/worker.mjs";
import { classicSnippet } from "../demo/server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ADMIN = "inapp-admin-token";
const SECRET = "inapp-identify-secret";
const DELIVERY = "delivery-42";

const inAppTag = "t.setAttribute('data-use-in-app', 'true'); t.setAttribute('data-in-app-env', 'local');";
const page = (head, body = "<p>hello</p>") =>
  `<!doctype html><html><head><meta charset="utf-8"><title>app</title>${head}</head><body>${body}</body></html>`;
// classicSnippet carries data-site-id 'demo'; `/nosite` relies on IN_APP_SITE_ID.
const APP = page(classicSnippet(inAppTag));
const NOSITE = page(classicSnippet(inAppTag).replace("t.setAttribute('data-site-id', 'demo');", ""));

// The origin: app pages, and a login / logout that only answer the edge's
// headers (no JS call anywhere).
let origin;
let originUrl;
function startOrigin() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const url = new URL(req.url, "http://x");
      const headers = { "content-type": "text/html; charset=utf-8" };
      if (url.pathname === "/login") headers["x-cio-identify"] = JSON.stringify({ id: url.searchParams.get("id") });
      if (url.pathname === "/logout") headers["x-cio-reset"] = "1";
      if (url.pathname === "/plain") {
        res.writeHead(200, headers);
        return res.end(page(""));
      }
      res.writeHead(200, headers);
      res.end(url.pathname === "/nosite" ? NOSITE : APP);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// The forwarding receiver: a stand-in for Customer.io's Track API derived
// from its published OpenAPI (customer-io-track-api-openapi.json):
// - POST /api/v1/metrics, "Report metrics", security: [] (no credentials);
//   body oneOf ... "In-app": track-metrics (required `delivery_id` string,
//   `timestamp` integer unix timestamp) and required `metric` in
//   [clicked, converted, opened], `recipient` string, `href` string.
//   Valid: 200; anything else: 400.
// - POST /api/v2/batch: Basic auth, `batch` an array; 200 when accepted.
const received = { metrics: [], refused: [], batches: 0 };
let receiver;
function startReceiver() {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try { body = JSON.parse(Buffer.concat(chunks).toString()); } catch { body = undefined; }
      const answer = (status, json) => { res.writeHead(status, { "content-type": "application/json" }); res.end(JSON.stringify(json)); };
      if (req.method === "POST" && req.url === "/api/v1/metrics") {
        const problems = [];
        if (!body || typeof body !== "object") problems.push("body");
        else {
          if (typeof body.delivery_id !== "string") problems.push("delivery_id");
          if (!["clicked", "converted", "opened"].includes(body.metric)) problems.push("metric");
          if (body.timestamp !== undefined && !Number.isInteger(body.timestamp)) problems.push("timestamp");
          if (body.recipient !== undefined && typeof body.recipient !== "string") problems.push("recipient");
          if (body.href !== undefined && typeof body.href !== "string") problems.push("href");
        }
        if (problems.length) { received.refused.push({ body, problems }); return answer(400, { meta: { error: problems.join(", ") } }); }
        received.metrics.push({ body, authorization: req.headers.authorization });
        return answer(200, {});
      }
      if (req.method === "POST" && req.url === "/api/v2/batch") {
        if (!req.headers.authorization?.startsWith("Basic ") || !Array.isArray(body?.batch)) return answer(400, { errors: [{ reason: "invalid" }] });
        received.batches++;
        return answer(200, {});
      }
      answer(404, {});
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

let edge; // IN_APP on, forwarding on
let secure; // IN_APP on, COOKIE_HTTPONLY, ID_COOKIE=cio, IDENTIFY_SECRET
let off; // IN_APP off
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  origin = await startOrigin();
  originUrl = `http://127.0.0.1:${origin.address().port}`;
  receiver = await startReceiver();
  edge = await startWorker({
    originUrl,
    vars: { IN_APP: "true", IN_APP_SITE_ID: "site-from-setting", CIO_TRACK_URL: `http://127.0.0.1:${receiver.address().port}` },
    secrets: { ADMIN_TOKEN: ADMIN, CIO_SITE_ID: "workspace", CIO_API_KEY: "key" },
    queues: true,
  });
  secure = await startWorker({
    originUrl,
    vars: { IN_APP: "true", COOKIE_HTTPONLY: "true", ID_COOKIE: "cio" },
    secrets: { ADMIN_TOKEN: ADMIN, IDENTIFY_SECRET: SECRET },
  });
  off = await startWorker({ originUrl, secrets: { ADMIN_TOKEN: ADMIN } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
      "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  for (const w of [edge, secure, off]) await w?.dispose();
  origin?.close();
  receiver?.close();
});

const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "*",
  "access-control-allow-methods": "GET, POST, PATCH, DELETE, OPTIONS",
  "access-control-expose-headers": "*",
};

// The renderer: receives the SDK's {options}, then says the message loaded;
// `window.send(method, parameters)` speaks for a click in the message.
const RENDERER = `<!doctype html><html><body><p>in-app message</p><script>
var instanceId = null;
window.send = function (method, parameters) {
  parent.postMessage({ gist: { instanceId: instanceId, method: method, parameters: parameters } }, "*");
};
window.addEventListener("message", function (e) {
  if (!e.data || !e.data.options) return;
  instanceId = e.data.options.instanceId;
  window.send("routeLoaded", { route: "welcome" });
});
</script></body></html>`;

/// A browser context whose Gist hosts are stubbed (`queue`: the token that has
/// a message waiting) and that reaches nothing but 127.0.0.1 otherwise.
async function context({ queue = () => null, network = true } = {}) {
  const ctx = await browser.newContext();
  const seen = { users: [], logs: [] };
  await ctx.route((url) => !["127.0.0.1"].includes(url.hostname), async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    if (!network || url.hostname !== "localhost") return route.abort("internetdisconnected");
    if (req.method() === "OPTIONS") return route.fulfill({ status: 204, headers: cors });
    if (url.port === "9998") return route.fulfill({ status: 200, contentType: "text/html", body: RENDERER });
    if (url.port === "3010" && url.pathname === "/api/v4/users") {
      const encoded = req.headers()["x-gist-encoded-user-token"];
      const token = encoded === undefined ? null : Buffer.from(encoded, "base64").toString("latin1");
      seen.users.push(token);
      const waiting = token !== null && queue(token);
      const inAppMessages = waiting
        ? [{ messageId: "welcome-banner", queueId: `q-${token}`, priority: 1, properties: { gist: { campaignId: DELIVERY } } }]
        : [];
      return route.fulfill({
        status: 200,
        contentType: "application/json",
        headers: { ...cors, "x-gist-queue-polling-interval": "1" },
        body: JSON.stringify({ inAppMessages, inboxMessages: [] }),
      });
    }
    if (url.port === "3010") {
      seen.logs.push(url.pathname);
      return route.fulfill({ status: 200, contentType: "application/json", headers: cors, body: "{}" });
    }
    return route.abort("internetdisconnected");
  });
  const tab = await ctx.newPage();
  const errors = [];
  const warnings = [];
  tab.on("pageerror", (e) => errors.push(String(e)));
  tab.on("console", (m) => { if (m.type() === "warning") warnings.push(m.text()); });
  return { ctx, tab, seen, errors, warnings };
}

/// The token Gist holds (its own storage, as the pinned bundle keeps it).
const gistToken = (tab) =>
  tab.evaluate(() => {
    const raw = localStorage.getItem("gist.web.userToken");
    return raw ? JSON.parse(raw).value : null;
  });

async function eventually(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function admin(worker, path) {
  const res = await fetch(`${worker.url}/_cio/admin/${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return { status: res.status, body: await res.json() };
}

/// Listeners on the bus, recording into window.__events (one is removed
/// again with _cio.off, so only one copy of each event may arrive).
const listen = (tab) =>
  tab.evaluate(() => {
    window.__events = [];
    const names = ["in-app:message-opened", "in-app:message-action", "in-app:message-dismissed", "in-app:message-error"];
    const removed = () => window.__events.push(["removed listener ran"]);
    for (const name of names) {
      window._cio.on(name, removed);
      window._cio.on(name, (payload) => window.__events.push([name, payload]));
      window._cio.off(name, removed);
    }
  });
const events = (tab) => tab.evaluate(() => window.__events);

test("a queued message is shown to the identified person; action and dismiss reach _cio.on; opened and clicked reach the edge and Customer.io", async () => {
  const id = `inapp-${crypto.randomUUID()}`;
  const { ctx, tab, seen, errors } = await context({ queue: (token) => token === id });
  await tab.goto(`${edge.url}/app`);
  await eventually(() => tab.evaluate(() => window._cio && window._cio._edge === true), "the SDK");
  await listen(tab);
  await eventually(() => tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  assert.equal(await gistToken(tab), null, "anonymous: no token");

  await tab.evaluate((id) => window._cio.identify({ id, email: `${id}@example.com` }), id);
  assert.equal(await eventually(() => gistToken(tab), "the token after identify"), id);
  const frame = await eventually(() => tab.frames().find((f) => f.url().startsWith("http://localhost:9998/")), "the message's frame");
  const opened = await eventually(async () => (await events(tab)).find(([n]) => n === "in-app:message-opened"), "in-app:message-opened");
  assert.deepEqual(opened[1], { messageId: "welcome-banner", deliveryId: DELIVERY });

  await frame.evaluate(() => window.send("tap", { action: "https://shop.example/offer", name: "cta", system: false }));
  const action = await eventually(async () => (await events(tab)).find(([n]) => n === "in-app:message-action"), "in-app:message-action");
  assert.deepEqual(action[1], { messageId: "welcome-banner", deliveryId: DELIVERY, action: "https://shop.example/offer", name: "cta" });
  await frame.evaluate(() => window.send("tap", { action: "gist://close", name: "close", system: true }));
  const dismissed = await eventually(async () => (await events(tab)).find(([n]) => n === "in-app:message-dismissed"), "in-app:message-dismissed");
  assert.deepEqual(dismissed[1], { messageId: "welcome-banner", deliveryId: DELIVERY });
  assert.ok(!(await events(tab)).some(([n]) => n === "removed listener ran"), "_cio.off removed the listener");
  assert.ok(seen.logs.includes(`/api/v1/logs/queue/q-${id}`), "Gist logged its own view");

  // Recorded on the person: opened once, clicked with its link (the close
  // button is no click).
  const metrics = await eventually(async () => {
    const { body } = await admin(edge, `people/${id}/activity`);
    const found = body.events.filter((e) => e.name.startsWith("in-app:"));
    return found.length >= 2 && found;
  }, "the metrics on the person");
  assert.deepEqual(
    metrics.map((e) => [e.name, e.data]).sort(),
    [
      ["in-app:clicked", { delivery_id: DELIVERY, metric: "clicked", href: "https://shop.example/offer", message_id: "welcome-banner" }],
      ["in-app:opened", { delivery_id: DELIVERY, metric: "opened", message_id: "welcome-banner" }],
    ],
  );
  // Forwarded to the metrics endpoint, without credentials, addressed to the id.
  const forwarded = await eventually(() => received.metrics.filter((m) => m.body.recipient === id).length >= 2 && received.metrics.filter((m) => m.body.recipient === id), "the forwarded metrics", 20000);
  assert.deepEqual(forwarded.map((m) => m.body.metric).sort(), ["clicked", "opened"]);
  for (const m of forwarded) {
    assert.equal(m.body.delivery_id, DELIVERY);
    assert.ok(Number.isInteger(m.body.timestamp));
    assert.equal(m.authorization, undefined);
  }
  assert.equal(forwarded.find((m) => m.body.metric === "clicked").body.href, "https://shop.example/offer");
  assert.deepEqual(received.refused, []);

  // reset clears the token, and the next page load keeps it cleared.
  await tab.evaluate(() => window._cio.reset());
  await eventually(async () => (await gistToken(tab)) === null, "the token cleared by reset");
  await tab.goto(`${edge.url}/app`);
  await eventually(() => tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  await tab.waitForTimeout(500);
  assert.equal(await gistToken(tab), null);
  assert.ok(!seen.users.some((t) => t !== null && t !== id), "only the identified person's token was ever sent");
  assert.ok(!seen.users.some((t) => t?.startsWith("cio_")));
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("an origin login (X-Cio-Identify) sets the token with no JS call; an origin logout (X-Cio-Reset) clears it before the next person", async () => {
  const id = `origin-${crypto.randomUUID()}`;
  const { ctx, tab, seen, errors } = await context({ queue: (token) => token === id });
  await tab.goto(`${edge.url}/app`);
  await eventually(() => tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  assert.equal(await gistToken(tab), null);
  await tab.goto(`${edge.url}/login?id=${encodeURIComponent(id)}`);
  assert.equal(await eventually(() => gistToken(tab), "the token after the origin's login"), id);
  await eventually(() => tab.frames().find((f) => f.url().startsWith("http://localhost:9998/")), "the person's message");
  await tab.goto(`${edge.url}/logout`);
  await eventually(async () => (await gistToken(tab)) === null, "the token cleared by the origin's logout");
  const after = seen.users.length;
  await tab.waitForTimeout(1500);
  assert.ok(!seen.users.slice(after).includes(id), "no request for the previous person after the logout");
  assert.ok(!tab.frames().some((f) => f.url().startsWith("http://localhost:9998/")), "no message shown");
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("HttpOnly cookies, ID_COOKIE=cio and secure mode: the token comes from /_cio/in-app/session, never cio_…; an unsigned _cioid gets none", async () => {
  const id = `secure-${crypto.randomUUID()}`;
  const { ctx, tab, seen, errors } = await context({ queue: (token) => token === id });
  await tab.goto(`${secure.url}/login?id=${encodeURIComponent(id)}`);
  const cookies = await ctx.cookies();
  const cioid = cookies.find((c) => c.name === "_cioid");
  assert.match(cioid.value, /^cio_/);
  assert.ok(cioid.httpOnly);
  assert.equal(await tab.evaluate(() => document.cookie.includes("_cioid")), false);
  assert.equal(await eventually(() => gistToken(tab), "the token from the session endpoint"), id);
  const session = await tab.evaluate(async () => {
    const r = await fetch("/_cio/in-app/session");
    return { cache: r.headers.get("cache-control"), body: await r.json() };
  });
  assert.deepEqual(session, { cache: "no-store", body: { token: id, site_id: null } });
  assert.ok(!seen.users.some((t) => t?.startsWith("cio_")));
  // An identify the edge refuses (no user_hash in secure mode: 401) switches nothing.
  const status = await tab.evaluate(async () => {
    const answered = new Promise((resolve) => {
      const seenFetch = window.fetch;
      window.fetch = function (url, init) {
        const p = seenFetch.apply(this, arguments);
        if (String(url).endsWith("/_cio/identify")) p.then((r) => resolve(r.status));
        return p;
      };
    });
    window._cio.identify({ id: "someone-else" });
    return answered;
  });
  assert.equal(status, 401);
  await tab.waitForTimeout(500);
  assert.equal(await gistToken(tab), id);

  // A _cioid without its signature (here the same value, unsigned, in a
  // browser that never logged in) is no identity.
  const other = await context();
  await other.ctx.addCookies([{ name: "_cioid", value: cioid.value, url: secure.url }]);
  await other.tab.goto(`${secure.url}/app`);
  await eventually(() => other.tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  const forged = await other.tab.evaluate(async () => (await fetch("/_cio/in-app/session")).json());
  assert.deepEqual(forged, { token: null, site_id: null });
  await other.tab.waitForTimeout(300);
  assert.equal(await gistToken(other.tab), null);
  await other.ctx.close();

  await tab.goto(`${secure.url}/logout`);
  await eventually(async () => (await gistToken(tab)) === null, "cleared by the origin's logout");
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("an id Gist cannot encode: one console warning, no token, no page error; the site id comes from IN_APP_SITE_ID when the tag has none", async () => {
  const id = `用户-${crypto.randomUUID()}`;
  const { ctx, tab, errors, warnings } = await context();
  await tab.goto(`${edge.url}/nosite`);
  await eventually(() => tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  await tab.evaluate((id) => window._cio.identify({ id }), id);
  await eventually(async () => (await ctx.cookies()).some((c) => c.name === "_cioid"), "identified");
  const warned = () => warnings.filter((w) => w.includes("U+00FF")).length;
  await eventually(() => warned() === 1, "the warning after identify");
  await tab.reload();
  await eventually(() => warned() === 2, "the warning on the next page load");
  await tab.evaluate((id) => window._cio.identify({ id }), id);
  await tab.waitForTimeout(500);
  assert.equal(warned(), 2, "warned once per page");
  assert.equal(await gistToken(tab), null);
  assert.equal(await tab.evaluate(() => window.Gist.config.siteId), "site-from-setting");
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("with no network the page has no error; with IN_APP off nothing in-app is served and the bus still works", async () => {
  const { ctx, tab, errors } = await context({ network: false });
  await tab.goto(`${edge.url}/app`, { waitUntil: "load" });
  await eventually(() => tab.evaluate(() => typeof window.Gist === "function"), "gist.js loaded");
  await tab.evaluate(() => window._cio.identify({ id: "offline-person" }));
  await eventually(() => gistToken(tab), "the token, offline");
  // The automatic page view sets the route to the path; page(name) to the name.
  assert.equal(await tab.evaluate(() => window.Gist.currentRoute), "/app");
  await tab.evaluate(() => window._cio.page("checkout"));
  assert.equal(await tab.evaluate(() => window.Gist.currentRoute), "checkout");
  await tab.waitForTimeout(1000);
  assert.deepEqual(errors, []);
  await ctx.close();

  for (const path of ["/_cio/gist.js", "/_cio/in-app/session"]) assert.equal((await fetch(`${off.url}${path}`)).status, 404, path);
  const plain = await context({ network: false });
  await plain.tab.goto(`${off.url}/plain`);
  const requests = [];
  plain.tab.on("request", (r) => requests.push(new URL(r.url()).pathname));
  await plain.tab.goto(`${off.url}/app`, { waitUntil: "networkidle" });
  assert.equal(await plain.tab.evaluate(() => typeof window.Gist), "undefined");
  // The tag asks for in-app but the edge has it off: one warning, no error.
  assert.ok(requests.includes("/_cio/gist.js"));
  const got = await plain.tab.evaluate(() => {
    const seen = [];
    const fn = (p) => seen.push(p);
    window._cio.on("custom", fn);
    window._cio.off("custom", fn);
    return seen.length;
  });
  assert.equal(got, 0);
  assert.deepEqual(plain.errors, []);
  await plain.ctx.close();
});

test("INJECT_SNIPPET with IN_APP: the injected snippet turns in-app on; /_cio/gist.js is revalidated by ETag, or redirected with IN_APP_SDK=cdn", async () => {
  const injecting = await startWorker({ originUrl, vars: { INJECT_SNIPPET: "true", IN_APP: "true", IN_APP_SDK: "cdn" } });
  const plainOff = await startWorker({ originUrl, vars: { INJECT_SNIPPET: "true" } });
  try {
    const first = await fetch(`${edge.url}/_cio/gist.js`);
    const text = await first.text();
    assert.equal(first.status, 200);
    assert.match(first.headers.get("content-type"), /^application\/javascript/);
    assert.match(text, /^\/\*! customerio-gist-web[^]*The MIT License[^]*Customer IO[^]*\*\/\n/);
    assert.ok(text.endsWith(readFileSync("node_modules/customerio-gist-web/dist/gist.min.js", "utf8")), "the pinned bundle, unchanged");
    const again = await fetch(`${edge.url}/_cio/gist.js`, { headers: { "if-none-match": first.headers.get("etag") } });
    assert.equal(again.status, 304);
    const cdn = await fetch(`${injecting.url}/_cio/gist.js`, { redirect: "manual" });
    assert.equal(cdn.status, 302);
    assert.equal(cdn.headers.get("location"), "https://code.gist.build/web/latest/gist.min.js");
    const on = await (await fetch(`${injecting.url}/plain`)).text();
    assert.equal((on.match(/data-use-in-app/g) || []).length, 1);
    const offHtml = await (await fetch(`${plainOff.url}/plain`)).text();
    assert.ok(offHtml.includes("/_cio/track.js") && !offHtml.includes("data-use-in-app"));
  } finally {
    await injecting.dispose();
    await plainOff.dispose();
  }
});
