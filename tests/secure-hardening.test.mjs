// Secure mode and abuse, attacked as an outsider would: what a user_hash
// vouches for (the identifier as the edge keeps it, and nothing beside it),
// login CSRF from another site in real Chromium, tracked links in secure
// mode, one person's event cap against a stranger with a forged _cioid, and
// a chunked body that never ends. docs/API.md sections 3, 8 and 10.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import crypto from "node:crypto";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { startWorker } from "./support/worker.mjs";
import { closedPort } from "./support/origin.mjs";
import { Browser, person, activity, visitorActivity, cookiesNamed, uid, eventually } from "./support/people.mjs";
import { SECRETS, AUTH, api, email } from "./support/api.mjs";

const SECRET = "hardening-identify-secret";
const userHash = (identifier, secret = SECRET) => crypto.createHmac("sha256", secret).update(identifier).digest("hex");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

// The site behind the edge: records what it was told, answers a page that
// can run a snippet-less script (`/beacon` posts with sendBeacon, as
// track.js does on pagehide).
let site;
const seen = [];
const workers = [];
const PAGE = "<!doctype html><html><head><title>site</title></head><body>site</body></html>";

before(async () => {
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  site = { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
});

after(async () => {
  for (const w of workers) await w.dispose();
  await site?.close();
});

async function edge(vars = {}, secrets = {}, extra = {}) {
  const w = await startWorker({ originUrl: site.url, vars, secrets: { ...SECRETS, ...secrets }, ...extra });
  workers.push(w);
  return w;
}
const secureEdge = (vars = {}) => edge(vars, { IDENTIFY_SECRET: SECRET });
const originSawFor = (path) => seen.findLast((s) => s.url === path)?.headers;

test("secure mode: a user_hash vouches for the id only; an email beside it needs email_hash (401 naming email), nothing applied", async () => {
  const w = await secureEdge();
  // A lead the backend knows by email only, with a valuable attribute.
  const lead = email("lead");
  assert.equal((await api(w, "PUT", `v1/customers/${encodeURIComponent(lead)}`, { plan: "vip" })).status, 200);
  const attacker = uid("att");
  const b = new Browser(w);
  const adopt = await b.identify({ id: attacker, email: lead, user_hash: userHash(attacker) });
  assert.equal(adopt.status, 401, adopt.text);
  assert.equal(adopt.json.errors[0].field, "email");
  assert.equal(cookiesNamed(adopt.res, "_cioid").length, 0);
  const still = (await person(w, lead)).body;
  assert.equal(still.id, null, "the lead keeps no id");
  assert.equal(still.attributes.plan, "vip");
  assert.equal((await person(w, attacker)).status, 404, "nothing applied");

  // A wrong email_hash (another address's, or the id's) is refused the same way.
  for (const email_hash of [userHash(attacker), userHash(email("other")), "x"]) {
    const r = await b.identify({ id: attacker, email: lead, user_hash: userHash(attacker), email_hash });
    assert.equal(r.status, 401, email_hash);
    assert.equal(r.json.errors[0].field, "email_hash");
  }

  // Squatting: an attacker cannot claim someone's email, so its owner's
  // verified identify still works.
  const owner = email("owner");
  const squat = await new Browser(w).identify({ id: uid("sq"), email: owner, user_hash: userHash(uid("x")) });
  assert.equal(squat.status, 401);
  const squat2 = uid("sq");
  assert.equal((await new Browser(w).identify({ id: squat2, email: owner, user_hash: userHash(squat2) })).status, 401);
  const ownerId = uid("owner");
  const real = await new Browser(w).identify({ id: ownerId, email: owner, user_hash: userHash(ownerId), email_hash: userHash(owner) });
  assert.equal(real.status, 200, real.text);
  assert.equal((await person(w, owner)).body.id, ownerId);
  // An email given as the id is vouched for by the user_hash itself.
  const solo = email("solo");
  assert.equal((await new Browser(w).identify({ id: solo, user_hash: userHash(solo), plan: "x" })).status, 200);
  // email_hash is never stored.
  assert.equal((await person(w, owner)).body.attributes.email_hash, undefined);
});

test("secure mode: the hash must sign the identifier as the edge keeps it (trimmed; an email NFC-lowercased), never as sent", async () => {
  const w = await secureEdge();
  const victimEmail = email("victim");
  const victimNfc = `jos\u00e9-${crypto.randomUUID()}@example.com`;
  const victimNum = String(Math.floor(Math.random() * 1e9));
  for (const sent of [victimEmail.toUpperCase(), victimNfc.normalize("NFD"), ` ${victimNum} `]) {
    const b = new Browser(w);
    const r = await b.identify({ id: sent, user_hash: userHash(sent) });
    assert.equal(r.status, 401, JSON.stringify(sent));
    assert.equal(r.json.errors[0].field, "user_hash");
    assert.equal(b.jar.get("_cioid"), undefined);
    await b.visit("/after");
    assert.equal(originSawFor("/after")["x-cio-id"], undefined, JSON.stringify(sent));
  }
  // The hash of the normalised form is what a backend computes: accepted.
  for (const [sent, kept] of [[victimEmail.toUpperCase(), victimEmail], [victimNfc.normalize("NFD"), victimNfc], [` ${victimNum} `, victimNum]]) {
    const b = new Browser(w);
    const r = await b.identify({ id: sent, user_hash: userHash(kept) });
    assert.equal(r.status, 200, JSON.stringify(sent));
    await b.visit("/ok");
    assert.equal(decodeURIComponent(originSawFor("/ok")["x-cio-id"]), kept);
  }
});

test("browser writes: a cross-site Sec-Fetch-Site or a foreign Origin is 403 naming it; form content types are 415; same-origin and header-less clients pass", async () => {
  const w = await edge({}, {});
  const b = new Browser(w);
  await b.visit("/");
  const anon = b.anon;
  const host = new URL(w.url).host;
  const refused = [
    [{ "sec-fetch-site": "cross-site" }, 403, "sec-fetch-site"],
    [{ "sec-fetch-site": "same-site" }, 403, "sec-fetch-site"],
    [{ origin: "http://attacker.test" }, 403, "origin"],
    [{ origin: "null" }, 403, "origin"],
    [{ origin: `http://${host}`, "content-type": "application/x-www-form-urlencoded" }, 415, "content-type"],
    [{ "sec-fetch-site": "same-origin", "content-type": "multipart/form-data; boundary=x" }, 415, "content-type"],
  ];
  for (const endpoint of ["identify", "track", "page", "reset"]) {
    for (const [headers, status, field] of refused) {
      const name = `refused-${crypto.randomUUID()}`;
      const r = await b.post(endpoint, endpoint === "reset" ? "" : { id: name, name }, headers);
      assert.equal(r.status, status, `${endpoint} ${JSON.stringify(headers)}: ${r.text}`);
      assert.equal(r.json.errors[0].field, field);
      assert.equal(r.res.headers.getSetCookie().length, 0, "no cookie");
      assert.equal(b.anon, anon, "nothing changed");
    }
  }
  assert.equal((await visitorActivity(w, anon)).events.length, 0, "nothing stored");
  for (const headers of [{}, { "sec-fetch-site": "same-origin" }, { origin: `http://${host}` }, { "sec-fetch-site": "none" }, { "content-type": "text/plain;charset=UTF-8", "sec-fetch-site": "same-origin" }]) {
    const r = await b.track(`ok-${crypto.randomUUID()}`, {}, {});
    assert.equal(r.status, 200);
    const r2 = await b.post("track", { name: "ok" }, headers);
    assert.equal(r2.status, 200, `${JSON.stringify(headers)}: ${r2.text}`);
  }
});

test("login CSRF in Chromium: a page on another host auto-submits the attacker's identify; the victim stays who they were; the site's own calls and sendBeacon work", async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  const w = await secureEdge();
  const attackerId = uid("attacker");
  const hash = userHash(attackerId);
  // The attacker's site, on its own host name (mapped to 127.0.0.1).
  const body = JSON.stringify({ id: attackerId, user_hash: hash, pad: "" }).slice(0, -2);
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    const field = body.replace(/'/g, "&#39;");
    res.end(`<!doctype html><html><body>
      <form id="f" method="post" enctype="text/plain" action="${w.url}/_cio/identify"><input name='${field}' value='"}'></form>
      <script>
        navigator.sendBeacon(${JSON.stringify(`${w.url}/_cio/track`)}, JSON.stringify({ name: "evil-beacon" }));
        fetch(${JSON.stringify(`${w.url}/_cio/track`)}, { method: "POST", mode: "no-cors", body: JSON.stringify({ name: "evil-fetch" }) })
          .finally(() => setTimeout(() => document.getElementById("f").submit(), 300));
      </script></body></html>`);
  });
  await new Promise((r) => evil.listen(0, "127.0.0.1", r));
  const evilUrl = `http://attacker.test:${evil.address().port}/`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP attacker.test 127.0.0.1"],
  });
  try {
    const context = await browser.newContext();
    const tab = await context.newPage();
    await tab.goto(`${w.url}/home`);
    const anon = (await context.cookies()).find((c) => c.name === "_cioanonid")?.value;
    assert.ok(anon);
    // The site's own calls (same origin: fetch and sendBeacon) work.
    await tab.evaluate(() => navigator.sendBeacon("/_cio/track", JSON.stringify({ name: "own-beacon" })));
    await tab.evaluate(() => fetch("/_cio/track", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "own-fetch" }) }));
    await eventually(async () => {
      const names = (await visitorActivity(w, anon)).events.map((e) => e.name);
      return names.includes("own-beacon") && names.includes("own-fetch");
    }, "the site's own beacon and fetch", 5000);

    // The victim visits the attacker's page, which posts the form.
    const answered = tab.waitForResponse((r) => r.url().endsWith("/_cio/identify"), { timeout: 10000 });
    await tab.goto(evilUrl);
    const res = await answered;
    assert.equal(res.status(), 403, await res.text());
    await tab.goto(`${w.url}/next`);
    assert.equal(originSawFor("/next")["x-cio-id"], undefined, "the origin is not told the attacker's id");
    const cookies = await context.cookies();
    assert.equal(cookies.find((c) => c.name === "_cioid"), undefined);
    assert.equal(cookies.find((c) => c.name === "_cioidsig"), undefined);
    assert.equal((await person(w, attackerId)).status, 404, "the attacker's identify applied nothing");
    const names = (await visitorActivity(w, anon)).events.map((e) => e.name);
    assert.ok(!names.includes("evil-beacon") && !names.includes("evil-fetch"), names.join());
    await context.close();
  } finally {
    await browser.close();
    evil.closeAllConnections();
    evil.close();
  }
});

