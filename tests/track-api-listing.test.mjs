// Track API: concurrent API and browser identifies, the admin listing and export.
// docs/API.md sections 4 to 7; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { startWorker } from "./support/worker.mjs";
import { Browser, eventually, uid } from "./support/people.mjs";
import {
  api, adminGet, person, profile, listAll, ADMIN_TOKEN, SECRETS,
} from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });

// ---------------------------------------------------------------------------
// Concurrency and listing

test("100 simultaneous API PUTs and browser identifies for one new id make exactly one person", async () => {
  const id = uid("together");
  const calls = [];
  for (let i = 0; i < 50; i++) {
    calls.push(api(edge, "PUT", `v1/customers/${id}`, { [`api_${i}`]: i }).then((r) => ({ kind: "api", ...r })));
    calls.push(new Browser(edge).identify({ id, [`browser_${i}`]: i }).then((r) => ({ kind: "browser", status: r.status, body: r.json })));
  }
  const results = await Promise.all(calls);
  const counts = {};
  for (const r of results) counts[`${r.kind} ${r.status}`] = (counts[`${r.kind} ${r.status}`] ?? 0) + 1;
  console.log(`race for one new id: ${JSON.stringify(counts)}`);
  assert.deepEqual(counts, { "api 200": 50, "browser 200": 50 });
  for (const r of results) assert.deepEqual(r.body, r.kind === "api" ? {} : { ok: true });

  const p = await profile(edge, id);
  assert.equal(p.id, id);
  assert.equal(Object.keys(p.attributes).length, 100, "every call applied to the one person");
  assert.equal(p.anonymous_ids.length, 50, "every browser's visitor merged into it");

  const mine = await eventually(async () => {
    const { people } = await listAll(edge);
    const found = people.filter((x) => x.id === id);
    return found.length > 0 && found;
  }, "the person in the listing", 5000);
  // Give the cache a moment more, then count again.
  await new Promise((r) => setTimeout(r, 300));
  const { people } = await listAll(edge);
  const final = people.filter((x) => x.id === id);
  console.log(`listing: ${final.length} person(edge, s) with id ${id} (cio_id ${p.cio_id}), first seen ${mine.length}`);
  assert.equal(mine.length, 1);
  assert.equal(final.length, 1);
  assert.equal(final[0].cio_id, p.cio_id);
  assert.equal(people.filter((x) => x.cio_id === p.cio_id).length, 1);
});

test("admin listing pages with limit=2 over 5 people following the cursor; export is NDJSON", async () => {
  const lister = await startWorker({ originUrl: origin.url, secrets: SECRETS });
  try {
    const ids = Array.from({ length: 5 }, () => uid("list"));
    for (const id of ids) {
      const res = await api(lister, "PUT", `v1/customers/${id}`, { n: ids.indexOf(id) });
      assert.equal(res.status, 200);
    }
    assert.equal((await adminGet(lister, "people?limit=2", { token: "wrong" })).status, 401);
    assert.equal((await adminGet(lister, "people?limit=2", { token: null })).status, 401);

    const { people, pages } = await eventually(async () => {
      const got = await listAll(lister, 2);
      return got.people.length >= 5 && got;
    }, "five people listed", 5000);
    const seen = people.map((p) => p.id);
    assert.deepEqual([...seen].sort(), [...ids].sort(), "each person exactly once");
    assert.equal(pages, 3);
    for (const p of people) {
      assert.equal(typeof p.cio_id, "string");
      assert.equal(p.attributes.n, ids.indexOf(p.id));
    }

    const res = await lister.fetch("/_cio/admin/export", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^application\/x-ndjson/);
    const text = await res.text();
    const lines = text.split("\n").filter((l) => l.length > 0);
    assert.equal(lines.length, 5, text);
    const exported = lines.map((l) => JSON.parse(l));
    assert.deepEqual(exported.map((p) => p.id).sort(), [...ids].sort());
    for (const p of exported) {
      assert.deepEqual(p, await profile(lister, p.id), "an export line is the person's admin view");
    }
    assert.equal((await lister.fetch("/_cio/admin/export")).status, 401);
  } finally {
    await lister.dispose();
  }
});
