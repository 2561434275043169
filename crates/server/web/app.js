// pchat web client: sign in, rooms, live messages, an outbox that survives
// disconnects and failovers, search, files, feeds, room and pool management.
// Plain JavaScript with no dependencies; the server embeds this file.

import { api, ApiError, el, clear, fmtTime, highlight, splitList, session } from "./common.js";

const $ = (id) => document.getElementById(id);

const S = {
  user: null,
  password: null, // kept in memory only, to sign in again on another server
  categories: new Map(),
  rooms: new Map(),
  msgs: new Map(), // room id -> Map(seq -> message), for rooms opened
  oldest: new Map(), // room id -> true when history has no older message
  cursors: new Map(), // room id -> last seq delivered by the stream
  read: {}, // room id -> last seq the user has seen
  outbox: [], // posts not yet acknowledged: {room, body, client_msg_id, alert, state}
  sent: [], // own acknowledged posts, to re-send after a rewound history
  feeds: [],
  current: null, // {kind: "room", id} | {kind: "feed", id} | {kind: "search"}
  ws: null,
  wsOpen: false,
  everConnected: false,
  candidates: [], // other chat servers to try (from going_away and /pool)
  reconnectTimer: null,
  loadingOlder: false,
};

const store = {
  key: (k) => `pchat.${k}.${S.user ? S.user.name : ""}`,
  get(k, d) {
    try {
      return JSON.parse(localStorage.getItem(this.key(k))) ?? d;
    } catch {
      return d;
    }
  },
  set(k, v) {
    localStorage.setItem(this.key(k), JSON.stringify(v));
  },
};

// ---------------------------------------------------------------- banner

let bannerTimer = null;
function banner(text, kind) {
  const b = $("banner");
  clearTimeout(bannerTimer);
  if (!text) {
    b.hidden = true;
    return;
  }
  b.textContent = text;
  b.className = kind;
  b.hidden = false;
  if (kind === "back") bannerTimer = setTimeout(() => (b.hidden = true), 2500);
}

// ---------------------------------------------------------------- sign in

async function signIn(name, password) {
  const r = await api("POST", "/api/v1/sessions", { name, password }, { auth: false });
  session.token = r.token;
  sessionStorage.setItem("pchat.token", r.token);
  sessionStorage.setItem("pchat.base", session.base);
  S.user = r.user;
  S.password = password;
}

async function restore() {
  const token = sessionStorage.getItem("pchat.token");
  if (!token) return false;
  session.token = token;
  session.base = sessionStorage.getItem("pchat.base") || location.origin;
  try {
    await findServer();
    S.user = await api("GET", "/api/v1/users/me");
    return true;
  } catch {
    session.token = null;
    sessionStorage.removeItem("pchat.token");
    return false;
  }
}

function showSignIn() {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-form").elements.name.focus();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  $("signin-error").textContent = "";
  try {
    await findServer();
    await signIn(f.name.value.trim(), f.password.value);
    f.password.value = "";
    await start();
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
});

$("signout").addEventListener("click", async () => {
  try {
    await api("DELETE", "/api/v1/sessions");
  } catch {
    /* signed out locally anyway */
  }
  sessionStorage.removeItem("pchat.token");
  location.reload();
});

// ---------------------------------------------------------------- servers

/// Finds a chat server that serves: this page's, the one in use, or one
/// the pool names. Resolves with its base URL (and uses it from then on).
async function findServer() {
  const tried = new Set();
  const queue = [session.base, ...S.candidates, location.origin];
  while (queue.length) {
    const base = queue.shift();
    if (!base || tried.has(base)) continue;
    tried.add(base);
    let view;
    try {
      view = await api("GET", "/api/v1/pool", null, { auth: false, base, timeout: 2000 });
    } catch {
      continue;
    }
    // Active servers first; the rest of the pool is where to ask when a
    // whole data center is gone.
    for (const a of [...(view.active_servers || []), ...(view.servers || [])]) {
      if (!S.candidates.includes(a.url)) S.candidates.push(a.url);
      if (!tried.has(a.url)) queue.push(a.url);
    }
    if (view.serving) {
      session.base = base;
      sessionStorage.setItem("pchat.base", base);
      $("server").textContent = view.server ? `${view.server} (${view.data_center})` : "";
      return base;
    }
  }
  throw new ApiError("unavailable", "no active chat server answers", 503);
}

// ---------------------------------------------------------------- start

