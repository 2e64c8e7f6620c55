// The Track API and admin API over real HTTP, for tests that drive the
// server side directly. Every helper takes the worker first.
import { uid } from "./people.mjs";

export const SITE_ID = "site-test";
export const API_KEY = "key-test";
export const ADMIN_TOKEN = "test-admin-token";
/// The secrets that switch on the Track API and the admin API.
export const SECRETS = { SITE_ID, API_KEY, ADMIN_TOKEN };
export const basic = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
export const AUTH = basic(SITE_ID, API_KEY);
export const email = (prefix) => `${uid(prefix)}@example.com`;

function parse(text) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return { unparsed: text };
  }
}

/// A Track API call; `path` is relative to `/_cio/api/`.
export async function api(worker, method, path, body, { auth = AUTH } = {}) {
  const res = await worker.fetch(`/_cio/api/${path}`, {
    method,
    headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: parse(await res.text()) };
}

/// An admin read; `path` is relative to `/_cio/admin/`.
export async function adminGet(worker, path, { token = ADMIN_TOKEN } = {}) {
  const res = await worker.fetch(`/_cio/admin/${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, headers: res.headers, body: parse(await res.text()) };
}
