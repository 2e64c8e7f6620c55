// Identity at page speed: one request at a time through the built worker
// (Miniflare, local KV and SQLite Durable Objects, an origin on 127.0.0.1),
// each identity call alternating with a plain first visit as the baseline.
// Prints p50/p90 per call and the link click's cost over the baseline.
// Figures are reported, never asserted.
//
//   LATENCY_SAMPLES=40 node bench/latency.mjs
import { startWorker } from "../tests/support/worker.mjs";
import { startOrigin } from "../tests/support/origin.mjs";
import { Browser, uid } from "../tests/support/people.mjs";

const SAMPLES = Number(process.env.LATENCY_SAMPLES || 40);
const ADMIN_TOKEN = "bench-admin";

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function timed(f) {
  const t = performance.now();
  const r = await f();
  const ms = performance.now() - t;
  if (r && r.status && r.status >= 400) throw new Error(`status ${r.status}`);
  return ms;
}

export async function latency({ samples = SAMPLES, log = console.log } = {}) {
  const origin = await startOrigin();
  const edge = await startWorker({ originUrl: origin.url, secrets: { ADMIN_TOKEN } });
  const known = uid("known");
  await new Browser(edge).identify({ id: known, email: `${known}@example.com` });
  const { cio_id } = await (await edge.fetch(`/_cio/admin/people/${known}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  const existing = new Browser(edge);
  await existing.identify({ id: uid("existing") });
  const existingId = existing.cioid;

  const rows = { baseline: [], link: [], identifyNew: [], identifyExisting: [], track: [] };
  // Warm up the isolate and every object kind once.
  for (let i = 0; i < 5; i++) await new Browser(edge).visit("/");
  for (let i = 0; i < samples; i++) {
    rows.baseline.push(await timed(() => new Browser(edge).visit("/")));
    const fresh = new Browser(edge);
    rows.link.push(await timed(() => fresh.visit(`/?_cio_id=${cio_id}`)));
    // A browser with history: two anonymous events, then identify as new.
    const b = new Browser(edge);
    await b.visit("/");
    await b.track("a");
    await b.page("/p");
    rows.identifyNew.push(await timed(() => b.identify({ id: uid("new"), plan: "x" })));
    rows.identifyExisting.push(await timed(() => existing.identify({ id: existingId, n: i })));
    rows.track.push(await timed(() => existing.track("t", { i })));
  }
  await edge.dispose();
  await origin.close();

  const base = quantile(rows.baseline, 0.5);
  const table = [
    ["plain first visit (baseline)", rows.baseline],
    ["link click, fresh browser, known person", rows.link],
    ["identify, new person, browser with history", rows.identifyNew],
    ["identify, existing person", rows.identifyExisting],
    ["track, identified", rows.track],
  ].map(([name, xs]) => ({
    name,
    p50: quantile(xs, 0.5),
    p90: quantile(xs, 0.9),
  }));
  log(`\nSequential latency, ${samples} samples each, alternating (ms)\n`);
  log("| call | p50 | p90 | p50 over baseline |");
  log("|---|---|---|---|");
  for (const r of table) {
    log(`| ${r.name} | ${r.p50.toFixed(1)} | ${r.p90.toFixed(1)} | ${r === table[0] ? "-" : `+${(r.p50 - base).toFixed(1)}`} |`);
  }
  const link = table[1].p50 - base;
  log(`\ntargets: link click <= +15 ms over baseline: ${link <= 15 ? "met" : "NOT met"} (+${link.toFixed(1)}); ` +
    `identify new <= 40 ms: ${table[2].p50 <= 40 ? "met" : "NOT met"}; identify existing <= 15 ms: ${table[3].p50 <= 15 ? "met" : "NOT met"}`);
  return table;
}

if (import.meta.url === `file://${process.argv[1]}`) await latency();