async function start() {
  $("me").textContent = S.user.display_name || S.user.name;
  $("admin-open").hidden = !S.user.admin;
  $("dashboard-link").hidden = !S.user.admin;
  $("new-room").hidden = false;
  S.read = store.get("read", {});
  S.outbox = store.get("outbox", []).map((p) => ({ ...p, state: "pending" }));
  S.sent = store.get("sent", []);
  await loadLists();
  $("signin").hidden = true;
  $("app").hidden = false;
  connect();
  followHash();
}

/// `#room-ID` opens a room (links, reloads, the back button).
function followHash() {
  const wanted = Number(location.hash.replace("#room-", ""));
  if (!wanted || (S.current && S.current.kind === "room" && S.current.id === wanted)) return;
  if (S.rooms.has(wanted)) return openRoom(wanted);
  S.current = null;
  show("welcome");
  $("welcome-note").textContent = "No such room, or it is not one you may see.";
}
window.addEventListener("hashchange", () => S.user && followHash());

async function loadLists() {
  const [cats, rooms, invitations, feeds] = await Promise.all([
    api("GET", "/api/v1/categories"),
    api("GET", "/api/v1/rooms"),
    api("GET", "/api/v1/invitations"),
    api("GET", "/api/v1/feeds"),
  ]);
  S.categories = new Map(cats.categories.map((c) => [c.id, c]));
  S.rooms = new Map(rooms.rooms.map((r) => [r.id, r]));
  for (const r of S.rooms.values()) {
    // A room seen for the first time starts read; later messages count.
    if (S.read[r.id] === undefined) S.read[r.id] = r.last_seq;
  }
  store.set("read", S.read);
  S.invitations = invitations.invitations;
  const unseen = new Map(S.feeds.map((f) => [f.id, f.unseen]));
  S.feeds = feeds.feeds.map((f) => ({ ...f, unseen: unseen.get(f.id) || 0 }));
  subscribeNew();
  renderSidebar();
}

/// Subscribes the stream to every readable room it does not follow yet,
/// from the newest message the room list showed.
function subscribeNew() {
  if (!S.ws || !S.wsOpen) return;
  const rooms = {};
  for (const r of S.rooms.values()) {
    if (!r.can_read || r.disabled || S.cursors.has(r.id)) continue;
    S.cursors.set(r.id, r.last_seq);
    rooms[r.id] = r.last_seq;
  }
  if (Object.keys(rooms).length) S.ws.send(JSON.stringify({ type: "subscribe", rooms }));
}

// Rooms others create, invitations and group changes show up without a reload.
setInterval(() => {
  if (S.user && S.wsOpen) loadLists().catch(() => {});
}, 10000);

// ---------------------------------------------------------------- sidebar

function unread(r) {
  const last = Math.max(r.last_seq, S.cursors.get(r.id) || 0);
  return r.can_read ? Math.max(0, last - (S.read[r.id] || 0)) : 0;
}

function renderSidebar() {
  const box = $("categories");
  clear(box);
  const byCat = new Map();
  for (const r of S.rooms.values()) {
    if (!byCat.has(r.category)) byCat.set(r.category, []);
    byCat.get(r.category).push(r);
  }
  const cats = [...S.categories.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const c of cats) {
    const rooms = (byCat.get(c.id) || []).sort((a, b) => a.name.localeCompare(b.name));
    if (!rooms.length && !S.user.admin) continue;
    const list = el("ul", {});
    for (const r of rooms) {
      const n = unread(r);
      const cur = S.current && S.current.kind === "room" && S.current.id === r.id;
      const label = [r.name];
      const b = el(
        "button",
        {
          type: "button",
          "data-room": r.id,
          "aria-current": cur ? "true" : "false",
          "aria-label": `${r.name}${n ? `, ${n} unread` : ""}${r.privacy !== "open" ? `, ${r.privacy}` : ""}`,
          onclick: () => openRoom(r.id),
        },
        el("span", {}, ...label, r.privacy === "secret" ? el("span", { class: "tag" }, " secret") : "", r.privacy === "closed" ? el("span", { class: "tag" }, " closed") : ""),
        n ? el("span", { class: "badge", "data-unread": r.id }, String(n)) : "",
      );
      list.append(el("li", { class: `room${cur ? " current" : ""}${n ? " unread" : ""}` }, b));
    }
    box.append(el("section", { "aria-label": `Category ${c.name}` }, el("h2", {}, c.name), list));
  }
  const inv = S.invitations || [];
  $("invitations").hidden = !inv.length;
  const il = $("invitation-list");
  clear(il);
  for (const i of inv) {
    const from = i.by ? ` (from ${i.by})` : "";
    il.append(
      el(
        "li",
        { class: "room" },
        el("button", { type: "button", "aria-label": `Join ${i.room.name}${from}`, onclick: () => join(i.room.id) }, el("span", {}, `${i.room.name}${from}`), el("span", { class: "badge" }, "Join")),
      ),
    );
  }
  const fl = $("feed-list");
  clear(fl);
  for (const f of S.feeds) {
    const cur = S.current && S.current.kind === "feed" && S.current.id === f.id;
    fl.append(
      el(
        "li",
        { class: `feed${cur ? " current" : ""}` },
        el("button", { type: "button", onclick: () => openFeed(f) }, el("span", {}, f.name), f.unseen ? el("span", { class: "badge" }, String(f.unseen)) : ""),
      ),
    );
  }
}

