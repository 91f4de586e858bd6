// streamkit dashboard. Every value from the stream is untrusted: it is put into the page
// only as text (textContent, createTextNode, SVG <title> text), never parsed as markup.
"use strict";

(function () {
  const REFRESH_MS = Math.max(200, parseInt(document.body.dataset.refreshMs, 10) || 2000);
  const PARAMS = new URLSearchParams(location.search);
  const TOKEN = PARAMS.get("token");
  // ?live=poll skips server-sent events (for proxies that buffer them, and for headless
  // browsers whose virtual clock waits for open connections)
  const POLL_ONLY = PARAMS.get("live") === "poll";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4cc2ff", "#3ecf8e", "#f5b945", "#ff6b6b", "#b18cff", "#ff9f5a", "#5ee0d6", "#e86fb5",
                  "#9fd356", "#8aa4ff"];
  const nf = new Intl.NumberFormat("en-US");
  const nf1 = new Intl.NumberFormat("en-US", {maximumFractionDigits: 1});
  const nf2 = new Intl.NumberFormat("en-US", {maximumFractionDigits: 2});
  const tables = new Map();   // aggregation name -> table state
  let lastSummary = null;

  // -- small DOM helpers (text only) -----------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function setText(id, text) {
    const e = $(id);
    const s = text === undefined || text === null ? "–" : String(text);
    if (e.textContent !== s) {
      e.textContent = s;
      e.classList.add("flash");
      setTimeout(function () { e.classList.remove("flash"); }, 400);
    }
  }

  function keyText(v) {
    if (v === null || v === undefined) return "(none)";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function num(v, fmt) {
    if (v === null || v === undefined) return "–";
    return (fmt || nf).format(v);
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString([], {hour12: false});
  }

  function windowText(w) {
    if (!w || !w.start) return "all-time";
    const s = new Date(w.start), e = w.end ? new Date(w.end) : null;
    const opts = {hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "UTC"};
    const day = s.toISOString().slice(0, 10);
    return day + " " + s.toLocaleTimeString([], opts) + (e ? "–" + e.toLocaleTimeString([], opts) : "") + " UTC";
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 1) return "just now";
    if (seconds < 90) return Math.round(seconds) + "s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + "m ago";
    return Math.round(seconds / 3600) + "h ago";
  }

  function withToken(path) {
    if (!TOKEN) return path;
    return path + (path.indexOf("?") >= 0 ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
  }

  async function api(path) {
    const headers = TOKEN ? {"Authorization": "Bearer " + TOKEN} : {};
    const r = await fetch(path, {headers: headers, cache: "no-store"});
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
    return body;
  }

  function showError(message) {
    const b = $("error");
    if (!message) { b.hidden = true; return; }
    b.textContent = message;
    b.hidden = false;
  }

  // -- summary ---------------------------------------------------------------------------
  function renderSummary(s) {
    if (s.error) { showError(s.error); return; }
    showError(null);
    lastSummary = s;
    const users = s.users, items = s.items, h = s.health;
    setText("kpi-total", num(s.total_interactions));
    $("kpi-total-sub").textContent = s.total_interactions === null ? "" : "all-time";
    setText("kpi-users", num(s.distinct_users));
    $("kpi-users-sub").textContent = users ? "by " + users.field : "";
    setText("kpi-avg", num(s.average_per_user, nf2));
    $("kpi-avg-sub").textContent = users && users.distinct ? "interactions" : "";
    const most = s.most_interacted_item, fewest = s.fewest_interacted_item;
    setText("kpi-most", most ? keyText(most.key) : null);
    $("kpi-most-sub").textContent = most ? items.field + " · " + num(most.count) : "";
    setText("kpi-fewest", fewest ? keyText(fewest.key) : null);
    $("kpi-fewest-sub").textContent = fewest ? items.field + " · " + num(fewest.count) : "";
    setText("kpi-rate", num(h.records_per_second, nf1));
    $("kpi-rate-sub").textContent = h.running + (h.running === 1 ? " process" : " processes") + " running";
    setText("kpi-dead", num(h.dead_letters));
    $("kpi-dead-sub").textContent = h.records_read ? nf2.format(100 * h.dead_letters / h.records_read) + "% of records" : "";
    setText("kpi-lag", h.lag === null || h.lag === undefined ? "n/a" : num(h.lag));
    $("kpi-lag-sub").textContent = h.lag === null || h.lag === undefined ? "not reported" : "records behind";
    renderMissing(s.missing || []);
    renderBars("top-users", "top-users-sub", users, users ? users.top : []);
    renderBars("top-items", "top-items-sub", items, items ? items.top : []);
    renderDistinct(s.distinct_per_item);
    renderQuantiles(s.quantiles_per_type);
    renderChart(s.types_over_time);
    renderHealth(h);
    renderAlerts(s.alerts);
    $("updated").textContent = when(s.generated_at);
    syncTables(s.aggregations || []);
  }

  function renderMissing(missing) {
    const b = $("missing");
    b.replaceChildren();
    if (!missing.length) { b.hidden = true; return; }
    b.appendChild(el("p", null, "Some figures need an aggregation this pipeline does not have:"));
    for (const m of missing) {
      const p = el("p");
      p.appendChild(document.createTextNode(m.figures + " — add "));
      p.appendChild(el("code", null, m.add));
      p.appendChild(document.createTextNode(" to the pipeline's aggregations."));
      b.appendChild(p);
    }
    b.hidden = false;
  }

  function renderBars(listId, subId, block, rows) {
    const list = $(listId);
    list.replaceChildren();
    $(subId).textContent = block ? block.aggregation : "";
    if (!block) { list.appendChild(el("li", "empty-note", "no per-key aggregation (see above)")); return; }
    if (!rows.length) { list.appendChild(el("li", "empty-note", "no data yet")); return; }
    const max = Math.max.apply(null, rows.map(function (r) { return r.count || 0; })) || 1;
    rows.forEach(function (r, i) {
      const li = el("li");
      li.appendChild(el("span", "rank", i + 1));
      const label = el("span", "label");
      const fill = el("span", "fill");
      fill.style.width = (100 * (r.count || 0) / max).toFixed(1) + "%";
      label.appendChild(fill);
      label.appendChild(el("span", "text", keyText(r.key)));
      label.title = keyText(r.key);
      li.appendChild(label);
      li.appendChild(el("span", "count", num(r.count)));
      list.appendChild(li);
    });
  }

  function renderDistinct(block) {
    if (!block) {
      const list = $("distinct-items");
      list.replaceChildren(el("li", "empty-note", "add {name: users_per_item, type: distinct, field: user_id, group_by: [item_id]}"));
      $("distinct-items-sub").textContent = "";
      return;
    }
    renderBars("distinct-items", "distinct-items-sub", block, block.top);
  }

  function renderQuantiles(block) {
    const table = $("quantiles"), head = table.tHead, body = table.tBodies[0];
    head.replaceChildren();
    body.replaceChildren();
    $("quantiles-sub").textContent = block ? block.aggregation + (block.of ? " · " + block.of : "") : "";
    if (!block) {
      const tr = el("tr");
      tr.appendChild(el("td", "empty-note", "add {name: duration_percentiles_per_type, type: percentiles, field: duration_ms, group_by: [interaction_type]}"));
      body.appendChild(tr);
      return;
    }
    const hr = el("tr");
    hr.appendChild(el("th", null, block.field));
    block.quantiles.forEach(function (q) { hr.appendChild(el("th", "num", q)); });
    hr.appendChild(el("th", "num", "count"));
    head.appendChild(hr);
    if (!block.rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", "empty-note", "no data yet"));
      body.appendChild(tr);
      return;
    }
    for (const r of block.rows) {
      const tr = el("tr");
      tr.appendChild(el("td", "key", keyText(r.key)));
      block.quantiles.forEach(function (q) {
        const v = r.values[q];
        tr.appendChild(el("td", "num" + (q === block.primary ? " primary" : ""), v === null || v === undefined ? "–" : nf2.format(v)));
      });
      tr.appendChild(el("td", "num", num(r.count)));
      body.appendChild(tr);
    }
  }

  // -- over-time chart (inline SVG, no library) -----------------------------------------
  function renderChart(t) {
    const box = $("chart"), legend = $("legend");
    box.replaceChildren();
    legend.replaceChildren();
    const W = 760, H = 250, L = 52, R = 14, T = 12, B = 28;
    const root = svg("svg", {viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img"});
    box.appendChild(root);
    if (!t || !t.windows.length) {
      $("chart-sub").textContent = t ? t.aggregation + " · " + t.window : "";
      const msg = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty"});
      msg.textContent = t ? "no windows yet" : "no windowed per-type aggregation (see above)";
      root.appendChild(msg);
      return;
    }
    // windows that close say which are final: solid up to the newest closed one, dashed after;
    // otherwise the newest window is taken as still filling
    const closes = Array.isArray(t.final);
    const open = closes ? t.final.indexOf(false) : t.windows.length - 1;  // first still-open window
    $("chart-sub").textContent = t.window + " · last " + t.windows.length +
      (closes ? " · solid: final · dashed: open" : (t.windows.length > 1 ? " · dashed: still filling" : ""));
    $("chart-sub").title = t.aggregation;
    let max = 0;
    for (const s of t.series) for (const v of s.values) if (v > max) max = v;
    const ticks = niceTicks(max);
    const top = ticks[ticks.length - 1] || 1;
    const n = t.windows.length;
    const x = function (i) { return n === 1 ? (L + W - R) / 2 : L + (W - L - R) * i / (n - 1); };
    const y = function (v) { return T + (H - T - B) * (1 - v / top); };
    for (const tv of ticks) {
      root.appendChild(svg("line", {x1: L, x2: W - R, y1: y(tv), y2: y(tv), "class": tv === 0 ? "axis" : "gridline"}));
      const lab = svg("text", {x: L - 8, y: y(tv) + 4, "text-anchor": "end"});
      lab.textContent = compact(tv);
      root.appendChild(lab);
    }
    const every = Math.max(1, Math.ceil(n / 8));
    for (let i = 0; i < n; i += every) {
      const anchor = i === 0 ? "start" : (i + every >= n ? "end" : "middle");  // keep the ends inside
      const lab = svg("text", {x: x(i), y: H - 8, "text-anchor": n === 1 ? "middle" : anchor});
      lab.textContent = new Date(t.windows[i]).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
      root.appendChild(lab);
    }
    t.series.forEach(function (s, k) {
      const color = COLORS[k % COLORS.length];
      const pts = s.values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); });
      const line = {fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round",
                    "vector-effect": "non-scaling-stroke"};
      // segments into a window still open are dashed, so a dip reads as "so far"
      const cut = open < 0 ? n : open;  // points before it are final
      if (cut > 0 || n === 1) {
        const solid = Object.assign({points: pts.slice(0, Math.max(1, cut)).join(" ")}, line);
        if (closes) solid["class"] = "final";
        root.appendChild(svg("polyline", solid));
      }
      if (cut < n && n > 1) {
        root.appendChild(svg("polyline", Object.assign({points: pts.slice(Math.max(0, cut - 1)).join(" "),
                                                        "stroke-dasharray": "4 4", "class": "current"}, line)));
      }
      s.values.forEach(function (v, i) {
        const c = svg("circle", {cx: x(i), cy: y(v), r: i === n - 1 ? 3.5 : 2, fill: color});
        const tip = svg("title", {});
        tip.textContent = keyText(s.key) + " · " + when(t.windows[i]) + " · " + nf.format(v);
        c.appendChild(tip);
        root.appendChild(c);
      });
      const item = el("span");
      const sw = el("span", "sw");
      sw.style.background = color;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(keyText(s.key)));
      item.appendChild(el("span", "n", nf.format(s.values[n - 1])));
      legend.appendChild(item);
    });
  }

  function niceTicks(max) {
    if (!max) return [0, 1];
    const raw = max / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
    const out = [];
    for (let v = 0; v <= max + step * 0.999; v += step) out.push(Math.round(v * 1000) / 1000);
    return out;
  }

  function compact(v) {
    if (v >= 1e6) return nf1.format(v / 1e6) + "M";
    if (v >= 1e4) return nf1.format(v / 1e3) + "k";
    return nf.format(v);
  }

  // -- health and alerts -----------------------------------------------------------------
  function renderHealth(h) {
    const body = $("health").tBodies[0];
    body.replaceChildren();
    $("health-sub").textContent = h.last_flush ? "last flush " + when(h.last_flush) : "no flush yet";
    if (!h.processes.length) {
      const tr = el("tr"), td = el("td", "empty-note", "no pipeline has reported yet");
      td.colSpan = 9;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const p of h.processes) {
      const tr = el("tr");
      tr.appendChild(el("td", null, p.pipeline));
      tr.appendChild(el("td", "key", p.host + ":" + p.pid));
      const st = el("td");
      st.appendChild(el("span", "state " + (["running", "stopped", "stale"].indexOf(p.state) >= 0 ? p.state : ""), p.state));
      tr.appendChild(st);
      tr.appendChild(el("td", "num", num(p.records_read)));
      tr.appendChild(el("td", "num", num(p.records_per_second, nf1)));
      tr.appendChild(el("td", "num", num(p.dead_letters)));
      tr.appendChild(el("td", "num", num(p.flushes)));
      const flushed = el("td", null, p.last_flush ? ago(p.last_flush_age) : "never");
      if (p.last_flush) flushed.title = p.last_flush;
      tr.appendChild(flushed);
      const lagCell = el("td", "num", p.lag_total === null || p.lag_total === undefined ? "n/a" : num(p.lag_total));
      if (p.lag && p.lag.length) lagCell.title = p.lag.map(function (l) { return l.partition + ": " + l.lag; }).join("\n");
      tr.appendChild(lagCell);
      body.appendChild(tr);
    }
  }

  function renderAlerts(a) {
    const list = $("alerts");
    list.replaceChildren();
    $("alerts-sub").textContent = a.total ? nf.format(a.total) + " fired" : "";
    if (!a.recent.length) { list.appendChild(el("li", "empty-note", "no alert has fired")); return; }
    for (const x of a.recent) {
      const li = el("li");
      li.appendChild(el("div", "when", when(x.fired_at) + " · " + (x.rule || "")));
      li.appendChild(el("div", "what", x.message || ""));
      list.appendChild(li);
    }
  }

  // -- aggregation tables ----------------------------------------------------------------
  function syncTables(names) {
    const host = $("aggregations");
    for (const name of names) {
      if (!tables.has(name)) {
        const t = makeTable(name);
        tables.set(name, t);
        host.appendChild(t.card);
      }
    }
    tables.forEach(function (t) { if (t.live) loadTable(t); });
  }

  function makeTable(name) {
    const t = {name: name, sort: null, order: "desc", keySort: null, window: null, limit: 10,
               live: true, busy: false, data: null};
    t.card = el("div", "card agg");
    const head = el("div", "card-head");
    head.appendChild(el("h2", null, name));
    t.metaEl = el("span", "meta");
    head.appendChild(t.metaEl);
    t.card.appendChild(head);
    t.nav = el("div", "nav");
    t.prev = el("button", null, "◀ earlier");
    t.latest = el("button", null, "latest");
    t.next = el("button", null, "later ▶");
    t.winEl = el("span");
    t.prev.addEventListener("click", function () { if (t.data && t.data.previous_window) { t.window = t.data.previous_window; loadTable(t); } });
    t.next.addEventListener("click", function () { if (t.data && t.data.next_window) { t.window = t.data.next_window; loadTable(t); } });
    t.latest.addEventListener("click", function () { t.window = null; loadTable(t); });
    [t.prev, t.latest, t.next, t.winEl].forEach(function (b) { t.nav.appendChild(b); });
    t.nav.hidden = true;
    t.card.appendChild(t.nav);
    const scroll = el("div", "scroll");
    t.table = el("table", "grid");
    t.table.appendChild(el("thead"));
    t.table.appendChild(el("tbody"));
    scroll.appendChild(t.table);
    t.card.appendChild(scroll);
    const foot = el("div", "foot");
    t.countEl = el("span");
    t.more = el("button", null, "show 50");
    t.more.addEventListener("click", function () { t.limit = t.limit === 10 ? 50 : 10; loadTable(t); });
    foot.appendChild(t.countEl);
    foot.appendChild(t.more);
    t.card.appendChild(foot);
    return t;
  }

  async function loadTable(t) {
    if (t.busy) return;
    t.busy = true;
    let q = "?limit=" + t.limit + "&order=" + t.order;
    if (t.sort) q += "&sort=" + encodeURIComponent(t.sort);
    if (t.window) q += "&window=" + encodeURIComponent(t.window);
    try {
      t.data = await api("api/aggregations/" + encodeURIComponent(t.name) + q);
      renderTable(t);
    } catch (e) {
      t.countEl.textContent = "could not load: " + e.message;
    } finally {
      t.busy = false;
    }
  }

  function renderTable(t) {
    const d = t.data, m = d.meta;
    const by = m.group_by.length ? "by " + m.group_by.join(", ") : "no grouping";
    t.metaEl.textContent = (m.type || "aggregation") + " " + by + " · " + m.window.label;
    t.nav.hidden = m.window.kind === "all";
    t.winEl.textContent = d.window.start ? windowText(d.window) : "no window yet";
    t.prev.disabled = !d.previous_window;
    t.next.disabled = !d.next_window;
    t.latest.disabled = !t.window;
    const sort = d.sort;
    const thead = t.table.tHead, tbody = t.table.tBodies[0];
    thead.replaceChildren();
    tbody.replaceChildren();
    const hr = el("tr");
    const keyFields = m.group_by.length ? m.group_by : ["key"];
    keyFields.forEach(function (f) {
      const th = el("th", "sortable" + (t.keySort === f ? " sorted" : ""), f + (t.keySort === f ? (t.keyAsc ? " ▲" : " ▼") : ""));
      th.title = "order these rows by " + f;
      th.addEventListener("click", function () {
        t.keyAsc = t.keySort === f ? !t.keyAsc : true;
        t.keySort = f;
        renderTable(t);
      });
      hr.appendChild(th);
    });
    m.fields.forEach(function (f) {
      const on = !t.keySort && f === sort;
      const th = el("th", "num sortable" + (on ? " sorted" : ""), f + (on ? (d.order === "asc" ? " ▲" : " ▼") : ""));
      th.title = "top rows by " + f;
      th.addEventListener("click", function () {
        if (!t.keySort && f === sort) t.order = t.order === "desc" ? "asc" : "desc";
        else { t.sort = f; t.order = "desc"; }
        t.keySort = null;
        loadTable(t);
      });
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    let rows = d.rows.slice();
    if (t.keySort) {
      const f = t.keySort, dir = t.keyAsc ? 1 : -1;
      rows.sort(function (a, b) {
        const x = keyText(a.key[f]), y = keyText(b.key[f]);
        return dir * x.localeCompare(y, undefined, {numeric: true});
      });
    }
    if (!rows.length) {
      const tr = el("tr"), td = el("td", "empty-note", "no documents yet");
      td.colSpan = keyFields.length + m.fields.length;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    for (const r of rows) {
      const tr = el("tr");
      keyFields.forEach(function (f) {
        const v = m.group_by.length ? r.key[f] : "(all)";
        const td = el("td", "key", keyText(v));
        td.title = keyText(v);
        tr.appendChild(td);
      });
      m.fields.forEach(function (f) {
        const v = r.values[f];
        tr.appendChild(el("td", "num", typeof v === "number" ? (Number.isInteger(v) ? nf.format(v) : nf2.format(v))
          : Array.isArray(v) ? v.map(function (e) { return keyText(e.value) + " (" + num(e.count) + ")"; }).join(", ")
          : keyText(v)));
      });
      tbody.appendChild(tr);
    }
    const shown = d.rows.length;
    t.countEl.textContent = d.keys !== null && d.keys !== undefined
      ? "top " + shown + " of " + nf.format(d.keys) + " by " + sort
      : shown + " rows in this window, by " + sort;
    t.more.textContent = t.limit === 10 ? "show 50" : "show 10";
  }

  // -- live updates: server-sent events, polling as the fallback -------------------------
  let source = null, pollTimer = null, failures = 0;

  function setConn(kind, text) {
    $("conn-dot").className = "dot " + kind;
    $("conn").textContent = text;
  }

  function counted(transport) {
    const key = transport === "sse" ? "updatesSse" : "updatesPoll";
    document.body.dataset[key] = String((parseInt(document.body.dataset[key], 10) || 0) + 1);
  }

  async function poll() {
    try {
      renderSummary(await api("api/summary"));
      counted("poll");
      if (!source) setConn("poll", "live (polling every " + nf1.format(REFRESH_MS / 1000) + "s)");
    } catch (e) {
      setConn("down", "offline");
      showError("Cannot load the summary: " + e.message);
    }
  }

  function startPolling() {
    if (pollTimer === null) pollTimer = setInterval(poll, REFRESH_MS);
    if (!POLL_ONLY) setTimeout(trySse, 30000);
  }

  function trySse() {
    if (!window.EventSource || POLL_ONLY) { startPolling(); return; }
    if (source) return;
    let got = false;
    source = new EventSource(withToken("api/events"));
    source.addEventListener("summary", function (ev) {
      got = true;
      failures = 0;
      if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
      setConn("live", "live");
      try { renderSummary(JSON.parse(ev.data)); counted("sse"); } catch (e) { showError("Bad update: " + e.message); }
    });
    source.onerror = function () {
      failures += 1;
      if (!got || failures >= 3 || source.readyState === EventSource.CLOSED) {
        source.close();
        source = null;
        startPolling();
        poll();
      }
    };
  }

  document.querySelectorAll("footer a").forEach(function (a) { a.href = withToken(a.getAttribute("href")); });
  poll();
  trySse();
})();
