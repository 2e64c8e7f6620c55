// Track API: Customer.io's own Node client (customerio-node) against the Track API.
// docs/API.md sections 4 to 7; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TrackClient } from "customerio-node";
import { withEdge } from "./support/edge.mjs";
import { uid } from "./support/people.mjs";
import {
  api, person, profile, activity, events, sortedNames, email, now, basic, SITE_ID, API_KEY, SECRETS,
} from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });
/// Customer.io's client, pointed at this file's edge once it runs.
let client;
const cio = new Proxy({}, {
  get(_, key) {
    client ??= new TrackClient(SITE_ID, API_KEY, { url: `${edge.url}/_cio/api/v1` });
    const value = client[key];
    return typeof value === "function" ? value.bind(client) : value;
  },
});

// ---------------------------------------------------------------------------
// The official client

test("customerio-node identify: create, overwrite/add/keep, by email, by cio_<id>, arrays, relationships", async () => {
  const id = uid("node");
  const mail = email("node");
  const t0 = now();
  assert.equal((await person(edge, id)).status, 404);

  assert.deepEqual(
    await cio.identify(id, { email: mail, created_at: 1339438758, plan: "basic", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] } }),
    {},
  );
  const created = await profile(edge, id);
  assert.equal(created.id, id);
  assert.equal(created.email, mail);
  assert.equal(created.created_at, 1339438758, "created_at stored as sent");
  assert.deepEqual(created.attributes, { plan: "basic", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] } });
  assert.deepEqual(created.relationships, []);
  assert.deepEqual(created.anonymous_ids, []);
  assert.equal(typeof created.cio_id, "string");
  assert.ok(created.cio_id.length > 0);
  assert.ok(created.updated_at >= t0 && created.updated_at <= now() + 1, `updated_at ${created.updated_at}`);

  // Overwrite one, add one, keep the rest.
  await cio.identify(id, { plan: "premium", added: true });
  const updated = await profile(edge, id);
  assert.equal(updated.cio_id, created.cio_id);
  assert.equal(updated.created_at, 1339438758);
  assert.deepEqual(updated.attributes, { plan: "premium", keep: 1, tags: ["a", "b"], nested: { list: [1, 2] }, added: true });

  // By email (compared case-insensitively) and by cio_<cio_id>: the same person.
  await cio.identify(mail.toUpperCase(), { via_email: true });
  await cio.identify(`cio_${created.cio_id}`, { via_cio: true });
  const same = await profile(edge, id);
  assert.equal(same.cio_id, created.cio_id);
  assert.equal(same.id, id);
  assert.equal(same.email, mail);
  assert.equal(same.attributes.via_email, true);
  assert.equal(same.attributes.via_cio, true);
  assert.equal((await profile(edge, mail)).cio_id, created.cio_id);
  assert.equal((await profile(edge, `cio_${created.cio_id}`)).cio_id, created.cio_id);

  // An email as the identifier creates a person with that email and no id,
  // created now.
  const lead = email("lead");
  await cio.identify(lead, { source: "ads" });
  const leadProfile = await profile(edge, lead);
  assert.ok(leadProfile.id === null || leadProfile.id === "", `a lead has no id, got ${JSON.stringify(leadProfile.id)}`);
  assert.equal(leadProfile.email, lead);
  assert.notEqual(leadProfile.cio_id, created.cio_id);
  assert.deepEqual(leadProfile.attributes, { source: "ads" });
  assert.ok(leadProfile.created_at >= t0 && leadProfile.created_at <= now() + 1, `default created_at ${leadProfile.created_at}`);

  // cio_relationships: add (idempotent on the pair, with attributes), delete.
  const rel = (object_id, relationship_attributes) => ({
    identifiers: { object_type_id: "1", object_id },
    ...(relationship_attributes ? { relationship_attributes } : {}),
  });
  await cio.identify(id, { cio_relationships: { action: "add_relationships", relationships: [rel("acme", { role: "admin" }), rel("globex")] } });
  await cio.identify(id, { cio_relationships: { action: "add_relationships", relationships: [rel("acme", { role: "admin" })] } });
  let withRels = await profile(edge, id);
  assert.ok(!("cio_relationships" in withRels.attributes));
  const byObject = Object.fromEntries(withRels.relationships.map((r) => [r.object_id, r]));
  assert.equal(withRels.relationships.length, 2, JSON.stringify(withRels.relationships));
  assert.equal(byObject.acme.object_type_id, "1");
  assert.deepEqual(byObject.acme.attributes, { role: "admin" });
  assert.equal(byObject.globex.object_type_id, "1");
  await cio.identify(id, { cio_relationships: { action: "delete_relationships", relationships: [rel("acme")] } });
  withRels = await profile(edge, id);
  assert.deepEqual(withRels.relationships.map((r) => r.object_id), ["globex"]);
});

