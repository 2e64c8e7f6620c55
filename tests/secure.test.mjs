// Secure mode (docs/API.md section 10) through the built worker: identify from
// the origin's response headers, IDENTIFY_SECRET (user_hash and the signed
// _cioid), CONSENT, ID_COOKIE=cio. A site of its own on 127.0.0.1 stands for
// an origin with login and logout handlers.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import crypto from "node:crypto";
import { withEdge } from "./support/edge.mjs";
import { Browser, ADMIN_TOKEN, person, activity, visitorActivity, cookiesNamed, uid, UUID_V4 } from "./support/people.mjs";
import { SECRETS, api } from "./support/api.mjs";

const SECRET = "test-identify-secret";
const userHash = (identifier, secret = SECRET) => crypto.createHmac("sha256", secret).update(identifier).digest("hex");
const PAGE = "<!doctype html><html><head><title>site</title></head><body>the site's own page</body></html>";

// The site: `/login?as=<json>` answers X-Cio-Identify with that JSON (as
// UTF-8 bytes), `/logout` X-Cio-Reset: 1, everything else a plain page.
const seen = [];

async function startSite() {
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    const url = new URL(req.url, "http://x");
    const headers = { "content-type": "text/html; charset=utf-8" };
    if (url.pathname === "/login") headers["x-cio-identify"] = Buffer.from(url.searchParams.get("as"), "utf8").toString("latin1");
    if (url.pathname === "/logout") headers["x-cio-reset"] = "1";
    res.writeHead(200, headers);
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

// Each test gets a worker of its own settings, in front of the one site.
const { another } = withEdge({ origin: startSite, secrets: SECRETS });
const edge = (vars = {}, secrets = {}) => another({ vars, secrets: { ...SECRETS, ...secrets } });

const login = (b, body) => b.visit(`/login?as=${encodeURIComponent(typeof body === "string" ? body : JSON.stringify(body))}`);
const originSaw = () => seen.at(-1).headers;

test("origin X-Cio-Identify identifies on that response; the header never reaches the browser; X-Cio-Reset resets", async () => {
  const w = await edge();
  const b = new Browser(w);
  await b.visit("/");
  const anon = b.anon;
  await b.track("before login");
  const id = uid("site");
  const res = await login(b, { id, email: `${id}@example.com`, plan: "pro" });
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), PAGE);
  assert.equal(res.headers["x-cio-identify"], undefined);
  assert.equal(cookiesNamed(res, "_cioid")[0]?.value, encodeURIComponent(id));
  assert.equal(b.cioid, id);
  const p = await person(w, id);
  assert.equal(p.status, 200);
  assert.equal(p.body.attributes.plan, "pro");
  assert.equal(p.body.email, `${id}@example.com`);
  assert.deepEqual(p.body.anonymous_ids, [anon]);
  assert.ok((await activity(w, id)).some((e) => e.name === "before login"), "anonymous activity merged");
  await b.visit("/next");
  assert.equal(originSaw()["x-cio-id"], id);

  const out = await b.visit("/logout");
  assert.equal(out.headers["x-cio-reset"], undefined);
  assert.equal(cookiesNamed(out, "_cioid")[0]?.attrs["max-age"], "0");
  assert.equal(b.cioid, undefined);
  assert.notEqual(b.anon, anon);
  assert.match(b.anon, UUID_V4);
  await b.visit("/after");
  assert.equal(originSaw()["x-cio-id"], undefined);
});

test("a malformed X-Cio-Identify leaves the page intact and identifies no one", async () => {
  const w = await edge();
  for (const bad of ["{not json", JSON.stringify({ email: "x@example.com" }), JSON.stringify({ id: 4.5 }), "[1]"]) {
    const b = new Browser(w);
    const res = await login(b, bad);
    assert.equal(res.status, 200, bad);
    assert.equal(res.body.toString(), PAGE, bad);
    assert.equal(res.headers["x-cio-identify"], undefined, bad);
    assert.equal(cookiesNamed(res, "_cioid").length, 0, bad);
    assert.equal(cookiesNamed(res, "_cioanonid").length, 1, "the plan's own cookie stays");
  }
  assert.equal((await person(w, "x@example.com")).status, 404);
});

test("non-ASCII identifiers: the origin's UTF-8 header is read as UTF-8, and X-Cio-Id is percent-encoded", async () => {
  const w = await edge();
  const b = new Browser(w);
  const id = `ünï-${crypto.randomUUID()}`;
  await login(b, { id });
  assert.equal(b.cioid, id);
  await b.visit("/p");
  assert.equal(originSaw()["x-cio-id"], encodeURIComponent(id).replace(/%2D/g, "-"));
  assert.equal(decodeURIComponent(originSaw()["x-cio-id"]), id);
  assert.equal((await person(w, id)).status, 200);
});

