// Forwarding to a Customer.io workspace (docs/FORWARDING.md): two workers,
// the edge with forwarding on and a receiver cio-edge whose own Track API
// plays the workspace, between them a relay that can take the receiver
// down or make it answer 503. Everything is compared through both admin APIs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/worker.mjs";
import { withEdge } from "./support/edge.mjs";
import { startOrigin } from "./support/origin.mjs";
import { startRelay } from "./support/relay.mjs";
import { api, adminGet, basic, email, ADMIN_TOKEN } from "./support/api.mjs";
import { Browser, admin, person, activity, eventually, uid, sleep } from "./support/people.mjs";

const RECEIVER = { SITE_ID: "workspace-site", API_KEY: "workspace-key" };
const EDGE_API = { SITE_ID: "edge-site", API_KEY: "edge-key" };
const EDGE_AUTH = basic(EDGE_API.SITE_ID, EDGE_API.API_KEY);
const RECEIVER_AUTH = basic(RECEIVER.SITE_ID, RECEIVER.API_KEY);

// The workspace is a second edge (its Track API) behind a relay.
let receiverOrigin, receiver, relay;
const { edge, another } = withEdge(async () => {
  receiverOrigin = await startOrigin();
  receiver = await startWorker({ originUrl: receiverOrigin.url, secrets: { ...RECEIVER, ADMIN_TOKEN } });
  relay = await startRelay(receiver.url);
  return {
    secrets: { ...EDGE_API, ADMIN_TOKEN, CIO_SITE_ID: RECEIVER.SITE_ID, CIO_API_KEY: RECEIVER.API_KEY },
    vars: { CIO_TRACK_URL: `${relay.url}/_cio` },
    queues: true,
    close: async () => {
      await relay?.close();
      await receiver?.dispose();
      await receiverOrigin?.close();
    },
  };
});

const now = () => Math.floor(Date.now() / 1000);
const edgeApi = (method, path, body) => api(edge, method, path, body, { auth: EDGE_AUTH });
const receiverApi = (method, path, body) => api(receiver, method, path, body, { auth: RECEIVER_AUTH });
const forwarding = async () => (await adminGet(edge, "forwarding")).body;

/// JSON with sorted keys, so equal data compares equal.
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

/// A person as both sides can compare it: identifiers, attributes,
/// relationships, anonymous ids, and events by type, name, data and time.
/// Not `created_at`: the edge sends only one a caller gave (each side
/// otherwise has its own creation time).
async function portrait(worker, identifier) {
  const p = await person(worker, identifier);
  if (p.status === 404) return "absent";
  assert.equal(p.status, 200, JSON.stringify(p.body));
  const events = (await activity(worker, identifier)) ?? [];
  const { id, email, attributes, relationships, anonymous_ids } = p.body;
  return {
    person: canon({ id, email, attributes, relationships, anonymous_ids }),
    events: events.map((e) => canon([e.type, e.name, e.data, e.timestamp])).sort(),
  };
}

async function sameOnBoth(identifier) {
  const [sent, received] = await Promise.all([portrait(edge, identifier), portrait(receiver, identifier)]);
  return canon(sent) === canon(received) ? sent : false;
}

async function allSame(identifiers, what, ms) {
  return eventually(async () => {
    for (const id of identifiers) if (!(await sameOnBoth(id))) return false;
    return true;
  }, what, ms);
}

