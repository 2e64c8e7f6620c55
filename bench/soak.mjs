// `npm run soak`: 1,000 simulated visitors browse, track, identify (some
// sharing emails, some resetting) concurrently against `wrangler dev` with a
// fresh --persist-to state. Then every event answered 2xx must be found
// exactly once where it belongs, people must equal distinct identities, and
// there must have been no 5xx. Then wrangler dev restarts on the same state
// and every count must be unchanged. Bounded: about a minute.
//
// SOAK_FORWARD=1 (`npm run soak:forward`): forwarding on, to a second
// wrangler dev serving its own Track API as the workspace; after the load
// every event answered 2xx must exist exactly once at the receiver too (found
// by the event id the edge sends, docs/FORWARDING.md), and every identity
// must be a person there.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const VISITORS = Number(process.env.SOAK_VISITORS || 1000);
const EMAILS = Number(process.env.SOAK_EMAILS || 300);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY || 50);
const PORT = Number(process.env.SOAK_PORT || 8799);
const ADMIN_TOKEN = "soak-admin";
const state = mkdtempSync(path.join(tmpdir(), "cio-soak-"));
const FORWARD = process.env.SOAK_FORWARD === "1";
const RECEIVER_PORT = PORT + 1;
const WORKSPACE = { site: "soak-site", key: "soak-key" };
const receiverState = mkdtempSync(path.join(tmpdir(), "cio-soak-receiver-"));

// A config without the [build] step: the soak runs the build already made.
function soakConfig(receiver = false) {
  const dir = path.join(root, ".wrangler");
  mkdirSync(dir, { recursive: true });
  let base = readFileSync(path.join(root, "wrangler.toml"), "utf8")
    .replace(/\[build\]\n(?:[^\n]+\n)*/, "")
    .replace('main = "build/index.js"', `main = "${path.join(root, "build/index.js")}"`);
  // The receiver: its own name and no queues (it forwards nothing).
  if (receiver) base = base.replace('name = "cio-edge"', 'name = "cio-edge-receiver"').replace(/\[\[queues\.[a-z]+\]\][^[]*/g, "");
  const file = path.join(dir, receiver ? "soak-receiver.wrangler.toml" : "soak.wrangler.toml");
  writeFileSync(file, base);
  return file;
}

const origin = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><html><head></head><body>soak</body></html>");
});
await new Promise((r) => origin.listen(0, "127.0.0.1", r));
const originUrl = `http://127.0.0.1:${origin.address().port}`;

