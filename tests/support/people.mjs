// A simulated browser (its own cookie jar) and admin reads, for identity tests.
import { CookieJar } from "./worker.mjs";

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
