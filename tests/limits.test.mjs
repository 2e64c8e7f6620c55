// Limits (API.md rule 9) and malformed input (section 7) at the browser
// endpoints: every limit on its own, at the boundary and one past it, with
// the field named and nothing of the rejected call applied.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import crypto from "node:crypto";
import http from "node:http";
import {
  Browser, person, activity, visitorActivity, uid, cookiesNamed, postChunked, ADMIN_TOKEN,
} from "./support/people.mjs";

const { edge, origin, another } = withEdge({ secrets: { ADMIN_TOKEN } });

const bytes = (s) => Buffer.byteLength(s, "utf8");
const attrs = (n, prefix = "a", value = (i) => i) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, value(i)]));

/// An identifier of exactly `n` UTF-8 bytes, unique, made of ASCII and
/// `filler` (a character of 1 or more bytes).
function idOfBytes(n, filler = "x") {
  const head = crypto.randomUUID().replaceAll("-", ""); // 32 bytes
  let s = head;
  while (bytes(s) + bytes(filler) <= n) s += filler;
  while (bytes(s) < n) s += "y";
  assert.equal(bytes(s), n);
  return s;
}

function assertError(res, status, reason, field, what) {
  assert.equal(res.status, status, `${what}: status (${res.text?.slice(0, 200)})`);
  assert.match(res.res.headers.get("content-type") ?? "", /application\/json/, `${what}: JSON`);
  assert.ok(Array.isArray(res.json?.errors) && res.json.errors.length >= 1, `${what}: an errors array`);
  const [error] = res.json.errors;
  assert.equal(error.reason, reason, `${what}: reason`);
  if (field instanceof RegExp) assert.match(error.field ?? "", field, `${what}: field`);
  else if (field !== undefined) assert.equal(error.field, field, `${what}: field`);
  assert.equal(typeof error.message, "string", `${what}: message`);
  assert.ok(error.message.length > 0);
}

/// A browser identified as a fresh person with a few attributes and events;
/// `state()` reads back everything the admin API shows of it.
async function subject(extra = {}) {
  const b = new Browser(edge);
  const id = uid("limits");
  await b.track("anon_seed", { s: 1 });
  assert.equal((await b.identify({ id, email: `${id}@example.com`, base: 1, ...extra })).status, 200);
  await b.track("seed", { s: 2 });
  const state = async () => ({ person: (await person(edge, id)).body, activity: await activity(edge, id), cookies: b.jar.header() });
  return { b, id, state };
}

// ---------------------------------------------------------------------------
// id

test("id: 150 bytes accepted, 151 refused (bytes, not characters); empty, blank, missing or wrong type refused", async () => {
  for (const filler of ["x", "é", "€", "😀"]) {
    const ok = idOfBytes(150, filler);
    const b = new Browser(edge);
    assert.equal((await b.identify({ id: ok })).status, 200, `150 bytes of ${filler}`);
    assert.equal(b.cioid, ok);
    assert.equal((await person(edge, ok)).body.id, ok);

    const over = idOfBytes(151, filler);
    const c = new Browser(edge);
    const res = await c.identify({ id: over });
    assertError(res, 400, "invalid", "id", `151 bytes of ${filler}`);
    assert.deepEqual(cookiesNamed(res, "_cioid"), []);
    const lookup = await person(edge, over);
    assert.ok([400, 404].includes(lookup.status), `nobody is found by a 151-byte id (${lookup.status})`);
  }
  const { b, state } = await subject();
  const before = await state();
  for (const body of [{}, { id: "" }, { id: "   " }, { id: null }, { id: true }, { id: [] }, { email: "only@example.com" }, { id: "x".repeat(151) }]) {
    assertError(await b.identify(body), 400, "invalid", "id", JSON.stringify(body));
  }
  assert.deepEqual(await state(), before, "nothing changed");
});

// ---------------------------------------------------------------------------
// attribute names and values