test("secure mode: a _cio_id link identifies no one (no _cioid, no X-Cio-Id), with or without forwarding; the page is served", async () => {
  const plain = await secureEdge();
  const id = uid("linked");
  assert.equal((await api(plain, "PUT", `v1/customers/${id}`, { plan: "x" })).status, 200);
  const cio = (await person(plain, id)).body.cio_id;
  const a = new Browser(plain);
  const res = await a.visit(`/landing?_cio_id=${cio}`);
  assert.equal(res.status, 200);
  assert.equal(cookiesNamed(res, "_cioid").length, 0);
  assert.equal(originSawFor(`/landing?_cio_id=${cio}`)["x-cio-id"], undefined);

  const port = await closedPort();
  const forwarding = await edge(
    { CIO_TRACK_URL: `http://127.0.0.1:${port}` },
    { IDENTIFY_SECRET: SECRET, CIO_SITE_ID: "ws", CIO_API_KEY: "wk" },
    { queues: true },
  );
  const b = new Browser(forwarding);
  const unknown = `abc${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`;
  const r = await b.visit(`/landing?_cio_id=${unknown}`);
  assert.equal(r.status, 200);
  assert.equal(cookiesNamed(r, "_cioid").length, 0, "no unsigned _cioid");
  assert.equal(originSawFor(`/landing?_cio_id=${unknown}`)["x-cio-id"], undefined);
  const name = `after-${crypto.randomUUID()}`;
  assert.equal((await b.track(name)).status, 200);
  assert.ok((await visitorActivity(forwarding, b.anon)).events.some((e) => e.name === name), "the anonymous visitor's event");
});

