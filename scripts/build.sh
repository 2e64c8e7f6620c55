#!/usr/bin/env bash
# Release build of the worker into build/ with local binaries only. This is also
# wrangler.toml's [build] command, so `npx wrangler dev|deploy` work on their own
# once `npm run setup` has run.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo install puts binaries here; make sure they are found.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
export WRANGLER_SEND_METRICS=false
worker-build --release
# The function-name section (~260 KiB, ~70 KiB gzipped) only serves stack
# traces; wasm-bindgen needs the symbols, so it goes after, not via `strip`.
"$WASM_OPT_BIN" build/index_bg.wasm --strip-debug --strip-producers -o build/index_bg.wasm
