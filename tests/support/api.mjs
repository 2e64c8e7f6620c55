// The Track API and the admin API over real HTTP. Every helper takes the
// worker first (as every helper in tests/support does).
import assert from "node:assert/strict";
import { uid } from "./people.mjs";

export const SITE_ID = "site-test";
export const API_KEY = "key-test";
export const ADMIN_TOKEN = "test-admin-token";
/// The secrets that switch on the Track API and the admin API.
export const SECRETS = { SITE_ID, API_KEY, ADMIN_TOKEN };
export const basic = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
export const AUTH = basic(SITE_ID, API_KEY);
export const email = (prefix) => `${uid(prefix)}@example.com`;
export const now = () => Math.floor(Date.now() / 1000);
export const sortedNames = (evs) => evs.map((e) => e.name).sort();

export function parse(text) {
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

/// An admin read; `path` is relative to `/_cio/admin/`. `text` is the raw
/// body, `body` the parsed one.
export async function adminGet(worker, path, { token = ADMIN_TOKEN } = {}) {
  const res = await worker.fetch(`/_cio/admin/${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: parse(text) };
}

/// The admin view of a person: `{status, body}`.
export async function person(worker, identifier) {
  const res = await adminGet(worker, `people/${encodeURIComponent(identifier)}`);
  return { status: res.status, body: res.body };
}

/// The person's profile, failing when there is none.
export async function profile(worker, identifier) {
  const res = await person(worker, identifier);
  assert.equal(res.status, 200, `person ${identifier} should exist, got ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function activity(worker, identifier) {
  const res = await adminGet(worker, `people/${encodeURIComponent(identifier)}/activity?limit=1000`);
  return { status: res.status, events: res.body?.events };
}

export async function events(worker, identifier) {
  const res = await activity(worker, identifier);
  assert.equal(res.status, 200, `activity of ${identifier} should exist, got ${res.status}`);
  return res.events;
}

/// Every person of the KV listing, following the cursor.
export async function listAll(worker, limit = 1000) {
  const people = [];
  let cursor = null;
  let pages = 0;
  do {
    const q = `people?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const res = await adminGet(worker, q);
    assert.equal(res.status, 200, `listing answered ${res.status} ${res.text}`);
    const page = JSON.parse(res.text);
    assert.ok(Array.isArray(page.people));
    assert.ok(page.people.length <= limit, `a page of ${page.people.length} over limit ${limit}`);
    assert.ok(page.cursor === null || typeof page.cursor === "string");
    people.push(...page.people);
    cursor = page.cursor;
    pages++;
    assert.ok(pages < 1000, "the cursor never ends");
  } while (cursor);
  return { people, pages };
}

export function assertV1Error(res, status) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`);
  assert.ok(Array.isArray(res.body?.meta?.errors), `v1 error shape: ${JSON.stringify(res.body)}`);
  assert.ok(res.body.meta.errors.length > 0);
  for (const e of res.body.meta.errors) assert.ok(typeof e === "string" && e.length > 0);
}

export function assertV2Error(error) {
  assert.equal(typeof error.reason, "string", JSON.stringify(error));
  assert.ok(error.reason.length > 0);
  assert.equal(typeof error.message, "string", JSON.stringify(error));
  assert.ok(error.message.length > 0);
  if ("field" in error) assert.equal(typeof error.field, "string");
}