/// A request whose body is sent chunked (no Content-Length) and never ends:
/// `firstBytes` are sent, then the stream stays open.
function endlessChunked(url, firstBytes, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked", ...headers } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString(), req }));
    });
    req.on("error", reject);
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    for (let sent = 0; sent < firstBytes; sent += chunk.length) req.write(chunk);
  });
}

test("a chunked body without Content-Length is refused at 256 KiB without waiting for (or holding) the rest", async () => {
  const w = await edge();
  for (const endpoint of ["_cio/identify", "_cio/track", "_cio/api/v1/events"]) {
    const started = Date.now();
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`${endpoint}: no answer within 10 s`)), 10000));
    const auth = endpoint.includes("/api/") ? { authorization: AUTH } : {};
    const res = await Promise.race([endlessChunked(`${w.url}/${endpoint}`, 320 * 1024, auth), timeout]);
    res.req.destroy();
    assert.equal(res.status, 413, `${endpoint}: ${res.body}`);
    assert.ok(Date.now() - started < 10000);
  }
  // Under the limit, a chunked body is read whole as before.
  const b = new Browser(w);
  await b.visit("/");
  const name = `chunked-${crypto.randomUUID()}`;
  const small = await new Promise((resolve, reject) => {
    const req = http.request(`${w.url}/_cio/track`, { method: "POST", headers: { "content-type": "application/json", cookie: b.jar.header() } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    const json = JSON.stringify({ name, data: { pad: "x".repeat(50 * 1024) } });
    req.write(json.slice(0, 1000));
    req.end(json.slice(1000));
  });
  assert.equal(small, 200);
  assert.ok((await visitorActivity(w, b.anon)).events.some((e) => e.name === name));
});

