// The browser SDK in a real browser: Debian's Chromium driven by
// playwright-core, against the built worker under Miniflare in front of a
// local origin whose pages carry Customer.io's classic snippet with the new src.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync } from "node:fs";
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";
import { withEdge } from "./support/edge.mjs";
import { classicSnippet } from "../demo/server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ADMIN = "browser-admin-token";

// Customer.io's classic snippet, as the demo site carries it; only `src` differs.
const snippet = classicSnippet;

const page = (head, body = "<p>hello</p>") =>
  `<!doctype html><html><head><meta charset="utf-8"><title>demo</title>${head}</head><body>${body}</body></html>`;

const PAGES = {
  "/": page(snippet("", "_cio.track('queued_one', {n: 1}); _cio.track('queued_two', {n: 2});")),
  "/landing": page(snippet()),
  "/noauto": page(snippet("t.setAttribute('data-auto-track-page', 'false');")),
  "/noarrays": page(snippet("t.setAttribute('data-use-array-params', 'false'); t.setAttribute('data-auto-track-page', 'false');")),
  "/plain": page(""),
  "/signup": page(
    "",
    `<form method="post" action="/signup">
       <input name="email"><input name="first_name"><input name="password" type="password">
       <button type="submit">Sign up</button></form>`,
  ),
  "/welcome": page("", "<p>welcome</p>"),
};

const formPosts = [];

function startOrigin() {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const path = req.url.split("?")[0];
      if (req.method === "POST" && path === "/signup") {
        formPosts.push(Buffer.concat(chunks).toString());
        res.writeHead(303, { location: "/welcome" });
        return res.end();
      }
      const html = PAGES[path];
      if (!html) {
        res.writeHead(404, { "content-type": "text/plain" });
        return res.end("not found");
      }
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(html);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
      }),
    ),
  );
}

