// Writes build/cdp-sdk.txt: the pinned Data Pipelines browser SDK's UMD
// files (@customerio/cdp-analytics-browser) and its version as JSON, a Text
// module beside the bundle that js/cdp.mjs imports on first use and serves
// at /_cio/cdp/v1/analytics-js/ (neither the wasm nor the bundle carries
// them, so a cold start does not parse them).
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const pkg = dirname(require.resolve("@customerio/cdp-analytics-browser/package.json"));
const { version } = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
const dir = join(pkg, "dist", "umd");
// index.js is the npm entry, not a part of the standalone bundle.
const files = {};
for (const name of readdirSync(dir).sort()) {
  if (name.endsWith(".js") && name !== "index.js") files[name] = readFileSync(join(dir, name), "utf8");
}
writeFileSync(process.argv[2] ?? "build/cdp-sdk.txt", JSON.stringify({ version, files }));
