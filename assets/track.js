/* cio-edge first-party browser SDK, served at /_cio/track.js. A drop-in for
   Customer.io's classic snippet: keep the snippet, point its src here. */
(function (w, d) {
  var q = w._cio = w._cio || [];
  if (q._edge) return; // loaded twice (snippet and injection): run once
  var tag = d.currentScript || d.getElementById("cio-tracker");
  var opt = function (name) { return tag && tag.getAttribute(name); };
  var arrays = opt("data-use-array-params") !== "false";
  var chain = Promise.resolve();

  // data-use-array-params="false": arrays, at any depth, become {"0":..,"1":..}
  function shape(v) {
    if (v === null || typeof v !== "object") return v;
    var out = {}, k;
    if (Array.isArray(v)) { for (k = 0; k < v.length; k++) out[k] = shape(v[k]); return out; }
    for (k in v) if (Object.prototype.hasOwnProperty.call(v, k)) out[k] = shape(v[k]);
    return out;
  }

  // Calls go out one after another, so an identify's cookie is in place before
  // the next call; keepalive lets the last ones outlive the page.
  function send(path, body) {
    var json;
    try { json = JSON.stringify(arrays ? body : shape(body)); } catch (e) { return; }
    chain = chain.then(function () {
      return fetch("/_cio/" + path, {
        method: "POST", body: json, keepalive: true, credentials: "same-origin",
        headers: { "content-type": "application/json" }
      });
    }).catch(function () {
      try { navigator.sendBeacon("/_cio/" + path, json); } catch (e) { /* never throw into the page */ }
    });
  }

  var api = {
    identify: function (attrs) { if (attrs && typeof attrs === "object") send("identify", attrs); },
    track: function (name, data) { send("track", { name: name, data: data || {} }); },
    page: function (name, data) {
      if (name && typeof name === "object") { data = name; name = null; }
      send("page", { name: name || w.location.href, data: data || {} });
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
