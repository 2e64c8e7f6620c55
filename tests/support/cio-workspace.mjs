// A Customer.io workspace stand-in on 127.0.0.1: the Track API v2 batch
// endpoint as Customer.io publishes it, and the workspace behaviour its
// documentation describes. Every rule below cites where it comes from:
//   [OAS]   Customer.io's Track API OpenAPI file (docs.customer.io, "Download
//           OpenAPI specification"), by path or components/schemas name;
//   [DOC x] a page of Customer.io's documentation (URL given once, below);
//   [SEG]   Customer.io's Track API v2 destination in segmentio/action-destinations
//           (packages/destination-actions/src/destinations/customerio/utils.ts),
//           for the one shape the OpenAPI file does not list: anonymous events.
// Nothing here is derived from cio-edge's own code. Unknown keys are refused
// (the schemas list every property an operation has), which makes the
// stand-in stricter than the service, never more lenient.
//
// Documentation pages:
//   [DOC anon]   https://docs.customer.io/journeys/anonymous-events
//   [DOC ident]  https://docs.customer.io/journeys/identifying-people
//   [DOC js]     https://customer.io/docs/sdk/javascript/identify
import http from "node:http";

const KB = 1024;
const MINUTE = 60;
const DAY = 86400;

// [OAS] /api/v2/batch description: "Your batch request must be smaller than
// 500kb. Each of the requests within the batch must also be 32kb or smaller."
const MAX_BATCH_BYTES = 500 * KB;
const MAX_OP_BYTES = 32 * KB;
// [DOC anon] "We store these events for up to 30 days." and "we'll associate
// any events with the matching anonymous_id that we received up to, and
// within five minutes after, your identify call."
const ANON_RETENTION = 30 * DAY;
const JOIN_WINDOW = 5 * MINUTE;

// [OAS] components/schemas: the properties of each person operation
// (person_common: type, identifiers; then each action's own).
const ACTION_KEYS = {
  identify: ["timestamp", "attributes", "cio_relationships"], // identify_person
  delete: [], // person_delete
  event: ["id", "name", "timestamp", "attributes"], // person_event
  page: ["id", "name", "timestamp", "attributes"], // person_page
  screen: ["id", "name", "timestamp", "attributes"], // person_screen
  add_relationships: ["cio_relationships"], // person_add_relationships
  delete_relationships: ["cio_relationships"], // person_delete_relationships
  add_device: ["device"], // person_add_device
  delete_device: ["device"], // person_delete_device
  suppress: [], // person_suppress
  unsuppress: [], // person_unsuppress
};
// [OAS] person_event, person_page, person_screen: `name` is required;
// person_add_relationships / person_delete_relationships: `cio_relationships`;
// person_add_device / person_delete_device: `device`.
const ACTION_REQUIRED = {
  event: ["name"],
  page: ["name"],
  screen: ["name"],
  add_relationships: ["cio_relationships"],
  delete_relationships: ["cio_relationships"],
  add_device: ["device"],
  delete_device: ["device"],
};
// [OAS] person_common.identifiers: "one of id, email, phone, or cio_id. You
// cannot pass multiple identifiers." [SEG] resolveIdentifiers: an event of a
// person not yet identified is sent with `identifiers: {anonymous_id}`.
const PERSON_IDENTIFIERS = ["id", "email", "phone", "cio_id"];
const ANONYMOUS_ACTIONS = new Set(["event", "page", "screen"]);
// [OAS] dedupe_id: "A ULID"; ULIDs are 26 Crockford base32 characters.
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

class Refusal extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}
const refuse = (field, message) => {
  throw new Refusal(field, message);
};
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function checkKeys(op, allowed) {
  for (const key of Object.keys(op)) if (!allowed.includes(key)) refuse(key, `unknown property ${key} for action ${op.action}`);
}

