// CIO_DESTINATION=pipelines: everything the edge accepts is forwarded through
// the outbox to the Pipelines API. The workspace is a stand-in written from
// Customer.io's published OpenAPI file of the Pipelines API (each rule below
// cites where in that file it comes from), on 127.0.0.1.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { withEdge } from "./support/edge.mjs";
import { adminGet, api, basic, ADMIN_TOKEN } from "./support/api.mjs";
import { Browser, person, eventually, uid } from "./support/people.mjs";

const API_KEY = "pipelines-api-key";
const WRITE_KEY = "destWriteKey";

/// The stand-in workspace. Rules, from customer-io-pipelines-api-openapi.json:
const KB = 1024;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const str = (v) => typeof v === "string";
const obj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
function callErrors(call, where) {
  const errors = [];
  const need = (ok, rule) => ok || errors.push(`${where}: ${rule}`);
  // paths./batch description: "32KB per call in the request".
  need(JSON.stringify(call).length <= 32 * KB, "over 32KB per call (paths./batch)");
  // components.schemas.common_fields: messageId a string; timestamp a date-time.
  if ("messageId" in call) need(str(call.messageId), "messageId must be a string (common_fields.messageId)");
  if ("timestamp" in call) need(str(call.timestamp) && ISO.test(call.timestamp), "timestamp must be date-time (common_fields.timestamp)");
  const who = str(call.userId) || str(call.anonymousId);
  switch (call.type) {
    case "identify":
      // schemas.identify: userId required (Known User); paths./identify:
      // "you can pass an empty userId or anonymousId, and identify people by
      // their email trait"; traits an object.
      need(who || str(call.traits?.email), "identify needs userId, anonymousId or traits.email (schemas.identify, paths./identify)");
      if ("traits" in call) need(obj(call.traits), "traits must be an object (schemas.identify)");
      break;
    case "track":
      // schemas.track: event and type required, with userId (Known User) or
      // anonymousId (Anonymous User); properties an object.
      need(str(call.event), "track needs event (schemas.track)");
      need(who, "track needs userId or anonymousId (schemas.track)");
      if ("properties" in call) need(obj(call.properties), "properties must be an object (schemas.track)");
      // schemas.delete_person / relationship_deleted: the semantic events.
      if (call.event === "User Deleted") need(str(call.userId), "User Deleted needs userId (schemas.delete_person)");
      if (call.event === "Relationship Deleted") {
        need(str(call.userId) && str(call.properties?.objectId), "Relationship Deleted needs userId and properties.objectId (schemas.relationship_deleted)");
        if ("objectTypeId" in (call.properties ?? {})) need(Number.isInteger(call.properties.objectTypeId), "objectTypeId is an integer (schemas.relationship_deleted)");
      }
      break;
    case "page":
    case "screen":
      // schemas.page / schemas.screen: userId or anonymousId; name a string.
      need(who, `${call.type} needs userId or anonymousId (schemas.${call.type})`);
      if ("name" in call) need(str(call.name), "name must be a string (schemas.page)");
      if ("properties" in call) need(obj(call.properties), "properties must be an object (schemas.page)");
      break;
    case "group":
      // schemas.group: groupId a string; traits.object_type_id a stringified
      // integer (schemas.objectTypeId).
      need(str(call.groupId), "group needs groupId (schemas.group, schemas.groupId)");
      need(who, "group needs userId or anonymousId (schemas.group)");
      if (call.traits?.object_type_id !== undefined) need(str(call.traits.object_type_id) && /^\d+$/.test(call.traits.object_type_id), "object_type_id is a stringified integer (schemas.objectTypeId)");
      break;
    default:
      need(false, `type ${call.type} is not a batch call (paths./batch: identify, group, track, page, screen)`);
  }
  return errors;
}

