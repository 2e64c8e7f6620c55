// `npm run bench`: throughput and latency of cio-edge against a hand-written
// JS worker doing the same job, under workerd on 127.0.0.1, load from wrk;
// plus the size and start-up of the build. Prints a table, writes
// bench/results.json. Figures are reported, never asserted: machines are noisy.
//
//   BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=16 npm run bench
import { Miniflare } from "miniflare";
import { fork, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir, cpus } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 16);
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
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

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
  return wrk.format(nil, ${JSON.stringify(p)}, { ["cookie"] = "_cioanonid=" .. anon(i) }, '{"id":"bench-user-' .. i .. '","plan":"bench"}')
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

function runWrk(url, scenario) {
  const dir = mkdtempSync(path.join(tmpdir(), "bench-"));
  const script = path.join(dir, "s.lua");
  writeFileSync(script, luaScript(scenario));
  const out = execFileSync("wrk", ["-t2", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script, url], {
    encoding: "utf8",
  });
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
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: ms(/50%\s+([\d.]+)(us|ms|s)/),
    p99: ms(/99%\s+([\d.]+)(us|ms|s)/),
    errors: num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
    socketErrors: /Socket errors/.test(out),
  };
}

async function startEdge(originUrl) {
  const started = performance.now();
  const mf = new Miniflare({
    rootPath: root,
    scriptPath: path.join(root, "build/index.js"),
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: "2026-04-01",
    kvNamespaces: ["CIO_KV"],
    durableObjects: {
      PERSON: { className: "Person", useSQLite: true },
      VISITOR: { className: "Visitor", useSQLite: true },
      IDENTITY_INDEX: { className: "IdentityIndex", useSQLite: true },
    },
    bindings: { ORIGIN_URL: originUrl, ADMIN_TOKEN },
    host: "127.0.0.1",
    port: 0,
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  await (await fetch(url + "/")).arrayBuffer();
  return { mf, url, coldStartMs: performance.now() - started };
}

async function startJs(originUrl) {
  const started = performance.now();
  const mf = new Miniflare({
    scriptPath: path.join(here, "js-worker.js"),
    modules: true,
    compatibilityDate: "2026-04-01",
    bindings: { ORIGIN_URL: originUrl },
    host: "127.0.0.1",
    port: 0,
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  await (await fetch(url + "/")).arrayBuffer();
  return { mf, url, coldStartMs: performance.now() - started };
}

function sizes() {
  const wasm = readFileSync(path.join(root, "build/index_bg.wasm"));
  const js = readFileSync(path.join(root, "build/index.js"));
  const sdk = readFileSync(path.join(root, "assets/track.js"));
  // Node 20 cannot compile the exception-handling opcodes wasm-bindgen emits;
  // then the cold start below (workerd compiling and instantiating) stands.
  const compile = [];
  try {
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      new WebAssembly.Module(wasm);
      compile.push(performance.now() - t);
    }
  } catch {
    compile.length = 0;
  }
  return {
    wasm_bytes: wasm.length,
    wasm_gzip_bytes: gzipSync(wasm, { level: 9 }).length,
    js_bytes: js.length,
    js_gzip_bytes: gzipSync(js, { level: 9 }).length,
    sdk_bytes: sdk.length,
    sdk_gzip_bytes: gzipSync(sdk, { level: 9 }).length,
    wasm_compile_ms: compile.length ? median(compile) : null,
  };
}

const originProc = fork(path.join(here, "origin.mjs"), { stdio: "inherit" });
const originPort = await new Promise((resolve) => originProc.on("message", (m) => resolve(m.port)));
const originUrl = `http://127.0.0.1:${originPort}`;

const report = { date: new Date().toISOString(), cores: cpus().length, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, scenarios: {} };
try {
  report.origin_alone = runWrk(originUrl, {});
  const edge = await startEdge(originUrl);
  const js = await startJs(originUrl);
  report.cold_start_ms = { cio_edge: edge.coldStartMs, js: js.coldStartMs };

  // The existing people the track and identify scenarios spread over, each
  // identified from its own browser.
  for (let i = 0; i < POOL; i++) {
    const setup = await fetch(`${edge.url}/_cio/identify`, {
      method: "POST",
      headers: { cookie: `_cioanonid=${poolAnon(i)}` },
      body: JSON.stringify({ id: `bench-user-${i}`, email: `bench-${i}@example.com` }),
    });
    if (setup.status !== 200) throw new Error(`setup identify answered ${setup.status}`);
  }

  const scenarios = [
    { name: "returning visitor page (valid cookie)", js: true, s: { headers: { cookie: `_cioanonid=${ANON}` } } },
    { name: "first visit (no cookie)", js: true, s: {} },
    { name: "track, identified visitor", s: { method: "POST", path: "/_cio/track", body: '{"name":"bench","data":{"n":1}}', perRequest: "pool-track" } },
    { name: "identify, existing person", s: { method: "POST", path: "/_cio/identify", perRequest: "pool-identify" } },
    { name: "identify, new person", s: { method: "POST", path: "/_cio/identify", perRequest: "new" } },
  ];
  for (const { name, js: withJs, s } of scenarios) {
    const runs = { cio_edge: [], js: [] };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so drift on the machine hits both.
      const order = round % 2 ? ["cio_edge", "js"] : ["js", "cio_edge"];
      for (const who of order) {
        if (who === "js" && !withJs) continue;
        runs[who].push(runWrk(who === "js" ? js.url : edge.url, s));
      }
    }
    const summarize = (rs) =>
      rs.length
        ? { rps: median(rs.map((r) => r.rps)), p50_ms: median(rs.map((r) => r.p50)), p99_ms: median(rs.map((r) => r.p99)), non_2xx: rs.reduce((a, r) => a + r.errors, 0) }
        : null;
    const entry = { cio_edge: summarize(runs.cio_edge), js: summarize(runs.js) };
    if (entry.js) entry.ratio_rps = entry.cio_edge.rps / entry.js.rps;
    report.scenarios[name] = entry;
    process.stderr.write(`  measured: ${name}\n`);
  }
  await edge.mf.dispose();
  await js.mf.dispose();
} finally {
  originProc.kill();
}
report.size = sizes();

const sc = report.scenarios;
const passThrough = sc["returning visitor page (valid cookie)"].ratio_rps;
const firstVisit = sc["first visit (no cookie)"].ratio_rps;
const identifyP99 = Math.max(sc["identify, existing person"].cio_edge.p99_ms, sc["identify, new person"].cio_edge.p99_ms);
report.targets = {
  "pass-through throughput >= 0.9x JS": { value: passThrough, met: passThrough >= 0.9 },
  "first-visit throughput >= 0.9x JS": { value: firstVisit, met: firstVisit >= 0.9 },
  [`identify p99 < 50 ms at ${CONNECTIONS} connections`]: { value: identifyP99, met: identifyP99 < 50 },
  "wasm < 350 KiB gzipped": { value: report.size.wasm_gzip_bytes / 1024, met: report.size.wasm_gzip_bytes < 350 * 1024 },
};
writeFileSync(path.join(here, "results.json"), JSON.stringify(report, null, 2) + "\n");

const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");
console.log(`\ncio-edge bench, ${report.date}, ${report.cores} cores, wrk -t2 -c${CONNECTIONS} -d${SECONDS}s, median of ${ROUNDS}\n`);
console.log(`origin alone: ${f(report.origin_alone.rps, 0)} req/s, p50 ${f(report.origin_alone.p50, 2)} ms, p99 ${f(report.origin_alone.p99, 2)} ms\n`);
console.log("| scenario | cio-edge req/s | p50 ms | p99 ms | JS req/s | JS p50 | JS p99 | ratio |");
console.log("|---|---|---|---|---|---|---|---|");
for (const [name, e] of Object.entries(sc)) {
  const c = e.cio_edge;
  const j = e.js;
  console.log(`| ${name} | ${f(c.rps, 0)} | ${f(c.p50_ms, 2)} | ${f(c.p99_ms, 2)} | ${j ? f(j.rps, 0) : "-"} | ${j ? f(j.p50_ms, 2) : "-"} | ${j ? f(j.p99_ms, 2) : "-"} | ${e.ratio_rps ? f(e.ratio_rps, 2) + "x" : "-"} |`);
}
const z = report.size;
console.log(`\nwasm ${f(z.wasm_bytes / 1024)} KiB (${f(z.wasm_gzip_bytes / 1024)} KiB gzipped), JS glue ${f(z.js_bytes / 1024)} KiB (${f(z.js_gzip_bytes / 1024)} KiB gzipped), SDK ${z.sdk_bytes} B (${z.sdk_gzip_bytes} B gzipped)`);
console.log(`wasm compile in Node: ${z.wasm_compile_ms === null ? "n/a (this Node lacks wasm exception handling)" : `${f(z.wasm_compile_ms)} ms`}`);
console.log(`cold start (workerd up, module compiled and instantiated, first response): cio-edge ${f(report.cold_start_ms.cio_edge, 0)} ms, JS ${f(report.cold_start_ms.js, 0)} ms`);
console.log("\ntargets:");
for (const [name, t] of Object.entries(report.targets)) console.log(`  ${t.met ? "met    " : "NOT met"}  ${name} (${f(t.value, 2)})`);
