// Customer.io's Data Pipelines browser SDK (the pinned npm
// @customerio/cdp-analytics-browser, its UMD bundle served by the edge) in
// Debian's Chromium, with no network but 127.0.0.1: a page carrying
// Customer.io's Pipelines snippet with one change (the script's host is the
// site's own /_cio/cdp) sends page, track, identify and reset through the
// edge, which records them on one visitor, then one person.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { withEdge } from "./support/edge.mjs";
import { classicSnippet } from "../demo/server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ADMIN = "cdp-browser-admin";
const WRITE_KEY = "cdpWriteKey123";

// Customer.io's Data Pipelines snippet (its JavaScript source set-up, with
// the `cioanalytics` global); the only change is the script host: the
// site's own `/_cio/cdp` instead of https://cdp.customer.io.
const pipelinesSnippet = (calls = 'cioanalytics.page();') => `<script>
!function(){var i="cioanalytics",analytics=(window[i]=window[i]||[]);if(!analytics.initialize)if(analytics.invoked)window.console&&console.error&&console.error("Snippet included twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track","ready","alias","debug","page","once","off","on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware"];analytics.factory=function(e){return function(){var t=Array.prototype.slice.call(arguments);t.unshift(e);analytics.push(t);return analytics}};for(var e=0;e<analytics.methods.length;e++){var key=analytics.methods[e];analytics[key]=analytics.factory(key)}analytics.load=function(key,e){var t=document.createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-customerio-analytics-key",i);t.src="/_cio/cdp/v1/analytics-js/snippet/"+key+"/analytics.min.js";var n=document.getElementsByTagName("script")[0];n.parentNode.insertBefore(t,n);analytics._writeKey=key;analytics._loadOptions=e};analytics.SNIPPET_VERSION="4.15.3";
analytics.load(${JSON.stringify(WRITE_KEY)});
${calls}
}}();
</script>`;

const page = (head) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>cdp</title>${head}</head><body><p>hello</p></body></html>`;

const PAGES = {
  "/pipelines": page(pipelinesSnippet()),
  "/classic": page(classicSnippet()),
};

const seen = []; // what reached the origin: path and the edge's headers

async function startPages() {
  const server = http.createServer((req, res) => {
    const path = req.url.split("?")[0];
    seen.push({ path, anon: req.headers["x-cio-anon-id"], id: req.headers["x-cio-id"], cookie: req.headers.cookie ?? "" });
    const html = PAGES[path];
    res.writeHead(html ? 200 : 404, { "content-type": html ? "text/html; charset=utf-8" : "text/plain" });
    res.end(html ?? "not found");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}

const { edge } = withEdge({ origin: startPages, vars: { CIO_CDP_WRITE_KEY: WRITE_KEY }, secrets: { ADMIN_TOKEN: ADMIN } });
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
      "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

async function admin(path) {
  const res = await fetch(`${edge.url}/_cio/admin/${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return { status: res.status, body: await res.json() };
}