test("IDENTIFY_SECRET: identify without user_hash, with a wrong one or another id's is 401 and applies nothing; the right one is 200", async () => {
  const w = await edge({}, { IDENTIFY_SECRET: SECRET });
  const id = uid("v");
  const b = new Browser(w);
  for (const user_hash of [undefined, "0".repeat(64), userHash("someone-else"), userHash(id, "other-secret"), userHash(id).toUpperCase()]) {
    const r = await b.identify({ id, plan: "forged", user_hash });
    assert.equal(r.status, 401, String(user_hash));
    assert.equal(r.json.errors[0].reason, "unauthorized");
    assert.equal(cookiesNamed(r, "_cioid").length, 0);
  }
  assert.equal((await person(w, id)).status, 404, "nothing applied");
  const ok = await b.identify({ id, plan: "real", user_hash: userHash(id) });
  assert.equal(ok.status, 200);
  const sig = cookiesNamed(ok, "_cioidsig")[0];
  assert.ok(sig && sig.attrs.httponly, "an HttpOnly companion");
  const p = (await person(w, id)).body;
  assert.equal(p.attributes.plan, "real");
  assert.equal(p.attributes.user_hash, undefined, "user_hash is never an attribute");
  await b.visit("/p");
  assert.equal(originSaw()["x-cio-id"], id, "a signed _cioid is told to the origin");
  // An email as the id is signed as the edge keeps it (lowercase), not as sent.
  const email = `${uid("Mixed")}@Example.com`;
  assert.equal((await new Browser(w).identify({ id: email, user_hash: userHash(email) })).status, 401);
  const e = await new Browser(w).identify({ id: email, user_hash: userHash(email.toLowerCase()) });
  assert.equal(e.status, 200);
});

test("IDENTIFY_SECRET: a hand-set _cioid (no companion, or another's) is ignored: events stay anonymous, the origin sees no X-Cio-Id", async () => {
  const w = await edge({}, { IDENTIFY_SECRET: SECRET });
  const victim = uid("victim");
  const owner = new Browser(w);
  assert.equal((await owner.identify({ id: victim, user_hash: userHash(victim) })).status, 200);
  const other = uid("other");
  const otherBrowser = new Browser(w);
  await otherBrowser.identify({ id: other, user_hash: userHash(other) });
  const foreignSig = otherBrowser.jar.get("_cioidsig");

  for (const sig of [undefined, foreignSig, "garbage"]) {
    const attacker = new Browser(w);
    await attacker.visit("/");
    attacker.jar.set("_cioid", encodeURIComponent(victim));
    if (sig) attacker.jar.set("_cioidsig", sig);
    const name = `forged-${crypto.randomUUID()}`;
    assert.equal((await attacker.track(name)).status, 200);
    await attacker.visit("/p");
    assert.equal(originSaw()["x-cio-id"], undefined, String(sig));
    assert.ok((await visitorActivity(w, attacker.anon)).events.some((e) => e.name === name), "the anonymous visitor's");
    assert.ok(!(await activity(w, victim)).some((e) => e.name === name), "never the victim's");
  }
});

test("IDENTIFY_SECRET: a link click identifies no one (rule 10.3); an origin identify sets a valid companion", async () => {
  const w = await edge({}, { IDENTIFY_SECRET: SECRET });
  const id = uid("linked");
  assert.equal((await api(w, "PUT", `v1/customers/${id}`, { plan: "x" })).status, 200);
  const cio = (await person(w, id)).body.cio_id;
  const b = new Browser(w);
  const res = await b.visit(`/landing?_cio_id=${cio}`);
  assert.equal(res.status, 200);
  assert.equal(cookiesNamed(res, "_cioid").length, 0);
  assert.equal(cookiesNamed(res, "_cioidsig").length, 0);
  await b.visit("/p");
  assert.equal(originSaw()["x-cio-id"], undefined);
  const name = `after-link-${crypto.randomUUID()}`;
  await b.track(name);
  assert.ok(!(await activity(w, id)).some((e) => e.name === name), "the link's browser stays anonymous");

  const c = new Browser(w);
  const sid = uid("site");
  await login(c, { id: sid });
  assert.ok(c.jar.get("_cioidsig"));
  await c.visit("/p");
  assert.equal(originSaw()["x-cio-id"], sid);

  // Reset forgets the companion with the identity.
  const out = await c.reset();
  assert.equal(cookiesNamed(out, "_cioidsig")[0]?.attrs["max-age"], "0");
  assert.equal(c.jar.get("_cioidsig"), undefined);
});

const form = (w, b, email) =>
  w.raw("/signup", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: b.jar.header() },
    body: `email=${encodeURIComponent(email)}`,
  }).then((res) => b.jar.store(res));

test("IDENTIFY_SECRET: a form post identifies no one (it is the browser's word)", async () => {
  const w = await edge({ AUTO_IDENTIFY_FORMS: "true" }, { IDENTIFY_SECRET: SECRET });
  const b = new Browser(w);
  const email = `${uid("form")}@example.com`;
  const res = await form(w, b, email);
  assert.equal(res.status, 200);
  assert.equal(cookiesNamed(res, "_cioid").length, 0);
  assert.equal(originSaw()["x-cio-id"], undefined);
  assert.equal((await person(w, email)).status, 404);
});

