// `npm run soak`: 1,000 simulated visitors browse, track, identify (some
// sharing emails, some resetting) concurrently against `wrangler dev` with a
// fresh --persist-to state. Then every event answered 2xx must be found
// exactly once where it belongs, people must equal distinct identities, and
// there must have been no 5xx. Then wrangler dev restarts on the same state
// and every count must be unchanged. Bounded: about a minute.
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

// A config without the [build] step: the soak runs the build already made.
function soakConfig() {
  const dir = path.join(root, ".wrangler");
  mkdirSync(dir, { recursive: true });
  const base = readFileSync(path.join(root, "wrangler.toml"), "utf8")
    .replace(/\[build\]\n(?:[^\n]+\n)*/, "")
    .replace('main = "build/index.js"', `main = "${path.join(root, "build/index.js")}"`);
  const file = path.join(dir, "soak.wrangler.toml");
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

async function startDev() {
  const child = spawn(
    path.join(root, "node_modules/.bin/wrangler"),
    ["dev", "--config", soakConfig(), "--ip", "127.0.0.1", "--port", String(PORT), "--persist-to", state,
      "--var", `ORIGIN_URL:${originUrl}`, "--var", `ADMIN_TOKEN:${ADMIN_TOKEN}`, "--log-level", "warn"],
    { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${PORT}/`);
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
      accepted.push({ id, owner: () => (who ? { kind: "person", email: who } : mergedInto.has(anon) ? { kind: "person", email: mergedInto.get(anon) } : { kind: "visitor", anon }) });
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

async function admin(p) {
  const res = await fetch(`${base}/_cio/admin/${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (res.status !== 200) throw new Error(`admin ${p}: ${res.status}`);
  return res.json();
}

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
      found.set(e.id, (found.get(e.id) || 0) + 1);
      where.set(e.id, `person:${email}`);
    }
  }
  const anons = new Set(accepted.map((a) => a.owner()).filter((o) => o.kind === "visitor").map((o) => o.anon));
  for (const anon of anons) {
    for (const e of (await admin(`visitors/${anon}/activity?limit=1000`)).events) {
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

  await stopDev(dev);
  dev = await startDev();
  const second = await verify();
  console.log(`after restart on the same state: found ${second.found}; missing ${second.missing}; doubled ${second.doubled}; people ${second.people}; listed ${second.listed}`);

  const ok = fiveXX === 0 && first.missing === 0 && first.doubled === 0 && first.misplaced === 0 &&
    first.people === first.identities && first.listed === first.identities &&
    JSON.stringify(first) === JSON.stringify(second);
  console.log(ok ? "soak: nothing lost, nothing doubled, unchanged after restart" : "soak: FAILED");
  failed = !ok;
} finally {
  await stopDev(dev);
  origin.close();
}
process.exit(failed ? 1 : 0);
