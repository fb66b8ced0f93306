/*! attune.js 1 — Attune in the browser: consent first, page views, dwell and scroll depth,
 * batched events (sendBeacon), and slots filled from decisions with their reasons. No
 * dependencies, no build step. Served by Attune at /v1/attune.js. */
(function (w, d) {
  "use strict";
  var STORE = "attune", cfg = {}, choice = null, anon = null, user = null, token = null;
  var queue = [], timer = 0, started = false, item = null, shown = 0, since = 0, depth = 0;

  function storage() { try { return w.localStorage; } catch (e) { return null; } }
  function stored() { var s = storage(); try { return s && JSON.parse(s.getItem(STORE) || "null"); } catch (e) { return null; } }
  function save() {
    var s = storage();
    if (s && choice) try { s.setItem(STORE, JSON.stringify({ id: anon, consent: choice, user: user })); } catch (e) { /* full or blocked */ }
  }
  function rid() {
    var b = new Uint8Array(16), h = "";
    w.crypto.getRandomValues(b);
    for (var i = 0; i < 16; i++) h += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    return h;
  }
  function consented() { return !!(choice && choice.personalization !== false); }

  // One API call with a timeout; resolves with the JSON answer or rejects.
  function api(method, path, body, timeout) {
    var ctl = w.AbortController ? new AbortController() : null, t = 0;
    if (ctl && timeout) t = setTimeout(function () { ctl.abort(); }, timeout);
    return fetch(cfg.endpoint + path, {
      method: method, keepalive: method !== "GET" && !timeout, signal: ctl && ctl.signal, credentials: "omit",
      headers: { "Authorization": "Bearer " + cfg.key, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      clearTimeout(t);
      if (!r.ok) throw new Error("attune: " + r.status);
      return r.json();
    }, function (e) { clearTimeout(t); throw e; });
  }

  function who(o) {
    if (user) { o.user = user; o.user_token = token; } else o.anonymous_id = anon;
    return o;
  }
  function context() {
    var c = { device: /Mobi/.test(navigator.userAgent) ? "mobile" : "desktop", page: location.pathname.slice(0, 256) };
    try { c.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* no Intl */ }
    return c;
  }

  // Events: queued, sent in batches with sendBeacon (on page hide, every few seconds, or 20 at a time).
  function track(type, properties, extra) {
    if (!consented()) return;
    var e = who({ id: "w-" + rid(), type: type, ts: new Date().toISOString(), channel: "web", context: context() });
    if (properties) e.properties = properties;
    extra = extra || {};
    if (extra.item) e.item = extra.item;
    if (extra.decision_id) e.decision_id = extra.decision_id;
    queue.push(e);
    if (queue.length >= 20) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushMs || 5000);
  }
  function flush() {
    clearTimeout(timer);
    timer = 0;
    while (queue.length) {
      var body = JSON.stringify({ events: queue.splice(0, 50) });
      var sent = false;
      try { sent = navigator.sendBeacon(cfg.endpoint + "/v1/events?key=" + encodeURIComponent(cfg.key), body); } catch (e) { /* none */ }
      if (!sent) api("POST", "/v1/events", JSON.parse(body)).catch(function () {});
    }
  }

  // Dwell and scroll depth on an item page (an element with data-attune-item).
  function measure() {
    var h = d.documentElement, max = Math.max(h.scrollHeight - w.innerHeight, 1);
    depth = Math.max(depth, Math.min(1, (w.scrollY || h.scrollTop) / max));
  }
  function hidden() {
    if (item && since) {
      shown += Date.now() - since;
      since = 0;
      if (shown > 0) track("dwell", { dwell_ms: shown, scroll_depth: Math.round(depth * 100) / 100 }, { item: item });
      shown = 0;
    }
    flush();
  }

  function start() {
    if (started || !consented()) return;
    started = true;
    var el = d.querySelector("[data-attune-item]");
    if (el) {
      item = el.getAttribute("data-attune-item");
      track("view", null, { item: item });
      since = d.visibilityState === "visible" ? Date.now() : 0;
      measure();
      w.addEventListener("scroll", measure, { passive: true });
    }
    d.addEventListener("visibilitychange", function () {
      if (d.visibilityState === "hidden") hidden();
      else if (item) since = Date.now();
    });
    w.addEventListener("pagehide", hidden);
    fill();
  }

  // Slots: <section data-attune-slot="home_feed" data-count="4"> with a <template>; the
  // server-rendered content stays unless a decision arrives in time.
  function fill() {
    var slots = [].slice.call(d.querySelectorAll("[data-attune-slot]"), 0, 10);
    if (!slots.length) return;
    slots.forEach(function (s) { s.setAttribute("data-attune-state", "loading"); });
    var placements = slots.map(function (s) {
      return { slot: s.getAttribute("data-attune-slot"), count: Math.min(100, Math.max(1, +s.getAttribute("data-count") || 4)) };
    });
    var body = who({ placements: placements, explain: true, context: context() });
    delete body.context.page;
    api("POST", "/v1/decide", body, cfg.timeout || 1500).then(function (dec) {
      slots.forEach(function (s, i) {
        var p = dec.placements[i];
        if (p && p.items.length && render(s, p, dec)) s.setAttribute("data-attune-state", "personalized");
        else s.setAttribute("data-attune-state", "fallback");
      });
      mark();
    }, function () {
      slots.forEach(function (s) { s.setAttribute("data-attune-state", "fallback"); });
      mark();
    });
  }
  function mark() { try { performance.mark("attune:slots"); } catch (e) { /* no timing */ } }
  function set(root, name, fn) {
    [].forEach.call(root.querySelectorAll("[data-attune-" + name + "]"), fn);
  }
  function render(s, p, dec) {
    var tpl = s.querySelector("template") || d.getElementById(s.getAttribute("data-template"));
    if (!tpl) return false;
    var href = s.getAttribute("data-href") || "", frag = d.createDocumentFragment();
    var me = dec.me_url ? cfg.endpoint + dec.me_url : "";
    p.items.forEach(function (it) {
      var node = tpl.content.cloneNode(true), why = it.reasons.map(function (r) { return r.text; }).join(" · ");
      var fields = { id: it.id, title: it.title, headline: it.copy ? it.copy.headline : it.title, kind: it.kind, why: why };
      set(node, "field", function (el) { el.textContent = fields[el.getAttribute("data-attune-field")] || ""; });
      set(node, "link", function (el) { el.setAttribute("href", href.replace("{id}", encodeURIComponent(it.id))); });
      set(node, "me", function (el) { if (me) el.setAttribute("href", me); else el.hidden = true; });
      [].forEach.call(node.children, function (el) {
        el.setAttribute("data-attune-id", it.id);
        el.setAttribute("data-attune-decision", dec.decision_id);
      });
      frag.appendChild(node);
    });
    [].slice.call(s.childNodes).forEach(function (n) { if (n !== tpl) s.removeChild(n); });
    s.appendChild(frag);
    if (!s.__attune) {
      s.__attune = true;
      s.addEventListener("click", function (ev) {
        var el = ev.target.closest && ev.target.closest("[data-attune-id]");
        if (!el || (ev.target.closest("[data-attune-me]"))) return;
        track("click", null, { item: el.getAttribute("data-attune-id"), decision_id: el.getAttribute("data-attune-decision") });
        flush();
      });
    }
    return true;
  }

  var attune = {
    version: 1,
    // init({key, endpoint, consent, timeout}): `consent` is the banner hook, called (with a
    // function to report the choice) when no choice is stored; or a known choice (object or false).
    init: function (o) {
      cfg = o || {};
      if (!cfg.endpoint) {
        var src = (d.currentScript && d.currentScript.src) || location.href;
        cfg.endpoint = new URL(src, location.href).origin;
      }
      cfg.endpoint = cfg.endpoint.replace(/\/$/, "");
      var s = stored();
      if (s && s.consent && s.id) {
        anon = s.id; choice = s.consent; user = null;
        when(start);
      } else if (typeof cfg.consent === "function") {
        when(function () { cfg.consent(attune.consent); });
      } else if (cfg.consent !== undefined) {
        attune.consent(cfg.consent);
      }
      return attune;
    },
    // The site's choice: false (declined), true, or {personalization, analytics, contextual, ...}.
    consent: function (c) {
      var was = choice, prior = stored();
      if (c === true) c = { personalization: true, analytics: true };
      if (!c || c.personalization === false) {
        queue = [];
        choice = null;
        var s = storage();
        if (s) try { s.removeItem(STORE); } catch (e) { /* blocked */ }
        // A withdrawal is sent only when a choice was stored before; a first "no" sends nothing.
        if (prior && prior.id && (was || prior.consent)) {
          api("PUT", "/v1/users/" + encodeURIComponent(prior.id) + "/consent", { personalization: false, analytics: false }).catch(function () {});
        }
        return Promise.resolve(false);
      }
      choice = c;
      anon = (prior && prior.id) || anon || "anon-" + rid();
      save();
      return api("PUT", "/v1/users/" + encodeURIComponent(anon) + "/consent", c).then(function () {
        when(start);
        return true;
      }, function () { when(start); return true; });
    },
    // After sign-in: the user id and the identity token the site's back end signed for it.
    identify: function (userId, userToken) {
      if (!consented()) return Promise.resolve(false);
      flush();
      // From now on events and decisions name the user (with the token); the merge moves the
      // visitor's earlier history. Call it on every page of a signed-in person, right after init.
      var from = anon;
      user = userId; token = userToken;
      return api("POST", "/v1/identify", { anonymous_id: from, user: userId, user_token: userToken }).then(function () {
        return true;
      });
    },
    track: function (type, properties, extra) { track(type, properties, extra); },
    flush: flush,
    anonymousId: function () { return consented() ? anon : null; }
  };
  function when(fn) {
    if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", fn);
    else fn();
  }
  w.attune = attune;
})(window, document);
