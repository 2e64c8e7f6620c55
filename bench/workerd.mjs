// A cold start on the runtime alone: the `workerd` binary Miniflare ships,
// started on a config of our own, timed from the spawn to the last byte of
// its first answer. Miniflare's start (new Miniflare() to ready) also
// serializes the whole config in Node, and its Cap'n Proto arena grows by
// copying itself in 4 KiB steps, so that step costs the square of the
// worker's size: about 26 ms for the edge and nothing for a 3 KB script.
// Cloudflare runs no such step (bench/README.md, "Cold start").
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { MODULE_RULES } from "./edge.mjs";

const require = createRequire(import.meta.url);
const WORKERD = process.env.MINIFLARE_WORKERD_PATH ?? require("workerd").default;
const COMPATIBILITY_DATE = "2026-04-01";

// A file's workerd module kind, by the rule of MODULE_RULES (bench/edge.mjs:
// Miniflare's names for the same kinds) its name ends as; none for others.
const WORKERD_KIND = { ESModule: "esModule", CompiledWasm: "wasm", Text: "text" };
const kindOf = (name) => {
  const rule = MODULE_RULES.find((r) => r.include.some((glob) => name.endsWith(glob.replace("**/*", ""))));
  return rule && WORKERD_KIND[rule.type];
};

// The modules of a built worker directory, `entry` first: every file with a
// known kind, named as the entry imports it (the directory is flat).
export function modulesOf(dir, entry) {
  const names = readdirSync(dir).filter((n) => kindOf(n));
  return [entry, ...names.filter((n) => n !== entry)].map((name) => ({ name, path: path.join(dir, name) }));
}

const q = (s) => JSON.stringify(s);

// `worker`: { modules: [{ name, path }] (the entry first), bindings (plain
// text), kvNamespaces, durableObjects } as Miniflare takes them
// (bench/edge.mjs). KV is served by an empty worker (a cold start reads
// none); the objects' SQLite storage is in memory.
function config({ modules, bindings = {}, kvNamespaces = [], durableObjects = {} }) {
  const mods = modules.map((m) => `(name = ${q(m.name)}, ${kindOf(m.name)} = embed ${q(m.name)})`);
  const binds = [
    ...Object.entries(bindings).map(([name, text]) => `(name = ${q(name)}, text = ${q(text)})`),
    ...Object.entries(durableObjects).map(([name, o]) => `(name = ${q(name)}, durableObjectNamespace = ${q(o.className)})`),
    ...kvNamespaces.map((name) => `(name = ${q(name)}, kvNamespace = "kv")`),
  ];
  const classes = Object.values(durableObjects).map(
    (o) => `(className = ${q(o.className)}, uniqueKey = ${q(o.className)}, enableSql = ${Boolean(o.useSQLite)})`,
  );
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [${mods.join(", ")}],
      compatibilityDate = ${q(COMPATIBILITY_DATE)},
      bindings = [${binds.join(", ")}],
      durableObjectNamespaces = [${classes.join(", ")}],
      ${classes.length ? "durableObjectStorage = (inMemory = void)," : ""}
    )),
    (name = "kv", worker = (
      modules = [(name = "kv.mjs", esModule = "export default { fetch() { return new Response(null, { status: 404 }); } };")],
      compatibilityDate = ${q(COMPATIBILITY_DATE)},
    )),
    (name = "internet", network = (allow = ["private", "local", "public"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
`;
}

// Milliseconds from spawning workerd to the end of its first answer to GET /.
export async function coldStart(worker) {
  const dir = mkdtempSync(path.join(tmpdir(), "cio-workerd-"));
  // `embed` reads files beside the config: each module is copied there.
  for (const m of worker.modules) copyFileSync(m.path, path.join(dir, m.name));
  const file = path.join(dir, "config.capnp");
  writeFileSync(file, config(worker));
  const started = performance.now();
  const child = spawn(WORKERD, ["serve", file, "--experimental", "--control-fd=3"], {
    stdio: ["ignore", "ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    // workerd says on the control pipe which port it listens on.
    const port = await new Promise((resolve, reject) => {
      let lines = "";
      child.stdio[3].on("data", (d) => {
        const parts = (lines + d).split("\n");
        lines = parts.pop();
        for (const line of parts) {
          const m = JSON.parse(line);
          if (m.event === "listen" && m.socket === "http") resolve(m.port);
        }
      });
      exited.then((code) => reject(new Error(`workerd exited (${code}): ${stderr}`)));
      setTimeout(() => reject(new Error(`workerd did not listen within 30 s: ${stderr}`)), 30_000).unref();
    });
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    const ms = performance.now() - started;
    if (res.status !== 200) throw new Error(`first answer ${res.status}: ${stderr}`);
    return ms;
  } finally {
    child.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}
