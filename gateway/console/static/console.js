// The gateway's ops console. Plain JavaScript, served by the gateway itself (no CDN).
//
// Every POLL_MS (GATEWAY_CONSOLE__REFRESH_S, given in the page's refresh-ms meta tag) it reads the admin API with the session cookie (GET /admin/routes,
// /admin/ui/stats, /admin/audit) and updates one card per route. The quality chart is a time
// series kept in this page: it starts when the page is opened. Actions go through the admin
// API with the page's CSRF token; each needs a reason and a confirmation, and is sent with the
// flag version shown (compare-and-set), so a change made meanwhile comes back as 409 and is
// shown in the banner.
"use strict";

(function () {
  const POLL_MS = Number(document.querySelector('meta[name="refresh-ms"]').content) || 2000;
  const HISTORY = 300; // chart points kept per route (10 minutes at the default 2 s)
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const cards = new Map(); // route name -> {root, parts}
  const history = new Map(); // route name -> [{t, cand, fall, ceiling}]
  let previous = null; // last /admin/ui/stats answer, for rates
  let pending = null; // the action waiting for confirmation
  const opened = new Set(); // audit entry ids whose evidence is unfolded (kept across polls)

  // ---- small helpers -----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const pct = (weight) => (weight / 1000).toLocaleString(undefined, { maximumFractionDigits: 3 }) + "%";
  const ratio = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
  const num = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString());
  const secs = (x) => (x === null || x === undefined ? "–" : x < 1 ? (1000 * x).toFixed(0) + " ms" : x.toFixed(2) + " s");
  const usd = (x) => (x === null || x === undefined ? "–" : "$" + x.toFixed(4));
  const when = (t) => new Date(t * 1000).toLocaleString();

  function banner(text, kind) {
    const box = document.getElementById("banner");
    box.textContent = text;
    box.className = "banner " + (kind || "error");
    box.hidden = !text;
  }

  async function api(method, path, body) {
    const headers = { accept: "application/json", "x-csrf-token": csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.status === 401) {
      window.location.assign("/admin/ui/login");
      throw new Error("session ended");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, data };
  }

  function errorText(result) {
    const error = result.data && result.data.error;
    let text = `${result.status}: ${error ? error.message : "unexpected answer"}`;
    if (result.status === 409 && result.data && result.data.current) {
      const cur = result.data.current;
      text =
        `Conflict (409, ${error ? error.code : "conflict"}): ${error ? error.message : ""} ` +
        `The flag is now v${cur.version}: ${cur.status}, weight ${pct(cur.weight)}, ` +
        `by ${cur.updated_by || "?"} (${cur.reason || "no reason"}). Nothing was changed; ` +
        `the page shows the new state, decide again.`;
    }
    return text;
  }

  // ---- one card per route ------------------------------------------------------------------

  function card(route) {
    if (cards.has(route.name)) return cards.get(route.name);
    const p = {};
    const root = el("section", { class: "route", "data-route": route.name, id: "route-" + route.name });
    p.title = el("h2", { text: route.name });
    p.status = el("span", { class: "badge", "data-field": "status" });
    p.desc = el("p", { class: "muted", text: route.description || "" });
    p.flag = el("dl", { class: "facts", "data-field": "flag" });
    p.ramp = el("p", { class: "ramp", "data-field": "ramp" });
    p.mix = el("div", { class: "mix", "data-field": "mix" });
    p.mixText = el("p", { class: "muted small", "data-field": "mix-text" });
    p.variants = el("tbody");
    const table = el(
      "table",
      { class: "variants" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["variant", "role", "model", "req/s", "requests", "5xx", "tokens in/out", "latency mean / p95", "cost / 1k req"].map(
            (h) => el("th", { text: h })
          )
        )
      ),
      p.variants
    );
    p.chart = svg("svg", { viewBox: "0 0 400 140", class: "chart", role: "img" });
    p.quality = el("p", { class: "small", "data-field": "quality" });
    p.replicas = el("ul", { class: "replicas", "data-field": "replicas" });
    p.weight = el("input", { type: "text", class: "weight", "data-field": "weight-input", placeholder: "e.g. 10%", size: "8" });
    const button = (action, label, cls) =>
      el("button", { type: "button", "data-action": action, class: cls || "", text: label });
    p.pause = button("pause", "Pause ramp");
    p.resume = button("resume", "Resume ramp");
    const actions = el(
      "div",
      { class: "actions" },
      el("label", { text: "weight " }, p.weight),
      button("weight", "Set weight"),
      p.pause,
      p.resume,
      button("rollback", "Roll back", "danger"),
      button("release", "Release")
    );
    actions.addEventListener("click", (event) => {
      const action = event.target.getAttribute && event.target.getAttribute("data-action");
      if (action) ask(route.name, action);
    });
    root.append(
      el("div", { class: "head" }, p.title, p.status),
      p.desc,
      el(
        "div",
        { class: "grid" },
        el("div", {}, el("h3", { text: "Flag" }), p.flag, p.ramp, el("h3", { text: "Decision mix (last poll)" }), p.mix, p.mixText),
        el("div", {}, el("h3", { text: "Quality: failure rate, always-valid interval" }), p.chart, p.quality)
      ),
      el("h3", { text: "Variants (this replica)" }),
      table,
      el("h3", { text: "Replicas" }),
      p.replicas,
      actions
    );
    document.getElementById("routes").append(root);
    const entry = { root, parts: p, route: null };
    cards.set(route.name, entry);
    return entry;
  }

  function fact(dl, name, value) {
    dl.append(el("dt", { text: name }), el("dd", { "data-field": "flag-" + name, text: value }));
  }

  function renderRamp(p, ramp) {
    // Pause only a climbing ramp, resume only a held one; without a ramp, neither.
    p.pause.disabled = !ramp || ramp.state !== "ramping";
    p.resume.disabled = !ramp || !["paused", "stopped"].includes(ramp.state);
    if (!ramp) {
      p.ramp.textContent = "no ramp";
      return;
    }
    const steps = ramp.steps || [];
    const position = ramp.step; // 0-based
    const bound = ramp.upper_bound === null || ramp.upper_bound === undefined ? "–" : ratio(ramp.upper_bound);
    p.ramp.textContent =
      `ramp ${ramp.state}: step ${position + 1} of ${steps.length} (${steps.map(pct).join(" → ")}), ` +
      `samples ${num(ramp.samples)} / ${num(ramp.min_samples)}, ` +
      `bound ${bound} vs margin ${ratio(ramp.margin)}, ` +
      `dwell left ${Math.max(0, Math.round(ramp.dwell_remaining_s || 0))} s` +
      (ramp.why ? `. ${ramp.why}` : "");
  }

  function renderMix(p, name, stats) {
    const now = stats.routes[name];
    if (!now) return;
    const before = previous && previous.routes[name];
    const counts = {};
    let total = 0;
    for (const [decision, n] of Object.entries(now.decisions)) {
      const d = n - ((before && before.decisions[decision]) || 0);
      if (d > 0) {
        counts[decision] = d;
        total += d;
      }
    }
    p.mix.replaceChildren();
    if (!total) {
      p.mixText.textContent = "no requests since the last poll";
      return;
    }
    const parts = [];
    for (const [decision, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
      const share = n / total;
      const seg = el("span", { class: "seg d-" + decision, title: decision });
      seg.style.width = `${(100 * share).toFixed(2)}%`; // CSSOM: allowed by the page's CSP
      p.mix.append(seg);
      parts.push(`${decision} ${(100 * share).toFixed(0)}%`);
    }
    let text = parts.join(", ") + ` of ${total} requests`;
    const route = cards.get(name).route;
    const cand = now.variants[route.candidate];
    const candBefore = before && before.variants[route.candidate];
    if (cand) {
      const served = cand.requests - ((candBefore && candBefore.requests) || 0);
      const answered = Object.entries(now.variants).reduce(
        (sum, [v, s]) => sum + s.requests - ((before && before.variants[v] && before.variants[v].requests) || 0),
        0
      );
      if (answered > 0) text += `; the candidate answered ${((100 * served) / answered).toFixed(0)}%`;
    }
    p.mixText.textContent = text;
  }

  function renderVariants(p, route, stats) {
    const now = (stats.routes[route.name] || { variants: {} }).variants;
    const before = previous && previous.routes[route.name] ? previous.routes[route.name].variants : {};
    const dt = previous ? stats.at - previous.at : 0;
    p.variants.replaceChildren();
    for (const [vname, v] of Object.entries(route.variants)) {
      const s = now[vname] || {};
      const b = before[vname] || {};
      const rate = dt > 0 && s.requests !== undefined ? (s.requests - (b.requests || 0)) / dt : null;
      p.variants.append(
        el(
          "tr",
          { "data-variant": vname },
          el("td", { text: vname }),
          el("td", { text: v.role }),
          el("td", { text: v.model }),
          el("td", { text: rate === null ? "–" : rate.toFixed(2) }),
          el("td", { text: num(s.requests) }),
          el("td", { text: num(s.errors) }),
          el("td", { text: `${num(s.input_tokens)} / ${num(s.output_tokens)}` }),
          el("td", { text: `${secs(s.latency_mean_s)} / ${s.latency_p95_s ? "≤ " + secs(s.latency_p95_s) : "–"}` }),
          el("td", { text: usd(s.cost_per_1k_requests_usd) })
        )
      );
    }
  }

  function renderQuality(p, route) {
    const guard = route.guard;
    const points = history.get(route.name) || [];
    if (guard && guard.verdict) {
      const v = guard.verdict;
      points.push({ t: Date.now(), cand: v.candidate, fall: v.fallback, ceiling: v.ceiling });
      if (points.length > HISTORY) points.shift();
      history.set(route.name, points);
      p.quality.textContent =
        `guard ${guard.status} (${guard.mode}): candidate ${ratio(v.candidate.rate)} ` +
        `[${ratio(v.candidate.lower)}, ${ratio(v.candidate.upper)}] of ${num(v.candidate.n)}, ` +
        `fallback ${ratio(v.fallback.rate)} [${ratio(v.fallback.lower)}, ${ratio(v.fallback.upper)}] ` +
        `of ${num(v.fallback.n)}; ceiling ${ratio(v.ceiling)}, margin ${ratio(v.margin)}. ${v.why || ""}`;
    } else {
      p.quality.textContent = guard ? `guard: ${guard.status}` : "no guard on this route";
    }
    drawChart(p.chart, points);
  }

  function drawChart(chart, points) {
    const W = 400, H = 140, L = 34, B = 16;
    chart.replaceChildren();
    let top = 0.1;
    for (const q of points) top = Math.max(top, q.cand.upper || 0, q.fall.upper || 0, q.ceiling * 1.2);
    top = Math.min(1, top);
    const y = (v) => H - B - ((H - B - 4) * v) / top;
    // Time runs left to right from the first point; the axis spans at least a minute.
    const t0 = points.length ? points[0].t : 0;
    const span = points.length ? Math.max(60000, points[points.length - 1].t - t0) : 60000;
    const x = (i) => L + ((W - L - 4) * (points[i].t - t0)) / span;
    chart.append(svg("rect", { x: L, y: 4, width: W - L - 4, height: H - B - 4, class: "frame" }));
    for (const tick of [0, top / 2, top]) {
      chart.append(svg("line", { x1: L, x2: W - 4, y1: y(tick), y2: y(tick), class: "grid" }));
      const label = svg("text", { x: 2, y: y(tick) + 4, class: "tick" });
      label.textContent = ratio(tick);
      chart.append(label);
    }
    if (!points.length) {
      const t = svg("text", { x: L + 10, y: H / 2, class: "tick" });
      t.textContent = "no outcomes yet";
      chart.append(t);
      return;
    }
    const ceiling = points[points.length - 1].ceiling;
    chart.append(svg("line", { x1: L, x2: W - 4, y1: y(ceiling), y2: y(ceiling), class: "ceiling" }));
    const band = [];
    points.forEach((q, i) => band.push(`${x(i)},${y(q.cand.upper)}`));
    for (let i = points.length - 1; i >= 0; i--) band.push(`${x(i)},${y(points[i].cand.lower)}`);
    chart.append(svg("polygon", { points: band.join(" "), class: "band" }));
    const line = (side, cls) => {
      const pts = points
        .map((q, i) => (q[side].rate === null ? null : `${x(i)},${y(q[side].rate)}`))
        .filter((s) => s !== null);
      if (pts.length) chart.append(svg("polyline", { points: pts.join(" "), class: cls }));
    };
    line("fall", "fallback");
    line("cand", "candidate");
    const legend = svg("text", { x: L + 6, y: H - 2, class: "tick" });
    legend.textContent = "candidate (band: interval) · fallback · ceiling (dashed) · since page load";
    chart.append(legend);
  }

  function renderReplicas(p, route) {
    p.replicas.replaceChildren();
    if (!route.replicas || !route.replicas.length) {
      p.replicas.append(el("li", { class: "muted", text: "no heartbeats yet" }));
      return;
    }
    for (const r of route.replicas) {
      const version = r.version === null ? "no flag" : "v" + r.version;
      const text = `${r.replica}: ${version} (${r.source})${r.lagging ? ", lagging" : ""}, heartbeat ${r.age_s.toFixed(1)} s ago`;
      p.replicas.append(el("li", { class: r.lagging ? "lagging" : "", text }));
    }
  }

  function render(routes, stats) {
    for (const route of routes) {
      const entry = card(route);
      const p = entry.parts;
      entry.route = route;
      const flag = route.flag;
      p.status.textContent = flag ? (flag.enabled ? flag.status : "disabled") : "no flag";
      p.status.className = "badge " + (flag ? (flag.enabled ? flag.status : "disabled") : "none");
      p.flag.replaceChildren();
      if (flag) {
        fact(p.flag, "weight", pct(flag.weight));
        fact(p.flag, "version", "v" + flag.version);
        fact(p.flag, "rollout", flag.rollout_id);
        fact(p.flag, "candidate", flag.candidate_model || route.variants[route.candidate].model);
        fact(p.flag, "last change", `${flag.updated_by || "routes file"}: ${flag.reason || "–"}`);
      }
      renderRamp(p, route.ramp);
      if (stats) {
        renderMix(p, route.name, stats);
        renderVariants(p, route, stats);
      }
      renderQuality(p, route);
      renderReplicas(p, route);
    }
  }

  function renderAudit(entries) {
    const list = document.getElementById("audit");
    list.replaceChildren();
    for (const e of entries) {
      const before = e.before ? `${e.before.status} ${pct(e.before.weight)}` : "–";
      const after = e.after ? `${e.after.status} ${pct(e.after.weight)} (v${e.after.version})` : "–";
      const item = el(
        "li",
        { class: "audit-entry " + (e.trigger || ""), "data-action": e.action, "data-route": e.route },
        el("time", { text: when(e.at) }),
        el("strong", { text: ` ${e.route} ${e.action} ` }),
        el("span", { text: `by ${e.actor} (${e.trigger}): ` }),
        el("q", { class: "reason", text: e.reason || "" }),
        el("span", { class: "muted", text: ` ${before} → ${after}` })
      );
      if (e.evidence) {
        const details = el("details", {}, el("summary", { text: e.trigger === "guard" ? "guard's evidence" : "evidence" }));
        details.append(el("pre", { text: JSON.stringify(e.evidence, null, 2) }));
        details.open = opened.has(e.id);
        details.addEventListener("toggle", () => (details.open ? opened.add(e.id) : opened.delete(e.id)));
        item.append(details);
      }
      list.append(item);
    }
  }

  // ---- actions -----------------------------------------------------------------------------

  function parseWeight(text) {
    const t = text.trim();
    if (!t) return null;
    const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
    const value = m ? Math.round(parseFloat(m[1]) * 1000) : /^\d+$/.test(t) ? parseInt(t, 10) : NaN;
    return Number.isFinite(value) && value >= 0 && value <= 100000 ? value : NaN;
  }

  function ask(name, action) {
    const entry = cards.get(name);
    const route = entry.route;
    const flag = route.flag || { version: 0, weight: 0 };
    const weight = parseWeight(entry.parts.weight.value);
    let text;
    if (action === "weight") {
      if (weight === null || Number.isNaN(weight)) {
        banner("Enter a weight as a percentage (10%) or in thousandths of a percent (10000).");
        return;
      }
      text = `Set ${name}'s weight from ${pct(flag.weight)} to ${pct(weight)}?`;
    } else if (action === "rollback") {
      text = `Roll ${name} back? All traffic goes to the fallback until someone releases it.`;
    } else if (action === "release") {
      if (Number.isNaN(weight)) {
        banner("The weight box holds no valid weight.");
        return;
      }
      text = `Release ${name} (a new rollout)` + (weight === null ? "?" : ` at ${pct(weight)}?`);
    } else {
      text = `${action === "pause" ? "Pause" : "Resume"} ${name}'s ramp?`;
    }
    pending = { name, action, weight, version: flag.version };
    document.getElementById("confirm-title").textContent = "Confirm: " + action;
    document.getElementById("confirm-text").textContent = text + ` (based on v${flag.version})`;
    document.getElementById("confirm-reason").value = "";
    document.getElementById("confirm-error").hidden = true;
    document.getElementById("confirm").showModal();
  }

  async function perform(reason) {
    const { name, action, weight, version } = pending;
    const base = "/admin/flags/" + encodeURIComponent(name);
    let result;
    if (action === "weight") result = await api("PATCH", base, { reason, weight, version });
    else if (action === "rollback") result = await api("POST", base + "/rollback", { reason, version });
    else if (action === "release") {
      const body = { reason, version };
      if (weight !== null) body.weight = weight;
      result = await api("POST", base + "/release", body);
    } else result = await api("POST", `${base}/ramp/${action}`, { reason, version });
    if (result.status === 200) {
      banner(`${name}: ${action} done, now v${result.data.version} (${result.data.status}, ${pct(result.data.weight)}).`, "ok");
    } else {
      banner(`${name}: ${action} refused. ${errorText(result)}`);
    }
    await refresh();
  }

  function wireDialog() {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-cancel").addEventListener("click", () => {
      pending = null;
      dialog.close();
    });
    document.getElementById("confirm-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = document.getElementById("confirm-reason").value.trim();
      if (!reason) {
        const err = document.getElementById("confirm-error");
        err.textContent = "A reason is required.";
        err.hidden = false;
        return;
      }
      dialog.close();
      try {
        await perform(reason);
      } catch (e) {
        banner("The action could not be sent: " + e.message);
      }
      pending = null;
    });
  }

  // ---- polling -----------------------------------------------------------------------------

  async function refresh() {
    const [routes, stats, audit] = await Promise.all([
      api("GET", "/admin/routes"),
      api("GET", "/admin/ui/stats"),
      api("GET", "/admin/audit?limit=30"),
    ]);
    if (routes.status !== 200) {
      banner("Could not read the routes: " + errorText(routes));
      return;
    }
    render(routes.data, stats.status === 200 ? stats.data : null);
    if (stats.status === 200) previous = stats.data;
    if (audit.status === 200) renderAudit(audit.data.data);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.setAttribute("data-loaded", "true");
  }

  async function loop() {
    try {
      await refresh();
    } catch (e) {
      document.getElementById("updated").textContent = "not updated: " + e.message;
    }
    window.setTimeout(loop, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireDialog();
    loop();
  });
})();