test("customerio-node track, trackPageView, trackAnonymous merged by identify's anonymous_id", async () => {
  const id = uid("events");
  const t0 = now();
  await cio.identify(id, {});
  assert.deepEqual(await cio.track(id, { name: "purchase", data: { price: 23.45, items: ["x", "y"] }, timestamp: 1700000100 }), {});
  await cio.track(id, { name: "older", timestamp: 1700000000 });
  // The same event id twice: recorded once, the first one kept.
  await cio.track(id, { name: "deduped", id: "evt-1", data: { n: 1 }, timestamp: 1700000050 });
  await cio.track(id, { name: "deduped", id: "evt-1", data: { n: 2 }, timestamp: 1700000050 });
  assert.deepEqual(await cio.trackPageView(id, "/pricing"), {});

  const anon = `anon-${crypto.randomUUID()}`;
  assert.deepEqual(await cio.trackAnonymous(anon, { name: "browsed", data: { step: 1 }, timestamp: 1700000200 }), {});
  // Not on the person before the identify.
  assert.ok(!(await events(edge, id)).some((e) => e.name === "browsed"));
  assert.deepEqual(await cio.identify(id, { anonymous_id: anon }), {});
  await cio.trackAnonymous(anon, { name: "late_anonymous", data: { after: true } });

  const p = await profile(edge, id);
  assert.deepEqual(p.anonymous_ids, [anon]);
  assert.ok(!("anonymous_id" in p.attributes), "anonymous_id is not an attribute");
  assert.deepEqual(p.attributes, {});

  const evs = await events(edge, id);
  assert.deepEqual(sortedNames(evs), ["/pricing", "browsed", "deduped", "late_anonymous", "older", "purchase"]);
  const byName = Object.fromEntries(evs.map((e) => [e.name, e]));
  assert.equal(byName.purchase.type, "event");
  assert.deepEqual(byName.purchase.data, { price: 23.45, items: ["x", "y"] });
  assert.equal(byName.purchase.timestamp, 1700000100);
  assert.equal(byName.older.timestamp, 1700000000);
  assert.deepEqual(byName.deduped.data, { n: 1 });
  assert.equal(byName.deduped.id, "evt-1");
  assert.equal(byName["/pricing"].type, "page");
  assert.ok(byName["/pricing"].timestamp >= t0, "no timestamp: the time received");
  assert.equal(byName.browsed.anonymous_id, anon);
  assert.deepEqual(byName.browsed.data, { step: 1 });
  assert.equal(byName.browsed.timestamp, 1700000200);
  assert.equal(byName.late_anonymous.anonymous_id, anon, "an anonymous event after the identify lands on the person");
  assert.deepEqual(byName.late_anonymous.data, { after: true });
  for (const e of evs) assert.equal(typeof e.id, "string");
  // Newest first.
  for (let i = 1; i < evs.length; i++) {
    assert.ok(evs[i - 1].timestamp >= evs[i].timestamp, `newest first: ${evs.map((e) => `${e.name}@${e.timestamp}`).join(", ")}`);
  }
  assert.deepEqual(
    evs.filter((e) => e.timestamp < t0).map((e) => e.name),
    ["browsed", "purchase", "deduped", "older"],
  );
});

test("customerio-node destroy: person, events and relationships gone, identifiers freed", async () => {
  const gone = uid("gone");
  const mail = email("gone");
  const anon = `anon-${crypto.randomUUID()}`;
  await cio.trackAnonymous(anon, { name: "anon_before" });
  await cio.identify(gone, {
    email: mail,
    plan: "old",
    anonymous_id: anon,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] },
  });
  await cio.track(gone, { name: "x" });
  const old = await profile(edge, gone);
  assert.equal(old.relationships.length, 1);
  assert.equal((await events(edge, gone)).length, 2);

  assert.deepEqual(await cio.destroy(gone), {});
  for (const identifier of [gone, mail, `cio_${old.cio_id}`]) {
    assert.equal((await person(edge, identifier)).status, 404, `${identifier} is gone`);
  }
  assert.equal((await activity(edge, gone)).status, 404, "activity by id is gone");
  assert.equal((await activity(edge, mail)).status, 404, "activity by email is gone");
  // By cio_<id> the activity read answers 404 or an empty list; either way no event is left.
  const byCio = await activity(edge, `cio_${old.cio_id}`);
  assert.ok(byCio.status === 404 || (byCio.status === 200 && byCio.events.length === 0), JSON.stringify(byCio));

  // The id starts a new person with nothing of the old one.
  await cio.identify(gone, {});
  const reborn = await profile(edge, gone);
  assert.notEqual(reborn.cio_id, old.cio_id, "a new person");
  assert.deepEqual(reborn.attributes, {});
  assert.equal(reborn.email, null);
  assert.deepEqual(reborn.relationships, []);
  assert.deepEqual(reborn.anonymous_ids, []);
  assert.deepEqual(await events(edge, gone), []);
  assert.equal((await person(edge, `cio_${old.cio_id}`)).status, 404);

  // The email is free for someone else: no conflict.
  const other = uid("other");
  assert.deepEqual(await cio.identify(other, { email: mail }), {});
  assert.equal((await profile(edge, mail)).id, other);
});

