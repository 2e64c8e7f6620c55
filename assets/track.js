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
  function send(path, body) {
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
      }).then(function (r) { return r.text(); }, function () { beacon(call); });
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

  var api = {
    identify: function (attrs) { if (attrs && typeof attrs === "object") send("identify", attrs); },
    track: function (name, data) { send("track", { name: name, data: data || {}, id: newId() }); },
    page: function (name, data) {
      if (name && typeof name === "object") { data = name; name = null; }
      send("page", { name: name || pageName(), data: data || {}, id: newId() });
    },
    reset: function () { send("reset", {}); },
    load: function () {}, on: function () {}, off: function () {}
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
  if (opt("data-auto-track-page") !== "false") api.page();
})(window, document);