/// A browser request to a browser endpoint from `address`, as a fresh
/// visitor carrying `cioid` (a forged `_cioid` when it is not theirs).
async function strangerTrack(w, { cioid, address, name = "forged" }) {
  const anon = crypto.randomUUID();
  const cookie = `_cioanonid=${anon}` + (cioid ? `; _cioid=${encodeURIComponent(cioid)}` : "");
  const res = await w.fetch("/_cio/track", {
    method: "POST",
    body: JSON.stringify({ name }),
    headers: { "content-type": "application/json", cookie, "cf-connecting-ip": address },
  });
  await res.arrayBuffer();
  return res.status;
}

test("a forged _cioid from rotating visitors and addresses is bounded per person; the person's own limit is that person's alone", async () => {
  const w = await edge({}, {}, {
    ratelimits: {
      VISITOR_RATE_LIMIT: { simple: { limit: 1000, period: 60 } },
      CLIENT_RATE_LIMIT: { simple: { limit: 1000, period: 60 } },
      PERSON_RATE_LIMIT: { simple: { limit: 5, period: 60 } },
    },
  });
  const victim = uid("victim");
  assert.equal((await api(w, "PUT", `v1/customers/${victim}`, {})).status, 200);
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await strangerTrack(w, { cioid: victim, address: `198.51.100.${i + 1}` }));
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
  assert.equal((await activity(w, victim)).length, 5, "refused writes stored nothing");
  // Another person, and anonymous visitors, are not limited by it.
  const other = uid("other");
  assert.equal((await api(w, "PUT", `v1/customers/${other}`, {})).status, 200);
  assert.equal(await strangerTrack(w, { cioid: other, address: "198.51.100.1" }), 200);
  assert.equal(await strangerTrack(w, { address: "198.51.100.1" }), 200);
});

test("per-address limits count an IPv6 address as its /64", async () => {
  const w = await edge({}, {}, {
    ratelimits: {
      VISITOR_RATE_LIMIT: { simple: { limit: 1000, period: 60 } },
      CLIENT_RATE_LIMIT: { simple: { limit: 3, period: 60 } },
    },
  });
  const statuses = [];
  for (let i = 1; i <= 5; i++) statuses.push(await strangerTrack(w, { address: `2001:db8:7:9::${i.toString(16)}:${i}` }));
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  assert.equal(await strangerTrack(w, { address: "2001:db8:7:a::1" }), 200, "the next /64 is another client");
  assert.equal(await strangerTrack(w, { address: "203.0.113.5" }), 200);
});

/// Sends again when the connection drops (a kept-alive socket the local
/// runtime closed as it was reused, under load): the operations carry ids,
/// so a repeat is recorded once.
async function sendAgain(send) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (e) {
      if (attempt === 3 || !/UND_ERR_SOCKET|ECONNRESET/.test(e.message)) throw e;
    }
  }
}

test("a person at 50,000 events: a stranger's forged events cannot lock the person out; their own browser is still recorded", async () => {
  const w = await edge();
  const victim = uid("full");
  assert.equal((await api(w, "PUT", `v1/customers/${victim}`, {})).status, 200);
  // The backend's history up to 20 short of the cap, 100 per batch, four at a time.
  const CAP = 50_000;
  const backend = CAP - 20;
  const batches = [];
  for (let i = 0; i < backend; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(i + 100, backend); j++) {
      batch.push({ type: "person", action: "event", identifiers: { id: victim }, name: "b", id: `b-${j}`, timestamp: 1700000000 + j });
    }
    batches.push(batch);
  }
  for (let i = 0; i < batches.length; i += 4) {
    const answers = await Promise.all(batches.slice(i, i + 4).map((batch) => sendAgain(() => api(w, "POST", "v2/batch", { batch }))));
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
  }
  // A stranger with the victim's _cioid fills the rest, and keeps going.
  const forged = [];
  for (let i = 0; i < 40; i++) forged.push(await strangerTrack(w, { cioid: victim, address: `198.51.100.${i + 1}`, name: `forged-${i}` }));
  // The person's own browser is still recorded.
  const own = new Browser(w);
  own.jar.set("_cioid", encodeURIComponent(victim));
  await own.visit("/");
  const name = `own-${crypto.randomUUID()}`;
  const mine = await own.track(name);
  assert.equal(mine.status, 200, mine.text);
  assert.deepEqual([...new Set(forged)], [200], "the stranger is answered as anyone");
  const newest = await activity(w, victim, 100);
  assert.ok(newest.some((e) => e.name === name), "the person's own event is stored");
  // The backend's events were never dropped: one more from the backend is refused.
  const more = await api(w, "POST", `v1/customers/${victim}/events`, { name: "b", id: "b-over" });
  assert.equal(more.status, 429);
  const oldest = await api(w, "POST", `v1/customers/${victim}/events`, { name: "b", id: "b-0" });
  assert.equal(oldest.status, 200, "b-0 is still stored (a repeat is 200)");
});
