// The text the driver and the wasm pass each other on the page path. This
// module and src/page/codec.rs are the only code that knows the layout (it is
// described there); tests/fixtures/plan-codec.json is read by the tests of
// both, so the two sides cannot drift apart.

// Whether a request of this method carries a body (fetch gives a GET or
// HEAD none).
export const hasBody = (method) => method !== "GET" && method !== "HEAD";

// The request's inputs, one per line, in the order of `Inputs` in Rust; an
// absent header is an empty line. A GET or HEAD's body headers are not read
// (each `get` crosses into the runtime).
export function encodeInputs(method, url, headers) {
  const body = hasBody(method);
  return `${method}\n${url}\n${headers.get("cookie") ?? ""}\n${headers.get("accept") ?? ""}\n${headers.get("sec-fetch-mode") ?? ""}\n${(body && headers.get("content-type")) || ""}\n${(body && headers.get("content-length")) || ""}\n${headers.get("sec-gpc") ?? ""}`;
}

const REASONS = new Set(["reserved", "track-api-host", "link", "form", "page-view", "bad-setting", "bad-url"]);

// A plan text: `{ kind: "rust", reason }` or `{ kind: "forward", target,
// timeoutMs, snippet, headers: [[name, value or null]], setCookies, watch }`.
// Anything the Rust side would not write throws: a line of an unknown kind is
// never taken for a cookie.
export function decodePlan(text) {
  if (text.startsWith("rust ")) {
    const reason = text.slice(5);
    if (!REASONS.has(reason)) throw new Error(`plan hands to Rust for an unknown reason ${JSON.stringify(reason)}`);
    return { kind: "rust", reason };
  }
  // One pass over the text, a line at a time (no array of lines): this runs
  // on every page view.
  let at = 0;
  const line = () => {
    if (at > text.length) throw new Error("forward plan misses a line");
    let end = text.indexOf("\n", at);
    if (end < 0) end = text.length;
    const out = text.slice(at, end);
    at = end + 1;
    return out;
  };
  if (line() !== "forward") throw new Error("plan text is empty or of an unknown type");
  const target = line();
  const timeout = line();
  if (!/^[0-9]+$/.test(timeout)) throw new Error(`forward plan has a timeout that is not a number: ${JSON.stringify(timeout)}`);
  const timeoutMs = Number(timeout);
  const snippet = line();
  const plan = { kind: "forward", target, timeoutMs, snippet: snippet === "" ? null : snippet, headers: [], setCookies: [], watch: [] };
  for (let i = 5; at <= text.length; i++) {
    const rest = line();
    switch (rest.charCodeAt(0)) {
      case 104 /* h */: {
        const colon = rest.indexOf(":");
        if (colon < 0) throw new Error(`forward plan line ${i} sets a header without a colon`);
        plan.headers.push([rest.slice(1, colon), rest.slice(colon + 1)]);
        break;
      }
      case 100 /* d */:
        plan.headers.push([rest.slice(1), null]);
        break;
      case 99 /* c */:
        plan.setCookies.push(rest.slice(1));
        break;
      case 114 /* r */:
        plan.watch.push(rest.slice(1));
        break;
      default:
        throw new Error(`forward plan line ${i} is of an unknown kind`);
    }
  }
  return plan;
}
