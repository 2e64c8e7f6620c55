// The pinned Data Pipelines browser SDK (@customerio/cdp-analytics-browser,
// its UMD build), served first-party at /_cio/cdp/v1/analytics-js/. The
// files are a Text module beside the bundle (build/cdp-sdk.txt, written by
// scripts/cdp-sdk.mjs), imported on first use: neither the wasm nor the
// bundle carries them, so a cold start does not parse them. Rust decides who
// gets them (src/edge/cdp.rs) and awaits `globalThis.cioCdpAsset` for the
// bytes. scripts/build.sh injects this module into the bundle.
let sdk;
async function load() {
  sdk ??= JSON.parse((await import("./cdp-sdk.txt")).default);
  return sdk;
}

// FNV-1a of a short string, for the ETag of a bundle made for one key and host.
function fnv(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16);
}

// `name`: a file of the SDK. For the bundle, `key` is the write key it embeds
// (as Customer.io's CDN does), and `cdn` (this edge's /_cio/cdp) is given to
// the page's analytics object as `_cdn` unless the page set one: the SDK then
// loads its settings and parts from the edge, not from cdp.customer.io.
async function cdpAsset(name, key, cdn, ifNoneMatch) {
  const { version: VERSION, files: FILES } = await load();
  const file = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
  if (file === undefined) return undefined;
  const etag = `"cdp-${VERSION}-${name}${key === undefined ? "" : `-${fnv(`${key}\n${cdn}`)}`}"`;
  const headers = {
    "content-type": "application/javascript; charset=utf-8",
    "cache-control": "public, max-age=3600",
    etag,
  };
  if (ifNoneMatch && ifNoneMatch.split(",").some((t) => t.trim() === etag || t.trim() === "*")) {
    return new Response(null, { status: 304, headers });
  }
  let body = file;
  if (key !== undefined) {
    const prelude =
      "(function(){try{var s=document.querySelector('script[data-global-customerio-analytics-key]');" +
      "var k=(s&&s.dataset.globalCustomerioAnalyticsKey)||'analytics';var a=window[k]=window[k]||[];" +
      `if(!a._cdn)a._cdn=${JSON.stringify(cdn)}}catch(e){}})();\n`;
    body = prelude + file.replaceAll("__WRITE_KEY__", JSON.stringify(key).slice(1, -1));
  }
  return new Response(body, { status: 200, headers });
}

globalThis.cioCdpAsset = cdpAsset;
