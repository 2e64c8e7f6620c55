// Forwarding against a receiver that misbehaves on purpose
// (tests/support/misbehaving.mjs): queue size limits with backslash-heavy
// operations, outages with large re-sends, 400s, 429s in the middle of a
// person's history, a body that never ends, redirects, and retention. The
// edge is the built worker under Miniflare with its queues on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/worker.mjs";
import { startOrigin } from "./support/origin.mjs";
import { startMisbehaving } from "./support/misbehaving.mjs";
import { api, adminGet, basic, ADMIN_TOKEN } from "./support/api.mjs";
import { Browser, visitorActivity, eventually, uid, sleep } from "./support/people.mjs";

const EDGE_API = { SITE_ID: "edge-site", API_KEY: "edge-key" };
const EDGE_AUTH = basic(EDGE_API.SITE_ID, EDGE_API.API_KEY);
const CIO = { CIO_SITE_ID: "ws-site", CIO_API_KEY: "ws-key" };

let origin, rx, edge;
const extra = [];

async function startEdge(vars = {}) {
  return startWorker({
    originUrl: origin.url,
    secrets: { ...EDGE_API, ADMIN_TOKEN, ...CIO },
    vars: { CIO_TRACK_URL: rx.url, ...vars },
    queues: true,
  });
}

before(async () => {
  origin = await startOrigin();
  rx = await startMisbehaving();
  edge = await startEdge();
});

after(async () => {
  await edge?.dispose();
  for (const w of extra) await w.dispose();
  await rx?.close();
  await origin?.close();
});

const edgeApi = (method, path, body, w = edge) => api(w, method, path, body, { auth: EDGE_AUTH });
const forwarding = async (w = edge) => (await adminGet(w, "forwarding")).body;
const names = (prefix) => rx.received.filter((op) => typeof op.name === "string" && op.name.startsWith(prefix)).map((op) => op.name);
const summary = (s) => JSON.stringify({ pending: s.pending, stuck: s.stuck, age: s.oldest_pending_age, failed: s.failed, delivered: s.delivered, last_error: s.last_error?.message?.slice(0, 120) });

