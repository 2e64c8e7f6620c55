// The static scripts the edge serves, each a Text module beside the bundle
// (scripts/build.sh), imported on first use: a cold start parses none of
// them, they are not in the wasm, and a module that only declares this (the
// wasm tests) never needs them.
//   track  the browser SDK, /_cio/track.js (assets/track.js)
//   gist   the in-app SDK, /_cio/gist.js: customerio-gist-web, the version
//          pinned in package.json (MIT, (c) Customer IO; its licence travels
//          in the bundle's first comment)
// Rust decides who gets which, with what headers (src/edge/texts.rs).
const load = {
  track: () => import("./track.txt"),
  gist: () => import("./gist.txt"),
};
const texts = {};

export async function text_response(name, status, headers) {
  if (status !== 200) return new Response(null, { status, headers });
  texts[name] ??= (await load[name]()).default;
  return new Response(texts[name], { status, headers });
}
