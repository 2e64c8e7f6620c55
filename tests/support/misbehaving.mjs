// A Track API v2 batch endpoint on 127.0.0.1 that misbehaves on purpose.
// It is not a model of the workspace (tests/forwarding.test.mjs uses a
// second cio-edge for that): it records what arrives and answers what the
// test tells it to, so delivery can be attacked at the HTTP level.
//
//   const rx = await startMisbehaving();
//   rx.rule = (ops, req) => ({ status: 429, retryAfter: 2 });  // or:
//     { status: 400, body }           refuse with a reason
//     { redirect: 301, location }     send elsewhere (GET /moved answers 200)
//     { stall: true }                 headers, then the body never ends
//     { drop: true }                  close the connection, no answer
//     undefined                       200 {} and the ops count as received
//
// The answers are the ones Customer.io documents for `POST /api/v2/batch`
// (/work/ref/customer-io-track-api-openapi.json, paths./api/v2/batch.post
// .responses: 200, 207 with `errors[].batch_index`, 400 "the entire request
// was malformed" with `errors`, 401; 429 is Customer.io's documented rate
// limit answer); the faults are what a broken network or a misconfigured
// endpoint does. Only 2xx answers add to `received`.
import http from "node:http";

export async function startMisbehaving() {
  const state = {
    rule: undefined,
    /// Operations accepted, in arrival order.
    received: [],
    /// Every request: method, path, body bytes, operations, what was answered.
    requests: [],
    sockets: new Set(),
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      let ops = [];
      try {
        ops = JSON.parse(raw.toString("utf8")).batch ?? [];
      } catch {
        ops = [];
      }
      const entry = { method: req.method, path: req.url, bytes: raw.length, ops, answer: "" };
      state.requests.push(entry);
      if (req.url !== "/api/v2/batch" || req.method !== "POST") {
        // Where a redirect points: a GET here "succeeds" and stores nothing.
        entry.answer = "200 elsewhere";
        res.writeHead(200, { "content-type": "application/json" });
        return res.end("{}");
      }
      const action = state.rule?.(ops, req, entry);
      if (!action) {
        entry.answer = "200";
        state.received.push(...ops);
        res.writeHead(200, { "content-type": "application/json" });
        return res.end("{}");
      }
      if (action.drop) {
        entry.answer = "dropped";
        return req.socket.destroy();
      }
      if (action.stall) {
        entry.answer = "stalled";
        // Headers and a first byte, then nothing: the body never ends.
        res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
        res.write("{");
        return;
      }
      if (action.redirect) {
        entry.answer = `${action.redirect}`;
        res.writeHead(action.redirect, { location: action.location ?? "/moved" });
        return res.end();
      }
      entry.answer = `${action.status}`;
      const headers = { "content-type": "application/json" };
      if (action.retryAfter !== undefined) headers["retry-after"] = String(action.retryAfter);
      res.writeHead(action.status, headers);
      res.end(action.body ?? JSON.stringify({ errors: [{ reason: `answered ${action.status}` }] }));
    });
  });
  server.on("connection", (s) => {
    state.sockets.add(s);
    s.on("close", () => state.sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    get received() {
      return state.received;
    },
    get requests() {
      return state.requests;
    },
    set rule(fn) {
      state.rule = fn;
    },
    close: () =>
      new Promise((r) => {
        for (const s of state.sockets) s.destroy();
        server.close(r);
      }),
  };
}
