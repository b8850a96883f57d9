// util.js -- what every page shares: rendering (Preact + htm), the API,
// the URL as the state of filters and selections, times, statuses, JSON.
import { h, render } from "preact";
import { useState, useEffect, useRef, useCallback, useMemo } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export { render, useState, useEffect, useRef, useCallback, useMemo };

// ---- the API ---------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ---- signing in (docs/security.md) -----------------------------------------
// With --auth on the API wants a token: it is kept for this browser tab
// (sessionStorage) and sent as a bearer token; event streams and downloads
// carry it as ?access_token=.  A 401 asks for it again.
export function getToken() { return sessionStorage.getItem("dtsd.token") || ""; }
export function setToken(t) {
  if (t) sessionStorage.setItem("dtsd.token", t); else sessionStorage.removeItem("dtsd.token");
  changed();
}
export function tokenArg() { const t = getToken(); return t ? `&access_token=${encodeURIComponent(t)}` : ""; }
function authHeaders(h = {}) { const t = getToken(); if (t) h.authorization = `Bearer ${t}`; return h; }
// who is signed in, and the role on each hub: {principal, authentication, roles: {hub: role}}
let session = { principal: "", authentication: false, roles: {} };
export function getSession() { return session; }
export function canWrite(hub) { return !session.authentication || ["contributor", "admin"].includes(session.roles[hub]); }