test("a journey reaches the receiver as the sender holds it", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  assert.equal((await b.page("/home", { ref: "ad" })).status, 200);
  assert.equal((await b.track("viewed", { sku: "a1", tags: ["x", "y"] })).status, 200);
  const j1 = uid("j1");
  const [e1, e1b] = [email("j1"), email("j1b")];
  const rel = (object_id, extra = {}) => ({ identifiers: { object_type_id: "1", object_id }, ...extra });
  let r = await b.identify({
    id: j1, email: e1, plan: "pro",
    cio_relationships: { action: "add_relationships", relationships: [rel("acme", { relationship_attributes: { role: "admin" } }), rel("globex")] },
  });
  assert.equal(r.status, 200, r.text);
  await b.track("bought", { total: 42 });
  await b.page("/thanks");
  r = await b.identify({ id: j1, cio_relationships: { action: "delete_relationships", relationships: [rel("globex")] } });
  assert.equal(r.status, 200, r.text);
  r = await b.identify({ id: j1, email: e1b, plan: "team" });
  assert.equal(r.status, 200, r.text);

  // Server side: a second person merged into the first, a third deleted.
  const j2 = uid("j2");
  assert.equal((await edgeApi("PUT", `v1/customers/${j2}`, { city: "Oslo", plan: "free" })).status, 200);
  assert.equal((await edgeApi("POST", `v1/customers/${j2}/events`, { name: "signed_up", data: { via: "api" }, timestamp: now() - 100 })).status, 200);
  const j3 = uid("j3");
  assert.equal((await edgeApi("PUT", `v1/customers/${j3}`, { doomed: true })).status, 200);
  assert.equal((await edgeApi("POST", `v1/customers/${j3}/events`, { name: "left" })).status, 200);
  // Let the receiver know both before they merge and go (see FORWARDING.md, order).
  await allSame([j2, j3], "j2 and j3 at the receiver", 20000);
  assert.equal((await edgeApi("POST", "v1/merge_customers", { primary: { id: j1 }, secondary: { id: j2 } })).status, 200);
  assert.equal((await edgeApi("DELETE", `v1/customers/${j3}`)).status, 200);

  await allSame([j1, j2, j3, e1b], "the receiver to hold what the sender holds", 30000);
  const sent = await portrait(edge, j1);
  const received = await portrait(receiver, j1);
  assert.deepEqual(received, sent);
  assert.equal(await portrait(receiver, j2), "absent");
  assert.equal(await portrait(receiver, j3), "absent");
  const p = (await person(receiver, j1)).body;
  assert.equal(p.email, e1b);
  assert.equal(p.attributes.plan, "team");
  assert.equal(p.attributes.city, "Oslo", "the merge moved j2's attributes");
  assert.deepEqual(p.relationships.map((x) => x.object_id), ["acme"]);
  assert.deepEqual(p.anonymous_ids, [b.anon]);
  assert.equal(sent.events.length, 5, "2 anonymous, 2 identified, 1 merged in from j2");
  const status = await forwarding();
  console.log(`journey: sender ${sent.events.length} events, receiver ${received.events.length}; forwarding ${canon({ enqueued: status.enqueued, delivered: status.delivered, failed: status.failed })}`);
  assert.equal(status.on, true);
  assert.equal(status.failed, 0, canon(status.dead_letters));
});

test("receiver down 30 s, then 503 with Retry-After: 1, then up: every write arrives, none twice", async () => {
  const before = await forwarding();
  relay.set("down");
  const people = Array.from({ length: 6 }, () => uid("o"));
  let accepted = 0;
  for (const [i, id] of people.entries()) {
    assert.equal((await edgeApi("PUT", `v1/customers/${id}`, { n: i })).status, 200);
    for (let k = 0; k < 5; k++) {
      const res = await edgeApi("POST", `v1/customers/${id}/events`, { name: `e${k}`, data: { k } });
      assert.equal(res.status, 200);
      accepted++;
    }
  }
  const b = new Browser(edge);
  for (let k = 0; k < 4; k++) assert.equal((await b.page(`/p${k}`)).status, 200);
  const web = uid("web");
  assert.equal((await b.identify({ id: web })).status, 200);
  accepted += 4;
  people.push(web);
  await sleep(30_000);
  relay.set("busy");
  // 503 with Retry-After: 1 until the edge has been turned away three times.
  await eventually(() => relay.state.counts.busy >= 3, "503 answers", 120_000);
  relay.set("up");
  await allSame(people, "every write at the receiver", 120_000);
  let sent = 0;
  let received = 0;
  for (const id of people) {
    sent += (await activity(edge, id)).length;
    received += (await activity(receiver, id)).length;
  }
  const status = await forwarding();
  console.log(
    `outage: accepted ${accepted} events, sender holds ${sent}, receiver holds ${received}; relay ${canon(relay.state.counts)}; ` +
      `retries ${status.retries - (before.retries ?? 0)}, last error ${canon(status.last_error)}`,
  );
  assert.equal(sent, accepted);
  assert.equal(received, sent);
  assert.ok(relay.state.counts.down > 0 && relay.state.counts.busy > 0);
  assert.ok(status.retries > (before.retries ?? 0));
  assert.equal(status.failed, before.failed ?? 0);
});