test("attribute name: 150 bytes accepted, 151 refused with field attributes.<name>, profile unchanged", async () => {
  const { b, id, state } = await subject();
  const okName = "n".repeat(150);
  const okMulti = "ü".repeat(75); // 150 bytes
  assert.equal((await b.identify({ id, [okName]: 1, [okMulti]: 2 })).status, 200);
  const p = (await person(edge, id)).body;
  assert.equal(p.attributes[okName], 1);
  assert.equal(p.attributes[okMulti], 2);

  const before = await state();
  for (const name of ["n".repeat(151), "ü".repeat(76), "€".repeat(51)]) {
    const res = await b.identify({ id, [name]: 1, also_new: "not applied", base: 99 });
    assertError(res, 400, "invalid", /^attributes\./, `name of ${bytes(name)} bytes`);
    assert.ok(cookiesNamed(res, "_cioid").length === 0, "no _cioid re-set");
  }
  assert.deepEqual(await state(), before, "nothing of the rejected calls applied");
});

test("attribute value: 1000 bytes of serialized JSON accepted, 1001 refused naming the attribute", async () => {
  const { b, id, state } = await subject();
  const okString = "v".repeat(998); // "…" = 1000 bytes
  const okObject = { s: "w".repeat(992) }; // {"s":"…"} = 1000 bytes
  const okArray = ["z".repeat(996)]; // ["…"] = 1000 bytes
  assert.equal(bytes(JSON.stringify(okString)), 1000);
  assert.equal(bytes(JSON.stringify(okObject)), 1000);
  assert.equal(bytes(JSON.stringify(okArray)), 1000);
  assert.equal((await b.identify({ id, okString, okObject, okArray })).status, 200);
  const p = (await person(edge, id)).body;
  assert.equal(p.attributes.okString, okString);
  assert.deepEqual(p.attributes.okObject, okObject);
  assert.deepEqual(p.attributes.okArray, okArray);

  const before = await state();
  const cases = [
    ["big_string", "v".repeat(999)],
    ["big_object", { s: "w".repeat(993) }],
    ["big_array", ["z".repeat(997)]],
    ["big_nested", { a: { b: [{ c: "q".repeat(2000) }] } }],
    ["big_unicode", "é".repeat(500)],
    ["okString", "v".repeat(5000)], // an existing attribute is not overwritten either
  ];
  for (const [name, value] of cases) {
    const res = await b.identify({ id, [name]: value, small_new: 1, base: 42 });
    assertError(res, 400, "invalid", name, name);
  }
  assert.deepEqual(await state(), before, "nothing of the rejected calls applied");
});

// ---------------------------------------------------------------------------
// 300 attributes

test("300 attributes: exactly 300 accepted for a new person, 301 refused with field attributes and nobody created", async () => {
  const idOk = uid("cap-ok");
  const b = new Browser(edge);
  assert.equal((await b.identify({ id: idOk, ...attrs(300) })).status, 200);
  assert.equal(Object.keys((await person(edge, idOk)).body.attributes).length, 300);

  const idOver = uid("cap-over");
  const c = new Browser(edge);
  await c.track("anon_before_cap");
  const res = await c.identify({ id: idOver, ...attrs(301) });
  assertError(res, 400, "invalid", "attributes", "301 attributes");
  assert.deepEqual(cookiesNamed(res, "_cioid"), []);
  assert.equal((await person(edge, idOver)).status, 404);
  const v = await visitorActivity(edge, c.anon);
  assert.equal(v.merged_into, undefined, "the visitor was not merged");
  assert.equal(v.events.length, 1);
});

test("300 attributes reached across two identifies: the 301st refused, profile unchanged, overwrites still allowed", async () => {
  const { b, id, state } = await subject(); // 1 attribute: base
  assert.equal((await b.identify({ id, ...attrs(299, "k") })).status, 200);
  const full = await state();
  assert.equal(Object.keys(full.person.attributes).length, 300);

  assertError(await b.identify({ id, one_more: true }), 400, "invalid", "attributes", "301st attribute");
  assertError(await b.identify({ id, base: 2, k0: "changed", one_more: true }), 400, "invalid", "attributes", "301st with overwrites");
  assert.deepEqual(await state(), full, "nothing applied");

  const res = await b.identify({ id, base: 2, k298: "changed" });
  assert.equal(res.status, 200, "overwriting keeps the count at 300");
  const after = (await person(edge, id)).body;
  assert.equal(Object.keys(after.attributes).length, 300);
  assert.equal(after.attributes.base, 2);
  assert.equal(after.attributes.k298, "changed");

  // Another person that already has 200: 101 new ones in one call are too many.
  const other = await subject(attrs(199, "p"));
  const before = await other.state();
  assert.equal(Object.keys(before.person.attributes).length, 200);
  assertError(await other.b.identify({ id: other.id, ...attrs(101, "q") }), 400, "invalid", "attributes", "200 + 101");
  assert.deepEqual(await other.state(), before);
  assert.equal((await other.b.identify({ id: other.id, ...attrs(100, "q") })).status, 200, "200 + 100 fits");
  assert.equal(Object.keys((await person(edge, other.id)).body.attributes).length, 300);
});