function startStandIn() {
  const received = []; // accepted calls, in order, with the path they came on
  const refused = [];
  const requests = [];
  const failed = []; // bodies answered 503
  let failNext = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const answer = (status, body) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const bad = (errors) => {
        refused.push(...errors);
        // components.responses.400: {"meta": {"errors": [...]}}
        answer(400, { meta: { errors } });
      };
      requests.push({ url: req.url, strict: req.headers["x-strict-mode"], bytes: raw.length });
      // components.securitySchemes.Basic-Auth: the API key as user, a blank password.
      if (req.headers.authorization !== `Basic ${Buffer.from(`${API_KEY}:`).toString("base64")}`) return answer(401, {});
      if (failNext > 0) {
        failNext -= 1;
        failed.push(raw.toString());
        return answer(503, {});
      }
      let body;
      try {
        body = JSON.parse(raw.toString());
      } catch {
        return bad(["body is not JSON (requestBody application/json)"]);
      }
      // servers: https://cdp.customer.io/v1; paths: /batch, /alias, ...
      if (req.method === "POST" && req.url === "/v1/batch") {
        // paths./batch: "limited to 500KB total per request".
        if (raw.length > 500 * KB) return bad(["over 500KB per request (paths./batch)"]);
        if (!Array.isArray(body.batch)) return bad(["batch must be an array (schemas.batch)"]);
        const errors = body.batch.flatMap((call, i) => callErrors(call, `batch[${i}]`));
        if (errors.length) return bad(errors);
        for (const call of body.batch) received.push({ path: "batch", call });
        // components.responses.200: an empty object.
        return answer(200, {});
      }
      if (req.method === "POST" && req.url === "/v1/alias") {
        // schemas.alias: previousId and userId required.
        if (!str(body.previousId) || !str(body.userId)) return bad(["alias needs previousId and userId (schemas.alias)"]);
        received.push({ path: "alias", call: body });
        return answer(200, {});
      }
      answer(404, {});
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        received,
        refused,
        requests,
        failed,
        failNext: (n) => (failNext = n),
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
      }),
    ),
  );
}

let standIn;
const { edge, another } = withEdge(async () => {
  standIn = await startStandIn();
  return {
    secrets: { ADMIN_TOKEN, CIO_CDP_API_KEY: API_KEY },
    vars: { CIO_DESTINATION: "pipelines", CIO_CDP_URL: standIn.url, CIO_CDP_WRITE_KEY: WRITE_KEY },
    queues: true,
    close: () => standIn.close(),
  };
});

const forwarding = async () => (await adminGet(edge, "forwarding")).body;
const callsFor = (pred) => standIn.received.filter(({ call }) => pred(call));