test("customerio-node mergeCustomers: the primary takes what it lacks, events, anonymous ids, relationships; idempotent", async () => {
  const primary = uid("primary");
  const secondaryEmail = email("secondary");
  await cio.identify(primary, { plan: "primary-plan", only_primary: 1 });
  await cio.identify(secondaryEmail, {
    plan: "secondary-plan",
    only_secondary: 2,
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "acme" } }] },
  });
  const anon = `anon-${crypto.randomUUID()}`;
  await cio.trackAnonymous(anon, { name: "secondary_anon" });
  await cio.identify(secondaryEmail, { anonymous_id: anon });
  await cio.track(secondaryEmail, { name: "secondary_event" });
  await cio.track(primary, { name: "primary_event" });
  const before = await profile(edge, primary);
  const secondary = await profile(edge, secondaryEmail);

  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});
  const merged = await profile(edge, primary);
  assert.equal(merged.cio_id, before.cio_id);
  assert.equal(merged.id, primary);
  assert.deepEqual(merged.attributes, { plan: "primary-plan", only_primary: 1, only_secondary: 2 });
  assert.deepEqual(merged.relationships, [{ object_type_id: "1", object_id: "acme" }]);
  assert.deepEqual(merged.anonymous_ids, [anon]);
  const mergedEvents = await events(edge, primary);
  assert.deepEqual(sortedNames(mergedEvents), ["primary_event", "secondary_anon", "secondary_event"]);
  assert.equal(mergedEvents.find((e) => e.name === "secondary_anon").anonymous_id, anon);
  // The primary had no email: it takes the secondary's (identity rule 11).
  assert.equal(merged.email, secondaryEmail);
  assert.equal((await profile(edge, secondaryEmail)).cio_id, before.cio_id, "the email names the primary");
  assert.equal((await person(edge, `cio_${secondary.cio_id}`)).status, 404, "the secondary is deleted");

  // Repeating the call: 200, nothing changed.
  assert.deepEqual(await cio.mergeCustomers("id", primary, "email", secondaryEmail), {});
  assert.deepEqual(await profile(edge, primary), merged);
  assert.deepEqual(await events(edge, primary), mergedEvents);

  // The secondary's anonymous visitor now follows the primary.
  await cio.trackAnonymous(anon, { name: "after_merge" });
  assert.ok((await events(edge, primary)).some((e) => e.name === "after_merge"));

  // The email went with the merge: identifying by it reaches the primary.
  await cio.identify(secondaryEmail, {});
  const byEmail = await profile(edge, secondaryEmail);
  assert.equal(byEmail.cio_id, merged.cio_id);
  assert.notEqual(byEmail.cio_id, secondary.cio_id);

  // By cio_id on both sides.
  const a = uid("ma");
  const b = uid("mb");
  await cio.identify(a, { from_a: 1 });
  await cio.identify(b, { from_b: 1, shared: "b" });
  const [pa, pb] = [await profile(edge, a), await profile(edge, b)];
  assert.deepEqual(await cio.mergeCustomers("cio_id", pa.cio_id, "cio_id", pb.cio_id), {});
  assert.deepEqual((await profile(edge, a)).attributes, { from_a: 1, from_b: 1, shared: "b" });
  assert.equal((await person(edge, b)).status, 404);
  // Its id is free again.
  await cio.identify(b, {});
  assert.notEqual((await profile(edge, b)).cio_id, pb.cio_id);
});

test("customerio-node: wrong credentials are the client's error with statusCode 401", async () => {
  for (const [site, key] of [[SITE_ID, "not-the-key"], ["other-site", API_KEY]]) {
    const wrong = new TrackClient(site, key, { url: `${edge.url}/_cio/api/v1` });
    const id = uid("nokey");
    await assert.rejects(wrong.identify(id, { a: 1 }), (e) => {
      assert.equal(e.statusCode, 401);
      return true;
    });
    await assert.rejects(wrong.track(id, { name: "x" }), (e) => e.statusCode === 401);
    await assert.rejects(wrong.mergeCustomers("id", id, "id", uid()), (e) => e.statusCode === 401);
    assert.equal((await person(edge, id)).status, 404, "nothing written without the key");
  }
});

test("customerio-node v2: entity and batch", async () => {
  const id = uid("cv2");
  assert.deepEqual(await cio.entity({ type: "person", identifiers: { id }, action: "identify", attributes: { plan: "v2" } }), {});
  assert.deepEqual(
    await cio.batch([
      { type: "person", identifiers: { id }, action: "event", name: "batched", attributes: { k: "v" } },
      { type: "person", identifiers: { id }, action: "identify", attributes: { more: true } },
    ]),
    {},
  );
  assert.deepEqual((await profile(edge, id)).attributes, { plan: "v2", more: true });
  const [ev] = await events(edge, id);
  assert.equal(ev.name, "batched");
  assert.deepEqual(ev.data, { k: "v" });

  // A 207 is a 2xx: the client hands back the per-operation errors.
  const partial = await cio.batch([
    { type: "person", identifiers: { id }, action: "identify", attributes: { third: 3 } },
    { type: "person", identifiers: { id }, action: "no_such_action" },
  ]);
  assert.deepEqual(partial.errors.map((e) => e.batch_index), [1]);
  assert.equal((await profile(edge, id)).attributes.third, 3);
});