test("CONSENT=gpc: Sec-GPC: 1 gets no cookie, stores nothing, the page byte-identical; without it, as today", async () => {
  const w = await edge({ CONSENT: "gpc", INJECT_SNIPPET: "true" });
  const gpc = { "sec-gpc": "1" };
  const res = await w.raw("/", { headers: { accept: "text/html", "sec-fetch-mode": "navigate", ...gpc } });
  assert.equal(res.status, 200);
  assert.equal(res.setCookies.length, 0);
  assert.equal(res.body.toString(), PAGE, "byte-identical: no snippet");
  assert.equal(originSaw()["x-cio-anon-id"], undefined);
  const anon = crypto.randomUUID();
  for (const endpoint of ["track", "page", "identify", "reset"]) {
    const r = await w.fetch(`/_cio/${endpoint}`, {
      method: "POST",
      headers: { ...gpc, cookie: `_cioanonid=${anon}` },
      body: JSON.stringify({ name: "x", id: "gpc-user" }),
    });
    assert.equal(r.status, 204, endpoint);
    assert.equal(r.headers.getSetCookie().length, 0, endpoint);
  }
  assert.deepEqual((await visitorActivity(w, anon)).events, []);
  assert.equal((await person(w, "gpc-user")).status, 404);
  const withIdentify = await w.raw(`/login?as=${encodeURIComponent(JSON.stringify({ id: "gpc-login" }))}`, { headers: gpc });
  assert.equal(withIdentify.headers["x-cio-identify"], undefined);
  assert.equal(withIdentify.setCookies.length, 0);
  assert.equal((await person(w, "gpc-login")).status, 404);

  const b = new Browser(w);
  const plain = await b.visit("/");
  assert.equal(cookiesNamed(plain, "_cioanonid").length, 1);
  assert.notEqual(plain.body.toString(), PAGE, "the snippet is injected as today");
  assert.equal((await b.track("tracked")).status, 200);
  assert.equal((await visitorActivity(w, b.anon)).events.length, 1);
});

test("CONSENT=cookie:<name>=<value>: nothing until the site's consent cookie, then tracking starts on that request", async () => {
  const w = await edge({ CONSENT: "cookie:cc=yes" });
  const b = new Browser(w);
  b.jar.set("cc", "no");
  const before = await b.visit("/");
  assert.equal(before.setCookies.length, 0);
  assert.equal(originSaw()["x-cio-anon-id"], undefined);
  const t = await b.post("track", { name: "x" });
  assert.equal(t.status, 204);
  b.jar.set("cc", "yes");
  const granted = await b.visit("/");
  assert.equal(cookiesNamed(granted, "_cioanonid").length, 1);
  assert.equal(originSaw()["x-cio-anon-id"], b.anon);
  assert.equal((await b.track("consented")).status, 200);
  assert.deepEqual((await visitorActivity(w, b.anon)).events.map((e) => e.name), ["consented"]);
});

test("ID_COOKIE=cio: no email in any Set-Cookie or origin header, across identify, origin identify, link click, form, reset", async () => {
  const w = await edge({ ID_COOKIE: "cio", AUTO_IDENTIFY_FORMS: "true" });
  const email = `${uid("pii")}@example.com`;
  const enc = encodeURIComponent(email);
  const leaks = (text) => text.toLowerCase().includes(email) || text.toLowerCase().includes(enc.toLowerCase());
  const cookieText = (r) => (r.res ?? r).setCookies?.join("\n") ?? (r.res ?? r).headers.getSetCookie().join("\n");
  const from = seen.length;

  const b = new Browser(w);
  const r = await b.identify({ id: email, plan: "x" });
  assert.equal(r.status, 200);
  const cio = (await person(w, email)).body.cio_id;
  assert.equal(b.cioid, `cio_${cio}`);
  assert.ok(!leaks(cookieText(r)));
  await b.visit("/p");
  assert.equal(originSaw()["x-cio-id"], `cio_${cio}`);
  const name = `cio-${crypto.randomUUID()}`;
  await b.track(name);
  assert.ok((await activity(w, email)).some((e) => e.name === name));

  const c = new Browser(w);
  const l = await login(c, { id: email });
  assert.ok(!leaks(cookieText(l)));
  assert.equal(c.cioid, `cio_${cio}`);

  const d = new Browser(w);
  const link = await d.visit(`/x?_cio_id=${cio}`);
  assert.ok(!leaks(cookieText(link)));
  assert.equal(d.cioid, `cio_${cio}`);

  const f = new Browser(w);
  const fromForm = await form(w, f, email);
  assert.ok(!leaks(cookieText(fromForm)));
  assert.equal(f.cioid, `cio_${cio}`, "a form identify waits for the cio_id");

  // An email _cioid from before the setting is never passed on.
  const old = new Browser(w);
  old.jar.set("_cioid", enc);
  await old.visit("/p");
  assert.equal(originSaw()["x-cio-id"], undefined);

  for (const x of [b, c, d]) assert.ok(!leaks(cookieText(await x.reset())));
  const out = await c.visit("/logout");
  assert.ok(!leaks(cookieText(out)));
  for (const req of seen.slice(from)) {
    assert.ok(!leaks(String(req.headers["x-cio-id"] ?? "")), req.url);
  }
});