$("menu").addEventListener("click", () => {
  const open = $("sidebar").classList.toggle("open");
  $("menu").setAttribute("aria-expanded", String(open));
});

// ---------------------------------------------------------------- views

function show(view) {
  $("welcome-note").textContent = "";
  for (const id of ["welcome", "room", "results", "admin"]) $(id).hidden = id !== view;
  $("sidebar").classList.remove("open");
  $("menu").setAttribute("aria-expanded", "false");
}

async function openRoom(id) {
  const r = S.rooms.get(id);
  if (!r) return;
  S.current = { kind: "room", id };
  location.hash = `room-${id}`;
  show("room");
  $("room-notice").hidden = true;
  renderHeader(r);
  renderSidebar();
  clear($("messages"));
  $("history-state").textContent = r.can_read ? "Loading…" : "You cannot read this room.";
  if (r.can_read && !S.msgs.has(id)) await loadLatest(id);
  if (!isCurrent(id)) return;
  renderMessages(id);
  markRead(id);
  $("body").focus();
  try {
    const full = await api("GET", `/api/v1/rooms/${id}`);
    S.rooms.set(id, { ...r, ...full });
    if (isCurrent(id)) renderHeader(S.rooms.get(id));
  } catch (err) {
    if (err.code === "room_not_found") return dropRoom(id);
  }
}

function isCurrent(id) {
  return S.current && S.current.kind === "room" && S.current.id === id;
}

function renderHeader(r) {
  const cat = S.categories.get(r.category);
  $("room-name").textContent = r.name;
  const meta = [cat ? cat.name : "", r.privacy, r.type, r.disabled ? "disabled" : ""].filter(Boolean);
  const m = $("room-meta");
  clear(m);
  m.append(meta.join(" · "));
  if (r.addin) m.append(" · ", el("a", { href: r.addin.url, target: "_blank", rel: "noopener" }, r.addin.name));
  $("room-desc").textContent = r.description || "";
  const people = [];
  if (r.managers) people.push(`Managers: ${r.managers.join(", ") || "none"}`);
  if (r.members) people.push(`Members: ${r.members.join(", ") || "none"}`);
  if (r.presenters && r.presenters.length) people.push(`Presenters: ${r.presenters.join(", ")}`);
  $("room-people").textContent = people.join(" · ");
  const member = r.my_roles && r.my_roles.length > 0;
  $("room-join").hidden = !(r.can_join && !member);
  $("room-leave").hidden = !r.my_roles || !r.my_roles.includes("member");
  $("room-edit").hidden = !r.can_manage;
  $("composer").hidden = !r.can_post;
  $("file-label").hidden = !(cat && cat.file_upload);
}

async function loadLatest(id) {
  // The map exists before the request, so live messages that arrive
  // meanwhile are kept; history fills in around them.
  const map = new Map();
  S.msgs.set(id, map);
  try {
    const r = await api("GET", `/api/v1/rooms/${id}/messages?limit=50`);
    for (const m of r.messages) map.set(m.seq, m);
    if (r.messages.length < 50) S.oldest.set(id, true);
  } catch (err) {
    S.msgs.delete(id);
    throw err;
  }
}

async function loadOlder(id) {
  if (S.loadingOlder || S.oldest.get(id)) return;
  const map = S.msgs.get(id);
  if (!map || !map.size) return;
  S.loadingOlder = true;
  const first = Math.min(...map.keys());
  $("history-state").textContent = "Loading older messages…";
  try {
    const r = await api("GET", `/api/v1/rooms/${id}/messages?before=${first}&limit=50`);
    for (const m of r.messages) map.set(m.seq, m);
    if (r.messages.length < 50) S.oldest.set(id, true);
    if (isCurrent(id)) {
      const sc = $("scroller");
      const fromBottom = sc.scrollHeight - sc.scrollTop;
      renderMessages(id, { keep: true });
      sc.scrollTop = sc.scrollHeight - fromBottom;
    }
  } finally {
    S.loadingOlder = false;
  }
}

