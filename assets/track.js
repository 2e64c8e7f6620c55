/* cio-edge first-party browser SDK, served at /_cio/track.js. A drop-in for
   Customer.io's classic snippet: keep the snippet, point its src here. */
(function (w, d) {
  var q = w._cio = w._cio || [];
  if (q._edge) return; // loaded twice (snippet and injection): run once
  var tag = d.currentScript || d.getElementById("cio-tracker");
  var opt = function (name) { return tag && tag.getAttribute(name); };
  var arrays = opt("data-use-array-params") !== "false";
  var chain = Promise.resolve();
  var pending = []; // calls not yet handed to fetch, oldest first
  var MAX_PAGE_NAME = 8192; // bytes the edge takes as a page name

  // data-use-array-params="false": arrays, at any depth, become {"0":..,"1":..}
  function shape(v) {
    if (v === null || typeof v !== "object") return v;
    var out = {}, k;
    if (Array.isArray(v)) { for (k = 0; k < v.length; k++) out[k] = shape(v[k]); return out; }
    for (k in v) if (Object.prototype.hasOwnProperty.call(v, k)) out[k] = shape(v[k]);
    return out;
  }

  // Each event carries its own id, so one sent twice (a fetch cut off by the
  // page leaving, then its beacon) is recorded once.
  function newId() {
    try {
      var b = w.crypto.getRandomValues(new Uint8Array(16)), s = "";
      for (var i = 0; i < b.length; i++) s += (b[i] + 256).toString(16).slice(1);
      return s;
    } catch (e) { return String(Date.now()) + Math.random().toString(16).slice(2); }
  }

  function beacon(call) {
    try { navigator.sendBeacon("/_cio/" + call.path, call.json); } catch (e) { /* never throw into the page */ }
  }

  // Calls go out one after another, so an identify's cookie is in place before
  // the next call; keepalive lets the last ones outlive the page. Each answer
  // is read to the end: an unread body keeps the request open, and a page
  // with open requests never reaches network idle.
  function send(path, body, done) {
    var json;
    try { json = JSON.stringify(arrays ? body : shape(body)); } catch (e) { return; }
    var call = { path: path, json: json };
    pending.push(call);
    chain = chain.then(function () {
      var at = pending.indexOf(call);
      if (at < 0) return; // already sent by the pagehide beacon
      pending.splice(at, 1);
      return fetch("/_cio/" + path, {
        method: "POST", body: json, keepalive: true, credentials: "same-origin",
        headers: { "content-type": "application/json" }
      }).then(function (r) {
        if (done && r.ok) done();
        return r.text();
      }, function () { beacon(call); });
    }).catch(function () { /* never reject into the page */ });
  }

  // Leaving the page: what is still queued goes out as beacons, which the
  // browser delivers after the page is gone.
  w.addEventListener("pagehide", function () {
    var left = pending.splice(0, pending.length);
    for (var i = 0; i < left.length; i++) beacon(left[i]);
  });

  // The automatic page name is the URL, cut to what the edge takes (a URL is
  // ASCII, but a fragment may not be).
  function pageName() {
    var href = String(w.location.href);
    if (href.length <= MAX_PAGE_NAME / 3) return href;
    try {
      var bytes = new TextEncoder().encode(href);
      if (bytes.length <= MAX_PAGE_NAME) return href;
      return new TextDecoder().decode(bytes.slice(0, MAX_PAGE_NAME - 3)).replace(/\uFFFD$/, "");
    } catch (e) { return href.slice(0, MAX_PAGE_NAME / 3); }
  }

  // _cio.on / _cio.off: listeners by event name; a listener that throws is
  // reported and the others still run.
  var listeners = {};
  function emit(name, payload) {
    var list = (listeners[name] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try { list[i](payload); } catch (e) { try { console.error(e); } catch (x) { /* none */ } }
    }
  }

  // In-app messages (data-use-in-app="true"): Customer.io's Gist SDK from
  // /_cio/gist.js, its user token following the edge's identity as
  // /_cio/in-app/session answers it (every page load, after an identify, a
  // reset), its events on the bus, its opened/clicked metrics to the edge.
  var inApp = opt("data-use-in-app") === "true";
  var gist = null; // Gist, once set up
  var want = null; // the token this browser should have
  var route = null; // the route to set once Gist is up
  var asked = 0; // session answers older than the latest question are dropped
  var siteId = opt("data-site-id");
  var TOKEN_KEY = "gist.web.userToken"; // where the pinned Gist keeps it
  var warned = false;

  function quietly(p) { if (p && p.then) p.then(null, function () { /* never reject into the page */ }); }

  // Gist sends the token base64-encoded with btoa, which refuses characters
  // above U+00FF: such an identity gets no in-app messages, and one warning.
  function encodable(token) {
    try { w.btoa(token); return true; } catch (e) {
      if (!warned) { warned = true; try { console.warn("cio-edge: in-app messages are off for this person: Gist cannot encode an identifier with characters above U+00FF"); } catch (x) { /* none */ } }
      return false;
    }
  }

  function applyToken() {
    if (!gist) return;
    var token = want && encodable(want) ? want : null;
    quietly(token ? gist.setUserToken(token) : gist.clearUserToken());
  }

  function refresh() {
    var mine = ++asked;
    return fetch("/_cio/in-app/session", { credentials: "same-origin", cache: "no-store" })
      // Read to the end whatever the status: an unread body keeps the
      // request open.
      .then(function (r) { return r.json().then(function (j) { return r.ok ? j : null; }, function () { return null; }); })
      .then(function (s) {
        if (!s || mine !== asked) return;
        want = typeof s.token === "string" && s.token ? s.token : null;
        if (!siteId && typeof s.site_id === "string") siteId = s.site_id;
        applyToken();
      }, function () { /* offline: keep what Gist has */ });
  }

  // A token Gist kept from an earlier page that is not this browser's now
  // (an origin logout, another tab's reset) goes before Gist starts, so the
  // next person never sees the previous person's messages.
  function forgetStale() {
    var stores = [];
    try { stores.push(w.localStorage, w.sessionStorage); } catch (e) { return; }
    for (var i = 0; i < stores.length; i++) {
      try {
        var raw = stores[i].getItem(TOKEN_KEY);
        if (raw && JSON.parse(raw).value !== want) stores[i].removeItem(TOKEN_KEY);
      } catch (e) { /* unreadable: leave it */ }
    }
  }

  function message(m, extra) {
    var out = { messageId: m && m.messageId, deliveryId: null };
    try { out.deliveryId = m.properties.gist.campaignId || null; } catch (e) { /* none */ }
    for (var k in extra) if (Object.prototype.hasOwnProperty.call(extra, k)) out[k] = extra[k];
    return out;
  }

  function metric(kind, m, href) {
    var event = message(m);
    if (!event.deliveryId) return;
    var body = { delivery_id: String(event.deliveryId), metric: kind };
    if (event.messageId) body.message_id = String(event.messageId);
    if (href) body.href = href;
    send("in-app/metric", body);
  }

  function startGist(G) {
    if (!G || gist) return;
    if (!siteId) { try { console.warn("cio-edge: in-app messages need a site id (data-site-id, or IN_APP_SITE_ID)"); } catch (e) { /* none */ } return; }
    forgetStale();
    try {
      quietly(G.setup({ siteId: siteId, env: opt("data-in-app-env") || "prod" }));
      G.events.on("messageShown", function (m) {
        emit("in-app:message-opened", message(m));
        metric("opened", m);
      });
      G.events.on("messageDismissed", function (m) { emit("in-app:message-dismissed", message(m)); });
      G.events.on("messageError", function (m) { emit("in-app:message-error", message(m)); });
      G.events.on("messageAction", function (e) {
        e = e || {};
        emit("in-app:message-action", message(e.message, { action: e.action, name: e.name }));
        var action = String(e.action || "");
        if (action.indexOf("gist://close") !== 0) metric("clicked", e.message, /^https?:\/\//.test(action) ? action : null);
      });
    } catch (e) { return; }
    gist = G;
    applyToken();
    if (route !== null) quietly(G.setCurrentRoute(route));
  }

  function loadGist() {
    var first = refresh();
    var t = d.createElement("script");
    t.async = true;
    t.src = "/_cio/gist.js";
    t.onload = function () { first.then(function () { startGist(w.Gist && (w.Gist["default"] || w.Gist)); }); };
    t.onerror = function () { try { console.warn("cio-edge: /_cio/gist.js did not load (is IN_APP on?)"); } catch (e) { /* none */ } };
    (d.head || d.documentElement).appendChild(t);
  }

  function setRoute(name) {
    route = String(name);
    if (gist) quietly(gist.setCurrentRoute(route));
  }

  var api = {
    identify: function (attrs) {
      if (attrs && typeof attrs === "object") send("identify", attrs, inApp ? refresh : null);
    },
    track: function (name, data) { send("track", { name: name, data: data || {}, id: newId() }); },
    page: function (name, data) {
      if (name && typeof name === "object") { data = name; name = null; }
      if (inApp) setRoute(name || w.location.pathname);
      send("page", { name: name || pageName(), data: data || {}, id: newId() });
    },
    reset: function () {
      if (inApp) { asked++; want = null; applyToken(); }
      send("reset", {}, inApp ? refresh : null);
    },
    load: function () {},
    on: function (name, fn) {
      if (typeof fn === "function") (listeners[name] = listeners[name] || []).push(fn);
    },
    off: function (name, fn) {
      var list = listeners[name];
      if (!list) return;
      if (typeof fn !== "function") { delete listeners[name]; return; }
      for (var i = list.length - 1; i >= 0; i--) if (list[i] === fn) list.splice(i, 1);
    }
  };
  api.sidentify = api.identify;

  // Replay what the snippet queued, in order, then answer directly.
  var queued = q.splice(0, q.length);
  for (var name in api) q[name] = api[name];
  q._edge = true;
  for (var i = 0; i < queued.length; i++) {
    var call = queued[i];
    if (call && api[call[0]]) api[call[0]].apply(null, call.slice(1));
  }
  if (inApp) loadGist();
  if (opt("data-auto-track-page") !== "false") api.page();
})(window, document);
