// `npm run bench`: what a page request costs through cio-edge against a
// hand-written JS worker doing the same job, under workerd on 127.0.0.1 with
// load from wrk. For each scenario: workerd CPU microseconds per request (the
// billed figure, read from /proc/<workerd pid>/stat over each wrk run), beside
// req/s and latency; cio-edge and the JS reference alternate, medians over the
// rounds. Then cold start (bench/workerd.mjs) and the wasm size against its budget. Prints a
// table, writes bench/results.json. Targets are reported, never asserted; the
// size budget is a build property and fails the run when exceeded. Then the
// cost table in Cloudflare's billed units (bench/cost.mjs).
//
//   BENCH_SECONDS=5 BENCH_ROUNDS=5 BENCH_CONNECTIONS=16 npm run bench
import { Miniflare } from "miniflare";
import { EDGE_STORAGE, EMPTY_CLASSES, MODULE_RULES } from "./edge.mjs";
import { fork, execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync, mkdtempSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir, cpus } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { latency } from "./latency.mjs";
import { cost } from "./cost.mjs";
import { coldStart as runtimeStart, modulesOf } from "./workerd.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 16);
const ENDPOINTS = process.env.BENCH_ENDPOINTS !== "0"; // the cio-edge-only endpoint scenarios
const ONLY = process.env.BENCH_ONLY; // scenario names to run, separated by ";"
const WASM_BUDGET_KIB = 300; // gzipped; stretch 250
const ANON = "0f8fad5b-d9cb-469f-a165-70867728950e"; // a returning visitor
const ADMIN_TOKEN = "bench-admin";
process.env.WRANGLER_SEND_METRICS = "false";

try {
  execFileSync("wrk", ["--version"], { stdio: "ignore" });
} catch (e) {
  if (e.code === "ENOENT") {
    console.error("wrk is missing: apt-get install -y wrk");
    process.exit(1);
  }
}

const median = (xs) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// --- CPU of a workerd process, from /proc --------------------------------
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

