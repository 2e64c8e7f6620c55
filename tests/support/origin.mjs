// A real origin server on 127.0.0.1 that records what reached it.
import http from "node:http";
import crypto from "node:crypto";

const HTML = "<!doctype html><html><head><title>t</title></head><body>hello</body></html>";

export async function startOrigin() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const path = req.url.split("?")[0];
      if (path === "/echo") {
        res.writeHead(200, { "content-type": "application/json", "x-origin": "yes" });
        return res.end(JSON.stringify({
          method: req.method, url: req.url, headers: req.headers,
          bodyLength: body.length, bodySha256: crypto.createHash("sha256").update(body).digest("hex"),
        }));
      }
      if (path === "/set-two-cookies") {
        res.writeHead(200, { "content-type": "text/plain", "set-cookie": ["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"] });
        return res.end("two cookies");
      }
      if (path === "/redirect") {
        res.writeHead(302, { location: "/elsewhere", "content-type": "text/plain" });
        return res.end("moved");
      }
      const status = path.match(/^\/status\/(\d{3})$/);
      if (status) {
        res.writeHead(Number(status[1]), { "content-type": "text/plain" });
        return res.end(`status ${status[1]}`);
      }
      if (path === "/hang") return; // never answers
      if (path === "/slow") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("chunk1\n");
        setTimeout(() => res.write("chunk2\n"), 200);
        setTimeout(() => res.end("chunk3\n"), 400);
        return;
      }
      if (path === "/html" || path.endsWith("/") || path.endsWith(".html")) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        return res.end(req.method === "HEAD" ? undefined : HTML);
      }
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`ok ${req.method} ${req.url}`);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    last: () => requests.at(-1),
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/// A port on 127.0.0.1 where nothing listens.
export async function closedPort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/// A port on 127.0.0.1 that was free a moment ago (nothing listens on it).
export const freePort = closedPort;