// ---------------------------------------------------------------------------
// events

test("event name: 1 to 100 bytes; empty, missing, non-string and 101 bytes refused with field name", async () => {
  const { b, id, state } = await subject();
  const hundred = "e".repeat(100);
  const hundredMulti = "ß".repeat(50); // 100 bytes
  assert.equal((await b.track("x")).status, 200);
  assert.equal((await b.track(hundred)).status, 200);
  assert.equal((await b.track(hundredMulti)).status, 200);
  const names = (await activity(edge, id)).map((e) => e.name);
  assert.ok(names.includes("x") && names.includes(hundred) && names.includes(hundredMulti));

  const before = await state();
  const bad = [{ name: "" }, {}, { name: null }, { name: 42 }, { name: ["a"] }, { name: "e".repeat(101) }, { name: "ß".repeat(51) }, { name: "€".repeat(34) }];
  for (const body of bad) assertError(await b.post("track", { ...body, data: { a: 1 } }), 400, "invalid", "name", `track ${JSON.stringify(body).slice(0, 40)}`);
  assertError(await b.post("page", { name: "", data: { a: 1 } }), 400, "invalid", "name", "page with an empty name");
  assert.deepEqual(await state(), before, "no event recorded");
});

test("event data: 100,000 bytes accepted, 100,001 refused with field data; data must be an object", async () => {
  const { b, id, state } = await subject();
  const data = (n) => ({ blob: "d".repeat(n) }); // {"blob":"…"} = 11 + n bytes
  assert.equal(bytes(JSON.stringify(data(99_989))), 100_000);
  assert.equal((await b.track("big_ok", data(99_989))).status, 200);
  assert.equal((await b.page("/big-ok", data(99_989))).status, 200);
  const events = await activity(edge, id);
  assert.equal(events.find((e) => e.name === "big_ok").data.blob.length, 99_989);
  assert.equal(events.find((e) => e.name === "/big-ok").data.blob.length, 99_989);

  const before = await state();
  assertError(await b.track("big_over", data(99_990)), 400, "invalid", "data", "track data 100,001 bytes");
  assertError(await b.page("/big-over", data(99_990)), 400, "invalid", "data", "page data 100,001 bytes");
  assertError(await b.track("big_unicode", { blob: "é".repeat(50_000) }), 400, "invalid", "data", "track data 100,011 bytes of é");
  for (const value of ["a string", 42, true, [1, 2], ["x"]]) {
    assertError(await b.post("track", { name: "bad_data", data: value }), 400, "invalid", "data", `track data ${JSON.stringify(value)}`);
    assertError(await b.post("page", { name: "/bad-data", data: value }), 400, "invalid", "data", `page data ${JSON.stringify(value)}`);
  }
  assertError(await b.post("track", { name: "bad_ts", timestamp: "1600000000" }), 400, "invalid", "timestamp", "string timestamp");
  assert.deepEqual(await state(), before, "no event recorded");
});

// ---------------------------------------------------------------------------
// request body

