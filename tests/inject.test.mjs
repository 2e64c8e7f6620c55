// INJECT_SNIPPET at the HTTP level: what is rewritten, what is left alone,
// compressed origin pages, and that a page still streams while rewritten.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import zlib from "node:zlib";
import { withEdge } from "./support/edge.mjs";

const HEAD = "<!doctype html><html><head><title>t</title></head>";
const PAGE = `${HEAD}<body><p>hello</p></body></html>`;
const SDK = "/_cio/track.js";

const SNIPPET_PAGE = `<html><head><script>var _cio=_cio||[];(function(){var t=document.createElement('script');t.src='/_cio/track.js';})();</script></head><body></body></html>`;
const PAGES = {
  plain: PAGE,
  sdk: `<html><head><script async src="/_cio/track.js"></script></head><body></body></html>`,
  ours: SNIPPET_PAGE,
  theirs: `<html><head><script>var _cio = _cio || [];(function(){var t=document.createElement('script');t.src='https://assets.customer.io/assets/track.js';})();</script></head><body></body></html>`,
  unrelated: `<html><head><script>var x = 1;</script></head><body></body></html>`,
  fragment: "<p>fragment</p>",
};

// The origin: pages plain, compressed, split, slow, and not HTML.
async function startPages() {
  const server = http.createServer((req, res) => {
    req.resume();
    const path = req.url.split("?")[0];
    if (path === "/gzip") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-encoding": "gzip" });
      return res.end(zlib.gzipSync(PAGE));
    }
    if (path === "/json") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(`{"html":"${HEAD.replaceAll('"', "'")}"}`);
    }
    if (path === "/missing") {
      res.writeHead(404, { "content-type": "text/html" });
      return res.end(PAGE);
    }
    if (path === "/split") {
      // A page sent in pieces, each its own write some milliseconds apart,
      // so the rewriter sees the head cut at the given byte offsets.
      const query = new URLSearchParams(req.url.split("?")[1]);
      const page = Buffer.from(PAGES[query.get("page")]);
      const cuts = (query.get("at") || "").split(",").filter(Boolean).map(Number);
      res.writeHead(200, { "content-type": "text/html" });
      const pieces = [];
      let start = 0;
      for (const at of [...cuts, page.length]) {
        pieces.push(page.subarray(start, at));
        start = at;
      }
      const next = () => {
        const piece = pieces.shift();
        if (pieces.length === 0) return res.end(piece);
        res.write(piece);
        setTimeout(next, 2);
      };
      return next();
    }
    if (path === "/stream") {
      res.writeHead(200, { "content-type": "text/html" });
      res.write(HEAD);
      setTimeout(() => res.end("<body>late</body></html>"), 400);
      return;
    }
    res.writeHead(200, { "content-type": "text/html", "content-length": Buffer.byteLength(PAGE) });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}

const { edge, another } = withEdge({ origin: startPages, vars: { INJECT_SNIPPET: "true" } });

const count = (text) => text.split(SDK).length - 1;

test("an HTML 200 page gets the snippet once, at the end of <head>; its length header goes", async () => {
  const res = await edge.raw("/page");
  const text = res.body.toString();
  assert.equal(res.status, 200);
  assert.equal(count(text), 1);
  assert.ok(text.indexOf(SDK) < text.indexOf("</head>"));
  assert.ok(text.endsWith("<body><p>hello</p></body></html>"));
  assert.notEqual(res.headers["content-length"], String(Buffer.byteLength(PAGE)));
  // Off by default.
  const plain = await another();
  assert.equal((await plain.raw("/page")).body.toString(), PAGE);
});

test("other content types and statuses are untouched", async () => {
  const json = await edge.raw("/json");
  assert.equal(count(json.body.toString()), 0);
  const missing = await edge.raw("/missing");
  assert.equal(missing.status, 404);
  assert.equal(missing.body.toString(), PAGE);
  const head = await edge.raw("/page", { method: "HEAD" });
  assert.equal(head.body.length, 0);
});

test("a gzip-compressed origin page is decoded, rewritten and delivered readable", async () => {
  for (const encoding of ["gzip", undefined]) {
    const res = await edge.raw("/gzip", { headers: encoding ? { "accept-encoding": encoding } : {} });
    assert.equal(res.status, 200);
    const body = res.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(res.body) : res.body;
    const text = body.toString();
    assert.equal(count(text), 1, `accept-encoding ${encoding}`);
    assert.ok(text.endsWith("<body><p>hello</p></body></html>"));
  }
});

test("a rewritten page still streams: the head arrives before the origin sends the body", async () => {
  const res = await edge.raw("/stream");
  const text = res.body.toString();
  assert.equal(count(text), 1);
  assert.ok(res.arrivals.length >= 2, `chunks: ${res.arrivals.length}`);
  assert.ok(res.arrivals[0] < 300, `first chunk at ${res.arrivals[0]} ms`);
  assert.ok(res.arrivals.at(-1) - res.arrivals[0] >= 250);
});

const split = (page, at) => edge.raw(`/split?page=${page}&at=${at.join(",")}`).then((r) => r.body.toString());
// The snippet as the edge inserts it, taken from a whole page.
const inserted = async () => {
  const text = (await edge.raw("/page")).body.toString();
  return text.slice(HEAD.indexOf("</head>"), text.indexOf("</head>"));
};

test("the head cut at every byte boundary: the snippet once, before </head>, the page otherwise unchanged", async () => {
  const want = PAGE.replace("</head>", `${await inserted()}</head>`);
  const end = PAGE.indexOf("<body>") + 3;
  for (let at = 1; at < end; at++) assert.equal(await split("plain", [at]), want, `cut at ${at}`);
  // Byte by byte through the head.
  const every = Array.from({ length: end - 1 }, (_, i) => i + 1);
  assert.equal(await split("plain", every), want);
});

test("a head that loads the SDK or carries a snippet keeps its own, wherever the cuts fall", async () => {
  for (const page of ["sdk", "ours", "theirs"]) {
    const text = PAGES[page];
    for (const at of [[], [20], [30], [60], [90], [120], [25, 26, 27, 80, 81]]) {
      const cuts = at.filter((n) => n < text.length);
      assert.equal(await split(page, cuts), text, `${page} cut at ${cuts}`);
    }
  }
  // An unrelated inline script does not count as a snippet.
  const unrelated = await split("unrelated", [30]);
  assert.equal(count(unrelated), 1);
  assert.ok(unrelated.indexOf(SDK) > unrelated.indexOf("var x = 1;"));
  // No head, no change.
  assert.equal(await split("fragment", [5]), PAGES.fragment);
});