// Default settings; a second worker with INJECT_SNIPPET and AUTO_IDENTIFY_FORMS.
const { edge: plain, another } = withEdge({ origin: startOrigin, secrets: { ADMIN_TOKEN: ADMIN } });
let injected;
const injectingEdge = () =>
  (injected ??= another({ vars: { INJECT_SNIPPET: "true", AUTO_IDENTIFY_FORMS: "true", FORM_ATTRIBUTES: "first_name,password" } }));
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (npm run setup installs Debian's chromium)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
      "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

async function admin(worker, path) {
  const res = await fetch(`${worker.url.replace(/\/$/, "")}/_cio/admin/${path}`, {
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  return { status: res.status, body: await res.json() };
}

// Polls until `check` returns a truthy value (the browser sends asynchronously).
async function eventually(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const cookie = async (context, name) => (await context.cookies()).find((c) => c.name === name)?.value;
const base = (worker) => worker.url.replace(/\/$/, "");

test("a visit gets _cioanonid; queued calls and the auto page view are recorded in order", async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(plain)}/`);
  const anon = await cookie(context, "_cioanonid");
  assert.match(anon, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const activity = await eventually(async () => {
    const { body } = await admin(plain, `visitors/${anon}/activity`);
    return body.events.length >= 3 && body;
  }, "three anonymous events");
  // Newest first: the page view after the two queued tracks, in their order.
  assert.deepEqual(activity.events.map((e) => [e.type, e.name]), [
    ["page", `${base(plain)}/`],
    ["event", "queued_two"],
    ["event", "queued_one"],
  ]);
  assert.deepEqual(activity.events[2].data, { n: 1 });
  await context.close();
});

test("identify sets _cioid and merges; track lands on the person; reset clears and rotates", async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(plain)}/`);
  const anon = await cookie(context, "_cioanonid");
  await eventually(async () => (await admin(plain, `visitors/${anon}/activity`)).body.events.length >= 3, "anonymous events");

  const id = `browser-${crypto.randomUUID()}`;
  await tab.evaluate((id) => window._cio.identify({ id, email: `${id}@example.com`, plan: "pro" }), id);
  assert.equal(await eventually(() => cookie(context, "_cioid"), "_cioid cookie"), encodeURIComponent(id));

  const person = (await admin(plain, `people/${encodeURIComponent(id)}`)).body;
  assert.equal(person.id, id);
  assert.equal(person.email, `${id}@example.com`);
  assert.deepEqual(person.attributes, { plan: "pro" });
  assert.deepEqual(person.anonymous_ids, [anon]);
  const merged = (await admin(plain, `people/${encodeURIComponent(id)}/activity`)).body.events;
  assert.deepEqual(merged.map((e) => e.name).sort(), [`${base(plain)}/`, "queued_one", "queued_two"].sort());
  assert.equal((await admin(plain, `visitors/${anon}/activity`)).body.merged_into, person.cio_id);

  await tab.evaluate(() => window._cio.track("clicked_buy", { sku: "A1" }));
  await eventually(async () => {
    const events = (await admin(plain, `people/${encodeURIComponent(id)}/activity`)).body.events;
    return events.some((e) => e.name === "clicked_buy" && e.data.sku === "A1");
  }, "track on the person");

  await tab.evaluate(() => window._cio.reset());
  await eventually(async () => !(await cookie(context, "_cioid")), "_cioid cleared");
  const rotated = await cookie(context, "_cioanonid");
  assert.notEqual(rotated, anon);
  await tab.evaluate(() => window._cio.track("after_reset"));
  await eventually(async () => {
    const { body } = await admin(plain, `visitors/${rotated}/activity`);
    return body.events.some((e) => e.name === "after_reset");
  }, "event on the new visitor");
  const still = (await admin(plain, `people/${encodeURIComponent(id)}/activity`)).body.events;
  assert.ok(!still.some((e) => e.name === "after_reset"), "the person did not get the post-reset event");
  await context.close();
});

test("a fresh browser opening a _cio_id link is identified", async () => {
  const id = `link-${crypto.randomUUID()}`;
  // Create the person through a first browser.
  const first = await browser.newContext();
  const tab1 = await first.newPage();
  await tab1.goto(`${base(plain)}/noauto`);
  await tab1.evaluate((id) => window._cio.identify({ id }), id);
  await eventually(() => cookie(first, "_cioid"), "first browser identified");
  const person = (await admin(plain, `people/${id}`)).body;
  await first.close();

  const fresh = await browser.newContext();
  const tab = await fresh.newPage();
  await tab.goto(`${base(plain)}/landing?_cio_id=${person.cio_id}`);
  assert.equal(await cookie(fresh, "_cioid"), id);
  const anon = await cookie(fresh, "_cioanonid");
  // The landing page's own auto page view goes to the person.
  await eventually(async () => {
    const events = (await admin(plain, `people/${id}/activity`)).body.events;
    return events.some((e) => e.type === "page" && e.name.includes(`_cio_id=${person.cio_id}`));
  }, "landing page view on the person");
  // A link merges no anonymous history (identity rule 12).
  assert.ok(!(await admin(plain, `people/${id}`)).body.anonymous_ids.includes(anon));
  await fresh.close();
});

test("data-use-array-params=false reshapes arrays; data-auto-track-page=false sends no page view", async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(plain)}/noarrays`);
  await tab.evaluate(() => window._cio.track("with_array", { list: ["a", "b"], nested: { deep: [1, [2]] } }));
  const anon = await cookie(context, "_cioanonid");
  const events = await eventually(async () => {
    const body = (await admin(plain, `visitors/${anon}/activity`)).body;
    return body.events.length > 0 && body.events;
  }, "the track");
  assert.equal(events.length, 1, "no auto page view");
  assert.deepEqual(events[0].data, { list: { 0: "a", 1: "b" }, nested: { deep: { 0: 1, 1: { 0: 2 } } } });

  // The default keeps arrays.
  const keep = await browser.newContext();
  const tab2 = await keep.newPage();
  await tab2.goto(`${base(plain)}/noauto`);
  await tab2.evaluate(() => window._cio.track("with_array", { list: ["a", "b"] }));
  const anon2 = await cookie(keep, "_cioanonid");
  const kept = await eventually(async () => {
    const body = (await admin(plain, `visitors/${anon2}/activity`)).body;
    return body.events.length > 0 && body.events;
  }, "the track");
  assert.equal(kept.length, 1);
  assert.deepEqual(kept[0].data, { list: ["a", "b"] });
  await context.close();
  await keep.close();
});

test("INJECT_SNIPPET: a page without the snippet gets it and the SDK runs", async () => {
  const injecting = await injectingEdge();
  const context = await browser.newContext();
  const tab = await context.newPage();
  const served = await (await fetch(`${base(injecting)}/plain`)).text();
  assert.equal((served.match(/\/_cio\/track\.js/g) || []).length, 1, "snippet inserted once");
  assert.ok(served.indexOf("/_cio/track.js") < served.indexOf("</head>"), "inside <head>");
  await tab.goto(`${base(injecting)}/plain`);
  const sdkTags = () => tab.evaluate(() => document.querySelectorAll('script[src="/_cio/track.js"]').length);
  assert.equal(await sdkTags(), 1);
  const anon = await cookie(context, "_cioanonid");
  await eventually(async () => {
    const { body } = await admin(injecting, `visitors/${anon}/activity`);
    return body.events.some((e) => e.type === "page" && e.name === `${base(injecting)}/plain`);
  }, "the injected SDK's page view");
  assert.equal(await tab.evaluate(() => typeof window._cio.identify), "function");
  // A page that already carries the snippet is not given a second one.
  const carried = await (await fetch(`${base(injecting)}/noauto`)).text();
  assert.equal(carried, PAGES["/noauto"]);
  await tab.goto(`${base(injecting)}/noauto`);
  assert.equal(await sdkTags(), 1);
  await context.close();
});

test("AUTO_IDENTIFY_FORMS: the sign-up form identifies; the password is stored nowhere", async () => {
  const injecting = await injectingEdge();
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(injecting)}/signup`);
  const email = `form-${crypto.randomUUID()}@example.com`;
  await tab.fill("input[name=email]", email);
  await tab.fill("input[name=first_name]", "Ada");
  await tab.fill("input[name=password]", "hunter2-secret");
  await Promise.all([tab.waitForURL(/\/welcome$/), tab.click("button[type=submit]")]);

  assert.equal(decodeURIComponent(await cookie(context, "_cioid")), email);
  assert.ok(formPosts.some((b) => b.includes("hunter2-secret")), "the origin got the form unchanged");
  const person = await eventually(async () => {
    const r = await admin(injecting, `people/${encodeURIComponent(email)}`);
    return r.status === 200 && r.body;
  }, "the person");
  assert.equal(person.email, email);
  assert.deepEqual(person.attributes, { first_name: "Ada" });
  const activity = (await admin(injecting, `people/${encodeURIComponent(email)}/activity?limit=1000`)).body;
  const exported = await (await fetch(`${base(injecting)}/_cio/admin/export`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
  for (const stored of [JSON.stringify(person), JSON.stringify(activity), exported]) {
    assert.ok(!stored.includes("hunter2-secret"), "password stored");
  }
  await context.close();
});

