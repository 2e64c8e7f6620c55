// What each kind of request costs in the units Cloudflare bills, counted by
// the bench, and the price of a million of each at Workers Paid list prices.
//
// Counts come from the built worker run under Miniflare behind
// bench/counting.mjs, which counts every binding call (Worker requests, Durable
// Object requests and wall time, SQLite rows read and written, KV reads and
// writes, Queue operations). CPU comes from the same requests sent to the
// plain built worker: workerd's CPU time from /proc over the run, divided by
// the requests. A forwarded operation is the difference between the same
// tracks with forwarding on (a local receiver answering 200) and off, once
// the receiver has every operation.
//
//   node bench/cost.mjs            (npm run bench prints it too)
//   COST_REPEAT=2 node bench/cost.mjs   more requests per scenario for CPU
import { Miniflare } from "miniflare";
import { EDGE_STORAGE, MODULE_RULES } from "./edge.mjs";
import { readFileSync, readdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startOrigin } from "../tests/support/origin.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
process.env.WRANGLER_SEND_METRICS = "false";
const REPEAT = Number(process.env.COST_REPEAT || 1);
const SITE_ID = "bench-site";
const API_KEY = "bench-key";
const ADMIN_TOKEN = "bench-admin";
const AUTH = `Basic ${Buffer.from(`${SITE_ID}:${API_KEY}`).toString("base64")}`;

/// Workers Paid list prices, USD (read 2026-12-01 from
/// developers.cloudflare.com: workers/platform/pricing, durable-objects/
/// platform/pricing, kv/platform/pricing, queues/platform/pricing). Beyond
/// the included monthly usage; the $5 subscription and the included usage
/// are left out, so the figures are the marginal cost.
export const PRICES = {
  date: "2026-12-01",
  worker_request: 0.3 / 1e6,
  cpu_ms: 0.02 / 1e6,
  do_request: 0.15 / 1e6,
  do_gb_s: 12.5 / 1e6, // duration, 128 MB per object while it runs
  row_read: 0.001 / 1e6,
  row_written: 1.0 / 1e6,
  kv_read: 0.5 / 1e6,
  kv_write: 5.0 / 1e6, // writes, deletes and lists alike
  queue_op: 0.4 / 1e6, // per 64 KB written, read or deleted
};

export function price(counted) {
  const p = PRICES;
  const c = new Proxy(counted, { get: (t, k) => Number(t[k]) || 0 });
  return (
    c.worker_requests * p.worker_request +
    c.cpu_ms * p.cpu_ms +
    c.do_requests * p.do_request +
    (c.do_ms / 1000) * 0.125 * p.do_gb_s +
    c.rows_read * p.row_read +
    c.rows_written * p.row_written +
    c.kv_reads * p.kv_read +
    (c.kv_writes + c.kv_deletes + c.kv_lists) * p.kv_write +
    (c.queue_writes + c.queue_reads + c.queue_deletes) * p.queue_op
  );
}

// --- CPU of this process's workerd children -----------------------------------
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
function procStat(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const close = text.lastIndexOf(")");
  const f = text.slice(close + 2).split(" ");
  return { comm: text.slice(text.indexOf("(") + 1, close), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}
function workerdPids() {
  const pids = new Set();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = procStat(name);
      if (s.comm.startsWith("workerd") && s.ppid === process.pid) pids.add(Number(name));
    } catch {}
  }
  return pids;
}
const cpuMs = (pid) => (procStat(pid).ticks / CLK_TCK) * 1000;

// --- workers ------------------------------------------------------------------
export async function start({ counting, forwarding, originUrl, receiverUrl }) {
  const known = workerdPids();
  const mf = new Miniflare({
    compatibilityDate: "2026-04-01",
    host: "127.0.0.1",
    port: 0,
    modules: true,
    rootPath: root,
    scriptPath: counting ? path.join(here, "counting.mjs") : path.join(root, "build/index.js"),
    modulesRules: MODULE_RULES,
    ...EDGE_STORAGE,
    bindings: {
      ORIGIN_URL: originUrl,
      SITE_ID,
      API_KEY,
      ADMIN_TOKEN,
      ...(forwarding ? { CIO_SITE_ID: "ws-site", CIO_API_KEY: "ws-key", CIO_TRACK_URL: receiverUrl } : {}),
    },
    ...(forwarding
      ? {
          queueProducers: { CIO_OUTBOX: "cio-outbox", CIO_DEADLETTER: "cio-deadletter" },
          queueConsumers: {
            "cio-outbox": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 3, deadLetterQueue: "cio-deadletter" },
            "cio-deadletter": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10 },
          },
        }
      : {}),
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const pid = [...workerdPids()].find((p) => !known.has(p));
  return { mf, url, pid, counting };
}