test("a journey arrives at the Pipelines stand-in: nothing refused, nothing over 32 KB, anonymous history joined, stable messageIds", async () => {
  // The first delivery attempt meets a 503: the retry must carry the same messageIds.
  standIn.failNext(1);
  const b = new Browser(edge);
  await b.visit("/");
  const anon = b.anon;
  assert.equal((await b.page("/pricing", { ref: "ad" })).status, 200);
  assert.equal((await b.track("viewed", { sku: "a1" })).status, 200);
  // A Data Pipelines SDK call from the same browser.
  const cdp = await b.post("cdp/v1/t", { writeKey: WRITE_KEY, anonymousId: anon, event: "Compared Plans", properties: { n: 2 }, messageId: "cmp-1" });
  assert.equal(cdp.status, 200, cdp.text);

  const id = uid("dest");
  const r = await b.identify({
    id, email: `${id}@example.com`, plan: "pro",
    cio_relationships: { action: "add_relationships", relationships: [{ identifiers: { object_type_id: "2", object_id: "acme" }, relationship_attributes: { role: "admin" } }] },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal((await b.track("bought", { total: 42 })).status, 200);

  await eventually(async () => callsFor((c) => c.userId === id && c.event === "bought").length > 0, "the journey delivered", 20_000);
  await eventually(async () => (await forwarding()).pending === 0, "nothing pending", 10_000);

  // The anonymous history, by anonymousId, and the identify that joins it.
  const anonymous = callsFor((c) => c.anonymousId === anon && c.type !== "identify");
  assert.deepEqual(anonymous.map(({ call }) => [call.type, call.name ?? call.event]).sort(), [
    ["page", "/pricing"], ["track", "Compared Plans"], ["track", "viewed"],
  ]);
  // The join, sent again after anonymous events that were delivered late
  // (the 503 above): at least one, and one after the last anonymous call.
  const joined = callsFor((c) => c.type === "identify" && c.userId === id && c.anonymousId === anon);
  assert.ok(joined.length >= 1);
  const lastAnonymous = Math.max(...anonymous.map((e) => standIn.received.indexOf(e)));
  assert.ok(standIn.received.indexOf(joined[joined.length - 1]) > lastAnonymous, "a join arrives after the anonymous history");
  const identify = callsFor((c) => c.type === "identify" && c.userId === id && c.traits?.plan === "pro");
  assert.equal(identify.length, 1);
  assert.equal(identify[0].call.traits.email, `${id}@example.com`);
  const group = callsFor((c) => c.type === "group" && c.userId === id);
  assert.deepEqual(group.map(({ call }) => [call.groupId, call.traits]), [["acme", { object_type_id: "2", relationshipAttributes: { role: "admin" } }]]);
  const bought = callsFor((c) => c.event === "bought")[0].call;
  assert.deepEqual(bought.properties, { total: 42 });
  assert.match(bought.timestamp, ISO);

  // Nothing refused there or here, every call within 32 KB, strict mode on.
  assert.deepEqual(standIn.refused, []);
  const status = await forwarding();
  assert.equal(status.on, true);
  assert.equal(status.failed, 0, JSON.stringify(status));
  assert.deepEqual(status.dead_letters ?? [], []);
  assert.ok(standIn.requests.every((q) => q.strict === "1"));
  for (const { call } of standIn.received) assert.ok(JSON.stringify(call).length <= 32 * 1024);

  // The 503 made the first batch go again: each messageId arrived with the
  // same call both times it was sent, and every event has one messageId.
  const byId = new Map();
  for (const { call } of standIn.received) {
    assert.equal(typeof call.messageId, "string");
    const seen = byId.get(call.messageId);
    if (seen) assert.deepEqual(seen, call, "one messageId, one call");
    byId.set(call.messageId, call);
  }
  assert.equal(standIn.failed.length, 1);
  const retried = JSON.parse(standIn.failed[0]).batch;
  assert.ok(retried.length > 0);
  for (const call of retried) assert.deepEqual(byId.get(call.messageId), call, "sent again with the same messageId");
});

test("a write that would be over 32 KB there is refused before it is stored; a delete is the semantic User Deleted", async () => {
  const b = new Browser(edge);
  await b.visit("/");
  const id = uid("big");
  const attributes = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`a${i}`, "z".repeat(900)]));
  const r = await b.identify({ id, ...attributes });
  assert.equal(r.status, 413, r.text);
  assert.equal(r.json.errors[0].reason, "too_large");
  assert.equal((await person(edge, id)).status, 404);

  const small = uid("gone");
  assert.equal((await b.identify({ id: small })).status, 200);
  await eventually(async () => callsFor((c) => c.type === "identify" && c.userId === small).length > 0, "the identify delivered", 20_000);
  const secrets = { SITE_ID: "s", API_KEY: "k" };
  const w = await another({
    secrets: { ...secrets, ADMIN_TOKEN, CIO_CDP_API_KEY: API_KEY },
    vars: { CIO_DESTINATION: "pipelines", CIO_CDP_URL: standIn.url },
    queues: true,
  });
  const auth = basic(secrets.SITE_ID, secrets.API_KEY);
  const other = uid("del");
  assert.equal((await api(w, "PUT", `v1/customers/${other}`, { plan: "x" }, { auth })).status, 200);
  assert.equal((await api(w, "DELETE", `v1/customers/${other}`, undefined, { auth })).status, 200);
  await eventually(async () => callsFor((c) => c.event === "User Deleted" && c.userId === other).length === 1, "User Deleted delivered", 20_000);
  assert.deepEqual(standIn.refused, []);
});