function checkIdentifiers(value, field, { anonymous = false } = {}) {
  if (!isObject(value)) refuse(field, `${field} is required and must be an object`);
  const keys = Object.keys(value);
  const allowed = anonymous ? [...PERSON_IDENTIFIERS, "anonymous_id"] : PERSON_IDENTIFIERS;
  if (keys.length !== 1 || !allowed.includes(keys[0])) refuse(field, `${field} must hold exactly one of ${allowed.join(", ")}`);
  // [OAS] not_nullable_customer_id, not_nullable_email_address, cio_id,
  // anonymous_id: strings.
  if (typeof value[keys[0]] !== "string" || value[keys[0]] === "") refuse(field, `${field}.${keys[0]} must be a non-empty string`);
  return [keys[0], value[keys[0]]];
}

function checkRelationships(rels) {
  // [OAS] object_relationships: an array of {identifiers: {object_type_id,
  // object_id} | {cio_object_id}, relationship_attributes?: object};
  // object_type_id is a string-formatted integer.
  if (!Array.isArray(rels)) refuse("cio_relationships", "must be an array");
  for (const rel of rels) {
    if (!isObject(rel)) refuse("cio_relationships", "each relationship must be an object");
    for (const k of Object.keys(rel)) if (!["identifiers", "relationship_attributes"].includes(k)) refuse("cio_relationships", `unknown property ${k}`);
    const ids = rel.identifiers;
    const ok =
      isObject(ids) &&
      ((typeof ids.object_type_id === "string" && /^\d+$/.test(ids.object_type_id) && typeof ids.object_id === "string" && Object.keys(ids).length === 2) ||
        (typeof ids.cio_object_id === "string" && Object.keys(ids).length === 1));
    if (!ok) refuse("cio_relationships", "identifiers must be {object_type_id (integer as string), object_id} or {cio_object_id}");
    if (rel.relationship_attributes !== undefined && !isObject(rel.relationship_attributes)) refuse("cio_relationships", "relationship_attributes must be an object");
  }
}

function checkDevice(device, adding) {
  if (!isObject(device)) refuse("device", "must be an object");
  // [OAS] person_add_device.device: token (required string) and
  // device_object_common (platform required, "ios" | "android"; last_used
  // integer; attributes with string values); person_delete_device.device:
  // token only.
  const allowed = adding ? ["token", "platform", "last_used", "attributes"] : ["token"];
  for (const k of Object.keys(device)) if (!allowed.includes(k)) refuse("device", `unknown property ${k}`);
  if (typeof device.token !== "string" || !device.token) refuse("device", "token is required");
  if (!adding) return;
  if (!["ios", "android"].includes(device.platform)) refuse("device", "platform must be ios or android");
  if (device.last_used !== undefined && !Number.isInteger(device.last_used)) refuse("device", "last_used must be an integer");
  if (device.attributes !== undefined) {
    if (!isObject(device.attributes)) refuse("device", "attributes must be an object");
    for (const [k, v] of Object.entries(device.attributes)) if (typeof v !== "string") refuse("device", `attribute ${k} must be a string`);
  }
}

