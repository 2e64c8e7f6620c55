// The worker's entry. Rust decides, this module drives: per request one
// synchronous call, `plan`, answers either a forward plan, executed here with
// `fetch` (streaming both ways), or "rust", and then the async handler in
// Rust answers (endpoints, links, forms, edge page views, bad settings). Every
// rule lives in Rust (src/page/); this file knows no cookie, no setting, no
// path: it moves bytes and headers as the plan says. The plan's text is read
// by js/plan.mjs alone.
import * as rust from "cio-edge-wasm";
import { decodePlan, encodeInputs, hasBody } from "./plan.mjs";

export default {
  // Not async: a forward returns the origin's promise as it is, without
  // another promise around it (this runs on every page view).
  fetch(request, env, ctx) {
    const text = rust.plan(env, encodeInputs(request.method, request.url, request.headers));
    if (text.startsWith("rust ")) return viaRust(request, env, ctx);
    return forward(request, env, ctx, text, undefined);
  },
  // Forwarding to Customer.io: the CIO_OUTBOX and CIO_DEADLETTER consumers
  // (src/edge/cio.rs).
  async queue(batch, env, ctx) {
    return rust.queue(batch, env, ctx);
  },
};

// The async handler answers, or hands back a forward plan and the body it read.
async function viaRust(request, env, ctx) {
  const out = await rust.handle(request, env, ctx);
  if (out instanceof Response) return out;
  return forward(request, env, ctx, out[0], out[1]);
}

// Executes a forward plan (`text`, as Rust wrote it).
async function forward(request, env, ctx, text, body) {
  const plan = decodePlan(text);
  const headers = new Headers(request.headers);
  for (const [name, value] of plan.headers) {
    if (value === null) headers.delete(name);
    else headers.set(name, value);
  }
  let cookies = plan.setCookies;
  const watch = plan.watch;
  const method = request.method;
  // The origin has the plan's milliseconds to send its headers. The signal
  // only guards the wait for them: a body still streaming when it fires is
  // not cut (tests/proxy.test.mjs). One call; a cleared setTimeout costs more.
  const init = { method, headers, redirect: "manual", signal: AbortSignal.timeout(plan.timeoutMs) };
  if (body !== undefined) init.body = body;
  else if (hasBody(method)) init.body = request.body;
  let fetched;
  try {
    fetched = await fetch(plan.target, init);
  } catch (e) {
    return rust.bad_gateway(text, e?.name === "TimeoutError", String(e));
  }
  // Response headers the plan names are the origin's word to the edge (an
  // identify, a reset): stripped, and handed to Rust when present. The
  // runtime's `headers` getter is read once.
  const origin = fetched.headers;
  let values;
  for (let i = 0; i < watch.length; i++) {
    const value = origin.get(watch[i]);
    if (value === null) continue;
    values ??= watch.map(() => undefined);
    values[i] = value;
  }
  const snippet = plan.snippet;
  // Nothing to change: the origin's answer goes out as it came, without a
  // copy of its headers (most page views of a returning visitor).
  if (values === undefined && cookies.length === 0 && snippet === null) return fetched;
  const response = new Response(fetched.body, fetched);
  if (values !== undefined) {
    for (const name of watch) response.headers.delete(name);
    try {
      cookies = await rust.handle(request, env, ctx, [text, ...values]);
    } catch (e) {
      console.error("origin identity header not applied", e); // the page is served
    }
  }
  for (const cookie of cookies) response.headers.append("set-cookie", cookie);
  if (snippet !== null && rust.injects(fetched.status, origin.get("content-type"))) {
    response.headers.delete("content-length");
    return inject(response, snippet);
  }
  return response;
}

// INJECT_SNIPPET: workerd's HTMLRewriter streams the page; Rust judges each
// script already in the head, and the snippet goes before `</head>` unless
// the page has its own. The runtime decodes a compressed origin page and
// re-encodes it per the kept Content-Encoding.
function inject(response, snippet) {
  let has = false;
  let done = false;
  let script = "";
  return new HTMLRewriter()
    .on("head script", {
      element(el) {
        const src = el.getAttribute("src");
        if (src !== null && !has && rust.has_sdk(src, undefined)) has = true;
      },
      text(chunk) {
        script += chunk.text;
        if (chunk.lastInTextNode) {
          if (!has && rust.has_sdk(undefined, script)) has = true;
          script = "";
        }
      },
    })
    .on("head", {
      element(el) {
        el.onEndTag((end) => {
          if (!has && !done) {
            done = true;
            end.before(snippet, { html: true });
          }
        });
      },
    })
    .transform(response);
}

// A Rust panic aborts the wasm instance; the wasm-bindgen glue starts a fresh
// one on the next call. A Durable Object instance made before that is stale:
// it is made again on its next use.
const state = rust.__worker_init_state();

function recoverable(cls) {
  return new Proxy(cls, {
    construct(target, args, newTarget) {
      const slot = { instance: Reflect.construct(target, args, newTarget), id: state.instanceId };
      return new Proxy(slot, {
        get(s, prop) {
          if (s.id !== state.instanceId) {
            s.instance = Reflect.construct(target, args, newTarget);
            s.id = state.instanceId;
          }
          const value = Reflect.get(s.instance, prop);
          return typeof value === "function" ? value.bind(s.instance) : value;
        },
      });
    },
  });
}

export const Person = recoverable(rust.Person);
export const Visitor = recoverable(rust.Visitor);
export const IdentityIndex = recoverable(rust.IdentityIndex);
export const Forwarding = recoverable(rust.Forwarding);
