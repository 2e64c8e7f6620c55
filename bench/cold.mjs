// `node bench/cold.mjs`: where the cold start goes. Four workers started in
// turn under Miniflare, each to its first answer (the bench's cold start),
// median of COLD_ROUNDS (7):
//   js          the hand-written JS reference
//   + wasm      the same, importing the edge's wasm module (compiled, never
//               instantiated)
//   + instance  the same, the wasm instantiated with inert imports (its
//               start function not run)
//   + bundle    the same, importing the edge's whole bundle (the wasm
//               instantiated, the glue and SDK texts evaluated), answering
//               with the reference's handler
//   cio-edge    the edge itself
// The steps between them are the wasm's compilation, its instantiation with
// the bundle's evaluation, and the edge's own first request.
import { Miniflare } from "miniflare";
import { fork } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { EDGE_STORAGE, EMPTY_CLASSES, MODULE_RULES } from "./edge.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const ROUNDS = Number(process.env.COLD_ROUNDS || 7);
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
const ORIGIN_URL = `http://127.0.0.1:${originPort}`;

const bound = {
  rootPath: dir,
  modulesRoot: dir,
  modulesRules: MODULE_RULES,
  ...EDGE_STORAGE,
  bindings: { ORIGIN_URL },
};
const workers = {
  js: { ...bound, scriptPath: path.join(dir, "probe-js.mjs") },
  "+ wasm": { ...bound, scriptPath: path.join(dir, "probe-wasm.mjs") },
  "+ instance": { ...bound, scriptPath: path.join(dir, "probe-instance.mjs") },
  "+ bundle": { ...bound, scriptPath: path.join(dir, "probe-bundle.mjs") },
  "cio-edge": { ...bound, scriptPath: path.join(dir, "index.js") },
};

async function coldStart(options) {
  const started = performance.now();
  const mf = new Miniflare({ compatibilityDate: "2026-04-01", host: "127.0.0.1", port: 0, modules: true, ...options });
  const url = (await mf.ready).toString();
  const res = await fetch(url);
  await res.arrayBuffer();
  const ms = performance.now() - started;
  await mf.dispose();
  if (res.status !== 200) throw new Error(`first answer ${res.status}`);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = Object.fromEntries(Object.keys(workers).map((k) => [k, []]));
try {
  for (let i = 0; i < ROUNDS; i++) {
    const order = Object.keys(workers);
    for (const who of i % 2 ? order.reverse() : order) runs[who].push(await coldStart(workers[who]));
  }
} finally {
  originProc.kill();
}
let previous;
console.log(`| worker (all with the edge's bindings) | cold start ms, median of ${ROUNDS} | step |`);
console.log("|---|---|---|");
for (const [who, xs] of Object.entries(runs)) {
  const m = median(xs);
  console.log(`| ${who} | ${m.toFixed(0)} | ${previous === undefined ? "-" : `+${(m - previous).toFixed(0)}`} |`);
  previous = m;
}
