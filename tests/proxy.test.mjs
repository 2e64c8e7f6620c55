// The edge proxy and the _cioanonid cookie (docs/API.md sections 1 and 2), through
// the built worker under Miniflare in front of a real origin on 127.0.0.1.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import crypto from "node:crypto";
import { setCookies, parseSetCookie } from "./support/worker.mjs";
import { startOrigin, closedPort } from "./support/origin.mjs";

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const HTML_NAV = { accept: "text/html,application/xhtml+xml", "sec-fetch-mode": "navigate" };

const { edge, origin, another } = withEdge();
async function workerWith(vars) {
  return another({ vars });
}

const anonCookies = (res) => setCookies(res).map(parseSetCookie).filter((c) => c.name === "_cioanonid");

test("first visit: exactly one _cioanonid, a UUID v4 with the attributes; the origin saw it; it is kept", async () => {
  const res = await edge.fetch("/html", { headers: HTML_NAV });
  assert.equal(res.status, 200);
  await res.text();
  const cookies = anonCookies(res);
  assert.equal(cookies.length, 1);
  const [c] = cookies;
  assert.match(c.value, V4);
  assert.equal(c.attrs.path, "/");
  assert.equal(c.attrs["max-age"], "31536000");
  assert.equal(c.attrs.samesite, "Lax");
  assert.equal(c.attrs.secure, undefined);
  assert.equal(c.attrs.domain, undefined);
  assert.equal(c.attrs.httponly, undefined);
  assert.equal(origin.last().headers["x-cio-anon-id"], c.value);
  assert.equal(origin.last().headers["x-cio-id"], undefined);

  const again = await edge.fetch("/echo", { headers: { cookie: `_cioanonid=${c.value}`, accept: "application/json" } });
  assert.equal(again.status, 200);
  await again.text();
  assert.equal(origin.last().headers["x-cio-anon-id"], c.value);
  assert.equal(anonCookies(again).length, 0, "no refresh on a non-navigation that has a valid cookie");
});

test("malformed values are replaced and never echoed; a valid non-v4 id of the right shape is kept", async () => {
  const bad = [
    "abc",
    "a".repeat(3000),
    "12345678-1234-4123-8123-1234567%0d%0a",
    "zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz",
    "0f8fad5b-d9cb-469f-a165-70867728950e0",
  ];
  for (const value of bad) {
    const res = await edge.fetch("/echo", { headers: { cookie: `_cioanonid=${value}` } });
    await res.text();
    const [c, ...more] = anonCookies(res);
    assert.equal(more.length, 0);
    assert.match(c.value, V4, `replaced ${value.slice(0, 40)}`);
    const seen = origin.last().headers["x-cio-anon-id"];
    assert.equal(seen, c.value);
    // The issued id is random hex and may itself contain a short bad value
    // such as "abc": look for the bad value in everything but the new id.
    for (const [name, v] of res.headers) {
      assert.ok(!v.replaceAll(c.value, "").includes(value), `bad value echoed in ${name}`);
    }
  }
  const legacy = "0a1b2c3d-0000-1000-8000-00000000abcd";
  const res = await edge.fetch("/echo", { headers: { cookie: `_cioanonid=${legacy}` } });
  await res.text();
  assert.equal(anonCookies(res).length, 0);
  assert.equal(origin.last().headers["x-cio-anon-id"], legacy);
});

test("a top-level HTML navigation refreshes a valid cookie with the same value", async () => {
  const anon = crypto.randomUUID();
  // Browsers send Sec-Fetch-Mode: navigate; older ones only Accept: text/html.
  for (const headers of [HTML_NAV, { accept: "text/html" }]) {
    const res = await edge.raw("/page.html", { headers: { ...headers, cookie: `_cioanonid=${anon}` } });
    const [c, ...more] = anonCookies(res);
    assert.equal(more.length, 0);
    assert.equal(c.value, anon);
    assert.equal(c.attrs["max-age"], "31536000");
  }
  const post = await edge.raw("/page.html", { method: "POST", body: "x", headers: { ...HTML_NAV, cookie: `_cioanonid=${anon}` } });
  assert.equal(anonCookies(post).length, 0, "only GET navigations refresh");
  const fetchMode = await edge.raw("/page.html", { headers: { accept: "text/html", "sec-fetch-mode": "cors", cookie: `_cioanonid=${anon}` } });
  assert.equal(anonCookies(fetchMode).length, 0, "a script's fetch is no navigation");
});