test("a page with the SDK reaches network idle, and its auto page view of a long marketing URL is recorded", async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  const path = "/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2026&utm_content=hero_banner_blue_widget";
  // Every SDK request must finish (its answer read), or network idle never comes.
  const started = Date.now();
  await tab.goto(`${base(plain)}${path}`, { waitUntil: "networkidle", timeout: 15000 });
  const settled = Date.now() - started;
  const anon = await cookie(context, "_cioanonid");
  const { body } = await admin(plain, `visitors/${anon}/activity`);
  assert.deepEqual(body.events.map((e) => [e.type, e.name]), [["page", `${base(plain)}${path}`]], "recorded by the time the page is idle");
  assert.ok(`${base(plain)}${path}`.length > 100);
  // Calls made after load settle too.
  await tab.evaluate(() => { window._cio.track("after_load", { n: 1 }); window._cio.page("/virtual"); });
  await tab.waitForLoadState("networkidle", { timeout: 15000 });
  console.log(`network idle ${settled} ms after navigation`);
  await context.close();
});

test("calls still queued when the page is left go out as beacons on pagehide", async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(plain)}/noauto`, { waitUntil: "networkidle", timeout: 15000 });
  const anon = await cookie(context, "_cioanonid");
  // Queue several calls (they go out one at a time) and leave at once.
  await tab.evaluate(() => {
    for (let i = 0; i < 8; i++) window._cio.track("leaving", { i });
    window.location.href = "/plain";
  });
  await tab.waitForURL(/\/plain$/);
  const events = await eventually(async () => {
    const { body } = await admin(plain, `visitors/${anon}/activity`);
    return body.events.filter((e) => e.name === "leaving").length === 8 && body.events;
  }, "all eight calls delivered");
  assert.deepEqual(events.map((e) => e.data.i).sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  await context.close();
});

test("secure mode: _cio.identify passes user_hash through; the companion cookie is HttpOnly; without it nothing is applied", async () => {
  const secret = "browser-identify-secret";
  const secure = await another({ secrets: { ADMIN_TOKEN: ADMIN, IDENTIFY_SECRET: secret } });
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base(secure)}/landing`);
  const forged = `forged-${crypto.randomUUID()}`;
  await tab.evaluate((id) => window._cio.identify({ id }), forged);
  const id = `verified-${crypto.randomUUID()}`;
  const user_hash = createHmac("sha256", secret).update(id).digest("hex");
  await tab.evaluate(([id, user_hash]) => window._cio.identify({ id, user_hash, plan: "pro" }), [id, user_hash]);
  assert.equal(await eventually(() => cookie(context, "_cioid"), "_cioid cookie"), encodeURIComponent(id));
  const sig = (await context.cookies()).find((c) => c.name === "_cioidsig");
  assert.ok(sig?.httpOnly, "an HttpOnly companion");
  assert.equal(await tab.evaluate(() => document.cookie.includes("_cioidsig")), false);
  assert.equal((await admin(secure, `people/${encodeURIComponent(forged)}`)).status, 404);
  const person = (await admin(secure, `people/${encodeURIComponent(id)}`)).body;
  assert.deepEqual(person.attributes, { plan: "pro" });
  await context.close();
});