function procStat(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text.slice(close + 2).split(" ");
  return { comm, ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
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

const cpuSeconds = (pid) => procStat(pid).ticks / CLK_TCK;

// --- load -------------------------------------------------------------------
const POOL = 100; // existing people the identified scenarios spread over
const poolAnon = (i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;

// A wrk Lua script per scenario. `perRequest` builds each request in Lua:
// "pool" picks one of the POOL existing people (their cookies and id),
// "new" makes a new person from a new browser every time.
function luaScript({ method = "GET", path: p = "/", headers = {}, body, perRequest }) {
  const hdrs = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join("\n");
  const common = `${hdrs}
wrk.method = ${JSON.stringify(method)}
local n = 0
local tag = tostring(math.random(1, 1000000000)) .. "-" .. tostring(os.time())
function setup(thread) thread:set("tid", tostring(math.random(1, 1000000000))) end
local function anon(i) return string.format("00000000-0000-4000-8000-%012x", i) end
local function random_anon()
  return string.format("%08x-%04x-4%03x-8%03x-%06x%06x", math.random(0, 0x7fffffff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0, 0xfff), math.random(0, 0xffffff), math.random(0, 0xffffff))
end`;
  if (perRequest === "pool-track") {
    return `${common}
function request()
  local i = math.random(0, ${POOL - 1})
  return wrk.format(nil, ${JSON.stringify(p)}, { ["cookie"] = "_cioanonid=" .. anon(i) .. "; _cioid=bench-user-" .. i }, ${JSON.stringify(body)})
end`;
  }
  if (perRequest === "pool-identify") {
    return `${common}
function request()
  local i = math.random(0, ${POOL - 1})
  -- a changed attribute each time: an identify that changes nothing writes nothing
  return wrk.format(nil, ${JSON.stringify(p)}, { ["cookie"] = "_cioanonid=" .. anon(i) }, '{"id":"bench-user-' .. i .. '","plan":"bench-' .. math.random(1, 1000000000) .. '"}')
end`;
  }
  if (perRequest === "new") {
    return `${common}
function request()
  n = n + 1
  return wrk.format(nil, ${JSON.stringify(p)}, { ["cookie"] = "_cioanonid=" .. random_anon() }, '{"id":"new-' .. tag .. '-' .. tid .. '-' .. n .. '","plan":"bench"}')
end`;
  }
  return `${common}
${body === undefined ? "" : `wrk.body = ${JSON.stringify(body)}`}
wrk.path = ${JSON.stringify(p)}`;
}

function runWrk(target, scenario) {
  const dir = mkdtempSync(path.join(tmpdir(), "bench-"));
  const script = path.join(dir, "s.lua");
  writeFileSync(script, luaScript(scenario));
  const before = target.pid ? cpuSeconds(target.pid) : 0;
  const out = execFileSync("wrk", ["-t2", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script, target.url], {
    encoding: "utf8",
  });
  const cpu = target.pid ? cpuSeconds(target.pid) - before : NaN;
  const num = (re) => {
    const m = out.match(re);
    return m ? Number(m[1]) : NaN;
  };
  const ms = (re) => {
    const m = out.match(re);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  const requests = num(/(\d+) requests in/);
  return {
    requests,
    cpu_us: (cpu * 1e6) / requests,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: ms(/50%\s+([\d.]+)(us|ms|s)/),
    p99: ms(/99%\s+([\d.]+)(us|ms|s)/),
    errors: num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
  };
}

// --- workers ----------------------------------------------------------------
async function start(options) {
  const known = workerdPids();
  const started = performance.now();
  const mf = new Miniflare({ compatibilityDate: "2026-04-01", host: "127.0.0.1", port: 0, modules: true, ...options });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  await (await fetch(url + "/")).arrayBuffer();
  const coldStartMs = performance.now() - started;
  const pid = [...workerdPids()].find((p) => !known.has(p));
  return { mf, url, pid, coldStartMs };
}

const startEdge = (originUrl, vars = {}) =>
  start({
    rootPath: root,
    scriptPath: path.join(root, "build/index.js"),
    modulesRules: MODULE_RULES,
    ...EDGE_STORAGE,
    bindings: { ORIGIN_URL: originUrl, ADMIN_TOKEN, ...vars },
  });

const startJs = (originUrl, vars = {}) =>
  start({ scriptPath: path.join(here, "js-worker.js"), bindings: { ORIGIN_URL: originUrl, ...vars } });

// The JS reference with the edge's KV namespace and Durable Object bindings
// (empty classes): what the bindings alone add to a cold start.
const jsBoundSource = () => `${readFileSync(path.join(here, "js-worker.js"), "utf8")}\n${EMPTY_CLASSES}`;
const startJsBound = (originUrl) =>
  start({
    modules: [{ type: "ESModule", path: path.join(here, "js-worker.js"), contents: jsBoundSource() }],
    ...EDGE_STORAGE,
    bindings: { ORIGIN_URL: originUrl },
  });
// The same as a file, for the runtime-alone start.
const jsBoundFile = () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "bench-js-")), "js-worker.js");
  writeFileSync(file, jsBoundSource());
  return file;
};

// The JS reference inside the edge's own worker: the edge's bundle loaded
// (its wasm compiled and instantiated, its objects exported) and its
// bindings, but every request answered by the reference's `fetch`. Against
// the plain reference, what the edge's worker costs per request before it
// does anything of its own.
function startJsInEdge(originUrl) {
  const dir = mkdtempSync(path.join(tmpdir(), "bench-in-edge-"));
  for (const name of readdirSync(path.join(root, "build"))) {
    if (!name.startsWith(".")) copyFileSync(path.join(root, "build", name), path.join(dir, name));
  }
  copyFileSync(path.join(here, "js-worker.js"), path.join(dir, "js-worker.js"));
  const entry = path.join(dir, "reference-in-edge.mjs");
  writeFileSync(
    entry,
    'import edge from "./index.js";\nimport reference from "./js-worker.js";\nexport * from "./index.js";\nexport default { ...edge, fetch: reference.fetch };\n',
  );
  return start({ rootPath: dir, modulesRoot: dir, scriptPath: entry, modulesRules: MODULE_RULES, ...EDGE_STORAGE, bindings: { ORIGIN_URL: originUrl, ADMIN_TOKEN } });
}

function sizes() {
  const wasm = readFileSync(path.join(root, "build/index_bg.wasm"));
  const js = readFileSync(path.join(root, "build/index.js"));
  const sdk = readFileSync(path.join(root, "assets/track.js"));
  return {
    wasm_bytes: wasm.length,
    wasm_gzip_bytes: gzipSync(wasm, { level: 9 }).length,
    js_bytes: js.length,
    js_gzip_bytes: gzipSync(js, { level: 9 }).length,
    sdk_bytes: sdk.length,
    sdk_gzip_bytes: gzipSync(sdk, { level: 9 }).length,
  };
}