test("request body: 256 KiB accepted, one byte more is 413, announced or streamed", async () => {
  const LIMIT = 256 * 1024;
  // A valid identify of an exact size: 265 attributes of at most 1000 bytes each.
  const build = (id, total) => {
    const body = { id };
    const keys = Array.from({ length: 265 }, (_, i) => `a${String(i).padStart(3, "0")}`);
    for (const k of keys) body[k] = "v".repeat(970);
    let missing = total - bytes(JSON.stringify(body));
    for (const k of keys) {
      const add = Math.min(missing, 998 - body[k].length);
      body[k] += "v".repeat(add);
      missing -= add;
    }
    const text = JSON.stringify(body);
    assert.equal(bytes(text), total);
    for (const k of keys) assert.ok(bytes(JSON.stringify(body[k])) <= 1000);
    return text;
  };
  const idOk = uid("body-ok");
  const b = new Browser(edge);
  assert.equal((await b.post("identify", build(idOk, LIMIT))).status, 200, "exactly 256 KiB");
  assert.equal(Object.keys((await person(edge, idOk)).body.attributes).length, 265);

  const idOver = uid("body-over");
  const c = new Browser(edge);
  const over = await c.post("identify", build(idOver, LIMIT + 1));
  assertError(over, 413, "too_large", undefined, "256 KiB + 1");
  assert.deepEqual(cookiesNamed(over, "_cioid"), []);
  assert.equal((await person(edge, idOver)).status, 404);

  const { b: s, state } = await subject();
  const before = await state();
  for (const endpoint of ["identify", "track", "page"]) {
    const big = JSON.stringify({ id: uid(), name: "n", pad: "p".repeat(LIMIT) });
    assertError(await s.post(endpoint, big), 413, "too_large", undefined, `${endpoint} with a 256 KiB pad`);
    assertError(await s.post(endpoint, "x".repeat(300_000)), 413, "too_large", undefined, `${endpoint} with 300,000 bytes of junk`);
  }
  // Streamed without Content-Length.
  const idStreamed = uid("streamed");
  const chunk = "p".repeat(64 * 1024);
  const streamed = await postChunked(edge, "/_cio/identify", [`{"id":"${idStreamed}","pad":"`, chunk, chunk, chunk, chunk, `"}`]);
  assert.equal(streamed.status, 413, `streamed: ${streamed.text.slice(0, 200)}`);
  assert.equal(streamed.json.errors[0].reason, "too_large");
  assert.equal((await person(edge, idStreamed)).status, 404);
  const small = await postChunked(edge, "/_cio/identify", [`{"id":"${idStreamed}",`, `"streamed":true}`]);
  assert.equal(small.status, 200, "a small streamed body is fine");
  assert.equal((await person(edge, idStreamed)).body.attributes.streamed, true);
  assert.deepEqual(await state(), before);
});

/// A POST of `size` bytes that, like a browser, still reads the answer when
/// the server stops reading the upload early. Answers the status, or the
/// socket error when no answer arrived.
function postLarge(worker, path, size) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => { if (!done) { done = true; resolve(v); } };
    const req = http.request(worker.url + path, { method: "POST", headers: { "content-type": "application/json", "content-length": size } }, (res) => {
      const parts = [];
      res.on("data", (c) => parts.push(c));
      res.on("end", () => finish({ status: res.statusCode, type: res.headers["content-type"], body: Buffer.concat(parts).toString() }));
      res.on("error", () => finish({ status: res.statusCode, type: res.headers["content-type"], body: Buffer.concat(parts).toString() }));
    });
    req.on("socket", (sock) => sock.on("error", () => {}));
    req.on("error", (e) => setTimeout(() => finish({ error: e.code ?? e.message }), 200));
    req.end(Buffer.alloc(size, 0x78));
  });
}