/// Validates one batch item as the schema says; answers nothing or throws.
export function validate(op) {
  if (!isObject(op)) refuse("", "each operation must be an object");
  // [OAS] person_common.type: enum ["person"] (objects and deliveries are
  // not sent by the edge and are refused here).
  if (op.type !== "person") refuse("type", "type must be person");
  // [OAS] person_merge: type, action, primary, secondary, all required; no identifiers.
  if (op.action === "merge") {
    checkKeys(op, ["type", "action", "primary", "secondary"]);
    for (const side of ["primary", "secondary"]) {
      const [key] = checkIdentifiers(op[side], side);
      if (key === "phone") refuse(side, "must be one of id, email, cio_id");
    }
    return;
  }
  // [OAS] person_operations: the discriminator `action`.
  const own = ACTION_KEYS[op.action];
  if (!own) refuse("action", `unknown action ${JSON.stringify(op.action)}`);
  checkKeys(op, ["type", "action", "identifiers", ...own]);
  for (const k of ACTION_REQUIRED[op.action] ?? []) if (op[k] === undefined) refuse(k, `${k} is required`);
  checkIdentifiers(op.identifiers, "identifiers", { anonymous: ANONYMOUS_ACTIONS.has(op.action) });
  // [OAS] the types of the common properties: timestamp integer, attributes object, name string, id ULID.
  if (op.timestamp !== undefined && !Number.isInteger(op.timestamp)) refuse("timestamp", "must be an integer");
  if (op.attributes !== undefined && !isObject(op.attributes)) refuse("attributes", "must be an object");
  if (op.name !== undefined && (typeof op.name !== "string" || !op.name)) refuse("name", "must be a non-empty string");
  if (op.id !== undefined && (typeof op.id !== "string" || !ULID.test(op.id))) refuse("id", "must be a ULID");
  if (op.cio_relationships !== undefined) checkRelationships(op.cio_relationships);
  if (op.action === "add_device") checkDevice(op.device, true);
  if (op.action === "delete_device") checkDevice(op.device, false);
  if (op.action === "identify" && op.attributes?.anonymous_id !== undefined && typeof op.attributes.anonymous_id !== "string") {
    // [OAS] anonymous_id: a string.
    refuse("attributes.anonymous_id", "must be a string");
  }
}

/// The workspace: people, anonymous events, and what it did with each
/// operation. `emailUpdatesById`: the workspace setting "Allow updates to
/// email using ID" ([OAS] /api/v1/customers/{identifier} PUT description).
export class Workspace {
  constructor({ emailUpdatesById = false } = {}) {
    this.emailUpdatesById = emailUpdatesById;
    this.offset = 0; // seconds the test moved the clock
    this.people = [];
    this.anonymous = []; // {anonymous_id, event, received}
    this.eventIds = new Set();
    this.suppressed = new Set();
    this.log = []; // every accepted operation with its outcome
    this.refused = []; // {op, error}
    this.nextCio = 1;
  }

  now() {
    return Math.floor(Date.now() / 1000) + this.offset;
  }
  /// Moves the workspace clock forward (the test's way to let time pass).
  advance(seconds) {
    this.offset += seconds;
  }

  find(key, value) {
    // [DOC ident] "id values are case sensitive; email addresses are not."
    if (key === "email") return this.people.find((p) => p.email?.toLowerCase() === value.toLowerCase());
    return this.people.find((p) => p[key] === value);
  }
  create(key, value) {
    const p = { cio_id: `c${this.nextCio++}`, id: null, email: null, attributes: {}, events: [], devices: {}, relationships: [], joins: {}, created_at_writes: [] };
    p[key] = value;
    this.people.push(p);
    return p;
  }
  byAnyId(ids) {
    return this.people.find((p) => (ids.id && p.id === ids.id) || (ids.email && p.email?.toLowerCase() === ids.email.toLowerCase()));
  }

  apply(op) {
    const note = (outcome) => this.log.push({ op, outcome, at: this.now() });
    if (op.action === "merge") return note(this.merge(op));
    const [key, value] = Object.entries(op.identifiers)[0];
    // [OAS] /api/v1/customers/{identifier}/suppress: "Any future API calls or
    // operations referencing the specified ID are ignored."
    if (op.action === "unsuppress") {
      this.suppressed.delete(`${key}:${value}`);
      return note("unsuppressed");
    }
    if (this.suppressed.has(`${key}:${value}`)) return note("ignored: suppressed");
    if (key === "anonymous_id") return note(this.anonymousEvent(value, op));
    let person = this.find(key, value);
    if (!person) {
      // [OAS] /api/v1/customers/{identifier} PUT: "If the cio_id does not
      // exist or belongs to a person who was deleted, we'll drop the request."
      if (key === "cio_id") return note("dropped: unknown cio_id");
      // [OAS] identify_person: "Add or update a person"; `_update: true`
      // prevents creation. Other actions for nobody change no one here.
      if (op.action !== "identify") return note(`orphaned: no person with ${key} ${value}`);
      if (op.attributes?._update === true) return note("ignored: _update and no such person");
      person = this.create(key, value);
    }
    switch (op.action) {
      case "identify":
        return note(this.identify(person, key, op));
      case "event":
      case "page":
      case "screen":
        return note(this.addEvent(person, op, this.now()));
      case "delete":
        this.people = this.people.filter((p) => p !== person);
        return note("deleted");
      case "add_relationships":
      case "delete_relationships":
        for (const rel of op.cio_relationships) {
          const same = (r) => r.identifiers.object_type_id === rel.identifiers.object_type_id && r.identifiers.object_id === rel.identifiers.object_id;
          person.relationships = person.relationships.filter((r) => !same(r));
          if (op.action === "add_relationships") person.relationships.push(rel);
        }
        return note(op.action);
      case "add_device":
        person.devices[op.device.token] = op.device;
        return note("device added");
      case "delete_device":
        delete person.devices[op.device.token];
        return note("device deleted");
      case "suppress":
        // [OAS] suppress: "Delete a customer profile and prevent the person's
        // identifier(s) from being re-added"; both id and email when set.
        for (const k of ["id", "email"]) if (person[k]) this.suppressed.add(`${k}:${person[k]}`);
        this.people = this.people.filter((p) => p !== person);
        return note("suppressed");
    }
  }