/// A stand-in for the Customer.io workspace: 200 to every batch, counting
/// the operations it received.
async function startReceiver() {
  let ops = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      try {
        ops += JSON.parse(body).batch?.length ?? 1;
      } catch {}
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, ops: () => ops, close: () => server.close() };
}

// --- scenarios ------------------------------------------------------------------
const anonOf = (i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
const freshAnon = () => crypto.randomUUID();
const POOL = 20;

async function send(w, p, init = {}) {
  const res = await fetch(w.url + p, { redirect: "manual", ...init });
  await res.arrayBuffer();
  if (res.status >= 400) throw new Error(`${init.method ?? "GET"} ${p} answered ${res.status}`);
  return res;
}
const post = (w, p, body, cookie, headers = {}) =>
  send(w, p, { method: "POST", headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}), ...headers }, body: JSON.stringify(body) });

/// Each scenario: how many requests, and request i against worker w. `run`
/// tags make every call unique per worker and run.
const SCENARIOS = [
  { name: "page view, returning visitor", n: 200, req: (w) => send(w, "/", { headers: { cookie: `_cioanonid=${anonOf(1)}` } }) },
  { name: "page view, first visit", n: 200, req: (w) => send(w, "/") },
  { name: "browser track, anonymous", n: 400, req: (w, i, run) => post(w, "/_cio/track", { name: "bench", data: { i } }, `_cioanonid=${anonOf(1000 + (i % 10))}`) },
  {
    name: "browser track, identified",
    n: 400,
    req: (w, i) => post(w, "/_cio/track", { name: "bench", data: { i } }, `_cioanonid=${anonOf(i % POOL)}; _cioid=bench-user-${i % POOL}`),
  },
  { name: "identify, new person", n: 40, req: (w, i, run) => post(w, "/_cio/identify", { id: `new-${run}-${i}`, plan: "bench" }, `_cioanonid=${freshAnon()}`) },
  {
    name: "identify, existing person",
    n: 400,
    req: (w, i, run) => post(w, "/_cio/identify", { id: `bench-user-${i % POOL}`, plan: `bench-${run}-${i}` }, `_cioanonid=${anonOf(i % POOL)}`),
  },
  {
    // A site identifying on every page: the attributes the person holds.
    name: "identify, existing person, nothing new",
    n: 400,
    req: (w, i) => post(w, "/_cio/identify", { id: `bench-user-${i % POOL}`, plan: "bench" }, `_cioanonid=${anonOf(i % POOL)}`),
  },
  { name: "link click (_cio_id), person cached", n: 100, req: (w, i) => send(w, `/?_cio_id=${w.cioIds[i % POOL]}`) },
  {
    name: "Track API v2 batch of 100 events",
    n: 10,
    ops: 100,
    req: (w, i) =>
      post(
        w,
        "/_cio/api/v2/batch",
        {
          batch: Array.from({ length: 100 }, (_, k) => ({
            type: "person",
            identifiers: { id: `bench-user-${k % POOL}` },
            action: "event",
            name: "batched",
            attributes: { i, k },
          })),
        },
        undefined,
        { authorization: AUTH },
      ),
  },
];
const FORWARDED = SCENARIOS.find((s) => s.name === "browser track, identified");

