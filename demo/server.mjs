// The bundled demo site: the origin `npm run dev` puts behind the edge when
// ORIGIN_URL is not set. Each page carries Customer.io's classic snippet with
// its src pointed at /_cio/track.js, and shows what the edge told the origin.
import http from "node:http";
import { fileURLToPath } from "node:url";

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Customer.io's classic snippet; the one changed line is `t.src`. `extra` adds
// attribute lines, `after` code that runs once the stubs exist.
export const classicSnippet = (extra = "", after = "") => `<script type="text/javascript">
  var _cio = _cio || [];
  (function() {
    var a,b,c;a=function(f){return function(){_cio.push([f].concat(Array.prototype.slice.call(arguments,0)))}};b=["load","identify","sidentify","track","page","on","off"];for(c=0;c<b.length;c++){_cio[b[c]]=a(b[c])};
    var t = document.createElement('script'), s = document.getElementsByTagName('script')[0];
    t.async = true;
    t.id    = 'cio-tracker';
    t.setAttribute('data-site-id', 'demo');
    t.setAttribute('data-use-array-params', 'true');
    ${extra}
    t.src = '/_cio/track.js';
    s.parentNode.insertBefore(t, s);
  })();
  ${after}
</script>`;

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
nav a{margin-right:1rem}.edge{background:#f4f6f8;border:1px solid #d8dee4;border-radius:6px;padding:.75rem 1rem;font:13px ui-monospace,monospace}
form{display:grid;gap:.5rem;max-width:20rem}button{padding:.4rem .8rem;cursor:pointer}`;

function layout(req, title, body) {
  const h = req.headers;
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)} · cio-edge demo</title>
<style>${STYLE}</style>${classicSnippet()}</head><body>
<nav><a href="/">Home</a><a href="/pricing">Pricing</a><a href="/about">About</a><a href="/login">Log in</a><a href="/account">Account</a><a href="/campaign">Campaign landing</a><a href="/" id="logout">Log out</a></nav>
<h1>${esc(title)}</h1>${body}
<h2>What the edge told this page's server</h2>
<div class="edge">X-Cio-Anon-Id: ${esc(h["x-cio-anon-id"] || "(none)")}<br>X-Cio-Id: ${esc(h["x-cio-id"] || "(not identified)")}<br>Cookie: ${esc(h.cookie || "(none)")}</div>
<script>
document.getElementById("logout").addEventListener("click", function (e) {
  e.preventDefault();
  fetch("/_cio/reset", { method: "POST" }).finally(function () { location.href = "/"; });
});
</script></body></html>`;
}

const PAGES = {
  "/": ["Home", `<p>This site sits behind cio-edge. Every visitor gets a first-party <code>_cioanonid</code> cookie from the edge; this page loaded <code>/_cio/track.js</code> and sent a page view.</p>
    <p><button id="buy">Add to cart</button> tracks an event.</p>
    <script>document.getElementById("buy").onclick = function () { _cio.track("added_to_cart", { sku: "demo-1", price: 42 }); this.textContent = "Added"; };</script>`],
  "/pricing": ["Pricing", "<p>Free while you try it. Browse around: each page view is recorded for this visitor.</p>"],
  "/about": ["About", "<p>A demo origin for cio-edge.</p>"],
  "/login": ["Log in", `<form id="login" method="post" action="/login">
      <label>Email <input name="email" type="email" autocomplete="email" required></label>
      <label>First name <input name="first_name" autocomplete="given-name"></label>
      <label>Password <input name="password" type="password" autocomplete="current-password"></label>
      <button type="submit">Log in</button></form>
    <p id="login-error" role="alert"></p>
    <script>document.getElementById("login").addEventListener("submit", function (e) {
      e.preventDefault(); var f = e.target;
      var person = { id: f.email.value, email: f.email.value, first_name: f.first_name.value };
      fetch("/_cio/identify", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(person) })
        .then(function (res) {
          if (res.ok) { location.href = "/account"; return; }
          return res.json().then(function (body) {
            var err = body.errors && body.errors[0];
            document.getElementById("login-error").textContent = "The edge said " + res.status + ": " + (err ? err.message : "error");
          });
        })
        .catch(function () { document.getElementById("login-error").textContent = "Could not reach the edge."; });
    });</script>`],
  "/account": ["Account", "<p>Once identified, the box below shows <code>X-Cio-Id</code>: the edge tells the origin who this is.</p>"],
  "/campaign": ["Campaign landing", `<p>Customer.io appends <code>_cio_id=&lt;cio_id&gt;</code> to tracked links. Paste a person's cio_id (from the admin API) to open such a link:</p>
    <form onsubmit="location.href='/landing?_cio_id='+encodeURIComponent(this.cio.value);return false"><input name="cio" placeholder="cio_id"><button>Open the tracked link</button></form>`],
  "/landing": ["Landing", "<p>If the <code>_cio_id</code> named a known person, you are now identified as them.</p>"],
};

export function handle(req, res) {
  const path = new URL(req.url, "http://demo").pathname;
  if (req.method === "POST" && path === "/login") {
    req.resume();
    res.writeHead(303, { location: "/account" });
    return res.end();
  }
  if (path === "/favicon.ico") {
    res.writeHead(204);
    return res.end();
  }
  const page = PAGES[path];
  if (!page) {
    res.writeHead(404, { "content-type": "text/html; charset=utf-8" });
    return res.end(layout(req, "Not found", "<p>No such page.</p>"));
  }
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(layout(req, page[0], page[1]));
}

export function startDemo(port = 8788, host = "127.0.0.1") {
  const server = http.createServer(handle);
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--port");
  const port = i > 0 ? Number(process.argv[i + 1]) : 8788;
  await startDemo(port);
  console.log(`demo site on http://127.0.0.1:${port}`);
}
