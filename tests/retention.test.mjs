// Retention (docs/API.md section 10.5) through the built worker: Durable
// Object alarms rung by the runtime. Retention periods are settings in days
// and take decimals, so a period of a few seconds is an ordinary setting.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { withEdge } from "./support/edge.mjs";
import { Browser, person, activity, visitorActivity, eventually, sleep, uid } from "./support/people.mjs";
import { SECRETS, api } from "./support/api.mjs";

// 0.00005 days = 4.32 s, stored as 4 s.
const PERIOD_DAYS = "0.00005";
const PERIOD_MS = 4000;
// Each test gets a worker of its own retention settings.
const { another } = withEdge({ secrets: SECRETS });
const edge = (vars) => another({ vars });

test("ANONYMOUS_RETENTION_DAYS: an idle never-identified visitor is deleted; an active one, an identified one and the person stay", async () => {
  const w = await edge({ ANONYMOUS_RETENTION_DAYS: PERIOD_DAYS });
  const idle = new Browser(w);
  const busy = new Browser(w);
  const known = new Browser(w);
  let idleAt;
  for (const b of [idle, busy, known]) {
    await b.visit("/");
    assert.equal((await b.track("first")).status, 200);
    if (b === idle) idleAt = Date.now();
  }
  const id = uid("kept");
  assert.equal((await known.identify({ id })).status, 200);
  await sleep(PERIOD_MS / 2);
  assert.equal((await busy.track("again")).status, 200);

  await eventually(async () => (await visitorActivity(w, idle.anon)).events.length === 0, "the idle visitor deleted", PERIOD_MS * 3);
  // Activity is kept in whole seconds: up to one second early.
  assert.ok(Date.now() - idleAt >= PERIOD_MS - 1000, "not before its time");
  const v = await visitorActivity(w, idle.anon);
  assert.equal(v.merged_into, undefined);
  assert.deepEqual((await visitorActivity(w, busy.anon)).events.map((e) => e.name).sort(), ["again", "first"], "active since: kept");
  const k = await visitorActivity(w, known.anon);
  assert.ok(k.merged_into, "an identified visitor keeps its mark");
  assert.deepEqual((await activity(w, id)).map((e) => e.name), ["first"], "the person keeps its events");

  await eventually(async () => (await visitorActivity(w, busy.anon)).events.length === 0, "the busy visitor deleted once idle", PERIOD_MS * 3);
  assert.equal((await person(w, id)).status, 200);
  assert.deepEqual((await activity(w, id)).map((e) => e.name), ["first"]);
  // A deleted visitor that comes back starts afresh.
  assert.equal((await idle.track("back")).status, 200);
  assert.deepEqual((await visitorActivity(w, idle.anon)).events.map((e) => e.name), ["back"]);
});

test("EVENT_RETENTION_DAYS: a person's events older than the period are deleted, newer ones and the profile stay", async () => {
  const w = await edge({ EVENT_RETENTION_DAYS: PERIOD_DAYS, ANONYMOUS_RETENTION_DAYS: "0" });
  const id = uid("p");
  assert.equal((await api(w, "PUT", `v1/customers/${id}`, { plan: "x" })).status, 200);
  const now = Math.floor(Date.now() / 1000);
  for (const [name, timestamp] of [["old", now - 3600], ["future", now + 3600]]) {
    assert.equal((await api(w, "POST", `v1/customers/${id}/events`, { name, timestamp, id: crypto.randomUUID() })).status, 200);
  }
  const b = new Browser(w);
  await b.visit("/");
  await b.track("anonymous, kept: ANONYMOUS_RETENTION_DAYS=0");
  assert.deepEqual((await activity(w, id)).map((e) => e.name).sort(), ["future", "old"]);
  await eventually(async () => (await activity(w, id)).length === 1, "the old event deleted", PERIOD_MS * 3);
  assert.deepEqual((await activity(w, id)).map((e) => e.name), ["future"]);
  assert.equal((await person(w, id)).body.attributes.plan, "x");
  await sleep(PERIOD_MS);
  assert.equal((await visitorActivity(w, b.anon)).events.length, 1);
});

test("retention shares the objects' alarm with forwarding: the outbox drains and the idle visitor is still deleted on time", async () => {
  const receiver = await another({ secrets: { SITE_ID: "ws", API_KEY: "wk", ADMIN_TOKEN: SECRETS.ADMIN_TOKEN } });
  const w = await another({
    secrets: { ...SECRETS, CIO_SITE_ID: "ws", CIO_API_KEY: "wk" },
    vars: { CIO_TRACK_URL: `${receiver.url}/_cio`, ANONYMOUS_RETENTION_DAYS: PERIOD_DAYS },
    queues: true,
  });
  const idle = new Browser(w);
  await idle.visit("/");
  assert.equal((await idle.track("forwarded then forgotten")).status, 200);
  const idleAt = Date.now();
  await eventually(
    async () => (await visitorActivity(receiver, idle.anon)).events?.some((e) => e.name === "forwarded then forgotten"),
    "the event forwarded",
    PERIOD_MS * 3,
  );
  await eventually(async () => (await visitorActivity(w, idle.anon)).events.length === 0, "the idle visitor deleted", PERIOD_MS * 3);
  assert.ok(Date.now() - idleAt >= PERIOD_MS - 1000, "not before its time");
  assert.ok((await visitorActivity(receiver, idle.anon)).events.length >= 1, "the workspace keeps what it was sent");
});
