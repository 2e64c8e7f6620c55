// The one fixture: `withEdge(options)` starts a real origin on 127.0.0.1 and
// the built worker in front of it (Miniflare, real local KV and SQLite
// Durable Objects) before the file's tests, and disposes of both after.
//
//   const { edge, origin, another } = withEdge({ secrets: SECRETS });
//   const w = await another({ vars: { EDGE_PAGE_VIEWS: "true" } });
//
// `edge` and `origin` stand for the running instances (usable from inside
// any test); `another(options)` starts one more worker in front of the same
// origin, disposed with the rest. Options are `startWorker`'s, and `origin`:
// a function starting the origin (`{ url, close() }`) in place of the
// standard one. `options` may be an async function answering them, run first
// (to start what the worker's settings point at), with `close`: what to stop
// after the workers.
import { before, after } from "node:test";
import { startWorker } from "./worker.mjs";
import { startOrigin } from "./origin.mjs";

/// A stand-in that forwards every property to the instance `get()` returns.
function standIn(get, what) {
  return new Proxy(
    {},
    {
      get(_, key) {
        const target = get();
        if (!target) throw new Error(`${what} is not started yet: use it inside a test`);
        const value = target[key];
        return typeof value === "function" ? value.bind(target) : value;
      },
    },
  );
}

export function withEdge(settings = {}) {
  let origin;
  let worker;
  let options = {};
  let close;
  const extra = [];
  before(async () => {
    let makeOrigin;
    ({ origin: makeOrigin = startOrigin, close, ...options } =
      typeof settings === "function" ? await settings() : settings);
    origin = await makeOrigin();
    worker = await startWorker({ originUrl: origin.url, ...options });
  });
  after(async () => {
    await worker?.dispose();
    for (const w of extra) await w.dispose();
    await origin?.close();
    await close?.();
  });
  return {
    edge: standIn(() => worker, "the edge"),
    origin: standIn(() => origin, "the origin"),
    async another(more = {}) {
      const w = await startWorker({ originUrl: origin.url, secrets: options.secrets, ...more });
      extra.push(w);
      return w;
    },
  };
}
