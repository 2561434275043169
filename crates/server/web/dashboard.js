// The DR dashboard: the pool drawn from GET /api/v1/admin/topology twice a
// second, the runbooks (plan, run with a confirmation, follow live) and
// charts of the last hour. Administrators only.
import { api, el, clear, session } from "./common.js";

const $ = (id) => document.getElementById(id);
session.token = sessionStorage.getItem("pchat.token");
// The dashboard's own server answers its API even when it is not active.
session.base = location.origin;

const REFRESH_MS = 500;
let planned = null;
let last = null;
// The chart's samples: the page keeps the last hour and asks for newer ones.
let samples = [];

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.round(s / 60)} min ago`;
}

function pill(text, kind) {
  return el("span", { class: `pill ${kind || ""}` }, text);
}

// One refresh at a time: a slow answer (servers that do not respond take
// up to the timeout) must not land after, and undo, a newer one.
let refreshing = false;

async function refresh() {
  if (!session.token) {
    $("signed-out").hidden = false;
    return;
  }
  if (refreshing) return;
  refreshing = true;
  try {
    const since = samples.length ? samples[samples.length - 1].t : 0;
    const t = await api("GET", `/api/v1/admin/topology?since=${since}`, null, { timeout: 3000 });
    const hourAgo = Date.now() - 3600 * 1000;
    samples = samples.concat(t.samples || []).filter((s) => s.t >= hourAgo);
    t.samples = samples;
    last = t;
    render(t);
    $("dash-error").textContent = "";
  } catch (err) {
    $("dash-error").textContent = err.message;
    if (err.status === 401 || err.status === 403) $("signed-out").hidden = false;
  } finally {
    refreshing = false;
  }
}

function render(t) {
  $("pool-name").textContent = t.pool;
  const c = t.config;
  const state = c ? c.state : "unknown";
  const sp = $("pool-state");
  sp.textContent = state === "failed-over" ? "FailedOver" : state === "normal" ? "Normal" : "unknown";
  sp.className = `pill ${state === "normal" ? "ok" : state === "failed-over" ? "warn" : "bad"}`;
  $("pool-version").textContent = c ? `configuration version ${c.version}` : "no database server answers";
  $("updated").textContent = `updated ${new Date(t.at).toLocaleTimeString()}`;

  const box = $("dcs");
  clear(box);
  for (const dc of t.data_centers) {
    const serving = c && c.serving_data_center === dc;
    const card = el("section", { class: `dc${serving ? " serving" : ""}`, "aria-label": `data center ${dc}`, "data-dc": dc }, el("h2", {}, dc, serving ? pill("databases serve here", "ok") : ""));
    for (const s of t.chat_servers.filter((s) => s.data_center === dc)) card.append(chatNode(s));
    for (const d of t.database_servers.filter((d) => d.data_center === dc)) card.append(dbNode(d));
    box.append(card);
  }
  renderRun(t.run);
  renderCharts(t.samples);
}

function chatNode(s) {
  const n = el(
    "div",
    { class: `node${s.up ? "" : " down"}${s.active ? " active" : ""}`, "data-server": s.name },
    el(
      "h3",
      {},
      el("span", {}, `chat server ${s.name}`),
      el("span", {}, s.up ? pill("up", "ok") : pill("down", "bad"), " ", s.active ? pill("active", "ok") : pill("inactive")),
    ),
    el("div", { class: "muted" }, s.url),
  );
  if (s.up) {
    n.append(el("div", {}, `${s.connections ?? 0} connected clients · ${s.serving ? "serving" : "not serving"}`));
    if (!s.serving && s.reason) n.append(el("div", { class: "muted" }, s.reason));
  }
  return n;
}

function dbNode(d) {
  const n = el(
    "div",
    { class: `node${d.up ? "" : " down"}`, "data-server": d.name },
    el("h3", {}, el("span", {}, `database server ${d.name} (${d.role})`), d.up ? pill("up", "ok") : pill("down", "bad")),
    el("div", { class: "muted" }, d.address),
  );
  if (!d.up) {
    n.append(el("div", { class: "muted" }, d.error || ""));
    return n;
  }
  const rows = (d.databases || []).map((db) => {
    const m = db.mirroring;
    const mirror = m ? `${m.role} ${m.synchronized ? "synchronized" : "not synchronized"}${m.connected ? "" : ", partner away"}` : "—";
    return el(
      "tr",
      {},
      el("td", {}, db.database),
      el("td", {}, db.state, db.serving ? " ✓" : ""),
      el("td", {}, mirror),
      el("td", { title: db.fork_id }, String(db.fork_id).slice(0, 8)),
      el("td", {}, String(db.last_lsn)),
    );
  });
  n.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "database"), el("th", {}, "state"), el("th", {}, "mirroring"), el("th", {}, "fork"), el("th", {}, "last LSN"))), el("tbody", {}, ...rows)));
  for (const j of d.logship || []) {
    const m = j.monitor || {};
    const role = j.config ? j.config.role : "";
    const parts = [];
    if (m.backup && m.backup.runs) parts.push(`backup ${ago(m.backup.last_done_ms)} (LSN ${m.backup.last_lsn ?? "—"})`);
    if (m.copy && m.copy.runs) parts.push(`copy ${ago(m.copy.last_done_ms)}`);
    if (m.restore && m.restore.runs) parts.push(`restore ${ago(m.restore.last_done_ms)} (LSN ${m.restore.last_lsn ?? "—"})`);
    if (m.lag_ms !== null && m.lag_ms !== undefined) parts.push(`lag ${(m.lag_ms / 1000).toFixed(2)} s / ${m.lag_lsns ?? 0} LSNs`);
    const idle = role === "primary" && !j.ships ? "standing by (not the serving copy)" : "no run yet";
    const line = el("div", { class: "logship" }, el("strong", {}, `log shipping ${j.database} (${role}): `), parts.join(" · ") || idle);
    for (const a of j.alerts || []) line.append(" ", pill(a, "bad"));
    n.append(line);
  }
  return n;
}

// ---------------------------------------------------------------- runbooks

for (const b of document.querySelectorAll("[data-plan]")) {
  b.addEventListener("click", async () => {
    const name = b.dataset.plan;
    $("plan").hidden = false;
    $("plan-title").textContent = `Plan: ${name}`;
    $("plan-lines").textContent = "Checking…";
    $("run-open").hidden = true;
    try {
      const p = await api("GET", `/api/v1/admin/runbooks/${name}/plan`, null, { timeout: 60000 });
      $("plan-lines").textContent = p.lines.join("\n");
      planned = name;
      $("run-open").hidden = !p.ok;
      $("run-open").textContent = `Run ${name}…`;
    } catch (err) {
      $("plan-lines").textContent = err.message;
    }
  });
}

$("run-open").addEventListener("click", () => {
  $("confirm-title").textContent = `Run the ${planned}?`;
  $("confirm-text").textContent = "It changes the pool now: the plan above runs step by step. A run cannot be undone from here; a failback or switchover moves the pool back.";
  $("confirm-run").textContent = `Run ${planned}`;
  $("confirm").showModal();
});
$("confirm-cancel").addEventListener("click", () => $("confirm").close());
$("confirm-run").addEventListener("click", async () => {
  $("confirm").close();
  // Until the new run's first snapshot arrives, the run shown is the last
  // one: say the new one is starting, and let no late answer about an
  // older run show its state again.
  startingAfter = shownRun ? shownRun.started_at : 0;
  $("run").hidden = false;
  $("run-title").textContent = planned;
  $("run-state").textContent = "starting";
  $("run-state").className = "pill warn";
  $("run-lines").textContent = "";
  clear($("run-verification"));
  try {
    const r = await api("POST", `/api/v1/admin/runbooks/${planned}`, { confirm: planned });
    $("plan").hidden = true;
    renderRun(r.run);
  } catch (err) {
    startingAfter = null;
    $("dash-error").textContent = err.message;
  }
});

// The newest run snapshot shown. Snapshots come from two places (the answer
// to the start and every refresh), so an older one can arrive last: a run
// only moves forward (a later start, more lines, then finished).
let shownRun = null;
// While a run is being started: the start time of the run shown before.
let startingAfter = null;

function isOlderRun(run, than) {
  if (!than) return false;
  if (run.started_at !== than.started_at) return run.started_at < than.started_at;
  if (run.finished !== than.finished) return than.finished;
  return run.lines.length < than.lines.length;
}

function renderRun(run) {
  if (!run || isOlderRun(run, shownRun)) return;
  if (startingAfter !== null) {
    if (run.started_at <= startingAfter) return;
    startingAfter = null;
  }
  shownRun = run;
  $("run").hidden = false;
  $("run-title").textContent = run.runbook;
  const st = $("run-state");
  st.textContent = !run.finished ? "running" : run.ok ? "succeeded" : "failed";
  st.className = `pill ${!run.finished ? "warn" : run.ok ? "ok" : "bad"}`;
  const pre = $("run-lines");
  const text = run.lines.join("\n");
  if (pre.textContent !== text) {
    pre.textContent = text;
    pre.scrollTop = pre.scrollHeight;
  }
  const v = $("run-verification");
  clear(v);
  const verify = run.report && run.report.verify;
  if (!verify || !verify.state) return;
  v.append(el("h3", {}, `Verification: pool ${verify.state}, configuration version ${verify.version}`));
  for (const db of ["mgc", "mgccomp"]) {
    if (!Array.isArray(verify[db])) continue;
    const rows = verify[db].map((r) => {
      const rooms = Array.isArray(r.rooms) ? r.rooms.map((x) => `${x.name}: ${x.messages}`).join(", ") : "";
      return el("tr", {}, el("td", {}, r.server), el("td", {}, r.role), el("td", {}, r.state), el("td", { title: r.fork_id }, String(r.fork_id).slice(0, 8)), el("td", {}, String(r.last_lsn)), el("td", {}, rooms || String(r.compliance_records ?? "")));
    });
    v.append(el("table", { class: "verify", "aria-label": `verification of ${db}` }, el("caption", {}, db), el("thead", {}, el("tr", {}, ...["server", "role", "state", "fork", "last LSN", "messages per room / records"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)));
  }
  const active = (verify.active_servers || []).map((a) => `${a.name} (${a.data_center})${a.serving ? "" : " not serving"}`);
  v.append(el("p", {}, `Active servers: ${active.join(", ") || "none"}`));
}

// ---------------------------------------------------------------- charts

function chart(svgId, nowId, samples, field, unit) {
  const svg = $(svgId);
  clear(svg);
  const pts = samples.filter((s) => typeof s[field] === "number");
  const latest = pts.length ? pts[pts.length - 1][field] : null;
  $(nowId).textContent = latest === null ? "no data yet" : `now ${latest.toFixed(latest < 10 ? 2 : 0)} ${unit} · ${pts.length} s shown`;
  if (pts.length < 2) return;
  const W = 600;
  const H = 120;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const t0 = Date.now() - 3600 * 1000;
  const max = Math.max(1, ...pts.map((s) => s[field]));
  const points = pts.map((s) => `${(((s.t - t0) / 3600000) * W).toFixed(1)},${(H - (s[field] / max) * (H - 6) - 3).toFixed(1)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#1f5fbf");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "14");
  label.setAttribute("font-size", "12");
  label.setAttribute("fill", "#5b6475");
  label.textContent = `max ${max.toFixed(max < 10 ? 2 : 0)} ${unit}`;
  svg.append(line, label);
}

function renderCharts(samples) {
  chart("chart-posts", "chart-posts-now", samples, "posts_per_s", "posts/s");
  chart("chart-ack", "chart-ack-now", samples, "ack_p99_ms", "ms");
  chart("chart-lag", "chart-lag-now", samples, "shipping_lag_ms", "ms");
}

window.pchatDashboard = { last: () => last };
refresh();
setInterval(refresh, REFRESH_MS);