$("scroller").addEventListener("scroll", () => {
  if (S.current && S.current.kind === "room" && $("scroller").scrollTop < 80) loadOlder(S.current.id);
});

function messageItem(m, opts = {}) {
  const li = el("li", { class: `msg${m.alert ? " alert" : ""}${m.replaced ? " replaced" : ""}`, "data-seq": m.seq ?? "", "data-cmid": m.client_msg_id });
  const head = el("div", {}, el("span", { class: "who" }, m.sender), el("time", { class: "when", datetime: new Date(m.ts || Date.now()).toISOString() }, fmtTime(m.ts || Date.now())));
  if (m.alert) head.append(el("span", { class: "tag" }, " alert"));
  if (opts.room) head.append(el("button", { type: "button", class: "link room-link", onclick: () => openRoom(m.room) }, `in ${opts.room}`));
  li.append(head);
  const text = el("div", { class: "text" });
  if (opts.terms) text.append(...highlight(m.body, opts.terms));
  else text.append(m.body);
  li.append(text);
  if (m.file) {
    const href = `${session.base}${m.file.url}?access_token=${encodeURIComponent(session.token)}`;
    li.append(el("a", { class: "file", href, download: m.file.name }, `File: ${m.file.name} (${Math.ceil(m.file.size / 1024)} KiB)`));
  }
  return li;
}

function pendingItem(p) {
  const li = messageItem({ ...p, sender: S.user.name, ts: p.ts });
  li.classList.add("pending");
  if (p.state === "failed") li.classList.add("failed");
  li.querySelector("div").append(el("span", { class: "state" }, p.state === "failed" ? `not sent: ${p.error}` : "pending"));
  return li;
}

function renderMessages(id, opts = {}) {
  const ol = $("messages");
  const sc = $("scroller");
  const atBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60;
  clear(ol);
  const map = S.msgs.get(id) || new Map();
  for (const seq of [...map.keys()].sort((a, b) => a - b)) ol.append(messageItem(map.get(seq)));
  const delivered = new Set([...map.values()].map((m) => m.client_msg_id));
  for (const p of S.outbox) if (p.room === id && !delivered.has(p.client_msg_id)) ol.append(pendingItem(p));
  const r = S.rooms.get(id);
  $("history-state").textContent = !r || !r.can_read ? "You cannot read this room." : S.oldest.get(id) ? (map.size ? "Beginning of the history." : "No messages yet.") : "Scroll up for older messages.";
  if (!opts.keep || atBottom) sc.scrollTop = sc.scrollHeight;
}

function markRead(id) {
  const r = S.rooms.get(id);
  if (!r || document.hidden) return;
  const last = Math.max(r.last_seq, S.cursors.get(id) || 0);
  if (S.read[id] !== last) {
    S.read[id] = last;
    store.set("read", S.read);
    renderSidebar();
  }
}

document.addEventListener("visibilitychange", () => {
  if (S.current && S.current.kind === "room") markRead(S.current.id);
});

function dropRoom(id) {
  S.rooms.delete(id);
  S.msgs.delete(id);
  S.cursors.delete(id);
  if (isCurrent(id)) {
    S.current = null;
    show("welcome");
  }
  renderSidebar();
}

// ---------------------------------------------------------------- posting