async function startDev({ receiver = false } = {}) {
  const port = receiver ? RECEIVER_PORT : PORT;
  const extra = receiver
    ? ["--var", `SITE_ID:${WORKSPACE.site}`, "--var", `API_KEY:${WORKSPACE.key}`]
    : FORWARD
      ? ["--var", `CIO_SITE_ID:${WORKSPACE.site}`, "--var", `CIO_API_KEY:${WORKSPACE.key}`,
         "--var", `CIO_TRACK_URL:http://127.0.0.1:${RECEIVER_PORT}/_cio`]
      : [];
  const child = spawn(
    path.join(root, "node_modules/.bin/wrangler"),
    ["dev", "--config", soakConfig(receiver), "--ip", "127.0.0.1", "--port", String(port), "--persist-to", receiver ? receiverState : state,
      "--var", `ORIGIN_URL:${originUrl}`, "--var", `ADMIN_TOKEN:${ADMIN_TOKEN}`, "--log-level", "warn", ...extra],
    { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`);
      await r.arrayBuffer();
      if (r.status === 200) return child;
    } catch {}
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`wrangler dev did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function stopDev(child) {
  child.kill("SIGINT");
  await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
}

const base = `http://127.0.0.1:${PORT}`;
let fiveXX = 0;
let requests = 0;

async function call(pathname, { method = "GET", body, jar }) {
  const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  const res = await fetch(base + pathname, {
    method,
    body,
    redirect: "manual",
    headers: { cookie, ...(method === "GET" ? { accept: "text/html", "sec-fetch-mode": "navigate" } : {}) },
  });
  requests++;
  if (res.status >= 500 && ++fiveXX <= 5) {
    const text = await res.clone().text();
    console.error(`5xx: ${method} ${pathname} answered ${res.status}: ${text.slice(0, 300)}`);
  }
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const i = pair.indexOf("=");
    const name = pair.slice(0, i);
    if (/Max-Age=0/.test(c)) jar.delete(name);
    else jar.set(name, pair.slice(i + 1));
  }
  await res.arrayBuffer();
  return res.status;
}

// The simulation's own record of where each accepted event belongs.
const accepted = []; // { id, owner: () => ({ kind: "person", email } | { kind: "visitor", anon }) }
const mergedInto = new Map(); // anon -> email
const identities = new Set();
const rand = (n) => Math.floor(Math.random() * n);

async function visitor(v) {
  const jar = new Map();
  let identified = null;
  const track = async (i) => {
    const id = `soak-${v}-${i}-${crypto.randomUUID()}`;
    const anon = jar.get("_cioanonid");
    const status = await call("/_cio/track", { method: "POST", body: JSON.stringify({ name: `e${i}`, id }), jar });
    if (status === 200) {
      const who = identified;
      // Browser event ids are recorded as `browser:<id>` (API rule 6.10).
      accepted.push({ id: `browser:${id}`, owner: () => (who ? { kind: "person", email: who } : mergedInto.has(anon) ? { kind: "person", email: mergedInto.get(anon) } : { kind: "visitor", anon }) });
    }
  };
  await call("/", { jar });
  for (let p = rand(3); p > 0; p--) await call(`/page-${p}`, { jar });
  for (let i = 0; i < 1 + rand(3); i++) await track(i);
  if (Math.random() < 0.6) {
    const email = `person-${rand(EMAILS)}@soak.example`;
    const anon = jar.get("_cioanonid");
    const status = await call("/_cio/identify", { method: "POST", body: JSON.stringify({ id: email, visitor: v }), jar });
    if (status === 200) {
      identities.add(email);
      if (!mergedInto.has(anon)) mergedInto.set(anon, email);
      identified = email;
      for (let i = 10; i < 10 + rand(3); i++) await track(i);
      if (Math.random() < 0.3) {
        await call("/_cio/reset", { method: "POST", jar });
        identified = null;
        for (let i = 20; i < 21 + rand(2); i++) await track(i);
      }
    }
  }
}

async function admin(p, at = base) {
  const res = await fetch(`${at}/_cio/admin/${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (res.status !== 200) throw new Error(`admin ${p}: ${res.status}`);
  return res.json();
}

/// The event id the edge sends for a recorded event (src/cio/ops.rs,
/// `event_ulid`): its time in ms, then 80 bits of two FNV-1a hashes of the
/// owner (a person's cio_id, a visitor's anonymous id) and the stored id.
function eventUlid(owner, storedId, timestamp) {
  const kind = storedId.startsWith("browser:") ? storedId : `api:${storedId}`;
  const input = `${Buffer.byteLength(owner)}:${owner}:${kind}`;
  const fnv = (seed) => {
    let h = seed;
    for (const b of Buffer.from(input)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return h;
  };
  const random = ((fnv(0xcbf29ce484222325n) << 64n) | fnv(0x6c62272e07bb0142n)) & ((1n << 80n) - 1n);
  const value = ((BigInt(Math.max(timestamp, 0)) * 1000n) & ((1n << 48n) - 1n)) << 80n | random;
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  let out = "";
  for (let i = 25; i >= 0; i--) out += alphabet[Number((value >> BigInt(i * 5)) & 31n)];
  return out;
}

const receiverBase = `http://127.0.0.1:${RECEIVER_PORT}`;

/// Forwarding: waits until the edge has nothing pending, then finds every
/// accepted event at the receiver by the id the edge sent it with.
async function verifyForwarded(sentIds) {
  const deadline = Date.now() + 180_000;
  let status;
  let quiet = 0;
  for (;;) {
    status = await admin("forwarding");
    quiet = status.pending === 0 ? quiet + 1 : 0;
    if (quiet >= 5 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const found = new Map();
  let people = 0;
  for (const email of identities) {
    const res = await fetch(`${receiverBase}/_cio/admin/people/${encodeURIComponent(email)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await res.arrayBuffer();
    if (res.status !== 200) continue;
    people++;
    for (const e of (await admin(`people/${encodeURIComponent(email)}/activity?limit=1000`, receiverBase)).events) found.set(e.id, (found.get(e.id) || 0) + 1);
  }
  const anons = new Set(accepted.map((a) => a.owner()).filter((o) => o.kind === "visitor").map((o) => o.anon));
  for (const anon of anons) {
    for (const e of (await admin(`visitors/${anon}/activity?limit=1000`, receiverBase)).events) found.set(e.id, (found.get(e.id) || 0) + 1);
  }
  let missing = 0;
  let doubled = 0;
  for (const ulids of sentIds.values()) {
    const n = ulids.reduce((sum, ulid) => sum + (found.get(ulid) || 0), 0);
    if (n === 0) missing++;
    if (n > 1) doubled++;
  }
  return { sent: sentIds.size, found: [...found.values()].reduce((a, b) => a + b, 0), missing, doubled, people, status };
}

/// Every stored event id the edge holds -> the id it forwards it with.
const sentIds = new Map();

// Reads back every place an event can be and checks each accepted event is
// in its expected place exactly once.
async function verify() {
  const found = new Map(); // event id -> count
  const where = new Map();
  const people = new Set();
  for (const email of identities) {
    const p = await admin(`people/${encodeURIComponent(email)}`);
    people.add(p.cio_id);
    for (const e of (await admin(`people/${encodeURIComponent(email)}/activity?limit=1000`)).events) {
      // Forwarded by the visitor that recorded it, else by this person.
      sentIds.set(e.id, [p.cio_id, e.anonymous_id].filter(Boolean).map((o) => eventUlid(o, e.id, e.timestamp)));
      found.set(e.id, (found.get(e.id) || 0) + 1);
      where.set(e.id, `person:${email}`);
    }
  }
  const anons = new Set(accepted.map((a) => a.owner()).filter((o) => o.kind === "visitor").map((o) => o.anon));
  for (const anon of anons) {
    for (const e of (await admin(`visitors/${anon}/activity?limit=1000`)).events) {
      sentIds.set(e.id, [eventUlid(anon, e.id, e.timestamp)]);
      found.set(e.id, (found.get(e.id) || 0) + 1);
      where.set(e.id, `visitor:${anon}`);
    }
  }
  let missing = 0;
  let doubled = 0;
  let misplaced = 0;
  for (const a of accepted) {
    const n = found.get(a.id) || 0;
    if (n === 0) missing++;
    if (n > 1) doubled++;
    const o = a.owner();
    if (n && where.get(a.id) !== (o.kind === "person" ? `person:${o.email}` : `visitor:${o.anon}`)) misplaced++;
  }
  let listed = 0;
  let cursor = null;
  do {
    const page = await admin(`people?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    listed += page.people.length;
    cursor = page.cursor;
  } while (cursor);
  return { accepted: accepted.length, found: [...found.values()].reduce((a, b) => a + b, 0), missing, doubled, misplaced, people: people.size, listed, identities: identities.size };
}

const started = Date.now();
const receiver = FORWARD ? await startDev({ receiver: true }) : null;
let dev = await startDev();
let failed = false;
try {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < VISITORS) await visitor(next++);
  }));
  const loadSeconds = (Date.now() - started) / 1000;
  const first = await verify();
  console.log(`soak: ${VISITORS} visitors, ${requests} requests in ${loadSeconds.toFixed(1)} s, ${fiveXX} 5xx`);
  console.log(`  events answered 2xx: ${first.accepted}; found ${first.found}; missing ${first.missing}; doubled ${first.doubled}; misplaced ${first.misplaced}`);
  console.log(`  distinct identities ${first.identities}; people ${first.people}; listed ${first.listed}`);
  let forwardedOk = true;
  if (FORWARD) {
    const f = await verifyForwarded(sentIds);
    const s = f.status;
    console.log(`forwarding: sender holds ${f.sent} events; receiver holds ${f.found}; missing ${f.missing}; doubled ${f.doubled}; people there ${f.people} of ${identities.size}`);
    console.log(`  operations enqueued ${s.enqueued}, delivered ${s.delivered}, failed ${s.failed}, retries ${s.retries}, pending ${s.pending}`);
    forwardedOk = f.missing === 0 && f.doubled === 0 && f.people === identities.size && s.failed === 0 && f.sent === first.accepted;
  }

  await stopDev(dev);
  dev = await startDev();
  const second = await verify();
  console.log(`after restart on the same state: found ${second.found}; missing ${second.missing}; doubled ${second.doubled}; people ${second.people}; listed ${second.listed}`);

  const ok = fiveXX === 0 && first.missing === 0 && first.doubled === 0 && first.misplaced === 0 &&
    first.people === first.identities && first.listed === first.identities &&
    JSON.stringify(first) === JSON.stringify(second) && forwardedOk;
  console.log(ok ? "soak: nothing lost, nothing doubled, unchanged after restart" : "soak: FAILED");
  failed = !ok;
} finally {
  await stopDev(dev);
  if (receiver) await stopDev(receiver);
  origin.close();
}
process.exit(failed ? 1 : 0);