export async function api(hub, method, path, body) {
  const headers = authHeaders({ "x-taskhub": hub });
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`/api/v1/taskhubs${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.status === 401) setToken(""); /* asks for a token again (main.js) */
  if (!res.ok) throw new ApiError(res.status, json?.error?.message || `${res.status} ${res.statusText}`);
  return json;
}

export async function hubs() {
  const res = await fetch("/api/v1/taskhubs", { headers: authHeaders() });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, json?.error?.message || "cannot list the task hubs");
  session = { principal: json.principal, authentication: json.authentication,
    roles: Object.fromEntries(json.taskHubs.map((x) => [x.name, x.role])) };
  return json.taskHubs.map((x) => x.name);
}

// ---- the URL ---------------------------------------------------------------
// Every filter and selection lives in the URL, so Back works and a link can
// be shared.  navigate() pushes a new entry; replaceQuery() edits this one.
const listeners = new Set();
export function onRoute(fn) { listeners.add(fn); return () => listeners.delete(fn); }
function changed() { for (const fn of listeners) fn(); }
window.addEventListener("popstate", changed);

export function navigate(to) {
  if (to === location.pathname + location.search) return;
  history.pushState(null, "", to);
  changed();
  window.scrollTo(0, 0);
}
export function redirect(to) {
  history.replaceState(null, "", to);
  changed();
}
export function setQuery(params, push = true) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || v === false) q.delete(k); else q.set(k, String(v));
  }
  const s = q.toString();
  const to = location.pathname + (s ? `?${s}` : "");
  if (push) history.pushState(null, "", to); else history.replaceState(null, "", to);
  changed();
}
export function query() { return Object.fromEntries(new URLSearchParams(location.search)); }
export function useRoute() {
  const [, bump] = useState(0);
  useEffect(() => onRoute(() => bump((n) => n + 1)), []);
  return { path: location.pathname, q: query() };
}
export function link(e, to) {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(to);
}

// ---- times -----------------------------------------------------------------
let timeMode = localStorage.getItem("dtsd.time") || "local";
export function getTimeMode() { return timeMode; }
export function setTimeMode(m) { timeMode = m; localStorage.setItem("dtsd.time", m); changed(); }
export function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  if (timeMode === "utc") return d.toISOString().replace("T", " ").replace("Z", " UTC");
  if (timeMode === "relative") return relative(d);
  return d.toLocaleString(undefined, { hour12: false }) + `.${String(d.getMilliseconds()).padStart(3, "0")}`;
}
export function relative(d) {
  const s = (Date.now() - d.getTime()) / 1000, a = Math.abs(s);
  const t = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `${t} ago` : `in ${t}`;
}
export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

// ---- statuses --------------------------------------------------------------
export const STATUSES = ["RUNNING", "COMPLETED", "FAILED", "PENDING", "SUSPENDED", "TERMINATED", "CANCELED", "CONTINUED_AS_NEW"];
export const short = (s) => (s || "").replace("ORCHESTRATION_STATUS_", "");
export const Status = ({ s }) => html`<span class=${`st st-${short(s)}`}>${short(s).toLowerCase()}</span>`;

// ---- JSON ------------------------------------------------------------------
// A payload string holding JSON is shown parsed and coloured; anything else
// as text.  Large values are cut (the raw value stays one click away).
export function Json({ value, raw }) {
  if (value === null || value === undefined || value === "") return html`<span class="muted">none</span>`;
  let v = value;
  if (!raw && typeof value === "string") { try { v = JSON.parse(value); } catch { return html`<pre>${value}</pre>`; } }
  const text = JSON.stringify(v, null, 2) ?? String(v);
  if (text.length > 200000) return html`<pre>${text.slice(0, 200000)}\n… (${text.length} characters)</pre>`;
  const parts = [];
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    if (m[1]) parts.push(html`<span class=${m[2] ? "j-key" : "j-str"}>${m[1]}</span>`, m[2] || "");
    else if (m[3]) parts.push(html`<span class="j-lit">${m[3]}</span>`);
    else parts.push(html`<span class="j-num">${m[4]}</span>`);
    last = re.lastIndex;
  }
  parts.push(text.slice(last));
  return html`<pre>${parts}</pre>`;
}

// ---- files -----------------------------------------------------------------
export function download(name, type, chunks) {
  const url = URL.createObjectURL(new Blob(chunks, { type }));
  const a = document.createElement("a");
  a.href = url; a.download = name; document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- live updates ----------------------------------------------------------
// One EventSource per hub, shared by the views: "changes" (ids of instances
// and entities changed, coalesced by dtsd) and "stats" (counters, 1/s).
const sources = new Map();
export function useLive(hub, fn) {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    if (!hub) return undefined;
    let s = sources.get(hub);
    if (!s) {
      s = { es: new EventSource(`/api/v1/taskhubs/live?taskhub=${encodeURIComponent(hub)}${tokenArg()}`), subs: new Set() };
      for (const kind of ["changes", "stats"])
        s.es.addEventListener(kind, (e) => { const d = JSON.parse(e.data); for (const f of s.subs) f(kind, d); });
      sources.set(hub, s);
    }
    const sub = (k, d) => ref.current(k, d);
    s.subs.add(sub);
    return () => { s.subs.delete(sub); if (s.subs.size === 0) { s.es.close(); sources.delete(hub); } };
  }, [hub]);
}

// A function called at most once per `ms` (the last call of a burst runs
// at the end of the wait), and not while the page is hidden: live changes
// refresh views without a refresh per change.
export function useThrottled(fn, ms) {
  const ref = useRef({ fn, last: 0, timer: null });
  ref.current.fn = fn;
  useEffect(() => () => clearTimeout(ref.current.timer), []);
  return useCallback(() => {
    const s = ref.current;
    if (s.timer) return;
    const wait = Math.max(0, s.last + ms - Date.now());
    s.timer = setTimeout(function run() {
      if (document.visibilityState === "hidden") { s.timer = setTimeout(run, ms); return; }
      s.timer = null;
      s.last = Date.now();
      s.fn();
    }, wait);
  }, [ms]);
}

// ---- dialogs ---------------------------------------------------------------
export function Dialog({ title, onClose, children }) {
  const ref = useRef();
  useEffect(() => { ref.current.showModal(); }, []);
  return html`<dialog ref=${ref} onClose=${onClose} onCancel=${onClose}>
    <h3>${title}</h3>${children}</dialog>`;
}
