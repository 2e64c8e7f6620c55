// The built worker (build/index.js) with every billed binding call counted,
// for the bench's cost table (bench/cost.mjs). Loaded by Miniflare in place
// of build/index.js; the worker's own code is unchanged. It counts, in the
// units Cloudflare bills:
// - Worker requests: each fetch, each queue consumer invocation;
// - Durable Object requests (each fetch and alarm an object runs) and their
//   wall time (the runtime's clock, which moves at I/O), per class;
// - SQLite rows read and written: the `rowsRead` / `rowsWritten` of every
//   cursor an object's `sql.exec` returned, per class;
// - KV reads, writes, deletes, lists;
// - Queue operations: a write per 64 KB of each message sent, a read per
//   message delivered to the consumer and a delete per message it took.
// `POST /__bench/object` sends one call to one object.
// `GET /__bench/counters` answers the counts since the last such call and
// starts again from zero.
import edge, * as built from "../build/index.js";

let counts = fresh();
function fresh() {
  return {
    worker_requests: 0,
    queue_invocations: 0,
    do_requests: 0,
    do_alarms: 0,
    do_ms: 0,
    rows_read: 0,
    rows_written: 0,
    kv_reads: 0,
    kv_writes: 0,
    kv_deletes: 0,
    kv_lists: 0,
    queue_writes: 0,
    queue_reads: 0,
    queue_deletes: 0,
    objects: {},
  };
}

// Cursors not yet added up, per object instance.
const pending = new Set();
function settle(list) {
  for (const { cursor, cls } of list) {
    const o = perClass(cls);
    const read = Number(cursor.rowsRead) || 0;
    const written = Number(cursor.rowsWritten) || 0;
    counts.rows_read += read;
    counts.rows_written += written;
    o.rows_read += read;
    o.rows_written += written;
  }
  list.length = 0;
}
function perClass(cls) {
  return (counts.objects[cls] ??= { requests: 0, alarms: 0, rows_read: 0, rows_written: 0, ms: 0 });
}

const KIB64 = 64 * 1024;
const size = (body) => (typeof body === "string" ? body.length : JSON.stringify(body ?? null).length);
const chunks = (body) => Math.max(1, Math.ceil(size(body) / KIB64));

/// A native object seen through a Proxy: its methods bound to it, some replaced.
function wrap(target, replace) {
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(replace, prop)) return replace[prop];
      const v = Reflect.get(t, prop);
      return typeof v === "function" && prop !== "constructor" ? v.bind(t) : v;
    },
  });
}

function countKv(kv) {
  return wrap(kv, {
    get: (...a) => ((counts.kv_reads += Array.isArray(a[0]) ? a[0].length : 1), kv.get(...a)),
    getWithMetadata: (...a) => ((counts.kv_reads += 1), kv.getWithMetadata(...a)),
    put: (...a) => ((counts.kv_writes += 1), kv.put(...a)),
    delete: (...a) => ((counts.kv_deletes += 1), kv.delete(...a)),
    list: (...a) => ((counts.kv_lists += 1), kv.list(...a)),
  });
}

function countQueue(q) {
  return wrap(q, {
    send: (body, ...a) => ((counts.queue_writes += chunks(body)), q.send(body, ...a)),
    sendBatch: (msgs, ...a) => {
      for (const m of msgs) counts.queue_writes += chunks(m.body);
      return q.sendBatch(msgs, ...a);
    },
  });
}

function countEnv(env) {
  const out = {};
  for (const [name, value] of Object.entries(env)) {
    const kind = value?.constructor?.name;
    out[name] = kind === "KvNamespace" ? countKv(value) : kind === "WorkerQueue" ? countQueue(value) : value;
  }
  return new Proxy(env, { get: (t, prop) => (Object.hasOwn(out, prop) ? out[prop] : Reflect.get(t, prop)) });
}

function countState(state, cls, mine) {
  const storage = state.storage;
  const sql = storage.sql;
  const countedSql = wrap(sql, {
    exec: (...a) => {
      const cursor = sql.exec(...a);
      mine.push({ cursor, cls });
      return cursor;
    },
  });
  const countedStorage = wrap(storage, { sql: countedSql });
  return wrap(state, { storage: countedStorage });
}

function countObject(Class, cls) {
  return new Proxy(Class, {
    construct(target, [state, env], newTarget) {
      const mine = [];
      pending.add(mine);
      const instance = Reflect.construct(target, [countState(state, cls, mine), countEnv(env)], newTarget);
      const timed = (method, alarm) =>
        async function (...a) {
          const o = perClass(cls);
          counts.do_requests += 1;
          o.requests += 1;
          if (alarm) {
            counts.do_alarms += 1;
            o.alarms += 1;
          }
          const started = Date.now();
          try {
            return await instance[method](...a);
          } finally {
            const ms = Date.now() - started;
            counts.do_ms += ms;
            o.ms += ms;
            settle(mine);
          }
        };
      return wrap(instance, { fetch: timed("fetch", false), alarm: timed("alarm", true) });
    },
  });
}

export const Person = countObject(built.Person, "Person");
export const Visitor = countObject(built.Visitor, "Visitor");
export const IdentityIndex = countObject(built.IdentityIndex, "IdentityIndex");
export const Forwarding = countObject(built.Forwarding, "Forwarding");

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/__bench/counters") {
      for (const list of pending) settle(list);
      const body = JSON.stringify(counts);
      counts = fresh();
      return new Response(body, { headers: { "content-type": "application/json" } });
    }
    if (new URL(request.url).pathname === "/__bench/object") {
      // One call straight to one object, as the worker's client sends it
      // (src/cloudflare/rpc.rs), for the identify split per object.
      const { binding, name, call } = await request.json();
      const ns = env[binding];
      return ns.get(ns.idFromName(name)).fetch("https://do/call", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(call),
      });
    }
    counts.worker_requests += 1;
    return edge.fetch(request, countEnv(env), ctx);
  },
  async queue(batch, env, ctx) {
    counts.worker_requests += 1;
    counts.queue_invocations += 1;
    const n = batch.messages.length;
    counts.queue_reads += n;
    await edge.queue(batch, countEnv(env), ctx);
    counts.queue_deletes += n;
  },
};