function newId() {
  return `${S.user.name}-${Date.now().toString(36)}-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
}

function saveOutbox() {
  store.set(
    "outbox",
    S.outbox.filter((p) => p.state !== "failed").map(({ room, body, client_msg_id, alert, ts }) => ({ room, body, client_msg_id, alert, ts })),
  );
}

function post(room, body, alert) {
  const p = { room, body, client_msg_id: newId(), alert, ts: Date.now(), state: "pending" };
  S.outbox.push(p);
  saveOutbox();
  sendPost(p);
  if (isCurrent(room)) renderMessages(room);
}

function sendPost(p) {
  if (S.ws && S.wsOpen) {
    S.ws.send(JSON.stringify({ type: "post", room: p.room, body: p.body, client_msg_id: p.client_msg_id, alert: !!p.alert }));
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = $("body").value;
  if (!body.trim() || !S.current || S.current.kind !== "room") return;
  post(S.current.id, body, $("alert").checked);
  $("body").value = "";
  $("alert").checked = false;
});

$("body").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file || !S.current || S.current.kind !== "room") return;
  const room = S.current.id;
  const q = new URLSearchParams({ name: file.name, client_msg_id: newId(), body: file.name });
  try {
    await api("POST", `/api/v1/rooms/${room}/files?${q}`, file, { raw: true, contentType: file.type || "application/octet-stream" });
  } catch (err) {
    notice(`Upload failed: ${err.message}`);
  }
  e.target.value = "";
});

function notice(text) {
  const n = $("room-notice");
  n.textContent = text;
  n.hidden = !text;
}

// ---------------------------------------------------------------- the stream

function connect() {
  clearTimeout(S.reconnectTimer);
  const url = `${session.base.replace(/^http/, "ws")}/api/v1/stream?access_token=${encodeURIComponent(session.token)}`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    return lost();
  }
  S.ws = ws;
  ws.onopen = () => {
    if (S.ws !== ws) return;
    S.wsOpen = true;
    // Resume every room from the last message the stream delivered.
    const rooms = {};
    for (const r of S.rooms.values()) {
      if (!r.can_read || r.disabled) continue;
      if (!S.cursors.has(r.id)) S.cursors.set(r.id, r.last_seq);
      rooms[r.id] = S.cursors.get(r.id);
    }
    ws.send(JSON.stringify({ type: "subscribe", rooms }));
    ws.send(JSON.stringify({ type: "follow_feeds" }));
    for (const p of S.outbox) if (p.state === "pending") sendPost(p);
    if (S.everConnected) banner("Connected again.", "back");
    S.everConnected = true;
    S.attempt = 0;
  };
  ws.onmessage = (e) => {
    if (S.ws !== ws) return;
    let f;
    try {
      f = JSON.parse(e.data);
    } catch {
      return;
    }
    onFrame(f);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    S.ws = null;
    S.wsOpen = false;
    lost();
  };
}

function lost() {
  banner("Connection lost. Reconnecting…", "lost");
  S.attempt = (S.attempt || 0) + 1;
  const delay = Math.min(2000, 150 * S.attempt);
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = setTimeout(reconnect, delay);
}

/// After a disconnect: find a serving chat server (another one after a
/// failover), make sure the session works there, then resume the stream.
async function reconnect() {
  try {
    await findServer();
    try {
      await api("GET", "/api/v1/users/me");
    } catch (err) {
      if (err.status !== 401) throw err;
      if (!S.password) {
        // After a reload the password is not kept: ask for it. The outbox
        // stays in this browser and is sent once signed in.
        banner("", "");
        sessionStorage.removeItem("pchat.token");
        $("signin-error").textContent = "Your session is not known on this chat server: sign in again.";
        showSignIn();
        return;
      }
      await signIn(S.user.name, S.password);
    }
    await loadLists();
    connect();
  } catch (err) {
    console.warn(`reconnect: ${err.message}`);
    lost();
  }
}

function onFrame(f) {
  switch (f.type) {
    case "message":
      return onMessage(f);
    case "ack":
      return onAck(f);
    case "error":
      return onError(f);
    case "going_away":
      for (const a of f.active_servers || []) if (!S.candidates.includes(a.url)) S.candidates.unshift(a.url);
      banner("Connection lost. Reconnecting…", "lost");
      return S.ws && S.ws.close();
    case "history_rewound":
      return onRewound(f);
    case "messages_changed":
      return onChanged(f);
    case "room_cleared": {
      const map = S.msgs.get(f.room);
      if (map) for (const [seq, m] of map) if (m.ts <= f.until) map.delete(seq);
      if (isCurrent(f.room)) renderMessages(f.room, { keep: true });
      return;
    }
    case "unsubscribed":
      return dropRoom(f.room);
    case "feed_message":
      return onFeedMessage(f);
    default:
      return;
  }
}

function onMessage(m) {
  if (m.seq <= (S.cursors.get(m.room) || 0)) return; // never twice
  S.cursors.set(m.room, m.seq);
  const r = S.rooms.get(m.room);
  if (r && m.seq > r.last_seq) r.last_seq = m.seq;
  const map = S.msgs.get(m.room);
  if (map) map.set(m.seq, m);
  if (m.sender === S.user.name) settle(m.client_msg_id, m.room, m.seq, m.body, m.alert);
  if (isCurrent(m.room)) {
    renderMessages(m.room, { keep: true });
    markRead(m.room);
  } else {
    renderSidebar();
  }
}

function settle(cmid, room, seq, body, alert) {
  const i = S.outbox.findIndex((p) => p.client_msg_id === cmid);
  if (i >= 0) {
    const p = S.outbox[i];
    S.outbox.splice(i, 1);
    saveOutbox();
    body = p.body;
    alert = p.alert;
  }
  if (seq && !S.sent.some((s) => s.client_msg_id === cmid && s.seq === seq)) {
    S.sent.push({ room, seq, client_msg_id: cmid, body, alert });
    if (S.sent.length > 500) S.sent.splice(0, S.sent.length - 500);
    store.set("sent", S.sent);
  }
}

function onAck(a) {
  const p = S.outbox.find((x) => x.client_msg_id === a.client_msg_id);
  settle(a.client_msg_id, a.room, a.seq, p && p.body, p && p.alert);
  if (isCurrent(a.room)) renderMessages(a.room, { keep: true });
}

function onError(f) {
  if (!f.client_msg_id) return;
  const p = S.outbox.find((x) => x.client_msg_id === f.client_msg_id);
  if (!p) return;
  // Transient refusals keep the post pending; it is re-sent on reconnect.
  if (["unavailable", "server_inactive", "shutting_down"].includes(f.code)) return;
  p.state = "failed";
  p.error = f.message;
  saveOutbox();
  if (isCurrent(p.room)) renderMessages(p.room, { keep: true });
}

/// A data-center failover lost the end of this room's history: what we
/// posted there goes back into the outbox, under its client_msg_id.
function onRewound(f) {
  S.cursors.set(f.room, f.last_seq);
  const r = S.rooms.get(f.room);
  if (r) r.last_seq = f.last_seq;
  const map = S.msgs.get(f.room);
  if (map) for (const seq of [...map.keys()]) if (seq > f.last_seq) map.delete(seq);
  const lostOwn = S.sent.filter((s) => s.room === f.room && s.seq > f.last_seq);
  S.sent = S.sent.filter((s) => !(s.room === f.room && s.seq > f.last_seq));
  store.set("sent", S.sent);
  for (const s of lostOwn) {
    if (S.outbox.some((p) => p.client_msg_id === s.client_msg_id)) continue;
    const p = { room: s.room, body: s.body, client_msg_id: s.client_msg_id, alert: s.alert, ts: Date.now(), state: "pending" };
    S.outbox.push(p);
    sendPost(p);
  }
  saveOutbox();
  if (S.read[f.room] > f.last_seq) S.read[f.room] = f.last_seq;
  if (isCurrent(f.room)) {
    notice(`After a failover this room's history ended at message ${f.last_seq}; sent again: ${lostOwn.length} of your messages.`);
    renderMessages(f.room, { keep: true });
  }
}

