// `npm run dev`: the edge under `wrangler dev` on http://127.0.0.1:8787, in
// front of ORIGIN_URL or, when it is not set, the bundled demo site. Local KV
// and SQLite Durable Objects persist in .wrangler/state. Extra arguments go to
// wrangler (e.g. `npm run dev -- --port 9000`).
import { spawn } from "node:child_process";
import { startDemo } from "../demo/server.mjs";

let origin = process.env.ORIGIN_URL;
if (!origin) {
  const port = Number(process.env.DEMO_PORT || 8788);
  await startDemo(port);
  origin = `http://127.0.0.1:${port}`;
}
const extra = process.argv.slice(2);
// Defaults, unless given among the extra arguments (wrangler takes each once).
const defaults = [["--ip", "127.0.0.1"], ["--port", "8787"], ["--persist-to", ".wrangler/state"]]
  .filter(([flag]) => !extra.some((a) => a === flag || a.startsWith(`${flag}=`)))
  .flat();
const args = ["dev", ...defaults, "--var", `ORIGIN_URL:${origin}`, ...extra];
const portArg = args.lastIndexOf("--port");
console.log(`cio-edge on http://127.0.0.1:${args[portArg + 1]} in front of ${origin}`);
// One build, by wrangler's [build] step; CIO_BUILD=dev skips the release
// optimiser, and an unchanged tree is not rebuilt (scripts/build.sh).
const child = spawn("node_modules/.bin/wrangler", args, {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", CIO_BUILD: process.env.CIO_BUILD || "dev" },
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
