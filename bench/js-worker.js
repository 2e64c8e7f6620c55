// The reference: a hand-written minimal JS worker doing the proxy's job (read
// the cookie, issue a UUID v4 if missing, forward with X-Cio-Anon-Id, stream
// back, append the cookie). cio-edge is measured against it.
const ANON = /(?:^|;\s*)_cioanonid=([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?:;|$)/;

export default {
  async fetch(request, env) {
    const found = ANON.exec(request.headers.get("cookie") || "");
    const anon = found ? found[1] : crypto.randomUUID();
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.set("x-cio-anon-id", anon);
    const res = await fetch(env.ORIGIN_URL + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
    });
    const out = new Response(res.body, res);
    if (!found) out.headers.append("set-cookie", `_cioanonid=${anon}; Path=/; Max-Age=31536000; SameSite=Lax`);
    return out;
  },
};