function onChanged(f) {
  const map = S.msgs.get(f.room);
  if (!map) return;
  for (const seq of f.seqs) {
    if (f.removed) map.delete(seq);
    else if (map.has(seq)) map.set(seq, { ...map.get(seq), body: f.body, replaced: true });
  }
  if (isCurrent(f.room)) renderMessages(f.room, { keep: true });
}

// ---------------------------------------------------------------- joining

async function join(id) {
  try {
    const r = await api("POST", `/api/v1/rooms/${id}/join`);
    S.rooms.set(id, r);
    S.cursors.delete(id);
    await loadLists();
    S.msgs.delete(id);
    S.oldest.delete(id);
    openRoom(id);
  } catch (err) {
    notice(err.message);
  }
}

$("room-join").addEventListener("click", () => S.current && join(S.current.id));
$("room-leave").addEventListener("click", async () => {
  const id = S.current.id;
  try {
    await api("POST", `/api/v1/rooms/${id}/leave`);
    await loadLists();
    if (S.rooms.has(id)) openRoom(id);
    else dropRoom(id);
  } catch (err) {
    notice(err.message);
  }
});

// ---------------------------------------------------------------- rooms: create and edit

function fillCategories(select) {
  clear(select);
  for (const c of S.categories.values()) select.append(el("option", { value: c.id }, c.name));
}

let editing = null;
function roomDialog(room) {
  editing = room;
  const f = $("room-form");
  f.reset();
  $("room-form-error").textContent = "";
  $("room-dialog-title").textContent = room ? `Edit ${room.name}` : "New room";
  fillCategories(f.elements.category);
  $("room-form-category").hidden = !!room && !S.user.admin;
  $("room-form-edit").hidden = !room;
  $("room-delete").hidden = !(room && S.user.admin);
  if (room) {
    f.elements.name.value = room.name;
    f.elements.category.value = room.category;
    f.elements.description.value = room.description;
    f.elements.privacy.value = room.privacy;
    f.elements.type.value = room.type;
    f.elements.disabled.checked = room.disabled;
  } else if (S.current && S.current.kind === "room") {
    f.elements.category.value = S.rooms.get(S.current.id).category;
  }
  $("room-dialog").showModal();
}