test("one operation the receiver refuses (207) is dead-lettered with its reason, the rest delivered; replay delivers it", async () => {
  const before = await forwarding();
  const taken = email("taken");
  const owner = uid("owner");
  assert.equal((await receiverApi("PUT", `v1/customers/${owner}`, { email: taken })).status, 200);
  const bystander = uid("by");
  const conflicted = uid("conflicted");
  assert.equal((await edgeApi("PUT", `v1/customers/${bystander}`, { ok: true })).status, 200);
  assert.equal((await edgeApi("PUT", `v1/customers/${conflicted}`, { email: taken, tier: 3 })).status, 200);
  assert.equal((await edgeApi("POST", `v1/customers/${bystander}/events`, { name: "fine" })).status, 200);

  const status = await eventually(async () => {
    const s = await forwarding();
    return s.failed > (before.failed ?? 0) && s;
  }, "the dead letter", 20000);
  const letter = status.dead_letters.find((d) => d.op.identifiers?.id === conflicted);
  assert.ok(letter, canon(status.dead_letters));
  assert.match(letter.reason, /conflict/);
  assert.match(letter.reason, /email/);
  assert.ok(status.last_error.message.includes("conflict"));
  await allSame([bystander], "the other operations delivered", 20000);
  console.log(`dead letter: ${canon({ op: letter.op.action, reason: letter.reason })}`);

  // Fix the receiver (the email's owner goes), then replay.
  assert.equal((await receiverApi("DELETE", `v1/customers/${owner}`)).status, 200);
  const res = await edge.fetch("/_cio/admin/forwarding/replay", { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200);
  assert.ok((await res.json()).replayed >= 1);
  await allSame([conflicted, taken], "the replayed operation delivered", 20000);
  const after = await forwarding();
  assert.equal(after.dead_letters.length, 0);
  assert.equal((await person(receiver, conflicted)).body.email, taken);
});

test("a Customer.io link's cio_id the edge never saw identifies the browser; an email later is that email's own person on both sides", async () => {
  // The workspace's person, as Customer.io would hold it; its cio_id is in the link.
  const known = uid("known");
  assert.equal((await receiverApi("PUT", `v1/customers/${known}`, { plan: "gold" })).status, 200);
  const cioId = (await person(receiver, known)).body.cio_id;
  assert.equal((await person(edge, `cio_${cioId}`)).status, 404, "the edge has never seen it");

  const b = new Browser(edge);
  await b.visit("/");
  assert.equal((await b.page("/before-the-link")).status, 200);
  const visited = await b.visit(`/landing?_cio_id=${cioId}`);
  assert.equal(visited.status, 200);
  assert.equal(b.cioid, `cio_${cioId}`);
  assert.equal((await person(edge, `cio_${cioId}`)).status, 404, "a link stores nothing");
  assert.equal((await b.page("/after-the-link")).status, 200);
  assert.equal((await b.track("clicked", { cta: "buy" })).status, 200);

  const names = async (worker, id) => ((await activity(worker, id)) ?? []).map((e) => e.name).sort();
  await eventually(async () => (await names(receiver, known)).length === 2, "the linked events at the receiver", 20000);
  assert.deepEqual(await names(receiver, known), ["/after-the-link", "clicked"]);
  assert.deepEqual(await names(edge, `cio_${cioId}`), ["/after-the-link", "clicked"]);

  // Whoever clicked names itself: that is its own person (a link never
  // renames the workspace's person), and as any identify it takes the
  // visitor's earlier history (rule 6.6).
  const mail = email("joined");
  assert.equal((await b.identify({ id: mail, first_name: "Ada" })).status, 200);
  await eventually(async () => (await names(receiver, mail)).length === 1, "the email's person and its history at the receiver", 20000);
  const here = (await person(edge, mail)).body;
  const there = (await person(receiver, mail)).body;
  console.log(`link: edge person ${here.cio_id} events ${(await names(edge, mail)).length}; receiver person ${there.cio_id} (id ${there.id}) events ${(await names(receiver, mail)).length}`);
  assert.notEqual(here.cio_id, cioId, "the link's person here keeps only its cio_id");
  assert.notEqual(there.cio_id, cioId);
  assert.equal(there.attributes.first_name, "Ada");
  assert.deepEqual(await names(edge, mail), ["/before-the-link"]);
  assert.deepEqual(await names(receiver, mail), ["/before-the-link"]);
  const linked = (await person(receiver, known)).body;
  assert.equal(linked.id, known);
  assert.equal(linked.email, null);
  assert.equal(linked.attributes.first_name, undefined);
  assert.equal(linked.attributes.plan, "gold");
});

test("the admin endpoint needs the token and forwarding off says so", async () => {
  assert.equal((await adminGet(edge, "forwarding", { token: "wrong" })).status, 401);
  const plain = await another({ secrets: { ADMIN_TOKEN } });
  const off = (await adminGet(plain, "forwarding")).body;
  assert.equal(off.on, false);
  assert.equal(off.region, null);
  assert.equal(off.workspace_settings, null);
});
