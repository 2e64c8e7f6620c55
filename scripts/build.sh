#!/usr/bin/env bash
# Builds the worker into build/: cargo (wasm32), the pinned wasm-bindgen CLI,
# then esbuild bundles the JS driver (js/entry.mjs) with the generated glue.
# No worker-build: the driver is the entry, so its shim is not needed.
#
#   bash scripts/build.sh          release build (the one that ships)
#   bash scripts/build.sh --dev    no release optimiser (`npm run dev` sets
#                                  CIO_BUILD=dev for wrangler's rebuilds)
#
# This is also wrangler.toml's [build] command, so `npx wrangler dev|deploy`
# work on their own once `npm run setup` has run.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo install puts binaries here; make sure they are found.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$PATH"
WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
[ -x "$ESBUILD_BIN" ] || ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

profile=release
if [ "${1:-}" = "--dev" ] || [ "${CIO_BUILD:-}" = dev ]; then profile=wasm-dev; fi
cargo build --quiet --lib --target wasm32-unknown-unknown --profile "$profile"
wasm="target/wasm32-unknown-unknown/$profile/cio_edge.wasm"

# Skip the rest when nothing changed since the last build of this profile.
stamp="build/.stamp"
want="$profile${CIO_KEEP_NAMES:+ names} $(stat -c %Y "$wasm") $(stat -c %Y js/*.mjs scripts/build.sh scripts/cdp-sdk.mjs assets/track.js | tr "\n" " ")"
if [ -f build/index.js ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# Names and producers only serve stack traces: the release build drops them.
strip=
[ "$profile" = release ] && [ -z "${CIO_KEEP_NAMES:-}" ] && strip="--remove-name-section --remove-producers-section"
out=build/.wbg
rm -rf "$out"
# The same flags worker-build passes: panic recovery (`__wbg_reset_state`).
"$WASM_BINDGEN_BIN" "$wasm" --out-dir "$out" --out-name index --target module --no-typescript $strip \
  --experimental-reset-state-function --force-enable-abort-handler
# The release wasm through binaryen's wasm-opt (npm `binaryen`, pinned in
# package.json): -Oz without one-caller inlining, which made the gzipped
# file larger (bench/README.md, "Size"). The wasm uses exception handling
# (wasm-bindgen's abort handler), so the features are named.
WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
if [ "$profile" = release ] && [ -x "$WASM_OPT_BIN" ]; then
  keep=
  [ -n "${CIO_KEEP_NAMES:-}" ] && keep=--debuginfo
  "$WASM_OPT_BIN" -Oz --one-caller-inline-max-function-size=0 $keep \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue --enable-exception-handling \
    "$out/index_bg.wasm" -o "$out/index_bg.wasm"
fi
# workerd imports a compiled module, not a source-phase import.
sed -i 's/import source /import /' "$out/index.js"
minify=--minify
[ "$profile" = release ] && [ -z "${CIO_KEEP_NAMES:-}" ] || minify=
# The scripts the edge serves, each a Text module beside the bundle (the
# `Text` rule for *.txt: wrangler's default, and every test harness's),
# imported on first use, so a cold start parses none and the wasm carries
# none: the Data Pipelines SDK's files as JSON (js/cdp.mjs), the browser SDK
# and the in-app SDK with its licence in its first comment (js/texts.mjs).
node scripts/cdp-sdk.mjs build/cdp-sdk.txt
cp assets/track.js build/track.txt
gist=node_modules/customerio-gist-web
{
  printf '/*! customerio-gist-web, https://github.com/customerio/gist-web\n'
  sed 's#\*/#* /#g' "$gist/LICENSE"
  printf '*/\n'
  cat "$gist/dist/gist.min.js"
} > build/gist.txt
"$ESBUILD_BIN" js/entry.mjs --bundle --format=esm $minify --log-level=warning \
  --alias:cio-edge-wasm="./$out/index.js" --inject:./js/cdp.mjs \
  --external:./index_bg.wasm --external:./cdp-sdk.txt --external:./gist.txt --external:./track.txt --external:'cloudflare:*' \
  --outfile=build/index.js
mv "$out/index_bg.wasm" build/index_bg.wasm
rm -rf "$out" build/worker build/cdp-sdk.mjs
echo "$want" > "$stamp"
