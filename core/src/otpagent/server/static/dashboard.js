// otpagent live dashboard: polls /dashboard/snapshot and draws its own charts (no libraries).
(function () {
  "use strict";
  var refreshMs = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 1000;
  var maxPoints = 120;
  var series = { queue: [], throughput: [], success: [] };
  var previous = null;

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
  function push(list, value) { list.push(value); if (list.length > maxPoints) { list.shift(); } }

  function drawChart(canvas, points, color, fixedMax) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var pad = { l: 34, r: 6, t: 6, b: 14 };
    var max = fixedMax || Math.max(1, Math.max.apply(null, points.concat([0])) * 1.15);
    ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#6b7385"; ctx.lineWidth = 1; ctx.font = "10px system-ui, sans-serif";
    for (var i = 0; i <= 2; i++) {
      var y = pad.t + (h - pad.t - pad.b) * i / 2;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(fmt(max * (1 - i / 2), max < 10 ? 1 : 0), 2, y + 3);
    }
    if (points.length < 2) { return; }
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    for (var j = 0; j < points.length; j++) {
      var x = pad.l + (w - pad.l - pad.r) * j / (maxPoints - 1);
      var yy = pad.t + (h - pad.t - pad.b) * (1 - Math.min(points[j], max) / max);
      if (j === 0) { ctx.moveTo(x, yy); } else { ctx.lineTo(x, yy); }
    }
    ctx.stroke();
  }

  function renderChannels(channels) {
    var body = $("channels").tBodies[0];
    body.textContent = "";
    channels.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-channel", c.name);
      cell(tr, c.name); cell(tr, c.kind);
      cell(tr, c.sent, "num"); cell(tr, c.delivered, "num"); cell(tr, c.failed, "num");
      cell(tr, c.success_rate === null ? null : fmt(c.success_rate, 1) + "%", "num");
      cell(tr, fmt(c.p50_latency_ms, 1), "num"); cell(tr, fmt(c.p95_latency_ms, 1), "num");
      cell(tr, fmt(c.cost, 4), "num"); cell(tr, c.circuit, "circuit-" + c.circuit);
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
    var t = s.totals, finished = t.succeeded + t.failed;
    var throughput = 0, success = t.success_rate;
    if (previous) {
      var dt = Math.max(0.001, s.at - previous.at);
      var dFinished = finished - (previous.totals.succeeded + previous.totals.failed);
      throughput = Math.max(0, dFinished) / dt;
      if (dFinished > 0) { success = 100 * Math.max(0, t.succeeded - previous.totals.succeeded) / dFinished; }
    }
    previous = s;
    push(series.queue, s.queue_size); push(series.throughput, throughput); push(series.success, success);
    text("queue-depth", s.queue_size);
    text("throughput", fmt(throughput, 2));
    text("success-rate", fmt(t.success_rate, 1) + "%");
    text("total-messages", t.messages);
    text("total-succeeded", t.succeeded + " / " + t.delivered);
    text("total-failed", t.failed);
    text("total-cost", fmt(t.cost, 4));
    text("updated-at", new Date(s.at * 1000).toLocaleTimeString());
    var state = $("state");
    state.textContent = s.is_running ? "workers running" : "workers elsewhere";
    state.className = "pill ok";
    drawChart($("chart-queue"), series.queue, "#2f6fde");
    drawChart($("chart-throughput"), series.throughput, "#1f9d55");
    drawChart($("chart-success"), series.success, "#c98a10", 100);
    renderChannels(s.channels);
    renderRecent(s.recent);
  }

  function poll() {
    fetch("/dashboard/snapshot", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/"); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(render)
      .catch(function () { var st = $("state"); st.textContent = "disconnected"; st.className = "pill bad"; })
      .then(function () { window.setTimeout(poll, refreshMs); });
  }
  poll();
}());