  identify(person, addressedBy, op) {
    const changes = [];
    for (const [k, v] of Object.entries(op.attributes ?? {})) {
      if (k === "_update") continue;
      if (k === "id" || k === "email") {
        if (person[k] === v || (k === "email" && person.email?.toLowerCase() === String(v).toLowerCase())) continue;
        // [DOC ident] "To update identifiers (after they are initially set)
        // using the API or our libraries, you must reference a person by
        // their cio_id." [OAS] /api/v1/customers/{identifier} PUT: "unless
        // when updating an email with the Allow updates to email using ID
        // setting enabled".
        const initially = person[k] === null;
        const byCio = addressedBy === "cio_id";
        const emailById = k === "email" && addressedBy === "id" && this.emailUpdatesById;
        if (!initially && !byCio && !emailById) {
          changes.push(`ignored ${k} change`);
          continue;
        }
        person[k] = v;
        changes.push(`${k} set`);
        continue;
      }
      if (k === "created_at") person.created_at_writes.push(v);
      if (k === "anonymous_id") this.join(person, v);
      person.attributes[k] = v;
    }
    if (op.cio_relationships) for (const rel of op.cio_relationships) person.relationships.push(rel);
    return `identified${changes.length ? ` (${changes.join(", ")})` : ""}`;
  }

  /// [DOC anon] the anonymous_id attribute associates the events with that
  /// anonymous_id received before the identify (kept 30 days), and those
  /// received up to five minutes after it.
  join(person, anonymousId) {
    const at = this.now();
    person.joins[anonymousId] = at;
    const keep = [];
    for (const a of this.anonymous) {
      if (a.anonymous_id === anonymousId && at - a.received <= ANON_RETENTION) person.events.push({ ...a.event, joined_from: anonymousId });
      else keep.push(a);
    }
    this.anonymous = keep;
  }

  anonymousEvent(anonymousId, op) {
    const at = this.now();
    if (op.id && this.eventIds.has(op.id)) return "ignored: duplicate event id";
    if (op.id) this.eventIds.add(op.id);
    const event = { action: op.action, name: op.name, attributes: op.attributes ?? {}, timestamp: op.timestamp, id: op.id, received: at };
    const owner = this.people.find((p) => p.joins[anonymousId] !== undefined && at - p.joins[anonymousId] <= JOIN_WINDOW);
    if (owner) {
      owner.events.push({ ...event, joined_from: anonymousId });
      return "anonymous event joined (within five minutes of the identify)";
    }
    this.anonymous.push({ anonymous_id: anonymousId, event, received: at });
    return "anonymous event kept";
  }

  addEvent(person, op, at) {
    // [OAS] dedupe_id: "If an event repeats a value we've already received,
    // we ignore the duplicate."
    if (op.id && this.eventIds.has(op.id)) return "ignored: duplicate event id";
    if (op.id) this.eventIds.add(op.id);
    person.events.push({ action: op.action, name: op.name, attributes: op.attributes ?? {}, timestamp: op.timestamp, id: op.id, received: at });
    return "event";
  }