async function eventually(check, what, ms = 8000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const cookie = async (context, name) => (await context.cookies()).find((c) => c.name === name);

/// A browser context whose every request is listed; nothing leaves 127.0.0.1.
async function newBrowser() {
  const context = await browser.newContext();
  const requests = [];
  context.on("request", (r) => requests.push(r.url()));
  await context.route((url) => !url.href.startsWith(edge.url), (route) => route.abort());
  return { context, requests };
}

/// Opens `path` and answers the document response's Set-Cookie headers.
async function open(tab, path) {
  const response = await tab.goto(`${edge.url}${path}`);
  const setCookies = await response.headerValues("set-cookie");
  return setCookies.flatMap((v) => v.split("\n"));
}

const ready = (tab) => tab.waitForFunction(() => window.cioanalytics && window.cioanalytics.initialized === true);
const activity = async (who) => (await admin(`${who}/activity`)).body.events ?? [];

test("page, track, identify and reset through the edge: one visitor, then one person with the history merged", async () => {
  const { context, requests } = await newBrowser();
  const tab = await context.newPage();

  // The first document response: _cioanonid and ajs_anonymous_id, equal,
  // from the server, ajs_anonymous_id readable by the SDK.
  const first = await open(tab, "/pipelines");
  const anon = (await cookie(context, "_cioanonid")).value;
  const ajs = first.find((c) => c.startsWith("ajs_anonymous_id="));
  assert.ok(ajs, `no ajs_anonymous_id Set-Cookie in ${first}`);
  assert.equal(ajs.split(";")[0], `ajs_anonymous_id=${anon}`);
  assert.match(ajs, /Max-Age=31536000/);
  assert.doesNotMatch(ajs, /HttpOnly/i);

  // The SDK loaded its settings and itself from the edge and uses that id.
  await ready(tab);
  assert.equal(await tab.evaluate(() => window.cioanalytics.user().anonymousId()), anon);
  const page = await eventually(async () => (await activity(`visitors/${anon}`)).find((e) => e.type === "page"), "the snippet's page view");
  assert.equal(page.name, `${edge.url}/pipelines`);
  assert.equal(page.data.title, "cdp");
  assert.match(page.id, /^browser:ajs-next-/);

  await tab.evaluate(() => window.cioanalytics.track("Viewed Plan", { plan: "pro" }));
  const viewed = await eventually(async () => (await activity(`visitors/${anon}`)).find((e) => e.name === "Viewed Plan"), "the track");
  assert.deepEqual(viewed.data, { plan: "pro" });

  // identify: the visitor's history joins the person; _cioid set by the response.
  const id = `cdp-${crypto.randomUUID()}`;
  await tab.evaluate((id) => window.cioanalytics.identify(id, { email: `${id}@example.com`, plan: "pro" }), id);
  const person = await eventually(async () => {
    const r = await admin(`people/${id}`);
    return r.status === 200 && r.body;
  }, "the person");
  assert.equal(person.email, `${id}@example.com`);
  assert.equal(person.attributes.plan, "pro");
  assert.deepEqual(person.anonymous_ids, [anon]);
  const merged = await activity(`people/${id}`);
  assert.deepEqual(merged.map((e) => e.name).sort(), [`${edge.url}/pipelines`, "Viewed Plan"].sort());
  assert.equal((await admin(`visitors/${anon}/activity`)).body.merged_into, person.cio_id);
  assert.equal((await cookie(context, "_cioid"))?.value, encodeURIComponent(id));

  // The next document: the origin sees the person; both ajs ids are set
  // again by the server, as the browser holds them.
  const again = await open(tab, "/pipelines");
  assert.equal(seen.at(-1).id, id);
  assert.equal(seen.at(-1).anon, anon);
  assert.ok(again.some((c) => c.startsWith(`ajs_anonymous_id=${anon};`)), `${again}`);
  const userCookie = (await cookie(context, "ajs_user_id")).value;
  assert.ok(again.some((c) => c.startsWith(`ajs_user_id=${userCookie};`)), `${again}`);

  // Seven days later Safari has dropped what scripts stored (cookies and
  // localStorage); the server-set _cioanonid is still there. The next
  // document brings ajs_anonymous_id back, equal to it, and the SDK is the
  // same visitor, which belongs to the person.
  await ready(tab);
  await tab.evaluate(() => localStorage.clear());
  await context.clearCookies({ name: "ajs_anonymous_id" });
  await context.clearCookies({ name: "ajs_user_id" });
  const capped = await open(tab, "/pipelines");
  assert.ok(capped.some((c) => c.startsWith(`ajs_anonymous_id=${anon};`)), `${capped}`);
  await ready(tab);
  assert.equal(await tab.evaluate(() => window.cioanalytics.user().anonymousId()), anon);
  await tab.evaluate(() => window.cioanalytics.track("After Cap"));
  await eventually(async () => (await activity(`people/${id}`)).some((e) => e.name === "After Cap"), "the post-cap event on the person");

  // reset(): the SDK starts a new visitor; the edge follows it (the origin
  // no longer sees the person) and the person gets nothing more.
  await tab.evaluate(() => window.cioanalytics.reset());
  await tab.evaluate(() => window.cioanalytics.track("After Reset"));
  const fresh = await tab.evaluate(() => window.cioanalytics.user().anonymousId());
  assert.notEqual(fresh, anon);
  await eventually(async () => (await activity(`visitors/${fresh}`)).some((e) => e.name === "After Reset"), "the post-reset event on the new visitor");
  assert.ok(!(await activity(`people/${id}`)).some((e) => e.name === "After Reset"));
  assert.equal(await cookie(context, "_cioid"), undefined);
  assert.equal((await cookie(context, "_cioanonid")).value, fresh);
  await open(tab, "/pipelines");
  assert.equal(seen.at(-1).id, undefined);
  assert.equal(seen.at(-1).anon, fresh);

  // Everything went to the site itself.
  assert.ok(requests.length > 0);
  for (const url of requests) assert.ok(url.startsWith(edge.url), `left the site: ${url}`);
  assert.ok(requests.some((u) => u.includes(`/_cio/cdp/v1/projects/${WRITE_KEY}/settings`)));
  await context.close();
});

test("one person whichever SDK identified it: classic snippet on one page, Pipelines on the next, and back", async () => {
  const { context } = await newBrowser();
  const tab = await context.newPage();
  await open(tab, "/classic");
  const anon = (await cookie(context, "_cioanonid")).value;
  const id = `both-${crypto.randomUUID()}`;
  await tab.waitForFunction(() => window._cio && typeof window._cio.identify === "function" && !Array.isArray(window._cio.identify));
  await tab.evaluate((id) => window._cio.identify({ id, email: `${id}@example.com` }), id);
  await eventually(async () => (await cookie(context, "_cioid"))?.value === id, "classic identify");

  // The Pipelines page: same browser, not identified to the SDK.
  await open(tab, "/pipelines");
  await ready(tab);
  assert.equal(await tab.evaluate(() => window.cioanalytics.user().anonymousId()), anon);
  assert.equal(await tab.evaluate(() => window.cioanalytics.user().id()), null);
  await eventually(async () => (await activity(`people/${id}`)).some((e) => e.name === `${edge.url}/pipelines`), "the Pipelines page view on the classic person");
  await tab.evaluate((id) => window.cioanalytics.identify(id, { plan: "team" }), id);
  await eventually(async () => (await admin(`people/${id}`)).body.attributes?.plan === "team", "the Pipelines identify on the same person");
  const person = (await admin(`people/${id}`)).body;
  assert.equal(person.email, `${id}@example.com`);
  assert.equal((await admin(`people/${encodeURIComponent(`${id}@example.com`)}`)).body.cio_id, person.cio_id);
  assert.deepEqual(person.anonymous_ids, [anon]);

  // And back: a person identified by the Pipelines SDK is the classic
  // snippet's on the next page.
  const other = `cdp-first-${crypto.randomUUID()}`;
  await tab.evaluate((id) => window.cioanalytics.identify(id), other);
  await eventually(async () => (await cookie(context, "_cioid"))?.value === other, "_cioid from the Pipelines identify");
  await open(tab, "/classic");
  assert.equal(seen.at(-1).id, other);
  await tab.waitForFunction(() => window._cio && !Array.isArray(window._cio.identify));
  await tab.evaluate(() => window._cio.track("classic_after_pipelines"));
  await eventually(async () => (await activity(`people/${other}`)).some((e) => e.name === "classic_after_pipelines"), "the classic event on the Pipelines person");
  await context.close();
});
