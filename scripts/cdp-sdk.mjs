// Writes build/cdp-sdk.mjs: the pinned Data Pipelines browser SDK's UMD
// files (@customerio/cdp-analytics-browser) as strings, for js/cdp.mjs,
// which serves them at /_cio/cdp/v1/analytics-js/ (the wasm carries none).
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
writeFileSync(
  process.argv[2] ?? "build/cdp-sdk.mjs",
  `export const version = ${JSON.stringify(version)};\nexport const files = ${JSON.stringify(files)};\n`,
);