const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");
const size = sizes();
const overBudget = size.wasm_gzip_bytes > WASM_BUDGET_KIB * 1024;
const sizeLine = `wasm ${f(size.wasm_bytes / 1024)} KiB, ${f(size.wasm_gzip_bytes / 1024)} KiB gzipped (budget ${WASM_BUDGET_KIB} KiB: ${overBudget ? "OVER" : "within"})`;
console.error(sizeLine);

const originProc = fork(path.join(here, "origin.mjs"), { stdio: "inherit" });
const originPort = await new Promise((resolve) => originProc.on("message", (m) => resolve(m.port)));
const originUrl = `http://127.0.0.1:${originPort}`;

const report = { date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, scenarios: {}, size };
const workers = [];
try {
  // Cold start: workerd up, the module compiled and instantiated, first
  // answer. On the runtime alone (the judged figure; bench/workerd.mjs),
  // then through Miniflare's start, which adds its own config serialization.
  const runtime = { cio_edge: [], js: [], js_bound: [] };
  const bound = { bindings: { ORIGIN_URL: originUrl }, ...EDGE_STORAGE };
  const jsModule = [{ name: "js-worker.js", path: path.join(here, "js-worker.js") }];
  const runtimeStarters = {
    cio_edge: () => runtimeStart({ ...bound, modules: modulesOf(path.join(root, "build"), "index.js") }),
    js: () => runtimeStart({ modules: jsModule, bindings: bound.bindings }),
    js_bound: () => runtimeStart({ ...bound, modules: [{ name: "js-worker.js", path: jsBoundFile() }] }),
  };
  // The first spawn of a process pays for Node's own warm-up: discarded.
  for (const startOne of Object.values(runtimeStarters)) await startOne();
  for (let i = 0; i < (ONLY ? 1 : 21); i++) {
    const order = Object.keys(runtimeStarters);
    for (const who of i % 2 ? order.reverse() : order) runtime[who].push(await runtimeStarters[who]());
  }
  report.cold_start_ms = { cio_edge: median(runtime.cio_edge), js: median(runtime.js), js_bound: median(runtime.js_bound) };
  report.cold_start_runs = runtime.cio_edge.length;
  const cold = { cio_edge: [], js: [], js_bound: [] };
  const starters = { cio_edge: startEdge, js: startJs, js_bound: startJsBound };
  for (let i = 0; i < (ONLY ? 1 : 5); i++) {
    const order = Object.keys(starters);
    for (const who of i % 2 ? order.reverse() : order) {
      const w = await starters[who](originUrl);
      cold[who].push(w.coldStartMs);
      await w.mf.dispose();
    }
  }
  report.cold_start_miniflare_ms = { cio_edge: median(cold.cio_edge), js: median(cold.js), js_bound: median(cold.js_bound) };
  report.cold_start_miniflare_runs = cold.cio_edge.length;

  report.origin_alone = runWrk({ url: originUrl }, {});
  const edge = await startEdge(originUrl);
  const js = await startJs(originUrl);
  const edgeInject = await startEdge(originUrl, { INJECT_SNIPPET: "true" });
  const jsInject = await startJs(originUrl, { INJECT_SNIPPET: "true" });
  const jsSameJob = await startJs(originUrl, { SAME_JOB: "true" });
  const jsBound = await startJsBound(originUrl);
  const jsInEdge = await startJsInEdge(originUrl);
  workers.push(edge, js, edgeInject, jsInject, jsSameJob, jsBound, jsInEdge);
  for (const w of workers) if (!w.pid) throw new Error("could not find the workerd process of a worker");

  // The existing people the identified scenarios spread over.
  for (let i = 0; i < POOL; i++) {
    const setup = await fetch(`${edge.url}/_cio/identify`, {
      method: "POST",
      headers: { cookie: `_cioanonid=${poolAnon(i)}` },
      body: JSON.stringify({ id: `bench-user-${i}`, email: `bench-${i}@example.com` }),
    });
    if (setup.status !== 200) throw new Error(`setup identify answered ${setup.status}`);
  }

  const returning = { headers: { cookie: `_cioanonid=${ANON}` } };
  const scenarios = [
    { name: "returning visitor", target: true, pair: [edge, js], s: returning },
    { name: "first visit", target: true, pair: [edge, js], s: {} },
    { name: "identified returning visitor", target: true, pair: [edge, js], s: { headers: { cookie: `_cioanonid=${poolAnon(1)}; _cioid=bench-user-1` } } },
    { name: "INJECT_SNIPPET=true, returning visitor", target: true, pair: [edgeInject, jsInject], s: returning },
    // Like for like: the JS reference also doing the origin timeout and the
    // header hygiene cio-edge does on every forward (not a target).
    { name: "returning visitor, JS doing the same job (timeout, header hygiene)", pair: [edge, jsSameJob], s: returning },
    // Floors (not targets): the reference's own code in place of the edge,
    // first beside the edge's bindings, then inside the edge's worker (its
    // bundle and wasm loaded, unused). What these cost over the plain
    // reference, the edge pays before its first line of work.
    { name: "floor: the JS reference with the edge's bindings", pair: [jsBound, js], s: returning },
    { name: "floor: the JS reference inside the edge's worker", pair: [jsInEdge, js], s: returning },
  ];
  if (ENDPOINTS) {
    scenarios.push(
      { name: "track, identified visitor", pair: [edge], s: { method: "POST", path: "/_cio/track", body: '{"name":"bench","data":{"n":1}}', perRequest: "pool-track" } },
      { name: "identify, existing person", pair: [edge], s: { method: "POST", path: "/_cio/identify", perRequest: "pool-identify" } },
      { name: "identify, new person", pair: [edge], s: { method: "POST", path: "/_cio/identify", perRequest: "new" } },
    );
  }
  for (const { name, target: isTarget, pair, s } of scenarios) {
    if (ONLY && !ONLY.split(";").includes(name)) continue;
    const runs = { cio_edge: [], js: [] };
    const rounds = pair.length > 1 ? ROUNDS : Math.min(ROUNDS, 3);
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first, so drift on the machine hits both.
      const order = round % 2 ? ["cio_edge", "js"] : ["js", "cio_edge"];
      for (const who of order) {
        const target = who === "js" ? pair[1] : pair[0];
        if (target) runs[who].push(runWrk(target, s));
      }
    }
    const summarize = (rs) =>
      rs.length
        ? {
            cpu_us: median(rs.map((r) => r.cpu_us)),
            rps: median(rs.map((r) => r.rps)),
            p50_ms: median(rs.map((r) => r.p50)),
            p99_ms: median(rs.map((r) => r.p99)),
            non_2xx: rs.reduce((a, r) => a + r.errors, 0),
          }
        : null;
    const entry = { target: !!isTarget, cio_edge: summarize(runs.cio_edge), js: summarize(runs.js) };
    if (entry.js) {
      entry.cpu_ratio = entry.js.cpu_us / entry.cio_edge.cpu_us; // > 1: cio-edge is cheaper
      entry.rps_ratio = entry.cio_edge.rps / entry.js.rps;
    }
    report.scenarios[name] = entry;
    process.stderr.write(`  measured: ${name}\n`);
  }
} finally {
  for (const w of workers) await w.mf.dispose().catch(() => {});
  originProc.kill();
}

