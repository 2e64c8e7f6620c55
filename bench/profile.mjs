// `node bench/profile.mjs [returning|first|identified|inject|track] [edge|js]`: a
// V8 CPU profile of one worker under wrk load, through workerd's inspector;
// prints the functions with the most self time. Where a page request's CPU
// goes, for the bench's figures.
import { Miniflare } from "miniflare";
import { fork, execFileSync } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { EDGE_STORAGE, MODULE_RULES } from "./edge.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const scenario = process.argv[2] || "returning";
const who = process.argv[3] || "edge";
const SECONDS = Number(process.env.BENCH_SECONDS || 4);
const ANON = "0f8fad5b-d9cb-469f-a165-70867728950e";
process.env.WRANGLER_SEND_METRICS = "false";

const originProc = fork(path.join(here, "origin.mjs"), { stdio: "inherit" });
const originPort = await new Promise((resolve) => originProc.on("message", (m) => resolve(m.port)));
const originUrl = `http://127.0.0.1:${originPort}`;
const vars = scenario === "inject" ? { INJECT_SNIPPET: "true" } : {};
const inspectorPort = 9300 + Math.floor(Math.random() * 500);
const mf = new Miniflare({
  compatibilityDate: "2026-04-01",
  host: "127.0.0.1",
  port: 0,
  modules: true,
  inspectorPort,
  ...(who === "js"
    ? { scriptPath: path.join(here, "js-worker.js"), bindings: { ORIGIN_URL: originUrl, ...vars } }
    : {
        rootPath: root,
        scriptPath: path.join(root, "build/index.js"),
        modulesRules: MODULE_RULES,
        ...EDGE_STORAGE,
        bindings: { ORIGIN_URL: originUrl, ...vars },
      }),
});
try {
  const url = (await mf.ready).toString().replace(/\/$/, "");
  await (await fetch(url + "/")).arrayBuffer();
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((r) => ws.on("open", r));
  let id = 0;
  const pending = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m);
    if (msg.id && pending.has(msg.id)) pending.get(msg.id)(msg.result);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      pending.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 50 });
  await send("Profiler.start");
  const cookie = { returning: `_cioanonid=${ANON}`, inject: `_cioanonid=${ANON}`, identified: `_cioanonid=${ANON}; _cioid=bench-user-1`, track: `_cioanonid=${ANON}; _cioid=bench-user-1` }[scenario];
  const dir = mkdtempSync(path.join(tmpdir(), "prof-"));
  let lua = cookie ? `wrk.headers["cookie"] = ${JSON.stringify(cookie)}\n` : "";
  if (scenario === "track") {
    // An identified browser's event: the person exists (made here first).
    const made = await fetch(`${url}/_cio/identify`, { method: "POST", headers: { cookie: `_cioanonid=${ANON}` }, body: '{"id":"bench-user-1"}' });
    if (made.status !== 200) throw new Error(`identify answered ${made.status}`);
    lua += `wrk.method = "POST"\nwrk.path = "/_cio/track"\nwrk.body = '{"name":"bench","data":{"n":1}}'\nwrk.headers["content-type"] = "application/json"\n`;
  }
  writeFileSync(path.join(dir, "s.lua"), lua);
  const out = execFileSync("wrk", ["-t2", "-c16", `-d${SECONDS}s`, "-s", path.join(dir, "s.lua"), url], { encoding: "utf8" });
  const requests = Number(out.match(/(\d+) requests in/)[1]);
  const { profile } = await send("Profiler.stop");
  ws.close();

  // Self time per function, from the samples.
  const dt = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((nodeId, i) => {
    const n = dt.get(nodeId);
    const f = n.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url ? path.basename(f.url) + ":" + f.lineNumber : ""}`.trim();
    self.set(key, (self.get(key) || 0) + (deltas[i + 1] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const busy = [...self.entries()].filter(([k]) => k !== "(idle)" && k !== "(program)").reduce((a, [, v]) => a + v, 0);
  console.log(`${who} ${scenario}: ${requests} requests; JS-visible busy ${(busy / requests).toFixed(1)} us/request (of ${(total / requests).toFixed(1)} sampled)`);
  const sum = (test) => [...self.entries()].filter(([k]) => test(k)).reduce((a, [, v]) => a + v, 0) / requests;
  console.log(`inside the wasm: ${sum((k) => /wasm/.test(k)).toFixed(1)} us/request; the bundled JS (driver and glue): ${sum((k) => /index\.js:/.test(k)).toFixed(1)} us/request`);
  // PROFILE_MATCH=wasm lists only the functions whose name matches; PROFILE_TOP how many.
  const match = new RegExp(process.env.PROFILE_MATCH || "");
  const rows = [...self.entries()].filter(([k]) => match.test(k)).sort((a, b) => b[1] - a[1]);
  for (const [k, v] of rows.slice(0, Number(process.env.PROFILE_TOP || 30))) {
    console.log(`${(v / requests).toFixed(2).padStart(8)} us/req  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
  }
} finally {
  await mf.dispose();
  originProc.kill();
}
