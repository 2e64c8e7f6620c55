// The workspace stand-in's own rules (tests/support/cio-workspace.mjs), each
// against the published source it cites: what it refuses and what it does
// with what it accepts. The forwarding tests rely on these.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorkspace, validate, Workspace } from "./support/cio-workspace.mjs";

const ULID_1 = "01HF7YAT0056JN0JDA83TYQXR0";
const ULID_2 = "01HF7YAT00VH4A4YNNPNVWE5K9";
const refusedField = (op) => {
  try {
    validate(op);
    return null;
  } catch (e) {
    return e.field;
  }
};

test("the schema: identifiers required, exactly one, anonymous_id only on events; keys and types per action", () => {
  const ev = { type: "person", action: "event", identifiers: { id: "1" }, name: "n" };
  assert.equal(refusedField(ev), null);
  assert.equal(refusedField({ ...ev, identifiers: { anonymous_id: "a" } }), null);
  assert.equal(refusedField({ ...ev, action: "screen", identifiers: { anonymous_id: "a" } }), null);
  // The shapes forwarded before: a top-level anonymous_id and no identifiers.
  assert.equal(refusedField({ type: "person", action: "page", anonymous_id: "a", name: "/" }), "anonymous_id");
  assert.equal(refusedField({ type: "person", action: "page", name: "/" }), "identifiers");
  assert.equal(refusedField({ type: "person", action: "identify", identifiers: { id: "1" }, anonymous_id: "a" }), "anonymous_id");
  assert.equal(refusedField({ type: "person", action: "identify", identifiers: { anonymous_id: "a" } }), "identifiers");
  assert.equal(refusedField({ ...ev, identifiers: { id: "1", email: "a@b.co" } }), "identifiers");
  assert.equal(refusedField({ ...ev, identifiers: { id: 1 } }), "identifiers");
  assert.equal(refusedField({ ...ev, name: undefined }), "name");
  assert.equal(refusedField({ ...ev, id: "order-1001" }), "id");
  assert.equal(refusedField({ ...ev, id: ULID_1 }), null);
  assert.equal(refusedField({ ...ev, timestamp: 1.5 }), "timestamp");
  assert.equal(refusedField({ ...ev, action: "rename" }), "action");
  assert.equal(refusedField({ type: "person", action: "merge", primary: { id: "1" }, secondary: { email: "a@b.co" } }), null);
  assert.equal(refusedField({ type: "person", action: "merge", identifiers: { id: "1" }, primary: { id: "1" }, secondary: { id: "2" } }), "identifiers");
  const dev = { type: "person", action: "add_device", identifiers: { id: "1" }, device: { token: "t", platform: "ios" } };
  assert.equal(refusedField(dev), null);
  assert.equal(refusedField({ ...dev, device: { token: "t", platform: "web" } }), "device");
  assert.equal(refusedField({ ...dev, action: "delete_device" }), "device", "delete_device takes the token only");
  const rels = { type: "person", action: "add_relationships", identifiers: { id: "1" }, cio_relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] };
  assert.equal(refusedField(rels), null);
  assert.equal(refusedField({ ...rels, cio_relationships: [{ identifiers: { object_type_id: 1, object_id: "acme" } }] }), "cio_relationships");
});

