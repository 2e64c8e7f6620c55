// The text the driver and the wasm pass each other on the page path. This
// module and src/page/codec.rs are the only code that knows the layout (it is
// described there); tests/fixtures/plan-codec.json is read by the tests of
// both, so the two sides cannot drift apart.

// The request's inputs, one per line, in the order of `Inputs` in Rust; an
// absent header is an empty line.
export function encodeInputs(method, url, headers) {
  return `${method}\n${url}\n${headers.get("cookie") ?? ""}\n${headers.get("accept") ?? ""}\n${headers.get("sec-fetch-mode") ?? ""}\n${headers.get("content-type") ?? ""}\n${headers.get("content-length") ?? ""}\n${headers.get("sec-gpc") ?? ""}`;
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
  const lines = text.split("\n");
  if (lines[0] !== "forward") throw new Error("plan text is empty or of an unknown type");
  if (lines.length < 4) throw new Error("forward plan misses a line");
  if (!/^[0-9]+$/.test(lines[2])) throw new Error(`forward plan has a timeout that is not a number: ${JSON.stringify(lines[2])}`);
  const plan = {
    kind: "forward",
    target: lines[1],
    timeoutMs: Number(lines[2]),
    snippet: lines[3] === "" ? null : lines[3],
    headers: [],
    setCookies: [],
    watch: [],
  };
  for (let i = 4; i < lines.length; i++) {
    const line = lines[i];
    const rest = line.slice(1);
    switch (line.charCodeAt(0)) {
      case 104 /* h */: {
        const colon = rest.indexOf(":");
        if (colon < 0) throw new Error(`forward plan line ${i + 1} sets a header without a colon`);
        plan.headers.push([rest.slice(0, colon), rest.slice(colon + 1)]);
        break;
      }
      case 100 /* d */:
        plan.headers.push([rest, null]);
        break;
      case 99 /* c */:
        plan.setCookies.push(rest);
        break;
      case 114 /* r */:
        plan.watch.push(rest);
        break;
      default:
        throw new Error(`forward plan line ${i + 1} is of an unknown kind`);
    }
  }
  return plan;
}