$("new-room").addEventListener("click", () => roomDialog(null));
$("room-edit").addEventListener("click", () => roomDialog(S.rooms.get(S.current.id)));
$("room-cancel").addEventListener("click", () => $("room-dialog").close());
$("room-delete").addEventListener("click", async () => {
  if (!editing || !confirm(`Delete ${editing.name} and its history?`)) return;
  try {
    await api("DELETE", `/api/v1/rooms/${editing.id}`);
    $("room-dialog").close();
    dropRoom(editing.id);
    await loadLists();
  } catch (err) {
    $("room-form-error").textContent = err.message;
  }
});

$("room-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  const base = { name: f.name.value.trim(), description: f.description.value, privacy: f.privacy.value, type: f.type.value };
  try {
    let room;
    if (!editing) {
      room = await api("POST", "/api/v1/rooms", {
        ...base,
        category: Number(f.category.value),
        members: splitList(f.members.value),
        managers: splitList(f.managers.value),
        presenters: splitList(f.presenters.value),
      });
    } else {
      const change = { ...base, disabled: f.disabled.checked };
      if (S.user.admin && Number(f.category.value) !== editing.category) change.category = Number(f.category.value);
      const members = { add: splitList(f.members.value), remove: splitList(f.remove_members.value) };
      if (members.add.length || members.remove.length) change.members = members;
      if (splitList(f.managers.value).length) change.managers = { add: splitList(f.managers.value) };
      if (splitList(f.presenters.value).length) change.presenters = { add: splitList(f.presenters.value) };
      room = await api("PATCH", `/api/v1/rooms/${editing.id}`, change);
      const invitee = f.invite.value.trim();
      if (invitee) room = await api("POST", `/api/v1/rooms/${editing.id}/invitations`, { user: invitee });
    }
    $("room-dialog").close();
    await loadLists();
    openRoom(room.id);
  } catch (err) {
    $("room-form-error").textContent = err.message;
  }
});

// ---------------------------------------------------------------- search and feeds

let searchState = null;
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  const room = $("search-here").checked && S.current && S.current.kind === "room" ? S.current.id : null;
  searchState = { q, room, before: null };
  clear($("result-list"));
  $("results-title").textContent = room ? `Search “${q}” in ${S.rooms.get(room).name}` : `Search “${q}”`;
  S.current = { kind: "search" };
  show("results");
  searchMore();
});

async function searchMore() {
  const s = searchState;
  const p = new URLSearchParams({ q: s.q, limit: "20" });
  if (s.room) p.set("room", s.room);
  if (s.before) p.set("before", s.before);
  try {
    const r = await api("GET", `/api/v1/search?${p}`);
    showHits(r.hits, s.q.split(/\s+/));
    s.before = r.next_before;
    $("results-more").hidden = !r.next_before;
    if (!r.hits.length && !$("result-list").children.length) $("result-list").append(el("li", { class: "muted" }, "No messages match."));
  } catch (err) {
    $("result-list").append(el("li", { class: "error" }, err.message));
  }
}

function showHits(hits, terms) {
  for (const m of hits) {
    const r = S.rooms.get(m.room);
    $("result-list").append(messageItem(m, { terms, room: r ? r.name : `room ${m.room}` }));
  }
}

$("results-more").addEventListener("click", () => (S.current.kind === "feed" ? feedMore() : searchMore()));
$("results-close").addEventListener("click", () => {
  S.current = null;
  show("welcome");
  renderSidebar();
});

let feedState = null;
function openFeed(f) {
  f.unseen = 0;
  S.current = { kind: "feed", id: f.id };
  feedState = { feed: f, before: null };
  clear($("result-list"));
  $("results-title").textContent = `Topic feed ${f.name}: ${[...f.words, ...f.senders.map((s) => `from ${s}`)].join(", ")}`;
  show("results");
  renderSidebar();
  feedMore();
}

async function feedMore() {
  const s = feedState;
  const p = new URLSearchParams({ limit: "20" });
  if (s.before) p.set("before", s.before);
  const r = await api("GET", `/api/v1/feeds/${s.feed.id}/messages?${p}`);
  showHits(r.hits, s.feed.words);
  s.before = r.next_before;
  $("results-more").hidden = !r.next_before;
}

function onFeedMessage(f) {
  const feed = S.feeds.find((x) => x.name === f.feed);
  if (!feed) return;
  if (S.current && S.current.kind === "feed" && S.current.id === feed.id) {
    const r = S.rooms.get(f.message.room);
    $("result-list").prepend(messageItem(f.message, { terms: feed.words, room: r ? r.name : "" }));
  } else {
    feed.unseen = (feed.unseen || 0) + 1;
    renderSidebar();
  }
}

