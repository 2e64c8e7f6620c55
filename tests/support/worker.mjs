// Starts the built worker under Miniflare with real local KV and SQLite
// Durable Objects, listening on a real 127.0.0.1 port.
import { Miniflare } from "miniflare";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import http from "node:http";
import { Agent, setGlobalDispatcher } from "undici";

process.env.WRANGLER_SEND_METRICS = "false";
// At most 48 connections to one worker at a time, each kept open briefly:
// hundreds of simultaneous new connections to the local runtime on a loaded
// 2-core machine get reset before they are served, which is the test
// machine's limit, not the edge's. Requests beyond it queue in the client,
// so a test of 200 "simultaneous" calls still has 48 in flight at once.
setGlobalDispatcher(new Agent({ connections: 48, keepAliveTimeout: 1000 }));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const script = path.join(root, "build/index.js");

/// The forwarding queues as wrangler.toml declares them (`queues: true`).
export const FORWARDING_QUEUES = {
  queueProducers: { CIO_OUTBOX: "cio-outbox", CIO_DEADLETTER: "cio-deadletter" },
  queueConsumers: {
    "cio-outbox": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 3, deadLetterQueue: "cio-deadletter" },
    "cio-deadletter": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10 },
  },
};

export async function startWorker({ originUrl, vars = {}, secrets = {}, durableObjects = true, ratelimits, persist, queues = false } = {}) {
  if (!existsSync(script)) throw new Error("build/index.js is missing: run `npm run build` first");
  const bindings = { ...vars, ...secrets };
  if (originUrl !== undefined) bindings.ORIGIN_URL = originUrl;
  const mf = new Miniflare({
    rootPath: root,
    scriptPath: script,
    modules: true,
    // The SDK texts beside the bundle are Text modules, as wrangler's default
    // rule makes them (scripts/build.sh).
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true },
      { type: "Text", include: ["**/*.txt"] },
    ],
    compatibilityDate: "2026-04-01",
    kvNamespaces: ["CIO_KV"],
    durableObjects: durableObjects
      ? {
          PERSON: { className: "Person", useSQLite: true },
          VISITOR: { className: "Visitor", useSQLite: true },
          IDENTITY_INDEX: { className: "IdentityIndex", useSQLite: true },
          FORWARDING: { className: "Forwarding", useSQLite: true },
        }
      : {},
    bindings,
    ...(ratelimits ? { ratelimits } : {}),
    ...(queues ? FORWARDING_QUEUES : {}),
    ...(persist ? { durableObjectsPersist: persist } : {}),
    host: "127.0.0.1",
    port: 0,
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    mf,
    url,
    fetch: (p, init = {}) => fetchSaying(url + p, { redirect: "manual", ...init }),
    raw: (p, init = {}) => rawRequest(url + p, init),
    dispatch: (u, init = {}) => mf.dispatchFetch(u, { redirect: "manual", ...init }),
    dispose: () => mf.dispose(),
  };
}

/// `fetch`, with the socket-level cause in the message when it fails.
async function fetchSaying(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    const cause = e.cause ? `${e.cause.code ?? ""} ${e.cause.message ?? e.cause}` : "";
    throw new Error(`${init.method ?? "GET"} ${url} failed: ${e.message} (${cause})`, { cause: e });
  }
}

/// A plain node:http request, as a browser sends it: no headers added (fetch
/// would add `Sec-Fetch-Mode: cors` and `Accept-Encoding`), the body read
/// chunk by chunk with arrival times.
export function rawRequest(url, { method = "GET", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const req = http.request(url, { method, headers }, (res) => {
      const chunks = [];
      const arrivals = [];
      res.on("data", (c) => {
        chunks.push(c);
        arrivals.push(Date.now() - started);
      });
      res.on("end", () => {
        const setCookie = res.headers["set-cookie"] ?? [];
        resolve({ status: res.statusCode, headers: res.headers, setCookies: setCookie, body: Buffer.concat(chunks), arrivals });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/// Every Set-Cookie header of a response, one string each.
export function setCookies(response) {
  return response.setCookies ?? response.headers.getSetCookie();
}

export function parseSetCookie(str) {
  const [pair, ...rest] = str.split(";");
  const eq = pair.indexOf("=");
  const attrs = {};
  for (const part of rest) {
    const [k, ...v] = part.trim().split("=");
    if (k) attrs[k.toLowerCase()] = v.length ? v.join("=") : true;
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attrs };
}

/// A browser's cookie store, enough for the edge's cookies.
export class CookieJar {
  #cookies = new Map();
  store(response) {
    for (const raw of setCookies(response)) {
      const c = parseSetCookie(raw);
      if (c.attrs["max-age"] === "0") this.#cookies.delete(c.name);
      else this.#cookies.set(c.name, c.value);
    }
    return response;
  }
  get(name) {
    return this.#cookies.get(name);
  }
  set(name, value) {
    this.#cookies.set(name, value);
  }
  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}
