// otpagent live dashboard: the last hour from /dashboard/history, then live points from
// /dashboard/snapshot. Every chart point counts the minute ending at its time, so history
// (a point a minute) and live points (one per poll) join without a seam. No libraries.
(function () {
  "use strict";
  var refreshMs = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 1000;
  var windowSeconds = 3600, historyEveryMs = 60000;
  var history = null, live = [];     // live: snapshot points taken after the last history read
  var hourTotals = null;             // the last hour's totals, from the latest read of either
  var colors = { queue: "#2f6fde", throughput: "#1f9d55", success: "#c98a10", accepted: "#1f9d55", failed: "#d64545" };

  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value; }
  function fmt(n, digits) { return n === null || n === undefined ? "–" : Number(n).toFixed(digits); }
  function cell(row, value, cls) {
    var td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "–" : String(value);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  // One line per series; points are [time, value] (value null: a gap). Returns points drawn.
  function drawChart(canvas, lines, now, fixedMax) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var pad = { l: 34, r: 6, t: 6, b: 14 }, start = now - windowSeconds, values = [0], drawn = 0;
    lines.forEach(function (l) { l.points.forEach(function (p) { if (p[1] !== null) { values.push(p[1]); } }); });
    var max = fixedMax || Math.max(1, Math.max.apply(null, values) * 1.15);
    ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#6b7385"; ctx.lineWidth = 1; ctx.font = "10px system-ui, sans-serif";
    for (var i = 0; i <= 2; i++) {
      var y = pad.t + (h - pad.t - pad.b) * i / 2;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(fmt(max * (1 - i / 2), max < 10 ? 1 : 0), 2, y + 3);
    }
    ctx.fillText("-60 min", pad.l, h - 2); ctx.fillText("now", w - pad.r - 18, h - 2);
    lines.forEach(function (l) {
      ctx.strokeStyle = l.color; ctx.fillStyle = l.color; ctx.lineWidth = 2; ctx.beginPath();
      var open = false;
      l.points.forEach(function (p) {
        if (p[0] < start) { return; }
        if (p[1] === null) { open = false; return; }
        var x = pad.l + (w - pad.l - pad.r) * (p[0] - start) / windowSeconds;
        var yy = pad.t + (h - pad.t - pad.b) * (1 - Math.min(p[1], max) / max);
        if (open) { ctx.lineTo(x, yy); } else { ctx.moveTo(x, yy); ctx.fillRect(x - 1.5, yy - 1.5, 3, 3); }
        open = true; drawn++;
      });
      ctx.stroke();
    });
    canvas.setAttribute("data-points", String(drawn));
    return drawn;
  }

  // The points of each chart: history's minutes, then the live minutes taken since.
  function series(now) {
    var points = (history ? history.points : []).concat(live);
    var queue = (history ? history.queue : []).concat(live.map(function (p) { return [p.t, p.queue]; }));
    function pick(f) { return points.map(function (p) { return [p.t, f(p)]; }); }
    return {
      queue: queue.filter(function (p) { return p[0] >= now - windowSeconds; }),
      throughput: pick(function (p) { return p.finished / 60; }),
      success: pick(function (p) { return p.finished ? 100 * p.sent / p.finished : null; }),
      accepted: pick(function (p) { return p.attempts_accepted; }),
      failed: pick(function (p) { return p.attempts_failed; })
    };
  }

  function redraw(now) {
    var s = series(now);
    drawChart($("chart-queue"), [{ points: s.queue, color: colors.queue }], now);
    drawChart($("chart-throughput"), [{ points: s.throughput, color: colors.throughput }], now);
    drawChart($("chart-success"), [{ points: s.success, color: colors.success }], now, 100);
    drawChart($("chart-attempts"), [{ points: s.accepted, color: colors.accepted },
                                    { points: s.failed, color: colors.failed }], now);
    if (history) {
      var t = hourTotals || history.totals;
      text("caption-queue", history.queue.length ? "· sampled by the workers each minute" : "· no samples (no worker ran)");
      text("caption-throughput", "· " + t.finished + " finished in the last hour");
      text("caption-success", "· " + t.sent + " sent, " + t.failed + " failed in the last hour");
      text("caption-attempts", "· " + t.attempts_accepted + " / " + t.attempts_failed + " in the last hour");
    }
  }

  function renderChannels(channels) {
    var body = $("channels").tBodies[0];
    body.textContent = "";
    channels.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-channel", c.name);
      cell(tr, c.name); cell(tr, c.kind);
      cell(tr, c.attempts, "num"); cell(tr, c.sent, "num"); cell(tr, c.delivered, "num"); cell(tr, c.failed, "num");
      cell(tr, c.success_rate === null ? null : fmt(c.success_rate, 1) + "%", "num");
      cell(tr, fmt(c.p50_latency_ms, 1), "num"); cell(tr, fmt(c.p95_latency_ms, 1), "num");
      cell(tr, fmt(c.cost, 4), "num");
      cell(tr, fmt(c.daily_spend, 2) + (c.daily_budget === null ? "" : " / " + c.daily_budget), "num");
      cell(tr, c.circuit, "circuit-" + c.circuit);
      body.appendChild(tr);
    });
  }

  function renderRecent(messages) {
    var body = $("recent").tBodies[0];
    body.textContent = "";
    messages.forEach(function (m) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-message-id", m.id);
      cell(tr, m.id); cell(tr, m.type); cell(tr, m.priority); cell(tr, m.recipient);
      var st = cell(tr, m.status, "status-" + m.status);
      if (m.last_error) { st.title = m.last_error; }
      cell(tr, m.channel);
      var td = cell(tr, "");
      m.attempts.forEach(function (a) {
        var span = document.createElement("span");
        span.className = "attempt " + a.outcome;
        span.textContent = "#" + a.number + " " + a.channel + " " + a.outcome + (a.error_code ? " [" + a.error_code + "]" : "");
        td.appendChild(span);
      });
      cell(tr, new Date(m.updated_at * 1000).toLocaleTimeString());
      body.appendChild(tr);
    });
  }

  function render(s) {
    var msg = s.messages, day = s.last_24h, a = day.attempts;
    live.push({ t: s.at, queue: s.queue_size, finished: s.last_minute.finished, sent: s.last_minute.sent,
                attempts_accepted: s.last_minute.attempts_accepted, attempts_failed: s.last_minute.attempts_failed });
    hourTotals = s.last_hour;
    text("queue-depth", s.queue_size);
    text("oldest-due", s.oldest_due_age_seconds === null ? "nothing waiting" : "oldest due " + fmt(s.oldest_due_age_seconds, 0) + " s");
    text("total-messages", msg.stored);
    text("total-succeeded", msg.succeeded + " / " + msg.delivered);
    text("total-failed", msg.failed);
    text("success-rate", fmt(msg.success_rate, 1) + "%");
    text("attempts-total", a.total);
    text("attempts-failed", a.failed);
    text("attempts-rate", a.success_rate === null ? "–" : fmt(a.success_rate, 1) + "%");
    text("retries", day.retries + " / " + day.fallbacks);
    text("total-cost", fmt(day.cost, 4));
    text("updated-at", new Date(s.at * 1000).toLocaleTimeString());
    var state = $("state");
    state.textContent = s.workers.live ? s.workers.live + " worker" + (s.workers.live > 1 ? "s" : "") + " live" : "no worker running";
    state.className = "pill " + (s.workers.live ? "ok" : "warn");
    redraw(s.at);
    renderChannels(s.channels);
    renderRecent(s.recent);
  }

  function getJson(path) {
    return fetch(path, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/"); throw new Error("signed out"); }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function disconnected() { var st = $("state"); st.textContent = "disconnected"; st.className = "pill bad"; }

  function loadHistory() {
    return getJson("/dashboard/history").then(function (h) {
      history = h;
      hourTotals = null;
      live = live.filter(function (p) { return p.t > h.at; });
      redraw(h.at);
    }).catch(disconnected);
  }

  function poll() {
    getJson("/dashboard/snapshot").then(render).catch(disconnected)
      .then(function () { window.setTimeout(poll, refreshMs); });
  }

  loadHistory().then(poll);
  window.setInterval(loadHistory, historyEveryMs);
}());