async function replay(w = edge) {
  const res = await w.fetch("/_cio/admin/forwarding/replay", { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: await res.json().catch(() => undefined) };
}

/// Waits until nothing is pending or stuck.
async function settled(what, ms = 60_000) {
  return eventually(async () => {
    const s = await forwarding();
    return s.pending === 0 && s.stuck === false && s;
  }, `forwarding settled (${what})`, ms);
}

test("30 KB events full of backslashes, four at once from one visitor, then three small ones: all seven arrive, nothing stuck", async () => {
  rx.rule = undefined;
  const b = new Browser(edge);
  await b.visit("/");
  const tag = uid("bs");
  // 14,000 backslashes are 28,000 bytes once JSON-escaped: each operation
  // is under Customer.io's 32 KB, and every further escaping doubles it.
  const heavy = "\\".repeat(14_000);
  const big = await Promise.all([0, 1, 2, 3].map((k) => b.track(`${tag}-big${k}`, { blob: heavy, k })));
  for (const r of big) assert.equal(r.status, 200, r.text);
  await sleep(1500);
  for (let k = 0; k < 3; k++) assert.equal((await b.track(`${tag}-small${k}`, { k })).status, 200);
  await eventually(() => new Set(names(tag)).size === 7, `7 events at the receiver (have ${new Set(names(tag)).size})`, 40_000);
  const arrived = rx.received.filter((op) => op.name?.startsWith(`${tag}-big`));
  assert.ok(arrived.every((op) => op.attributes.blob === heavy), "the payload arrives byte for byte");
  assert.ok(rx.requests.every((r) => r.bytes <= 500 * 1024), "no batch body over 500 KB");
  const s = await settled("backslashes");
  console.log(`backslashes: ${new Set(names(tag)).size}/7 arrived; status ${summary(s)}`);
});

test("a burst of 12 plain 30 KB events for one person: all arrive", async () => {
  rx.rule = undefined;
  const id = uid("burst");
  assert.equal((await edgeApi("PUT", `v1/customers/${id}`, { plan: "x" })).status, 200);
  const blob = "x".repeat(30_000);
  const res = await Promise.all(Array.from({ length: 12 }, (_, k) => edgeApi("POST", `v1/customers/${id}/events`, { name: `${id}-e${k}`, data: { blob } })));
  for (const r of res) assert.equal(r.status, 200, JSON.stringify(r.body));
  await eventually(() => new Set(names(id)).size === 12, "12 events at the receiver", 40_000);
  const s = await settled("burst");
  console.log(`burst: ${new Set(names(id)).size}/12; largest batch ${Math.max(...rx.requests.map((r) => r.bytes))} bytes; ${summary(s)}`);
});

test("receiver failing 20 s with 503 while large operations wait: every operation arrives, none dead-lettered, another visitor's event too", async () => {
  const before = await forwarding();
  rx.rule = () => ({ status: 503 });
  const id = uid("outage");
  assert.equal((await edgeApi("PUT", `v1/customers/${id}`, { plan: "big" })).status, 200);
  const blob = "\\".repeat(14_000);
  const res = await Promise.all(Array.from({ length: 5 }, (_, k) => edgeApi("POST", `v1/customers/${id}/events`, { name: `${id}-big${k}`, data: { blob } })));
  for (const r of res) assert.equal(r.status, 200, JSON.stringify(r.body));
  const other = new Browser(edge);
  await other.visit("/");
  assert.equal((await other.track(`${id}-small`, { tiny: true })).status, 200);
  await sleep(20_000);
  rx.rule = undefined;
  await eventually(() => new Set(names(id)).size === 6, `6 events at the receiver (have ${new Set(names(id)).size})`, 90_000);
  const s = await settled("outage", 30_000);
  console.log(`outage: ${new Set(names(id)).size}/6 arrived; requests answered 503: ${rx.requests.filter((r) => r.answer === "503").length}; ${summary(s)}`);
  assert.equal(s.failed, before.failed, JSON.stringify(s.dead_letters?.map((d) => d.reason)));
  assert.ok(s.retries > before.retries, "the retries are counted");
});

test("a 400 keeps the receiver's reason, refuses only the operation it was about, and replay delivers it once fixed", async () => {
  const before = await forwarding();
  const poison = uid("poison");
  rx.rule = (ops) =>
    ops.some((op) => op.attributes?.poison)
      ? { status: 400, body: JSON.stringify({ errors: [{ reason: "poison-pill refused", field: "attributes.poison", message: "not allowed" }] }) }
      : undefined;
  const bystanders = Array.from({ length: 3 }, () => new Browser(edge));
  for (const b of bystanders) await b.visit("/");
  // Together, so they travel in the same queue batch.
  const res = await Promise.all([
    edgeApi("PUT", `v1/customers/${poison}`, { poison: true }),
    ...bystanders.map((b, k) => b.track(`${poison}-bystander${k}`)),
  ]);
  for (const r of res) assert.equal(r.status, 200);
  const s = await eventually(async () => {
    const s = await forwarding();
    return s.failed > before.failed && s;
  }, "the dead letter", 30_000);
  await eventually(() => names(`${poison}-bystander`).length === 3, "the bystanders' events delivered", 30_000);
  const s2 = await settled("400");
  const letters = s2.dead_letters.slice(before.dead_letters.length);
  console.log(`400: dead letters ${JSON.stringify(letters.map((d) => [d.op.identifiers?.id ?? d.op.name, d.reason]))}`);
  assert.equal(s2.failed - before.failed, 1, "only the refused operation is a dead letter");
  assert.equal(letters[0].op.identifiers.id, poison);
  assert.match(letters[0].reason, /poison-pill refused/);
  assert.match(s.last_error.message, /poison-pill refused/);

  rx.rule = undefined;
  const r = await replay();
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.replayed, s2.dead_letters.length);
  await eventually(() => rx.received.some((op) => op.identifiers?.id === poison), "the replayed operation delivered", 30_000);
  const s3 = await settled("replay");
  assert.equal(s3.dead_letters.length, 0);
});