const sc = report.scenarios;
report.targets = {};
for (const [name, e] of Object.entries(sc)) {
  if (e.target) report.targets[`CPU ratio JS/edge >= 1.0, ${name}`] = { value: e.cpu_ratio, met: e.cpu_ratio >= 1 };
}
const coldRatio = report.cold_start_ms.cio_edge / report.cold_start_ms.js;
report.targets["cold start <= 1.5x JS"] = { value: coldRatio, met: coldRatio <= 1.5 };
if (sc["identify, new person"]) {
  const p99 = sc["identify, new person"].cio_edge.p99_ms;
  report.targets[`identify new person p99 < 150 ms at ${CONNECTIONS} connections`] = { value: p99, met: p99 < 150 };
}
if (sc["identify, existing person"]) {
  const p99 = sc["identify, existing person"].cio_edge.p99_ms;
  report.targets[`identify existing person p99 < 50 ms at ${CONNECTIONS} connections`] = { value: p99, met: p99 < 50 };
}
// Identity at page speed: one request at a time (bench/latency.mjs).
const sequential = [];
if (!process.env.BENCH_SCENARIOS || /latency/.test(process.env.BENCH_SCENARIOS)) {
  report.latency = await latency({ log: (line) => sequential.push(line) });
  const [base, link, idNew, idExisting] = report.latency;
  const over = link.p50 - base.p50;
  report.targets["link click <= +15 ms over a first visit (p50, sequential)"] = { value: over, met: over <= 15 };
  report.targets["identify new person <= 40 ms (p50, sequential)"] = { value: idNew.p50, met: idNew.p50 <= 40 };
  report.targets["identify existing person <= 15 ms (p50, sequential)"] = { value: idExisting.p50, met: idExisting.p50 <= 15 };
}
// What each kind of request costs in Cloudflare's billed units, counted
// (bench/cost.mjs); BENCH_COST=0 leaves it out.
const costLines = [];
if (process.env.BENCH_COST !== "0") {
  report.cost = await cost({ log: (line) => costLines.push(line) });
  const split = report.cost.scenarios;
  for (const [name, target] of [["identify, new person", 5], ["identify, existing person", 1.5], ["identify, existing person, nothing new", 1.5], ["browser track, identified", 0.8]]) {
    const ms = split[name]?.cpu_ms;
    report.targets[`${name} <= ${target} ms CPU (workerd, worker and objects)`] = { value: ms, met: ms <= target };
  }
}
report.targets[`wasm <= ${WASM_BUDGET_KIB} KiB gzipped (budget)`] = { value: size.wasm_gzip_bytes / 1024, met: !overBudget };
writeFileSync(path.join(here, "results.json"), JSON.stringify(report, null, 2) + "\n");

