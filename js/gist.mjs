// The in-app SDK served at /_cio/gist.js: customerio-gist-web, the version
// pinned in package.json (MIT, (c) Customer IO; its licence travels in the
// bundle's first comment). scripts/build.sh aliases the two names below to
// the package's files, loaded as text, so the bundle stays out of the wasm.
// Imported on first use: a module that only declares this (the wasm tests)
// never needs the files.
let body;

export async function gist_response(status, headers) {
  if (status !== 200) return new Response(null, { status, headers });
  if (body === undefined) {
    const license = (await import("cio-gist-license")).default;
    const bundle = (await import("cio-gist-bundle")).default;
    body = `/*! customerio-gist-web, https://github.com/customerio/gist-web\n${license.replaceAll("*/", "* /")}*/\n${bundle}`;
  }
  return new Response(body, { status, headers });
}
