// The reference: a hand-written minimal JS worker doing the proxy's job (read
// the cookie, issue a UUID v4 if missing, forward with X-Cio-Anon-Id, stream
// back, append the cookie; with INJECT_SNIPPET=true, insert the snippet before
// </head> with HTMLRewriter). cio-edge is measured against it. SAME_JOB=true
// adds the rest of what cio-edge does on a forward, for a like-for-like row.
const ANON = /(?:^|;\s*)_cioanonid=([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?:;|$)/;
const SNIPPET = `<script>var _cio=_cio||[];(function(){var a,b,c;a=function(f){return function(){_cio.push([f].concat(Array.prototype.slice.call(arguments,0)))}};b=["load","identify","sidentify","track","page","on","off"];for(c=0;c<b.length;c++){_cio[b[c]]=a(b[c])};var t=document.createElement('script'),s=document.getElementsByTagName('script')[0];t.async=true;t.id='cio-tracker';t.src='/_cio/track.js';(s?s.parentNode.insertBefore(t,s):document.head.appendChild(t))})();</script>`;

export default {
  async fetch(request, env) {
    const found = ANON.exec(request.headers.get("cookie") || "");
    const anon = found ? found[1] : crypto.randomUUID();
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.set("x-cio-anon-id", anon);
    if (env.SAME_JOB !== "true") {
      var res = await fetch(env.ORIGIN_URL + url.pathname + url.search, {
        method: request.method,
        headers,
        body: request.body,
        redirect: "manual",
      });
    } else {
      // SAME_JOB=true: also what cio-edge does on every forward: the origin
      // timeout, X-Forwarded-Host/Proto, no Host, no client-sent X-Cio-Id.
      headers.delete("host");
      headers.set("x-forwarded-host", url.hostname);
      headers.set("x-forwarded-proto", url.protocol.slice(0, -1));
      headers.delete("x-cio-id");
      var res = await fetch(env.ORIGIN_URL + url.pathname + url.search, {
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD" ? undefined : request.body,
        redirect: "manual",
        signal: AbortSignal.timeout(15000),
      });
    }
    const out = new Response(res.body, res);
    if (!found) out.headers.append("set-cookie", `_cioanonid=${anon}; Path=/; Max-Age=31536000; SameSite=Lax`);
    if (env.INJECT_SNIPPET === "true" && res.status === 200 && (res.headers.get("content-type") || "").startsWith("text/html")) {
      out.headers.delete("content-length");
      let has = false;
      return new HTMLRewriter()
        .on("head script", {
          element(el) {
            const src = el.getAttribute("src");
            if (src && src.includes("track.js")) has = true;
          },
        })
        .on("head", { element: (el) => el.onEndTag((end) => has || end.before(SNIPPET, { html: true })) })
        .transform(out);
    }
    return out;
  },
};
