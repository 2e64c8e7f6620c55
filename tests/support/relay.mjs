// A network path with faults between the edge and a real receiver: it relays
// every request to the receiver as is, or (switched) drops connections as a
// host that is down does, or answers 503 with Retry-After as an overloaded
// one does. It never answers for the receiver.
import http from "node:http";

export async function startRelay(target) {
  const state = { mode: "up", counts: { up: 0, down: 0, busy: 0 }, answers: [] };
  const server = http.createServer((req, res) => {
    state.counts[state.mode]++;
    if (state.mode === "down") return req.socket.destroy();
    if (state.mode === "busy") {
      res.writeHead(503, { "retry-after": "1", "content-type": "text/plain" });
      return res.end("busy");
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      try {
        const upstream = await fetch(state.target + req.url, {
          method: req.method,
          headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== "host" && k !== "connection")),
          body: chunks.length ? Buffer.concat(chunks) : undefined,
        });
        const body = Buffer.from(await upstream.arrayBuffer());
        // fetch decoded the body: its encoding and length no longer apply.
        const headers = Object.fromEntries([...upstream.headers].filter(([k]) => !["content-encoding", "content-length", "transfer-encoding"].includes(k)));
        state.answers.push(upstream.status);
        res.writeHead(upstream.status, headers);
        res.end(body);
      } catch {
        req.socket.destroy();
      }
    });
  });
  state.target = target;
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    set: (mode) => (state.mode = mode),
    close: () => new Promise((r) => server.close(r)),
  };
}