test("a client-sent X-Cio-Anon-Id or X-Cio-Id never reaches the origin", async () => {
  const res = await edge.fetch("/echo", { headers: { "x-cio-anon-id": "forged", "x-cio-id": "someone" } });
  await res.text();
  const [c] = anonCookies(res);
  assert.equal(origin.last().headers["x-cio-anon-id"], c.value);
  assert.equal(origin.last().headers["x-cio-id"], undefined);
});

test("the origin's two cookies and ours: three separate Set-Cookie headers", async () => {
  const res = await edge.fetch("/set-two-cookies");
  await res.text();
  const all = setCookies(res);
  assert.equal(all.length, 3);
  assert.ok(all.includes("session=abc; Path=/; HttpOnly"));
  assert.ok(all.includes("theme=dark; Path=/"));
  assert.equal(anonCookies(res).length, 1);
});

test("a 300 KB binary POST reaches the origin byte-identical", async () => {
  const body = crypto.randomBytes(300 * 1024);
  const res = await edge.fetch("/echo", { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
  const echoed = await res.json();
  assert.equal(echoed.bodyLength, body.length);
  assert.equal(echoed.bodySha256, crypto.createHash("sha256").update(body).digest("hex"));
  assert.ok(origin.last().body.equals(body));
});

test("a slow origin's chunks reach the client one by one", async () => {
  // No Accept-Encoding: a compressing hop would buffer small chunks.
  const res = await edge.raw("/slow");
  assert.equal(res.body.toString(), "chunk1\nchunk2\nchunk3\n");
  const { arrivals } = res;
  assert.ok(arrivals.length >= 3, `three separate chunks (got ${arrivals.length})`);
  assert.ok(arrivals[0] < 150, `the first chunk came at once (${arrivals[0]} ms)`);
  assert.ok(arrivals.at(-1) - arrivals[0] >= 300, `the last came ~400 ms later (${arrivals.at(-1) - arrivals[0]} ms)`);
});

test("redirects pass unfollowed; 404 and 503 pass through", async () => {
  const redirect = await edge.fetch("/redirect");
  assert.equal(redirect.status, 302);
  assert.equal(redirect.headers.get("location"), "/elsewhere");
  assert.equal(await redirect.text(), "moved");
  for (const status of [404, 503]) {
    const res = await edge.fetch(`/status/${status}`);
    assert.equal(res.status, status);
    assert.equal(await res.text(), `status ${status}`);
  }
});

test("HEAD, PUT, DELETE and OPTIONS pass through; the query string arrives unchanged", async () => {
  for (const method of ["HEAD", "PUT", "DELETE", "OPTIONS"]) {
    const init = { method, headers: { "x-test": "1", "user-agent": "edge-test/1.0" } };
    if (method === "PUT") init.body = "put-body";
    const res = await edge.fetch("/thing?x=1", init);
    assert.equal(res.status, 200, method);
    await res.arrayBuffer();
    const seen = origin.last();
    assert.equal(seen.method, method);
    assert.equal(seen.headers["x-test"], "1");
    assert.equal(seen.headers["user-agent"], "edge-test/1.0");
    if (method === "PUT") assert.equal(seen.body.toString(), "put-body");
  }
  const query = "?a=1&b=%20x&a=2&empty=&_x";
  const res = await edge.fetch(`/echo${query}`);
  const echoed = await res.json();
  assert.equal(echoed.url, `/echo${query}`);
  assert.equal(res.headers.get("x-origin"), "yes");
});

test("https requests get Secure; COOKIE_DOMAIN, CROSS_SITE_COOKIES and COOKIE_HTTPONLY", async () => {
  const https = await edge.dispatch("https://example.com/html");
  await https.text();
  assert.equal(anonCookies(https)[0].attrs.secure, true);

  const domain = await workerWith({ COOKIE_DOMAIN: "example.com" });
  const d = await domain.fetch("/html");
  await d.text();
  assert.equal(anonCookies(d)[0].attrs.domain, "example.com");

  const cross = await workerWith({ CROSS_SITE_COOKIES: "true" });
  const x = await cross.fetch("/html");
  await x.text();
  assert.equal(anonCookies(x)[0].attrs.samesite, "None");
  assert.equal(anonCookies(x)[0].attrs.secure, true);

  const httpOnly = await workerWith({ COOKIE_HTTPONLY: "true" });
  const h = await httpOnly.fetch("/html");
  await h.text();
  assert.equal(anonCookies(h)[0].attrs.httponly, true);
});

test("unknown paths under /_cio/ answer JSON 404 and never reach the origin", async () => {
  const before = origin.requests.length;
  const res = await edge.fetch("/_cio/nope");
  assert.equal(res.status, 404);
  assert.match(res.headers.get("content-type"), /application\/json/);
  const body = await res.json();
  assert.equal(body.errors[0].reason, "not_found");
  assert.equal(origin.requests.length, before);
  // /_cio without the slash, and the site's own /api, are the site's.
  const site = await edge.fetch("/_cio");
  assert.equal(await site.text(), "ok GET /_cio");
});

test("origin down: 502 within 5 s, saying so", async () => {
  const port = await closedPort();
  const down = await another({ originUrl: `http://127.0.0.1:${port}` });
  const started = Date.now();
  const res = await down.fetch("/html", { headers: HTML_NAV });
  const body = await res.text();
  assert.equal(res.status, 502);
  assert.ok(Date.now() - started < 5000);
  assert.match(res.headers.get("content-type"), /text\/html/);
  assert.match(body, /unreachable/);
  assert.equal(anonCookies(res).length, 1, "the visitor still gets its id");
});

test("an origin that sends no headers within ORIGIN_TIMEOUT_MS: 502; a slow body still streams", async () => {
  const impatient = await workerWith({ ORIGIN_TIMEOUT_MS: "300" });
  const started = Date.now();
  const res = await impatient.fetch("/hang");
  assert.equal(res.status, 502);
  assert.match(await res.text(), /did not answer within 300 ms/);
  assert.ok(Date.now() - started < 5000);
  const slow = await impatient.fetch("/slow"); // headers at once, body over 400 ms
  assert.equal(slow.status, 200);
  assert.equal(await slow.text(), "chunk1\nchunk2\nchunk3\n");
  // A returning visitor's page goes out as the origin sent it: the timeout
  // still does not cut its body.
  const cookie = `_cioanonid=${crypto.randomUUID()}`;
  const passed = await impatient.fetch("/slow", { headers: { cookie } });
  assert.equal(passed.status, 200);
  assert.equal(anonCookies(passed).length, 0);
  assert.equal(await passed.text(), "chunk1\nchunk2\nchunk3\n");
});

test("invalid settings: every request answers 500 naming the setting", async () => {
  for (const [vars, setting] of [
    [{ ORIGIN_URL: "not a url" }, "ORIGIN_URL"],
    [{ ORIGIN_URL: origin.url, COOKIE_SECURE: "maybe" }, "COOKIE_SECURE"],
    [{ ORIGIN_URL: origin.url, EDGE_PAGE_VIEWS: "sometimes" }, "EDGE_PAGE_VIEWS"],
  ]) {
    const w = await another({ originUrl: undefined, vars });
    for (const path of ["/html", "/_cio/identify"]) {
      const res = await w.fetch(path);
      assert.equal(res.status, 500);
      const body = await res.json();
      assert.equal(body.errors[0].field, setting);
      assert.match(body.errors[0].message, new RegExp(setting));
    }
  }
  const unset = await another({ originUrl: undefined });
  const res = await unset.fetch("/");
  assert.equal(res.status, 500);
  assert.match(await res.text(), /ORIGIN_URL/);
});