test("request body of 4 MiB, announced or streamed: every client gets the 413, and the worker keeps serving", async () => {
  const FOUR_MIB = 4 * 1024 * 1024;
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push(await postLarge(edge, "/_cio/track", FOUR_MIB));
  for (let i = 0; i < 5; i++) answers.push(await postLarge(edge, "/_cio/identify", FOUR_MIB));
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${edge.url}/_cio/page`, { method: "POST", body: Buffer.alloc(FOUR_MIB, 0x78) }).catch((e) => ({ error: e.cause?.code ?? e.message }));
    answers.push(res.error ? res : { status: res.status, type: res.headers.get("content-type"), body: await res.text() });
  }
  for (let i = 0; i < 5; i++) {
    const res = await postChunked(edge, "/_cio/identify", Array(64).fill("x".repeat(64 * 1024))).catch((e) => ({ error: e.code ?? e.message }));
    answers.push(res.error ? res : { status: res.status, type: res.headers["content-type"], body: res.text });
  }
  console.log(`4 MiB bodies: ${JSON.stringify(answers.reduce((t, a) => ({ ...t, [a.status ?? a.error]: (t[a.status ?? a.error] ?? 0) + 1 }), {}))}`);
  assert.deepEqual(answers.map((a) => a.status ?? a.error), Array(20).fill(413), "a 413 for every client, never a reset");
  for (const a of answers) {
    assert.match(a.type, /application\/json/);
    assert.equal(JSON.parse(a.body).errors[0].reason, "too_large");
  }
  assert.equal((await new Browser(edge).identify({ id: uid() })).status, 200, "still serving");
});

// ---------------------------------------------------------------------------
// relationships

test("cio_relationships errors name the field; nothing of the call applied", async () => {
  const { b, id, state } = await subject();
  const ident = (o) => ({ identifiers: o });
  const cases = [
    ["a string", "cio_relationships", "add"],
    [[], "cio_relationships", "an array"],
    [{ relationships: [ident({ object_type_id: "1", object_id: "a" })] }, "cio_relationships.action", "no action"],
    [{ action: "befriend", relationships: [ident({ object_type_id: "1", object_id: "a" })] }, "cio_relationships.action", "bad action"],
    [{ action: 7, relationships: [] }, "cio_relationships.action", "numeric action"],
    [{ action: "add_relationships" }, "cio_relationships.relationships", "no relationships"],
    [{ action: "add_relationships", relationships: "acme" }, "cio_relationships.relationships", "relationships a string"],
    [{ action: "add_relationships", relationships: [ident({ object_type_id: "1" })] }, "cio_relationships.relationships[0].identifiers.object_id", "no object_id"],
    [{ action: "add_relationships", relationships: [ident({ object_type_id: "1", object_id: "" })] }, "cio_relationships.relationships[0].identifiers.object_id", "empty object_id"],
    [{ action: "add_relationships", relationships: [ident({ object_type_id: "1", object_id: "o".repeat(151) })] }, "cio_relationships.relationships[0].identifiers.object_id", "object_id too long"],
    [{ action: "add_relationships", relationships: [ident({ object_id: "a" })] }, "cio_relationships.relationships[0].identifiers.object_type_id", "no object_type_id"],
    [{ action: "add_relationships", relationships: [ident({ object_type_id: "1", object_id: "ok" }), ident({ object_type_id: "1", object_id: true })] }, "cio_relationships.relationships[1].identifiers.object_id", "second entry bad"],
    [{ action: "add_relationships", relationships: [{}] }, /^cio_relationships\.relationships\[0\]/, "no identifiers"],
    [{ action: "add_relationships", relationships: [{ identifiers: { object_type_id: "1", object_id: "a" }, relationship_attributes: "x" }] }, /^cio_relationships\.relationships\[0\]/, "relationship_attributes not an object"],
  ];
  const before = await state();
  for (const [rel, field, what] of cases) {
    assertError(await b.identify({ id, cio_relationships: rel, new_attr: "not applied", base: 5 }), 400, "invalid", field, what);
  }
  assert.deepEqual(await state(), before, "nothing applied");
});

// ---------------------------------------------------------------------------
// checked before anything is written

test("a refused identify from an anonymous visitor creates nobody, merges nothing and sets no _cioid", async () => {
  for (const [label, extra, field] of [
    ["long name", { ["n".repeat(151)]: 1 }, /^attributes\./],
    ["long value", { big: "v".repeat(1001) }, "big"],
    ["bad created_at", { created_at: "yesterday" }, "created_at"],
    ["bad relationships", { cio_relationships: { action: "nope", relationships: [] } }, "cio_relationships.action"],
  ]) {
    const b = new Browser(edge);
    await b.visit("/");
    await b.track("anon_before", { label });
    const id = uid("refused");
    const email = `${id}@example.com`;
    const res = await b.identify({ id, email, fine: 1, ...extra });
    assertError(res, 400, "invalid", field, label);
    assert.deepEqual(cookiesNamed(res, "_cioid"), [], `${label}: no _cioid`);
    assert.equal((await person(edge, id)).status, 404, `${label}: nobody by id`);
    assert.equal((await person(edge, email)).status, 404, `${label}: nobody by email`);
    const v = await visitorActivity(edge, b.anon);
    assert.equal(v.merged_into, undefined, `${label}: not merged`);
    assert.equal(v.events.length, 1);
    // The id and email are still free.
    const c = new Browser(edge);
    assert.equal((await c.identify({ id, email })).status, 200, `${label}: the id is still free`);
  }
});

// ---------------------------------------------------------------------------
// malformed bodies

test("malformed bodies to identify, track and page: 400 JSON, and the worker keeps serving", async () => {
  let junk;
  do junk = crypto.randomBytes(512);
  while ((() => { try { const v = JSON.parse(junk.toString()); return v && typeof v === "object" && !Array.isArray(v); } catch { return false; } })());
  const bodies = [
    ["{", "{"],
    ["null", "null"],
    ["[]", "[]"],
    ["42", "42"],
    ['"text"', '"text"'],
    ["true", "true"],
    ["empty", ""],
    ["trailing garbage", '{"id":"x","name":"n"} trailing'],
    ["two objects", '{"id":"x","name":"n"}{"id":"y"}'],
    ["invalid UTF-8 in a string", Buffer.concat([Buffer.from('{"id":"x'), Buffer.from([0xff, 0xfe]), Buffer.from('","name":"n"}')])],
    ["random bytes", junk],
    ["NUL bytes", Buffer.alloc(64)],
  ];
  const fields = {
    identify: [['{"id":{"a":1}}', "id"], ['{"id":"x","created_at":"123"}', "created_at"], ['{"id":"x","created_at":{}}', "created_at"], ['{"id":[1]}', "id"]],
    track: [['{"id":{"a":1}}', "name"], ['{"id":"x","created_at":"123"}', "name"], ['{"name":"n","id":{"a":1}}', "id"], ['{"name":"n","timestamp":"123"}', "timestamp"]],
    page: [['{"id":{"a":1}}', "name"], ['{"id":"x","created_at":"123"}', "name"], ['{"name":{"a":1}}', "name"]],
  };
  const b = new Browser(edge);
  for (const endpoint of ["identify", "track", "page"]) {
    for (const [label, body] of bodies) {
      for (const contentType of ["application/json", "text/plain;charset=UTF-8"]) {
        const res = await b.post(endpoint, body, { "content-type": contentType });
        assertError(res, 400, "invalid", undefined, `${endpoint} ${label} (${contentType})`);
      }
    }
    for (const [body, field] of fields[endpoint]) {
      assertError(await b.post(endpoint, body), 400, "invalid", field, `${endpoint} ${body}`);
    }
    // Deep nesting must not bring the worker down: answered, never a 5xx.
    const deep = `{"id":"deep","name":"deep","data":{"x":${"[".repeat(20000)}${"]".repeat(20000)}}}`;
    const res = await b.post(endpoint, deep);
    assert.ok(res.status < 500, `${endpoint} deep nesting: ${res.status}`);
    assert.ok(res.json !== undefined, `${endpoint} deep nesting: a JSON answer`);
  }
  assert.equal((await person(edge, "x")).status, 404, "no person x was created by any of those");
  assert.equal((await person(edge, "deep")).status, 404);

  for (const endpoint of ["identify", "track", "page", "reset"]) {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const res = await edge.fetch(`/_cio/${endpoint}`, { method });
      assert.equal(res.status, 405, `${method} ${endpoint}`);
      assert.match(res.headers.get("content-type"), /application\/json/);
      assert.ok(Array.isArray((await res.json()).errors));
    }
  }
  const unknown = await edge.fetch("/_cio/nothing-here", { method: "POST", body: "{}" });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).errors[0].reason, "not_found");

  // The same browser, and a new one, are served normally afterwards.
  const id = uid("after-junk");
  assert.equal((await b.identify({ id, ok: true })).status, 200);
  assert.equal((await b.track("fine", { a: 1 })).status, 200);
  assert.equal((await b.page("/fine", { b: 2 })).status, 200);
  assert.deepEqual((await activity(edge, id)).map((e) => e.name).sort(), ["/fine", "fine"]);
  const page = await new Browser(edge).visit("/html");
  assert.equal(page.status, 200);
  assert.match(page.body.toString(), /hello/);
});