console.log(`\ncio-edge bench, ${report.date}, ${report.cpu}, ${report.cores} cores, wrk -t2 -c${CONNECTIONS} -d${SECONDS}s, median of ${ROUNDS} alternating rounds\n`);
console.log(`origin alone: ${f(report.origin_alone.rps, 0)} req/s, p50 ${f(report.origin_alone.p50, 2)} ms, p99 ${f(report.origin_alone.p99, 2)} ms\n`);
console.log("| scenario | edge CPU us/req | JS CPU us/req | CPU ratio JS/edge | edge req/s | JS req/s | req/s ratio | edge p50/p99 ms | JS p50/p99 ms |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const [name, e] of Object.entries(sc)) {
  const c = e.cio_edge;
  const j = e.js;
  console.log(
    `| ${name} | ${f(c.cpu_us, 0)} | ${j ? f(j.cpu_us, 0) : "-"} | ${e.cpu_ratio ? f(e.cpu_ratio, 2) + "x" : "-"} | ${f(c.rps, 0)} | ${j ? f(j.rps, 0) : "-"} | ${e.rps_ratio ? f(e.rps_ratio, 2) + "x" : "-"} | ${f(c.p50_ms, 2)} / ${f(c.p99_ms, 2)} | ${j ? `${f(j.p50_ms, 2)} / ${f(j.p99_ms, 2)}` : "-"} |`,
  );
}
const nonOk = Object.entries(sc).filter(([, e]) => e.cio_edge.non_2xx || e.js?.non_2xx);
for (const [name, e] of nonOk) console.log(`  note: ${name}: non-2xx/3xx answers: edge ${e.cio_edge.non_2xx}, JS ${e.js?.non_2xx ?? 0}`);
console.log(`\n${sizeLine}; JS ${f(size.js_bytes / 1024)} KiB (${f(size.js_gzip_bytes / 1024)} KiB gzipped); SDK ${size.sdk_bytes} B (${size.sdk_gzip_bytes} B gzipped)`);
const mfCold = report.cold_start_miniflare_ms;
console.log(`cold start on the runtime alone (workerd spawned, the modules loaded, the first response), median of ${report.cold_start_runs}: cio-edge ${f(report.cold_start_ms.cio_edge, 1)} ms, JS ${f(report.cold_start_ms.js, 1)} ms (${f(coldRatio, 2)}x); the JS worker with the edge's KV and object bindings ${f(report.cold_start_ms.js_bound, 1)} ms (${f(report.cold_start_ms.cio_edge / report.cold_start_ms.js_bound, 2)}x)`);
console.log(`cold start through Miniflare (its config serialization included), median of ${report.cold_start_miniflare_runs}: cio-edge ${f(mfCold.cio_edge, 0)} ms, JS ${f(mfCold.js, 0)} ms (${f(mfCold.cio_edge / mfCold.js, 2)}x), JS with the bindings ${f(mfCold.js_bound, 0)} ms`);
for (const line of sequential) console.log(line);
for (const line of costLines) console.log(line);
console.log("\ntargets (reported, not asserted):");
for (const [name, t] of Object.entries(report.targets)) console.log(`  ${t.met ? "met    " : "NOT met"}  ${name} (${f(t.value, 2)})`);
if (overBudget) {
  console.error(`\nFAIL: the wasm is ${f(size.wasm_gzip_bytes / 1024)} KiB gzipped, over the ${WASM_BUDGET_KIB} KiB budget`);
  process.exit(1);
}