test("the workspace: identifiers change only through cio_id; an unknown cio_id is dropped; event ids are deduplicated", () => {
  const w = new Workspace();
  w.apply({ type: "person", action: "identify", identifiers: { id: "u1" }, attributes: { email: "a@b.co" } });
  const p = w.find("id", "u1");
  assert.equal(p.email, "a@b.co", "set initially");
  w.apply({ type: "person", action: "identify", identifiers: { id: "u1" }, attributes: { email: "new@b.co" } });
  assert.equal(p.email, "a@b.co", "not changed by id without the setting");
  w.apply({ type: "person", action: "identify", identifiers: { cio_id: p.cio_id }, attributes: { id: "u2" } });
  assert.equal(p.id, "u2", "changed by cio_id");
  w.apply({ type: "person", action: "identify", identifiers: { cio_id: "nobody" }, attributes: { id: "x" } });
  assert.equal(w.log.at(-1).outcome, "dropped: unknown cio_id");
  w.apply({ type: "person", action: "identify", identifiers: { id: "u3" } });
  w.apply({ type: "person", action: "event", identifiers: { id: "u2" }, name: "order", id: ULID_1 });
  w.apply({ type: "person", action: "event", identifiers: { id: "u3" }, name: "order", id: ULID_1 });
  assert.equal(w.find("id", "u3").events.length, 0, "the same id is one event in the whole workspace");
  w.apply({ type: "person", action: "event", identifiers: { id: "u3" }, name: "order", id: ULID_2 });
  assert.equal(w.find("id", "u3").events.length, 1);
  const byId = new Workspace({ emailUpdatesById: true });
  byId.apply({ type: "person", action: "identify", identifiers: { id: "u1" }, attributes: { email: "a@b.co" } });
  byId.apply({ type: "person", action: "identify", identifiers: { id: "u1" }, attributes: { email: "new@b.co" } });
  assert.equal(byId.find("id", "u1").email, "new@b.co");
});

test("the workspace: anonymous events join by the anonymous_id attribute, before the identify or up to five minutes after", () => {
  const w = new Workspace();
  const page = (name) => ({ type: "person", action: "page", identifiers: { anonymous_id: "a1" }, name });
  w.apply(page("/before"));
  w.advance(29 * 86400);
  w.apply({ type: "person", action: "identify", identifiers: { id: "u" }, attributes: { anonymous_id: "a1" } });
  const p = w.find("id", "u");
  assert.deepEqual(p.events.map((e) => e.name), ["/before"], "kept 29 days, then joined");
  w.advance(4 * 60);
  w.apply(page("/within"));
  w.advance(2 * 60);
  w.apply(page("/late"));
  assert.deepEqual(p.events.map((e) => e.name), ["/before", "/within"]);
  w.apply({ type: "person", action: "identify", identifiers: { id: "u" }, attributes: { anonymous_id: "a1" } });
  assert.deepEqual(p.events.map((e) => e.name), ["/before", "/within", "/late"], "a new identify joins the late one");
  w.apply(page("/old"));
  w.advance(31 * 86400);
  w.apply({ type: "person", action: "identify", identifiers: { id: "v" }, attributes: { anonymous_id: "a1" } });
  assert.deepEqual(w.find("id", "v").events, [], "gone after 30 days");
});

test("the endpoint: Basic auth, 207 with batch_index, 32 KB per operation, 500 KB per batch", async () => {
  const ws = await startWorkspace({ siteId: "s", apiKey: "k" });
  try {
    const post = (body, auth = "Basic " + Buffer.from("s:k").toString("base64")) =>
      fetch(`${ws.url}/api/v2/batch`, { method: "POST", headers: { authorization: auth, "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
    assert.equal((await post({ batch: [] }, "Basic eDp5")).status, 401);
    const good = { type: "person", action: "identify", identifiers: { id: "1" } };
    let res = await post({ batch: [good, { type: "person", action: "event", anonymous_id: "a", name: "n" }, { ...good, attributes: { big: "x".repeat(33 * 1024) } }] });
    assert.equal(res.status, 207);
    const { errors } = await res.json();
    assert.deepEqual(errors.map((e) => e.batch_index), [1, 2]);
    for (const e of errors) assert.deepEqual(Object.keys(e).sort(), ["batch_index", "field", "message", "reason"]);
    assert.ok(ws.workspace.find("id", "1"), "the valid one applied");
    res = await post({ batch: [good] });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    res = await post({ batch: Array.from({ length: 20 }, () => ({ ...good, attributes: { k: "x".repeat(30 * 1024) } })) });
    assert.equal(res.status, 400);
  } finally {
    await ws.close();
  }
});