async function setUp(w) {
  w.cioIds = [];
  for (let i = 0; i < POOL; i++) {
    await post(w, "/_cio/identify", { id: `bench-user-${i}`, email: `bench-${i}@example.com` }, `_cioanonid=${anonOf(i)}`);
    const res = await fetch(`${w.url}/_cio/admin/people/bench-user-${i}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    w.cioIds.push((await res.json()).cio_id);
  }
  if (w.cioIds.some((id) => !id)) throw new Error("could not read the bench people's cio_ids");
  // Warm every path once, so no scenario pays the isolate's first use.
  let run = 0;
  for (const s of SCENARIOS) await s.req(w, 0, `warm${run++}`);
  if (w.counting) await counters(w);
}

export async function counters(w) {
  return (await fetch(`${w.url}/__bench/counters`)).json();
}

/// Runs n requests, 4 at a time.
async function drive(w, s, n, run) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < n) await s.req(w, next++, run);
    }),
  );
}

async function until(test, ms = 30000) {
  const end = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > end) throw new Error("timed out waiting for the forwarded operations");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/// The identify of a new person, one object call at a time (the calls in
/// their wire form, src/identity/wire.rs: externally tagged JSON; tests/cost.test.mjs
/// runs them once, so the shape cannot drift from the objects'), each straight to
/// its object through bench/counting.mjs: CPU and counts per step. The
/// steps are what `Store::identify` sends (docs/ARCHITECTURE.md): the index
/// claim, the person's identify (creating it), inside it the visitor's
/// merge, and after the answer the visitor's acknowledgement.
export async function identifySplit(w, n = 40) {
  const tag = `${Date.now()}`;
  const call = async (binding, name, body) => {
    const res = await fetch(`${w.url}/__bench/object`, { method: "POST", body: JSON.stringify({ binding, name, call: body }) });
    const text = await res.text();
    if (res.status !== 200 || !text.startsWith('{"Ok"')) throw new Error(`${binding} ${JSON.stringify(body).slice(0, 40)}: ${res.status} ${text.slice(0, 200)}`);
  };
  const now = Math.floor(Date.now() / 1000);
  const cio = (i) => `split${tag}${String(i).padStart(6, "0")}`;
  const anon = (i) => `00000000-0000-4000-9${tag.slice(-3)}-${String(i).padStart(12, "0")}`;
  const update = (i) => ({ id: `split-${tag}-${i}`, email: null, created_at: null, attributes: { plan: "bench" }, relationships: null });
  const steps = [
    ["index: look up an unknown value (a new object, nothing written)", (i) => call("IDENTITY_INDEX", `id:nobody-${tag}-${i}`, "get")],
    ["index: claim a new value (a new object, its table created)", (i) => call("IDENTITY_INDEX", `id:split-${tag}-${i}`, { claim: cio(i) })],
    ["visitor: merge a new visitor (a new object, its tables created)", (i) => call("VISITOR", anon(i), { merge: { cio_id: cio(i), after: null } })],
    [
      "person: identify, creating it (a new object, its tables created; no visitor)",
      (i) => call("PERSON", cio(i), { identify: { cio_id: cio(i), update: update(i), create: true, email_claimed: false, anonymous_id: null, now } }),
    ],
    ["visitor: acknowledge the merge (after the answer)", (i) => call("VISITOR", anon(i), { ack: cio(i) })],
    [
      "person: identify again, changing an attribute (existing object)",
      (i) => call("PERSON", cio(i), { identify: { cio_id: cio(i), update: { ...update(i), attributes: { plan: "again" } }, create: false, email_claimed: false, anonymous_id: null, now } }),
    ],
  ];
  const out = [];
  await counters(w);
  for (const [name, step] of steps) {
    const before = cpuMs(w.pid);
    for (let i = 0; i < n; i++) await step(i);
    const cpu = (cpuMs(w.pid) - before) / n;
    const c = per(await counters(w), n);
    out.push({ name, cpu_ms: cpu, rows_read: c.rows_read, rows_written: c.rows_written, do_ms: c.do_ms });
  }
  return out;
}

/// The runtime's own floor, for the split: a worker and an object written in
/// plain JS that answer at once, under the same Miniflare. A call to a warm
/// object, to a new one, and to a new one that creates a table and writes a
/// row (what any first write to a SQLite object does).
async function runtimeFloor(n = 200) {
  const script = `
export class Obj {
  constructor(state) { this.sql = state.storage.sql; }
  async fetch(req) {
    const body = await req.text();
    if (body === "write" || body === "rw") {
      this.sql.exec("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
      this.sql.exec("INSERT OR REPLACE INTO t (k, v) VALUES (1, 'x')");
    }
    if (body === "rw") for (let i = 0; i < 5; i++) this.sql.exec("SELECT v FROM t WHERE k = 1").toArray();
    return new Response('{"Ok":{}}');
  }
}
export default {
  async fetch(req, env) {
    const u = new URL(req.url);
    const kv = u.searchParams.get("kv");
    if (kv === "none") return new Response("{}");
    if (kv === "get") return new Response((await env.KV.get("k")) ?? "{}");
    if (kv === "put") {
      await env.KV.put("k", JSON.stringify({ id: u.searchParams.get("name"), at: Date.now() }));
      return new Response("{}");
    }
    const stub = env.OBJ.get(env.OBJ.idFromName(u.searchParams.get("name")));
    return stub.fetch("https://do/call", { method: "POST", body: u.searchParams.get("body") ?? "" });
  },
};`;
  const known = workerdPids();
  const mf = new Miniflare({ modules: true, script, compatibilityDate: "2026-04-01", durableObjects: { OBJ: { className: "Obj", useSQLite: true } }, kvNamespaces: ["KV"], host: "127.0.0.1", port: 0 });
  try {
    const url = (await mf.ready).toString().replace(/\/$/, "");
    const pid = [...workerdPids()].find((p) => !known.has(p));
    const tag = Date.now();
    const cases = [
      ["runtime floor: a JS worker that answers at once", () => "kv=none"],
      ["runtime floor: a JS worker reading one KV key", () => "kv=get"],
      ["runtime floor: a JS worker writing one KV key", (i) => `kv=put&name=${i}`],
      ["runtime floor: a JS worker calling a warm JS object", () => "name=warm"],
      ["runtime floor: ... a warm JS object reading 5 rows and writing 1", () => "name=warm&body=rw"],
      ["runtime floor: a JS worker calling a new JS object", (i) => `name=new-${tag}-${i}`],
      ["runtime floor: ... a new JS object creating a table and writing a row", (i) => `name=write-${tag}-${i}&body=write`],
    ];
    const out = [];
    await (await fetch(`${url}/?name=warm`)).text();
    for (const [name, q] of cases) {
      const before = cpuMs(pid);
      for (let i = 0; i < n; i++) await (await fetch(`${url}/?${q(i)}`)).text();
      out.push({ name, cpu_ms: (cpuMs(pid) - before) / n });
    }
    return out;
  } finally {
    await mf.dispose();
  }
}

/// Waits until the receiver has had nothing new for two seconds.
async function quiet(receiver) {
  let seen = -1;
  while (receiver.ops() !== seen) {
    seen = receiver.ops();
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const per = (c, n) => Object.fromEntries(Object.entries(c).filter(([, v]) => typeof v === "number").map(([k, v]) => [k, v / n]));

export async function cost({ log = console.log } = {}) {
  const origin = await startOrigin();
  const receiver = await startReceiver();
  const opts = { originUrl: origin.url, receiverUrl: `${receiver.url}/_cio` };
  const workers = [];
  const results = {};
  let split = [];
  try {
    const counted = await start({ ...opts, counting: true });
    const plain = await start({ ...opts, counting: false });
    workers.push(counted, plain);
    await setUp(counted);
    await setUp(plain);
    split = [...(await identifySplit(counted)), ...(await runtimeFloor())];
    for (const s of SCENARIOS) {
      const n = s.n * REPEAT;
      const run = `${s.name.length}-${Date.now()}`;
      await drive(counted, s, s.n, run);
      const c = await counters(counted);
      const before = cpuMs(plain.pid);
      await drive(plain, s, n, run);
      const cpu = (cpuMs(plain.pid) - before) / n;
      results[s.name] = { ...per(c, s.n), cpu_ms: cpu, objects: c.objects, calls: s.n, ops: s.ops ?? 1 };
    }

    // A forwarded operation: identified tracks with forwarding on, until the
    // receiver has them all, less the same tracks with it off.
    const fwdCounted = await start({ ...opts, counting: true, forwarding: true });
    const fwdPlain = await start({ ...opts, counting: false, forwarding: true });
    workers.push(fwdCounted, fwdPlain);
    await setUp(fwdCounted);
    await setUp(fwdPlain);
    await quiet(receiver);
    await counters(fwdCounted);
    let sent = receiver.ops();
    await drive(fwdCounted, FORWARDED, FORWARDED.n, "fwd");
    await until(async () => receiver.ops() >= sent + FORWARDED.n);
    await quiet(receiver); // the consumer's own bookkeeping after the post
    const c = per(await counters(fwdCounted), FORWARDED.n);
    sent = receiver.ops();
    const before = cpuMs(fwdPlain.pid);
    await drive(fwdPlain, FORWARDED, FORWARDED.n * REPEAT, "fwd");
    await until(async () => receiver.ops() >= sent + FORWARDED.n * REPEAT);
    await quiet(receiver);
    const cpu = (cpuMs(fwdPlain.pid) - before) / (FORWARDED.n * REPEAT);
    const off = results[FORWARDED.name];
    const diff = Object.fromEntries(Object.keys(c).map((k) => [k, Math.max(0, c[k] - (off[k] ?? 0))]));
    results["forwarded operation (over the same track unforwarded)"] = { ...diff, cpu_ms: Math.max(0, cpu - off.cpu_ms), calls: FORWARDED.n, ops: 1 };
  } finally {
    for (const w of workers) await w.mf.dispose().catch(() => {});
    receiver.close();
    await origin.close();
  }
  print(results, split, log);
  return { scenarios: results, identify_split: split, runtime_floors: runtimeFloors(results, split), visitors: visitors(results), prices: PRICES };
}

const f = (n, d = 2) => (Number.isFinite(n) ? (Math.abs(n) < 0.005 && n !== 0 ? n.toExponential(1) : n.toFixed(d)) : "-");

function print(results, split, log) {
  log(`\nCost per request, counted (Workers Paid list prices of ${PRICES.date}; bench/README.md)\n`);
  log("| scenario | Worker requests | CPU ms | DO requests | DO wall ms | rows read | rows written | KV reads | KV writes | Queue ops | $ per million |");
  log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [name, c] of Object.entries(results)) {
    const q = c.queue_writes + c.queue_reads + c.queue_deletes;
    const kvw = c.kv_writes + c.kv_deletes + c.kv_lists;
    log(`| ${name} | ${f(c.worker_requests)} | ${f(c.cpu_ms, 3)} | ${f(c.do_requests)} | ${f(c.do_ms)} | ${f(c.rows_read)} | ${f(c.rows_written)} | ${f(c.kv_reads)} | ${f(kvw)} | ${f(q)} | ${f(price(c) * 1e6)} |`);
  }
  for (const name of ["identify, new person", "identify, existing person"]) {
    const o = results[name]?.objects ?? {};
    const parts = Object.entries(o).map(([cls, x]) => `${cls} ${f(x.requests / results[name].calls)} requests, ${f(x.rows_read / results[name].calls)} rows read, ${f(x.rows_written / results[name].calls)} written`);
    log(`\n${name}, per object per identify: ${parts.join("; ")}`);
  }
  log("\nIdentify of a new person, step by step, each call straight to its object (workerd CPU per call, the object's rows)\n");
  log("| step | CPU ms | rows read | rows written |");
  log("|---|---|---|---|");
  for (const s of split) log(`| ${s.name} | ${f(s.cpu_ms, 2)} | ${s.rows_read === undefined ? "-" : f(s.rows_read)} | ${s.rows_written === undefined ? "-" : f(s.rows_written)} |`);
  const floors = runtimeFloors(results, split);
  if (floors.length) {
    log("\nThe runtime floor for the same I/O (the floor rows above: a JS worker and JS objects doing the same number of KV reads and writes, object calls and new objects), against cio-edge's CPU\n");
    log("| scenario | floor CPU ms | cio-edge CPU ms |");
    log("|---|---|---|");
    for (const x of floors) log(`| ${x.name} | ${f(x.floor, 2)} | ${f(x.cpu, 2)} |`);
  }
  const v = visitors(results);
  log(`\nOne million visitors, ten page views (one first visit, nine returning) and two anonymous events each: $${f(v.off)}; with forwarding on: $${f(v.on)} (marginal list prices, before the plan's included usage)`);
}

/// What a JS worker with JS objects would spend on a scenario's counted I/O:
/// the request, each KV read and write, each object call (new objects: one
/// per identifier, person and visitor a new person brings).
export function runtimeFloors(results, split) {
  const at = (name) => split.find((s) => s.name === `runtime floor: ${name}`)?.cpu_ms;
  const answer = at("a JS worker that answers at once");
  const kvRead = at("a JS worker reading one KV key") - answer;
  const kvWrite = at("a JS worker writing one KV key") - answer;
  const warm = at("a JS worker calling a warm JS object") - answer;
  const fresh = at("... a new JS object creating a table and writing a row") - answer;
  if (![answer, kvRead, kvWrite, warm, fresh].every(Number.isFinite)) return [];
  const newObjects = { "identify, new person": 3 };
  return ["identify, new person", "identify, existing person", "identify, existing person, nothing new", "browser track, identified"]
    .filter((name) => results[name])
    .map((name) => {
      const c = results[name];
      const fresh_n = newObjects[name] ?? 0;
      const floor = answer + c.kv_reads * kvRead + (c.kv_writes + c.kv_deletes) * kvWrite + fresh_n * fresh + (c.do_requests - fresh_n) * warm;
      return { name, floor, cpu: c.cpu_ms };
    });
}

/// One million visitors with ten page views and two events each.
export function visitors(r) {
  const m = 1e6;
  const pageFirst = price(r["page view, first visit"]);
  const pageReturning = price(r["page view, returning visitor"]);
  const event = price(r["browser track, anonymous"]);
  const forwarded = price(r["forwarded operation (over the same track unforwarded)"] ?? {});
  const off = m * (pageFirst + 9 * pageReturning + 2 * event);
  return { off, on: off + m * 2 * forwarded };
}

if (import.meta.url === `file://${process.argv[1]}`) await cost();
