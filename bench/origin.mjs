// The benchmark's origin: a small HTML page, as fast as Node serves it. Runs in
// its own process so the load generator and the workers do not share its loop.
import http from "node:http";

const page = Buffer.from(`<!doctype html><html><head><title>bench</title></head><body>${"<p>content</p>".repeat(60)}</body></html>`);
const server = http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": page.length });
    res.end(page);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.send?.({ port: server.address().port }));
