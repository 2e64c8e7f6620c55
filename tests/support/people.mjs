// A simulated browser (its own cookie jar) and admin reads, for identity tests.
import http from "node:http";
import { CookieJar, parseSetCookie } from "./worker.mjs";

export const ADMIN_TOKEN = "test-admin-token";

export class Browser {
  constructor(worker) {
    this.worker = worker;
    this.jar = new CookieJar();
  }

  get anon() {
    return this.jar.get("_cioanonid");
  }

  get cioid() {
    const v = this.jar.get("_cioid");
    return v === undefined ? undefined : decodeURIComponent(v);
  }

  /// A top-level page view through the proxy.
  async visit(path) {
    const res = await this.worker.raw(path, { headers: { accept: "text/html", "sec-fetch-mode": "navigate", cookie: this.jar.header() } });
    this.jar.store(res);
    return res;
  }

  /// POST a browser endpoint; `body` is sent as given when it is a string or
  /// buffer, else as JSON.
  async post(endpoint, body, headers = {}) {
    const payload = typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body ?? {});
    const res = await this.worker.fetch(`/_cio/${endpoint}`, {
      method: "POST",
      body: payload,
      headers: { "content-type": "application/json", ...headers, cookie: this.jar.header() },
    });
    this.jar.store(res);
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, res };
  }

  identify(body) {
    return this.post("identify", body);
  }
  track(name, data, extra = {}) {
    return this.post("track", { name, data, ...extra });
  }
  page(name, data) {
    return this.post("page", { name, data });
  }
  reset() {
    return this.post("reset", "");
  }
}

export async function admin(worker, path, token = ADMIN_TOKEN) {
  const res = await worker.fetch(`/_cio/admin/${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export const person = async (worker, identifier) => admin(worker, `people/${encodeURIComponent(identifier)}`);
export const activity = async (worker, identifier, limit = 1000) =>
  (await admin(worker, `people/${encodeURIComponent(identifier)}/activity?limit=${limit}`)).body?.events;
export const visitorActivity = async (worker, anon) => (await admin(worker, `visitors/${anon}/activity?limit=1000`)).body;

/// Polls until `check` answers truthy (for work done in the background).
export async function eventually(check, what, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const uid = (prefix = "u") => `${prefix}-${crypto.randomUUID()}`;

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/// The Set-Cookie headers of a response (a fetch Response, a raw response,
/// or a Browser.post result), parsed, for one cookie name.
export function cookiesNamed(response, name) {
  const res = response.res ?? response;
  const raw = res.setCookies ?? res.headers.getSetCookie();
  return raw.map(parseSetCookie).filter((c) => c.name === name);
}

/// Deletes every key of the worker's CIO_KV namespace; answers how many.
export async function wipeKv(worker) {
  const kv = await worker.mf.getKVNamespace("CIO_KV");
  let deleted = 0;
  for (;;) {
    const page = await kv.list();
    if (page.keys.length === 0) break;
    for (const key of page.keys) {
      await kv.delete(key.name);
      deleted++;
    }
  }
  return deleted;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// POSTs a body in several chunks with `Transfer-Encoding: chunked` (no
/// Content-Length), as a streaming client would.
export function postChunked(worker, path, chunks, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(worker.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
      const parts = [];
      res.on("data", (c) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString();
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}
