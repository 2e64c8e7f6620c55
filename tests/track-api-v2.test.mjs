// Track API: raw HTTP against Track API v2: entity and batch.
// docs/API.md sections 4 to 7; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { uid } from "./support/people.mjs";
import {
  api, person, profile, events, assertV2Error, email, basic, SITE_ID, SECRETS,
} from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });

// ---------------------------------------------------------------------------
// Raw HTTP, v2

test("v2 entity: every action, read back; errors in the v2 shape", async () => {
  const id = uid("v2");
  const op = (action, extra = {}) => ({ type: "person", identifiers: { id }, action, ...extra });
  const entity = async (body) => {
    const res = await api(edge, "POST", "v2/entity", body);
    assert.equal(res.status, 200, `${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(res.body)}`);
    assert.deepEqual(res.body, {});
  };

  await entity(op("identify", { attributes: { plan: "a", created_at: 1400000000, tags: ["t"] } }));
  let p = await profile(edge, id);
  assert.equal(p.id, id);
  assert.equal(p.created_at, 1400000000);
  assert.deepEqual(p.attributes, { plan: "a", tags: ["t"] });
  // Give it an email (v1) so it can be addressed by email below.
  assert.equal((await api(edge, "PUT", `v1/customers/${id}`, { email: `${id}@example.com`, tags: [] })).status, 200);
  p = await profile(edge, id);
  assert.equal(p.email, `${id}@example.com`);

  await entity(op("event", { name: "bought", attributes: { sku: 1 }, timestamp: 1650000000, id: "v2-ev" }));
  await entity(op("event", { name: "bought", attributes: { sku: 2 }, timestamp: 1650000000, id: "v2-ev" }));
  await entity(op("page", { name: "/home", attributes: { ref: "x" } }));
  const evs = await events(edge, id);
  assert.deepEqual(evs.map((e) => [e.type, e.name]).sort(), [["event", "bought"], ["page", "/home"]]);
  const bought = evs.find((e) => e.name === "bought");
  assert.deepEqual(bought.data, { sku: 1 });
  assert.equal(bought.timestamp, 1650000000);
  assert.equal(bought.id, "v2-ev");
  assert.deepEqual(evs.find((e) => e.name === "/home").data, { ref: "x" });

  const rel = (object_id, relationship_attributes) => ({
    identifiers: { object_type_id: "1", object_id },
    ...(relationship_attributes ? { relationship_attributes } : {}),
  });
  await entity(op("add_relationships", { cio_relationships: [rel("acme", { seat: 3 }), rel("globex")] }));
  p = await profile(edge, id);
  assert.deepEqual(
    p.relationships.map((r) => r.object_id).sort(),
    ["acme", "globex"],
  );
  assert.deepEqual(p.relationships.find((r) => r.object_id === "acme").attributes, { seat: 3 });
  await entity(op("delete_relationships", { cio_relationships: [rel("acme")] }));
  assert.deepEqual((await profile(edge, id)).relationships.map((r) => r.object_id), ["globex"]);

  // Identifiers by email and by cio_id address the same person.
  await entity({ type: "person", identifiers: { email: `${id}@example.com` }, action: "identify", attributes: { by_email: 1 } });
  await entity({ type: "person", identifiers: { cio_id: p.cio_id }, action: "identify", attributes: { by_cio: 1 } });
  assert.deepEqual((await profile(edge, id)).attributes, { plan: "a", tags: [], by_email: 1, by_cio: 1 });

  // Merge as an entity operation.
  const other = uid("v2other");
  await entity({ type: "person", identifiers: { id: other }, action: "identify", attributes: { from_other: true, plan: "b" } });
  await entity({ type: "person", identifiers: { id: other }, action: "event", name: "other_event" });
  await entity({ type: "person", action: "merge", primary: { id }, secondary: { id: other } });
  assert.deepEqual((await profile(edge, id)).attributes, { plan: "a", tags: [], by_email: 1, by_cio: 1, from_other: true });
  assert.ok((await events(edge, id)).some((e) => e.name === "other_event"));
  assert.equal((await person(edge, other)).status, 404);

  // Delete.
  const cioId = (await profile(edge, id)).cio_id;
  await entity(op("delete"));
  assert.equal((await person(edge, id)).status, 404);
  assert.equal((await person(edge, `cio_${cioId}`)).status, 404);

  // Errors: {"errors":[{reason, field?, message}]}.
  for (const [body, field] of [
    [{ type: "person", identifiers: { id }, action: "teleport" }, "action"],
    [{ type: "person", identifiers: { id, email: "two@example.com" }, action: "identify" }, undefined],
    [{ type: "person", identifiers: {}, action: "identify" }, undefined],
    [{ type: "person", identifiers: { id }, action: "event" }, undefined],
    [{ type: "person", action: "merge", primary: { id, email: "x@example.com" }, secondary: { id: other } }, undefined],
  ]) {
    const res = await api(edge, "POST", "v2/entity", body);
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(res.body)}`);
    assert.ok(Array.isArray(res.body.errors) && res.body.errors.length === 1, JSON.stringify(res.body));
    assertV2Error(res.body.errors[0]);
    if (field) assert.equal(res.body.errors[0].field, field);
  }
  assert.equal((await person(edge, id)).status, 404, "no rejected operation created anything");
  const bad = await api(edge, "POST", "v2/entity", "{");
  assert.equal(bad.status, 400);
  assertV2Error(bad.body.errors[0]);
  const unauth = await api(edge, "POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify" }, { auth: basic(SITE_ID, "x") });
  assert.equal(unauth.status, 401);
  assertV2Error(unauth.body.errors[0]);
  assert.equal((await person(edge, id)).status, 404);
  const huge = await api(edge, "POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify", attributes: { pad: "p".repeat(256 * 1024) } });
  assert.equal(huge.status, 413);
  assertV2Error(huge.body.errors[0]);
});

test("v2 identify: an email in attributes is the person's email, as a v1 body's email is", async () => {
  const id = uid("v2mail");
  const mail = email("v2mail");
  const res = await api(edge, "POST", "v2/entity", { type: "person", identifiers: { id }, action: "identify", attributes: { email: mail, plan: "x" } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {});
  const p = await profile(edge, id);
  assert.deepEqual(p.attributes, { plan: "x" });
  assert.equal(p.email, mail, "the email was stored");
  assert.equal((await profile(edge, mail)).cio_id, p.cio_id, "the person is found by its email");

  // And it is held to rule 5: another person's email is a 409, nothing applied.
  const other = uid("v2mail-other");
  await api(edge, "PUT", `v1/customers/${other}`, { keep: 1 });
  const before = await profile(edge, other);
  const conflict = await api(edge, "POST", "v2/entity", { type: "person", identifiers: { id: other }, action: "identify", attributes: { email: mail, keep: 2 } });
  assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
  assertV2Error(conflict.body.errors[0]);
  assert.deepEqual(await profile(edge, other), before);
});

test("v2 batch: all good is 200; one bad operation among good ones is a 207 naming it, the good ones applied", async () => {
  const a = uid("ba");
  const b = uid("bb");
  const doomed = uid("bdoomed");
  await api(edge, "PUT", `v1/customers/${doomed}`, { d: 1 });
  const good = await api(edge, "POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: a }, action: "identify", attributes: { n: 1 } },
      { type: "person", identifiers: { id: b }, action: "identify", attributes: { m: 1 } },
    ],
  });
  assert.equal(good.status, 200);
  assert.deepEqual(good.body, {});
  assert.deepEqual((await profile(edge, a)).attributes, { n: 1 });
  assert.deepEqual((await profile(edge, b)).attributes, { m: 1 });

  const res = await api(edge, "POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: a }, action: "identify", attributes: { n: 2, added: "yes" } },
      { type: "person", identifiers: { id: a }, action: "event", name: "in_batch", attributes: { q: 1 } },
      { type: "person", identifiers: { id: a }, action: "fly" },
      { type: "person", identifiers: { id: a }, action: "page", name: "/batched" },
      { type: "person", identifiers: { id: a }, action: "add_relationships", cio_relationships: [{ identifiers: { object_type_id: "3", object_id: "team" } }] },
      { type: "person", identifiers: { id: doomed }, action: "delete" },
      { type: "person", action: "merge", primary: { id: a }, secondary: { id: b } },
    ],
  });
  assert.equal(res.status, 207, JSON.stringify(res.body));
  assert.equal(res.body.errors.length, 1, JSON.stringify(res.body));
  assert.equal(res.body.errors[0].batch_index, 2);
  assert.equal(res.body.errors[0].field, "action");
  assertV2Error(res.body.errors[0]);

  const pa = await profile(edge, a);
  assert.deepEqual(pa.attributes, { n: 2, added: "yes", m: 1 });
  assert.deepEqual(pa.relationships, [{ object_type_id: "3", object_id: "team" }]);
  const evs = await events(edge, a);
  assert.deepEqual(evs.map((e) => [e.type, e.name]).sort(), [["event", "in_batch"], ["page", "/batched"]]);
  assert.deepEqual(evs.find((e) => e.name === "in_batch").data, { q: 1 });
  assert.equal((await person(edge, doomed)).status, 404);
  assert.equal((await person(edge, b)).status, 404);

  // Several bad ones: each named by its index, in order.
  const c = uid("bc");
  const several = await api(edge, "POST", "v2/batch", {
    batch: [
      { type: "person", identifiers: { id: c, email: "both@example.com" }, action: "identify" },
      { type: "person", identifiers: { id: c }, action: "identify", attributes: { ok: true } },
      { type: "person", identifiers: { id: c }, action: "event" },
      { type: "person", identifiers: { id: uid("absent") }, action: "identify", _update: true },
      "not an object",
    ],
  });
  assert.equal(several.status, 207, JSON.stringify(several.body));
  const indexes = several.body.errors.map((e) => e.batch_index);
  assert.ok(indexes.includes(0) && indexes.includes(2) && indexes.includes(4), JSON.stringify(several.body));
  assert.ok(!indexes.includes(1));
  assert.deepEqual(indexes, [...indexes].sort((x, y) => x - y));
  for (const e of several.body.errors) assertV2Error(e);
  assert.deepEqual((await profile(edge, c)).attributes, { ok: true });

  const notBatch = await api(edge, "POST", "v2/batch", { batch: "nope" });
  assert.equal(notBatch.status, 400);
  assertV2Error(notBatch.body.errors[0]);
});

test("what Customer.io's clients send: identifiers.anonymous_id, the anonymous_id attribute, screen, devices, suppression", async () => {
  const anon = uid("anon");
  const v2 = (batch) => api(edge, "POST", "v2/batch", { batch });
  // Anonymous events addressed as Customer.io's own v2 destination does.
  let res = await v2([
    { type: "person", action: "page", identifiers: { anonymous_id: anon }, name: "/pricing" },
    { type: "person", action: "screen", identifiers: { anonymous_id: anon }, name: "Home" },
  ]);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  // An identify's anonymous_id attribute merges that visitor.
  const id = uid("who");
  res = await v2([{ type: "person", action: "identify", identifiers: { id }, attributes: { anonymous_id: anon, plan: "p" } }]);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const p = await profile(edge, id);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.equal(p.attributes.anonymous_id, undefined, "a protocol field, not an attribute");
  assert.deepEqual((await events(edge, id)).map((e) => [e.type, e.name]).sort(), [["page", "/pricing"], ["screen", "Home"]]);
  // v1: a screen view, devices, suppression: answered 200 (stored: the screen view).
  assert.equal((await api(edge, "POST", `v1/customers/${id}/events`, { name: "Settings", type: "screen" })).status, 200);
  assert.ok((await events(edge, id)).some((e) => e.type === "screen" && e.name === "Settings"));
  for (const [method, path, body] of [
    ["PUT", `v1/customers/${id}/devices`, { device: { id: "tok", platform: "ios", last_used: 1700000000 } }],
    ["DELETE", `v1/customers/${id}/devices/tok`],
    ["POST", `v1/customers/${id}/suppress`],
    ["POST", `v1/customers/${id}/unsuppress`],
  ]) {
    const r = await api(edge, method, path, body);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.body)}`);
  }
  res = await v2([
    { type: "person", action: "add_device", identifiers: { id }, device: { token: "t2", platform: "android" } },
    { type: "person", action: "delete_device", identifiers: { id }, device: { token: "t2" } },
    { type: "person", action: "suppress", identifiers: { id } },
    { type: "person", action: "unsuppress", identifiers: { id } },
  ]);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal((await profile(edge, id)).attributes.plan, "p", "nothing of that is stored");
  // Forwarding off: a device for an id naming nobody creates nobody.
  const nobody = uid("nobody");
  assert.equal((await api(edge, "PUT", `v1/customers/${nobody}/devices`, { device: { id: "t9", platform: "ios" } })).status, 200);
  assert.equal((await person(edge, nobody)).status, 404);
  // A device without a platform, or a bad one: 400 naming device, nothing done.
  let bad = await api(edge, "PUT", `v1/customers/${id}/devices`, { device: { id: "tok" } });
  assert.equal(bad.status, 400);
  assert.match(bad.body.meta.errors[0], /device/);
  bad = await v2([{ type: "person", action: "add_device", identifiers: { id }, device: { token: "t", platform: "web" } }]);
  assert.equal(bad.status, 207);
  assert.equal(bad.body.errors[0].field, "device");
  assertV2Error(bad.body.errors[0]);
  // An anonymous id names no person: not for an identify.
  bad = await v2([{ type: "person", action: "identify", identifiers: { anonymous_id: anon } }]);
  assert.equal(bad.status, 207);
  assert.equal(bad.body.errors[0].field, "identifiers");
  assert.equal((await api(edge, "GET", `v1/customers/${id}/devices`)).status, 405);
});
