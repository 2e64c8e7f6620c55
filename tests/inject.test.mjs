// INJECT_SNIPPET at the HTTP level: what is rewritten, what is left alone,
// compressed origin pages, and that a page still streams while rewritten.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import zlib from "node:zlib";
import { startWorker } from "./support/worker.mjs";

const HEAD = "<!doctype html><html><head><title>t</title></head>";
const PAGE = `${HEAD}<body><p>hello</p></body></html>`;
const SDK = "/_cio/track.js";

let origin;
let edge;
let plain;

before(async () => {
  origin = http.createServer((req, res) => {
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
    if (path === "/stream") {
      res.writeHead(200, { "content-type": "text/html" });
      res.write(HEAD);
      setTimeout(() => res.end("<body>late</body></html>"), 400);
      return;
    }
    res.writeHead(200, { "content-type": "text/html", "content-length": Buffer.byteLength(PAGE) });
    res.end(PAGE);
  });
  await new Promise((r) => origin.listen(0, "127.0.0.1", r));
  const originUrl = `http://127.0.0.1:${origin.address().port}`;
  edge = await startWorker({ originUrl, vars: { INJECT_SNIPPET: "true" } });
  plain = await startWorker({ originUrl });
});

after(async () => {
  await edge?.dispose();
  await plain?.dispose();
  origin?.close();
});

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