test("replay of large backslash-heavy dead letters works (many at once)", async () => {
  const before = await forwarding();
  const tag = uid("dl");
  rx.rule = (ops) => (ops.some((op) => op.name?.startsWith(tag)) ? { status: 400, body: '{"errors":[{"reason":"refused on purpose"}]}' } : undefined);
  const blob = "\\".repeat(14_000);
  const people = Array.from({ length: 12 }, (_, k) => `${tag}-${k}`);
  await Promise.all(people.map((id) => edgeApi("POST", `v1/customers/${id}/events`, { name: `${tag}-${id}`, data: { blob } })));
  await eventually(async () => (await forwarding()).failed - before.failed === 12, "12 dead letters", 60_000);
  rx.rule = undefined;
  const r = await replay();
  console.log(`replay: ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await eventually(() => new Set(names(tag)).size === 12, "12 replayed events delivered", 60_000);
  await settled("replay of large letters");
});

test("a 429 in the middle of a person's history never reorders it: the last email wins, nothing follows a DELETE (3 rounds)", async () => {
  for (let round = 0; round < 3; round++) {
    const id = uid(`order${round}`);
    const [a, b] = [`a-${id}@example.com`, `b-${id}@example.com`];
    let refused = false;
    rx.rule = (ops) => {
      if (!refused && ops.some((op) => op.attributes?.email === a)) {
        refused = true;
        return { status: 429, retryAfter: 3 };
      }
      return undefined;
    };
    assert.equal((await edgeApi("PUT", `v1/customers/${id}`, { email: a })).status, 200);
    await eventually(() => refused, "the 429", 20_000);
    assert.equal((await edgeApi("PUT", `v1/customers/${id}`, { email: b })).status, 200);
    // A second person: an event held by a 429, then the person deleted.
    const gone = uid(`gone${round}`);
    assert.equal((await edgeApi("PUT", `v1/customers/${gone}`, { doomed: true })).status, 200);
    let held = false;
    rx.rule = (ops) => {
      if (!held && ops.some((op) => op.name === `${gone}-held`)) {
        held = true;
        return { status: 429, retryAfter: 3 };
      }
      return undefined;
    };
    assert.equal((await edgeApi("POST", `v1/customers/${gone}/events`, { name: `${gone}-held` })).status, 200);
    await eventually(() => held, "the event held", 20_000);
    assert.equal((await edgeApi("DELETE", `v1/customers/${gone}`)).status, 200);

    await eventually(() => rx.received.some((op) => op.action === "delete" && op.identifiers?.id === gone), "the delete delivered", 30_000);
    await eventually(() => rx.received.filter((op) => op.identifiers?.id === id && op.attributes?.email).length >= 2, "both identifies", 30_000);
    const emails = rx.received.filter((op) => op.identifiers?.id === id && op.attributes?.email).map((op) => op.attributes.email);
    const history = rx.received.filter((op) => op.identifiers?.id === gone).map((op) => op.action);
    console.log(`order round ${round}: emails ${emails.join(" -> ")}; ${gone}: ${history.join(" -> ")}`);
    assert.equal(emails.at(-1), b, "the receiver ends with the edge's email");
    assert.equal(history.at(-1), "delete", "nothing arrives after the DELETE");
    assert.ok(history.includes("event"), "the held event arrived (before the delete)");
  }
  rx.rule = undefined;
  await settled("order");
});

test("a receiver that sends headers and then stalls the body does not stop forwarding", async () => {
  const tag = uid("stall");
  let stalled = 0;
  rx.rule = (ops) => (stalled === 0 && ops.some((op) => op.name === `${tag}-first`) ? (stalled++, { stall: true }) : undefined);
  const first = new Browser(edge);
  await first.visit("/");
  assert.equal((await first.track(`${tag}-first`)).status, 200);
  await eventually(() => stalled === 1, "the stalled request", 20_000);
  const other = new Browser(edge);
  await other.visit("/");
  for (let k = 0; k < 5; k++) assert.equal((await other.track(`${tag}-other${k}`)).status, 200);
  const started = Date.now();
  await eventually(() => names(`${tag}-other`).length >= 5, `another visitor's 5 events (have ${names(`${tag}-other`).length})`, 60_000);
  await eventually(() => names(`${tag}-first`).length >= 1, "the stalled event retried and delivered", 60_000);
  const s = await settled("stall");
  console.log(`stall: others delivered ${Date.now() - started} ms after; last_error ${s.last_error?.message}`);
  assert.match(s.last_error.message, /15 s/);
});

for (const code of [301, 302]) {
  test(`a ${code} is a failure, not a delivery: nothing counted delivered until the receiver answers the POST itself`, async () => {
    const before = await forwarding();
    const tag = uid(`r${code}`);
    rx.rule = () => ({ redirect: code, location: "/moved" });
    const b = new Browser(edge);
    await b.visit("/");
    for (let k = 0; k < 5; k++) assert.equal((await b.track(`${tag}-e${k}`)).status, 200);
    const s = await eventually(async () => {
      const s = await forwarding();
      return s.last_error && String(s.last_error.message).startsWith(`${code}`) && s;
    }, `last_error naming the ${code}`, 30_000);
    assert.equal(s.delivered, before.delivered, "not counted delivered");
    assert.equal(names(tag).length, 0);
    rx.rule = undefined;
    await eventually(() => new Set(names(tag)).size === 5, "the 5 events delivered once the receiver answers", 60_000);
    const s2 = await settled(`${code}`);
    console.log(`${code}: last_error ${s.last_error.message}; delivered +${s2.delivered - before.delivered}; GETs to /moved ${rx.requests.filter((r) => r.path === "/moved").length}`);
    assert.equal(rx.requests.filter((r) => r.path === "/moved").length, 0, "the redirect is never followed");
  });
}

test("a jam is visible in the admin status within a minute: stuck, the oldest pending age, the last error; and clears", async () => {
  const tag = uid("jam");
  rx.rule = () => ({ drop: true });
  const b = new Browser(edge);
  await b.visit("/");
  assert.equal((await b.track(`${tag}-e`)).status, 200);
  const t0 = Date.now();
  const s = await eventually(async () => {
    const s = await forwarding();
    return s.stuck === true && s;
  }, "stuck: true", 60_000);
  console.log(`jam: stuck after ${Date.now() - t0} ms: ${summary(s)}`);
  assert.ok(s.oldest_pending_age >= 20, summary(s));
  assert.ok(s.pending >= 1, summary(s));
  assert.ok(s.last_error?.message, summary(s));
  rx.rule = undefined;
  await eventually(() => names(tag).length >= 1, "delivered once the receiver is back", 60_000);
  const s2 = await settled("jam cleared");
  assert.equal(s2.oldest_pending_age, null);
});

test("retention: a visitor deleted here is never re-attached there by a later identify with its anonymous_id", async () => {
  // 0.00005 days = 4 s (tests/retention.test.mjs).
  const w = await startEdge({ ANONYMOUS_RETENTION_DAYS: "0.00005" });
  extra.push(w);
  rx.rule = undefined;
  const b = new Browser(w);
  await b.visit("/");
  const tag = uid("ret");
  assert.equal((await b.track(`${tag}-before`)).status, 200);
  await eventually(() => names(tag).length === 1, "the anonymous event forwarded", 20_000);
  await eventually(async () => (await visitorActivity(w, b.anon)).events.length === 0, "the idle visitor deleted", 20_000);
  const id = uid("ret-person");
  assert.equal((await b.identify({ id })).status, 200, "the cookie still names the deleted visitor");
  await eventually(() => rx.received.some((op) => op.identifiers?.id === id), "the identify forwarded", 20_000);
  await sleep(3000);
  const reattach = rx.received.filter((op) => (op.attributes?.anonymous_id ?? op.anonymous_id) === b.anon && op.action === "identify");
  console.log(`retention: identifies carrying the deleted visitor's anonymous_id: ${reattach.length}`);
  assert.equal(reattach.length, 0, JSON.stringify(reattach));
});
