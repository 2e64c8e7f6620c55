// Track API: the Track API host (TRACK_API_HOST) and the API without credentials.
// docs/API.md sections 4 to 7; results read back through the admin API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withEdge } from "./support/edge.mjs";
import { startWorker } from "./support/worker.mjs";
import { uid } from "./support/people.mjs";
import {
  api, person, profile, events, assertV1Error, sortedNames, AUTH, SITE_ID, API_KEY, ADMIN_TOKEN, SECRETS,
} from "./support/api.mjs";

const { edge, origin, another } = withEdge({ secrets: SECRETS });
const TRACK_HOST = "track.example.test";

// ---------------------------------------------------------------------------
// Routing

test("the site's /api/ paths go to the origin untouched; TRACK_API_HOST serves the API at /api/", async () => {
  const siteBody = JSON.stringify({ site: "payload" });
  const sitePut = async (worker, url) => {
    const before = origin.requests.length;
    const res = await worker.dispatch(url, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json", "x-site": "1" },
    });
    const text = await res.text();
    assert.equal(origin.requests.length, before + 1, `${url} reached the origin`);
    const got = origin.requests.at(-1);
    return { res, text, got };
  };

  // No TRACK_API_HOST: /api/ is the site's everywhere.
  const plainX = uid("x");
  {
    const res = await edge.fetch(`/api/v1/customers/${plainX}`, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json" },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `ok PUT /api/v1/customers/${plainX}`);
    const got = origin.last();
    assert.equal(got.method, "PUT");
    assert.equal(got.url, `/api/v1/customers/${plainX}`);
    assert.equal(got.body.toString(), siteBody);
    assert.equal(got.headers.authorization, AUTH, "the site's own auth header passes untouched");
    const onTrackHost = await sitePut(edge, `http://${TRACK_HOST}/api/v1/customers/${plainX}`);
    assert.equal(onTrackHost.text, `ok PUT /api/v1/customers/${plainX}`);
    assert.equal((await person(edge, plainX)).status, 404, "no person from a site path");
  }

  const hosted = await startWorker({ originUrl: origin.url, vars: { TRACK_API_HOST: TRACK_HOST }, secrets: SECRETS });
  try {
    // Normal host: still the site's.
    const x = uid("x");
    const res = await hosted.fetch(`/api/v1/customers/${x}`, {
      method: "PUT",
      body: siteBody,
      headers: { authorization: AUTH, "content-type": "application/json", "x-site": "1" },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `ok PUT /api/v1/customers/${x}`);
    const got = origin.last();
    assert.equal(got.method, "PUT");
    assert.equal(got.url, `/api/v1/customers/${x}`);
    assert.equal(got.body.toString(), siteBody);
    assert.equal(got.headers.authorization, AUTH);
    assert.equal(got.headers["x-site"], "1");
    assert.equal((await person(hosted, x)).status, 404);

    // The track host: the API.
    const id = uid("host");
    const before = origin.requests.length;
    const onHost = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${id}`, {
      method: "PUT",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ from_host: true }),
    });
    assert.equal(onHost.status, 200);
    assert.deepEqual(await onHost.json(), {});
    assert.deepEqual((await profile(hosted, id)).attributes, { from_host: true });
    const event = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${id}/events`, {
      method: "POST",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ name: "via_host" }),
    });
    assert.equal(event.status, 200);
    await event.text();
    const v2 = await hosted.dispatch(`http://${TRACK_HOST}/api/v2/entity`, {
      method: "POST",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ type: "person", identifiers: { id }, action: "identify", attributes: { v2_host: 1 } }),
    });
    assert.equal(v2.status, 200);
    assert.deepEqual(await v2.json(), {});
    assert.deepEqual((await profile(hosted, id)).attributes, { from_host: true, v2_host: 1 });
    assert.deepEqual(sortedNames(await events(hosted, id)), ["via_host"]);
    const noAuth = await hosted.dispatch(`http://${TRACK_HOST}/api/v1/customers/${uid()}`, { method: "PUT", body: "{}" });
    assert.equal(noAuth.status, 401);
    assert.ok(Array.isArray((await noAuth.json()).meta.errors));
    assert.equal(origin.requests.length, before, "the track host's API calls never reach the origin");

    // Another host: the site's.
    const elsewhere = await sitePut(hosted, `http://www.example.test/api/v1/customers/${id}`);
    assert.equal(elsewhere.text, `ok PUT /api/v1/customers/${id}`);
    assert.equal(elsewhere.got.url, `/api/v1/customers/${id}`);
    assert.equal(elsewhere.got.body.toString(), siteBody);
    assert.deepEqual((await profile(hosted, id)).attributes, { from_host: true, v2_host: 1 });

    // /_cio/api/ is served on every host.
    const reserved = await hosted.dispatch(`http://www.example.test/_cio/api/v1/customers/${id}`, {
      method: "PUT",
      headers: { authorization: AUTH, "content-type": "application/json" },
      body: JSON.stringify({ via_reserved: true }),
    });
    assert.equal(reserved.status, 200);
    await reserved.text();
    assert.equal((await profile(hosted, id)).attributes.via_reserved, true);
  } finally {
    await hosted.dispose();
  }
});

test("no SITE_ID/API_KEY configured: the API answers 404, never open", async () => {
  const closed = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
  try {
    const id = uid("closed");
    for (const auth of [AUTH, null]) {
      const res = await api(closed, "PUT", `v1/customers/${id}`, { a: 1 }, { auth });
      assertV1Error(res, 404);
    }
    assert.equal((await person(closed, id)).status, 404);
  } finally {
    await closed.dispose();
  }
});