  merge(op) {
    const [pk, pv] = Object.entries(op.primary)[0];
    const [sk, sv] = Object.entries(op.secondary)[0];
    const primary = this.find(pk, pv);
    const secondary = this.find(sk, sv);
    // [OAS] /api/v1/merge_customers: "If the primary profile doesn't exist,
    // your request won't do anything."
    if (!primary) return "ignored: primary does not exist";
    if (!secondary || secondary === primary) return "ignored: no secondary";
    // [OAS] /api/v1/merge_customers: "Attributes that are not set, or are
    // empty, on the primary" and "The most recent 30-days of event history";
    // "the secondary is deleted".
    for (const [k, v] of Object.entries(secondary.attributes)) if (primary.attributes[k] === undefined || primary.attributes[k] === "") primary.attributes[k] = v;
    if (!primary.email && secondary.email) primary.email = secondary.email;
    const since = this.now() - 30 * DAY;
    primary.events.push(...secondary.events.filter((e) => e.received >= since));
    this.people = this.people.filter((p) => p !== secondary);
    return "merged";
  }
}

/// Serves a `Workspace` at `<url>/api/v2/batch` with Basic `siteId:apiKey`.
/// `hold(op)`: while it answers true for an operation of a batch, the
/// batch is answered 429 with `Retry-After: <state.retryAfter>` (1 unless a
/// test sets it; [OAS] components/responses/429: "over the limit"), as a
/// throttled workspace does.
export async function startWorkspace({ siteId, apiKey, emailUpdatesById = false } = {}) {
  const ws = new Workspace({ emailUpdatesById });
  const state = { hold: null, held: 0, batches: 0, retryAfter: 1 };
  const expected = `Basic ${Buffer.from(`${siteId}:${apiKey}`).toString("base64")}`;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const send = (status, body, headers = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(body === undefined ? "" : JSON.stringify(body));
      };
      // [OAS] the Tracking-API-Key security scheme: Basic Site ID : API key; 401 otherwise.
      if (req.headers.authorization !== expected) return send(401, { meta: { error: "Unauthorized request" } });
      if (req.method !== "POST" || req.url !== "/api/v2/batch") return send(404, { errors: [{ reason: "not_found", message: `${req.method} ${req.url}` }] });
      const raw = Buffer.concat(chunks);
      // [OAS] /api/v2/batch 400: "The entire request was malformed or invalid."
      if (raw.length >= MAX_BATCH_BYTES) return send(400, { errors: [{ reason: "too_large", message: "batch over 500kb" }] });
      let body;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        return send(400, { errors: [{ reason: "invalid", message: "not JSON" }] });
      }
      if (!isObject(body) || !Array.isArray(body.batch)) return send(400, { errors: [{ reason: "invalid", field: "batch", message: "batch must be an array" }] });
      if (state.hold && body.batch.some((op) => state.hold(op))) {
        state.held++;
        return send(429, undefined, { "retry-after": String(state.retryAfter) });
      }
      state.batches++;
      const errors = [];
      body.batch.forEach((op, batch_index) => {
        try {
          if (Buffer.byteLength(JSON.stringify(op)) > MAX_OP_BYTES) refuse("", "operation over 32kb");
          validate(op);
        } catch (e) {
          if (!(e instanceof Refusal)) throw e;
          // [OAS] /api/v2/batch 207: errors[{batch_index, reason, field, message}];
          // "all other requests are accepted".
          const error = { batch_index, reason: "invalid", field: e.field, message: e.message };
          ws.refused.push({ op, error });
          return errors.push(error);
        }
        ws.apply(op);
      });
      if (errors.length) return send(207, { errors });
      // [OAS] components/responses/200: "an empty object response".
      send(200, {});
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    workspace: ws,
    state,
    close: () => new Promise((r) => server.close(r)),
  };
}
