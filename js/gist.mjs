// The in-app SDK served at /_cio/gist.js: customerio-gist-web, the version
// pinned in package.json (MIT, (c) Customer IO; its licence travels in the
// bundle's first comment). scripts/build.sh writes both, licence first, as a
// Text module beside the bundle (build/gist.txt), imported on first use: a
// cold start does not parse it, and a module that only declares this (the
// wasm tests) never needs it.
let body;

export async function gist_response(status, headers) {
  if (status !== 200) return new Response(null, { status, headers });
  body ??= (await import("./gist.txt")).default;
  return new Response(body, { status, headers });
}
