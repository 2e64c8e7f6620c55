// `node bench/cold.mjs`: where the cold start goes. Five workers started in
// turn, each to its first answer, median of COLD_ROUNDS (21), all with the
// edge's KV and object bindings:
//   js          the hand-written JS reference
//   + wasm      the same, importing the edge's wasm module (compiled, never
//               instantiated)
//   + instance  the same, the wasm instantiated with inert imports (its
//               start function not run)
//   + bundle    the same, importing the edge's whole bundle (the wasm
//               instantiated, the glue evaluated, its start function run),
//               answering with the reference's handler
//   cio-edge    the edge itself
// The steps between them are the wasm's compilation, its instantiation, the
// bundle's evaluation and the edge's own first request. Each is started on
// the runtime alone (bench/workerd.mjs) and, for comparison, by Miniflare,
// whose own start adds a config serialization that grows with the square of
// the worker's size (bench/README.md, "Cold start").
import { Miniflare } from "miniflare";
import { fork } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { EDGE_STORAGE, EMPTY_CLASSES, MODULE_RULES } from "./edge.mjs";
import { coldStart as runtimeStart, modulesOf } from "./workerd.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const ROUNDS = Number(process.env.COLD_ROUNDS || 21);
process.env.WRANGLER_SEND_METRICS = "false";

// A copy of build/ with the probe entries beside the bundle.
const dir = mkdtempSync(path.join(tmpdir(), "cio-cold-"));
cpSync(path.join(root, "build"), dir, { recursive: true });
const reference = readFileSync(path.join(here, "js-worker.js"), "utf8");
const classes = `\n${EMPTY_CLASSES}`;
writeFileSync(path.join(dir, "probe-js.mjs"), reference + classes);
writeFileSync(path.join(dir, "probe-wasm.mjs"), `import wasm from "./index_bg.wasm";\nglobalThis.__probe = wasm;\n${reference}${classes}`);
// The wasm instantiated with inert imports, its start function not run.
writeFileSync(
  path.join(dir, "probe-instance.mjs"),
  `import wasm from "./index_bg.wasm";
const imports = {};
for (const { module, name, kind } of WebAssembly.Module.imports(wasm)) {
  imports[module] ??= {};
  imports[module][name] = kind === "tag" ? WebAssembly.JSTag : () => {};
}
globalThis.__probe = new WebAssembly.Instance(wasm, imports);
${reference}${classes}`,
);
writeFileSync(
  path.join(dir, "probe-bundle.mjs"),
  `export { Person, Visitor, IdentityIndex, Forwarding } from "./index.js";\n${reference.replace("export default", "const handler =")}\nexport default handler;\n`,
);

const originProc = fork(path.join(here, "origin.mjs"), { stdio: "inherit" });
const originPort = await new Promise((resolve) => originProc.on("message", (m) => resolve(m.port)));
const bindings = { ORIGIN_URL: `http://127.0.0.1:${originPort}` };

// Each probe uploads what it imports: the reference alone; the wasm; the
// whole build (the runtime loads every uploaded module at start, imported or
// not, as Cloudflare does).
const wasmOnly = ["index_bg.wasm"];
const probes = {
  js: { entry: "probe-js.mjs", with: [] },
  "+ wasm": { entry: "probe-wasm.mjs", with: wasmOnly },
  "+ instance": { entry: "probe-instance.mjs", with: wasmOnly },
  "+ bundle": { entry: "probe-bundle.mjs", with: undefined },
  "cio-edge": { entry: "index.js", with: undefined },
};
const modules = ({ entry, with: names }) =>
  modulesOf(dir, entry).filter((m) => m.name === entry || (names ? names.includes(m.name) : !m.name.startsWith("probe-")));

async function miniflareStart({ entry }) {
  const started = performance.now();
  const mf = new Miniflare({
    compatibilityDate: "2026-04-01",
    host: "127.0.0.1",
    port: 0,
    modules: true,
    rootPath: dir,
    modulesRoot: dir,
    modulesRules: MODULE_RULES,
    scriptPath: path.join(dir, entry),
    ...EDGE_STORAGE,
    bindings,
  });
  const url = (await mf.ready).toString();
  const res = await fetch(url);
  await res.arrayBuffer();
  const ms = performance.now() - started;
  await mf.dispose();
  if (res.status !== 200) throw new Error(`first answer ${res.status}`);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = Object.keys(probes);
const runs = Object.fromEntries(names.map((k) => [k, { runtime: [], miniflare: [] }]));
try {
  // One way of starting at a time: a Miniflare instance still winding down
  // would slow the runtime's next start.
  const starts = {
    runtime: (p) => runtimeStart({ modules: modules(p), bindings, ...EDGE_STORAGE }),
    miniflare: miniflareStart,
  };
  for (const [way, start] of Object.entries(starts)) {
    // The first start of each way pays for Node's own warm-up: discarded.
    for (const who of names) await start(probes[who]);
    for (let i = 0; i < ROUNDS; i++) {
      for (const who of i % 2 ? [...names].reverse() : names) runs[who][way].push(await start(probes[who]));
    }
  }
} finally {
  originProc.kill();
}
console.log(`| worker (all with the edge's bindings) | runtime alone, ms | step | under Miniflare, ms | step |`);
console.log("|---|---|---|---|---|");
let previous;
for (const who of names) {
  const now = { runtime: median(runs[who].runtime), miniflare: median(runs[who].miniflare) };
  const step = (k) => (previous === undefined ? "-" : `${now[k] >= previous[k] ? "+" : ""}${(now[k] - previous[k]).toFixed(1)}`);
  console.log(`| ${who} | ${now.runtime.toFixed(1)} | ${step("runtime")} | ${now.miniflare.toFixed(0)} | ${step("miniflare")} |`);
  previous = now;
}
const ratio = (k) => (median(runs["cio-edge"][k]) / median(runs.js[k])).toFixed(2);
console.log(`\ncio-edge / js, median of ${ROUNDS}: runtime alone ${ratio("runtime")}x, under Miniflare ${ratio("miniflare")}x`);