$("new-feed").addEventListener("click", () => {
  $("feed-form").reset();
  $("feed-form-error").textContent = "";
  $("feed-dialog").showModal();
});
$("feed-cancel").addEventListener("click", () => $("feed-dialog").close());
$("feed-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  try {
    await api("POST", "/api/v1/feeds", { name: f.name.value.trim(), words: f.words.value.split(/\s+/).filter(Boolean), senders: splitList(f.senders.value) });
    $("feed-dialog").close();
    await loadLists();
    if (S.ws && S.wsOpen) S.ws.send(JSON.stringify({ type: "follow_feeds" }));
  } catch (err) {
    $("feed-form-error").textContent = err.message;
  }
});

// ---------------------------------------------------------------- administration

async function openAdmin() {
  S.current = { kind: "admin" };
  show("admin");
  renderSidebar();
  await renderAdmin();
}

async function renderAdmin() {
  $("admin-error").textContent = "";
  const [users, groups] = await Promise.all([api("GET", "/api/v1/users"), api("GET", "/api/v1/groups")]);
  const cl = $("adm-categories");
  clear(cl);
  for (const c of S.categories.values()) {
    cl.append(
      el(
        "li",
        {},
        el("span", {}, c.name, el("span", { class: "tag" }, ` ${c.file_upload ? "files" : "no files"} · allowed ${(c.allowed || []).join(", ")}${c.denied && c.denied.length ? ` · denied ${c.denied.join(", ")}` : ""}`)),
        el("button", { type: "button", class: "small danger", "aria-label": `Delete category ${c.name}`, onclick: () => adminDo("DELETE", `/api/v1/categories/${c.id}`) }, "Delete"),
      ),
    );
  }
  const ul = $("adm-user-list");
  clear(ul);
  for (const u of users.users) ul.append(el("li", {}, el("span", {}, u.name, u.admin ? el("span", { class: "tag" }, " administrator") : "")));
  const gl = $("adm-group-list");
  clear(gl);
  for (const g of groups.groups) {
    const input = el("input", { "aria-label": `Add members to ${g.name}`, placeholder: "add members" });
    gl.append(
      el(
        "li",
        {},
        el("span", {}, g.name, el("span", { class: "tag" }, ` ${g.members.join(", ")}`)),
        el(
          "form",
          { class: "inline", onsubmit: (e) => (e.preventDefault(), adminDo("PATCH", `/api/v1/groups/${g.id}`, { members: { add: splitList(input.value) } })) },
          input,
        ),
      ),
    );
  }
}

async function adminDo(method, path, body) {
  try {
    await api(method, path, body);
    await loadLists();
    await renderAdmin();
    return true;
  } catch (err) {
    $("admin-error").textContent = err.message;
    return false;
  }
}

$("admin-open").addEventListener("click", openAdmin);
$("admin-close").addEventListener("click", () => {
  S.current = null;
  show("welcome");
});
$("adm-category-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  const ok = await adminDo("POST", "/api/v1/categories", {
    name: f.name.value.trim(),
    description: f.description.value,
    file_upload: f.file_upload.checked,
    invitations: f.invitations.checked,
    chat_history: f.chat_history.checked,
  });
  if (ok) e.target.reset();
});
$("adm-user-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  const body = { name: f.name.value.trim(), password: f.password.value, admin: f.admin.checked };
  if (f.display_name.value.trim()) body.display_name = f.display_name.value.trim();
  if (await adminDo("POST", "/api/v1/users", body)) e.target.reset();
});
$("adm-group-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  if (await adminDo("POST", "/api/v1/groups", { name: f.name.value.trim(), members: splitList(f.members.value) })) e.target.reset();
});

// ---------------------------------------------------------------- keyboard

document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "k") {
    e.preventDefault();
    $("search-q").focus();
  }
  // Alt+Up / Alt+Down: previous / next room in the sidebar.
  if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
    const ids = [...document.querySelectorAll("#categories [data-room]")].map((b) => Number(b.dataset.room));
    if (!ids.length) return;
    const at = S.current && S.current.kind === "room" ? ids.indexOf(S.current.id) : -1;
    const next = ids[(at + (e.key === "ArrowDown" ? 1 : ids.length - 1)) % ids.length];
    e.preventDefault();
    openRoom(next);
  }
});

// ---------------------------------------------------------------- boot

window.pchat = S; // for tests and the curious: the client's state
(async () => {
  if (await restore()) {
    await start();
  } else {
    try {
      await findServer();
    } catch {
      /* the sign-in form shows the error when it is used */
    }
    showSignIn();
  }
})();
