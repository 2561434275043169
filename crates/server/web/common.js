// What the chat client and the dashboard share: the API call, errors, and
// building DOM nodes from data without ever parsing it as HTML.

/// The chat server in use (it changes when the pool fails over) and the token.
export const session = { base: location.origin, token: null };

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/// Calls the API; answers the parsed JSON (or null), throws ApiError with the
/// server's stable code. `opts`: auth (default true), base, timeout (ms),
/// raw (send the body as is, with contentType).
export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (opts.auth !== false && session.token) headers.Authorization = `Bearer ${session.token}`;
  let payload;
  if (body !== null && body !== undefined) {
    if (opts.raw) {
      payload = body;
      headers["Content-Type"] = opts.contentType || "application/octet-stream";
    } else {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
  }
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), opts.timeout || 30000);
  let res;
  try {
    res = await fetch((opts.base || session.base) + path, { method, headers, body: payload, signal: ctl.signal });
  } catch (err) {
    throw new ApiError("network", `cannot reach the chat server (${err.message})`, 0);
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(e.code || "http", e.message || `HTTP ${res.status}`, res.status);
  }
  return data;
}

/// el("a", {href, onclick}, "text", child...): attributes starting with
/// "on" become listeners; strings become text nodes.
export function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== "" && c !== null && c !== undefined) n.append(c);
  return n;
}

export function clear(n) {
  while (n.firstChild) n.removeChild(n.firstChild);
}

export function fmtTime(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/// Text nodes of `text` with every occurrence of the terms (case-insensitive;
/// the last term as a prefix, like the server's search) wrapped in <mark>.
export function highlight(text, terms) {
  const words = terms.map((t) => t.trim()).filter(Boolean).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (!words.length) return [text];
  const re = new RegExp(`(${words.join("|")})`, "gi");
  const out = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(el("mark", {}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/// "alice, group:Sales" → ["alice", "group:Sales"]
export function splitList(s) {
  return s
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean);
}
