// orchestrations.js -- the list: filters and sort in the URL, a virtual
// list over the whole result (pages fetched as they scroll into view),
// counts that follow the filter, start, bulk actions over the whole query
// and export.
import { html, useState, useEffect, useRef, useMemo, api, useRoute, setQuery, link, navigate, fmtTime, Status, STATUSES, useLive, useThrottled, Dialog, canWrite, tokenArg } from "./util.js";

const PAGE = 100;
const ROW = 30;
const COLS = [["ORCHESTRATION_ID", "instance id", "2fr"], ["NAME", "name", "1.2fr"], ["ORCHESTRATION_STATUS", "status", "110px"],
  ["CREATED_AT", "created", "190px"], ["LAST_UPDATED_AT", "updated", "190px"], ["COMPLETED_AT", "completed", "190px"]];
const PRESETS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

// The query body of the URL's filters.
export function queryBody(q) {
  const f = {};
  if (q.status) f.orchestrationStatus = { status: q.status.split(",").map((s) => `ORCHESTRATION_STATUS_${s}`) };
  if (q.id) f.orchestrationId = { value: q.id };
  if (q.name) f.name = { value: q.name };
  if (q.tags) f.tags = { value: q.tags };
  if (q.q) f.search = { value: q.q };
  if (q.subs !== "show") f.hideSubOrchestrations = true;
  if (q.prefix) f.orchestrationIdPrefix = { value: q.prefix };
  if (q.created && PRESETS[q.created]) f.createdAt = { start: new Date(Date.now() - PRESETS[q.created]).toISOString() };
  else if (q.from || q.to) f.createdAt = { start: q.from ? new Date(q.from).toISOString() : undefined, end: q.to ? new Date(q.to).toISOString() : undefined };
  if (q.completed && PRESETS[q.completed]) f.completedAt = { start: new Date(Date.now() - PRESETS[q.completed]).toISOString() };
  else if (q.cfrom || q.cto) f.completedAt = { start: q.cfrom ? new Date(q.cfrom).toISOString() : undefined, end: q.cto ? new Date(q.cto).toISOString() : undefined };
  const [col, dir] = (q.sort || "CREATED_AT:desc").split(":");
  return { filter: f, sort: [{ column: col, direction: dir === "asc" ? "ASCENDING_SORT" : "DESCENDING_SORT" }] };
}

function Filters({ q }) {
  const statuses = q.status ? q.status.split(",") : [];
  const toggle = (s) => {
    const next = statuses.includes(s) ? statuses.filter((x) => x !== s) : [...statuses, s];
    setQuery({ status: next.join(",") });
  };
  const text = (key, label, type = "search") => html`<input type=${type} placeholder=${label} aria-label=${label} value=${q[key] || ""}
    onChange=${(e) => setQuery({ [key]: e.target.value })} />`;
  return html`<div class="filters">
    ${STATUSES.slice(0, 6).map((s) => html`<span class=${`chip${statuses.includes(s) ? " on" : ""}`} role="checkbox" aria-checked=${statuses.includes(s)}
      tabindex="0" data-status=${s} onClick=${() => toggle(s)} onKeyDown=${(e) => e.key === " " && toggle(s)}>${s.toLowerCase()}</span>`)}
    ${text("prefix", "instance id starts with")} ${text("id", "instance id contains")} ${text("name", "name contains")} ${text("tags", "tags (key=value)")} ${text("q", "search input, output, status")}
    <select aria-label="created" value=${q.created || ""} onChange=${(e) => setQuery({ created: e.target.value, from: "", to: "" })}>
      <option value="">created: any time</option>${Object.keys(PRESETS).map((p) => html`<option value=${p}>last ${p}</option>`)}
      <option value="custom">custom range…</option>
    </select>
    ${q.created === "custom" && html`${text("from", "from", "datetime-local")} ${text("to", "to", "datetime-local")}`}
    <select aria-label="completed" value=${q.completed || ""} onChange=${(e) => setQuery({ completed: e.target.value, cfrom: "", cto: "" })}>
      <option value="">completed: any time</option>${Object.keys(PRESETS).map((p) => html`<option value=${p}>completed in the last ${p}</option>`)}
      <option value="custom">completed in a range…</option>
    </select>
    ${q.completed === "custom" && html`${text("cfrom", "completed from", "datetime-local")} ${text("cto", "completed to", "datetime-local")}`}
    <label><input type="checkbox" checked=${q.subs === "show"} onChange=${(e) => setQuery({ subs: e.target.checked ? "show" : "" })} /> sub-orchestrations</label>
  </div>`;
}

function StartDialog({ hub, onClose }) {
  const [err, setErr] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target), tags = {};
    for (const line of String(f.get("tags")).split("\n")) { const i = line.indexOf("="); if (i > 0) tags[line.slice(0, i).trim()] = line.slice(i + 1).trim(); }
    const body = { name: f.get("name"), instanceId: f.get("id") || undefined, version: f.get("version") || undefined,
      input: f.get("input") === "" ? undefined : f.get("input"), tags };
    if (f.get("at")) body.scheduledStartTimestamp = new Date(f.get("at")).toISOString();
    try { const r = await api(hub, "POST", "/orchestrations", body); onClose(); navigate(`/taskhubs/${hub}/orchestrations/${encodeURIComponent(r.instanceId)}`); } catch (x) { setErr(x.message); }
  };
  return html`<${Dialog} title="Start an orchestration" onClose=${onClose}><form onSubmit=${submit}>
    <label>name</label><input name="name" required />
    <label>instance id (empty: a new one)</label><input name="id" />
    <label>version</label><input name="version" />
    <label>input (JSON)</label><textarea name="input" rows="4"></textarea>
    <label>scheduled start</label><input name="at" type="datetime-local" />
    <label>tags (key=value per line)</label><textarea name="tags" rows="2"></textarea>
    ${err && html`<p class="err">${err}</p>`}
    <p class="row"><button class="primary" type="submit">Start</button><button type="button" onClick=${onClose}>Cancel</button></p>
  </form></${Dialog}>`;
}

// A bulk action over every instance the query matches, run by dtsd as a
// background job (POST /orchestrations/bulk): a dry-run count first, then
// the job's progress, cancel, and the ids that failed.  The job goes on if
// the page is closed.
function BulkDialog({ hub, body, action, onClose }) {
  const [count, setCount] = useState(null);
  const [job, setJob] = useState(null);
  const [err, setErr] = useState(null);
  const reasonRef = useRef();
  useEffect(() => {
    api(hub, "POST", "/orchestrations/bulk", { action, filter: body.filter, dryRun: true }).then(setCount, (e) => setErr(e.message));
  }, []);
  useEffect(() => { // the job's progress, twice a second while it runs
    if (!job || job.state !== "running") return undefined;
    const t = setTimeout(() => api(hub, "GET", `/jobs/${job.jobId}`).then(setJob, (e) => setErr(e.message)), 500);
    return () => clearTimeout(t);
  }, [job]);
  const start = async () => {
    try {
      const r = await api(hub, "POST", "/orchestrations/bulk", { action, filter: body.filter, reason: reasonRef.current?.value || "" });
      setJob({ jobId: r.jobId, state: "running", total: r.total, done: 0, failedCount: 0, failed: [] });
    } catch (e) { setErr(e.message); }
  };
  const verb = action === "purge" ? "Purge" : "Terminate";
  return html`<${Dialog} title=${`${verb} every matching orchestration`} onClose=${onClose}>
    ${err && html`<p class="err">${err}</p>`}
    ${!job && count && html`<p>The query matches <b data-testid="dry-run">${count.count}${count.truncated ? "+" : ""}</b> orchestration${count.count === 1 ? "" : "s"}
      ${action === "purge" ? " (only finished ones can be purged)" : ""}.</p>
      ${action !== "purge" && html`<label>reason</label><input ref=${reasonRef} />`}
      <p class="row"><button class="danger" data-testid="bulk-start" onClick=${start}>${verb} ${count.count}</button><button onClick=${onClose}>Cancel</button></p>`}
    ${job && html`<p data-testid="bulk-state">${job.state}: ${job.done} of ${job.total}</p>
      <div class="progress"><div style=${`width:${job.total ? (100 * job.done) / job.total : 100}%`}></div></div>
      ${job.failedCount > 0 && html`<p class="err">${job.failedCount} failed:</p><pre>${job.failed.map((f) => `${f.instanceId}: ${f.error}`).join("\n")}</pre>`}
      <p class="row">${job.state === "running" && html`<button onClick=${() => api(hub, "DELETE", `/jobs/${job.jobId}`).then(setJob)}>Cancel the job</button>`}
        <button onClick=${onClose}>Close</button></p>`}
  </${Dialog}>`;
}

// The export streams from dtsd (GET /orchestrations/export): a link, so the
// browser downloads it as it comes and the page holds none of it.
function exportQuery(hub, body, format) {
  const q = encodeURIComponent(JSON.stringify({ filter: body.filter }));
  const a = document.createElement("a");
  a.href = `/api/v1/taskhubs/orchestrations/export?taskhub=${encodeURIComponent(hub)}&format=${format}&q=${q}${tokenArg()}`;
  a.download = `${hub}-orchestrations.${format}`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

export function Orchestrations({ hub }) {
  const { q } = useRoute();
  const body = useMemo(() => queryBody(q), [JSON.stringify(q), hub]);
  const key = JSON.stringify(body) + hub;
  const [meta, setMeta] = useState(null);
  const [pages, setPages] = useState(new Map());
  const [err, setErr] = useState(null);
  const [range, setRange] = useState([0, 40]);
  const [dialog, setDialog] = useState(null);
  const [sel, setSel] = useState(0);
  const [gen, setGen] = useState(0);
  const box = useRef();
  const loading = useRef(new Set());

  // The counts (a bounded scan) come apart from the rows: a page of rows
  // asks no counts, so the newest rows show at once however large the hub.
  const loadCounts = () => api(hub, "POST", "/orchestrations/query", { ...body, pagination: { startIndex: 0, count: 1 }, maxCountAgeMs: 10000 })
    .then((r) => setMeta({ totalCount: r.totalCount, trivia: r.trivia, truncated: r.truncated }), (e) => setErr(e.message));
  useEffect(() => { setPages(new Map()); loading.current = new Set(); setMeta(null); setErr(null); if (box.current) box.current.scrollTop = 0; loadCounts(); }, [key]);
  // Live changes: the rows in view at most every 2 s, the counts (a scan of
  // up to --http-max-scan instances) at most every 30 s, none while hidden.
  const refreshRows = useThrottled(() => setGen((g) => g + 1), 2000);
  const refreshCounts = useThrottled(() => loadCounts(), 30000);
  useLive(hub, (kind) => { if (kind === "changes") { refreshRows(); refreshCounts(); } });
  useEffect(() => { // the pages in view are fetched again
    if (gen === 0) return;
    loading.current = new Set();
    setPages(new Map());
  }, [gen]);
  useEffect(() => {
    const first = Math.floor(range[0] / PAGE), last = Math.floor(range[1] / PAGE);
    for (let p = first; p <= last; p++) {
      if (pages.has(p) || loading.current.has(p) || (p > 0 && p * PAGE >= total)) continue;
      loading.current.add(p);
      api(hub, "POST", "/orchestrations/query", { ...body, pagination: { startIndex: p * PAGE, count: PAGE }, fetchTotalCount: false })
        .then((r) => setPages((m) => new Map(m).set(p, { rows: r.orchestrations, more: r.truncated || r.totalCount > (p + 1) * PAGE })),
          (e) => setErr(e.message));
    }
  }, [range, pages, key, meta]);

  // How many rows the list holds: what is loaded and one more page while
  // pages say more follow, or the count when it says more (it may be up to
  // 10 s old: rows loaded since count too).
  let extent = 0, more = pages.size === 0;
  for (const [p, pg] of pages) { if (pg.rows.length) extent = Math.max(extent, p * PAGE + pg.rows.length); if (pg.more) more = true; }
  const total = pages.size && !more ? Math.max(extent, meta && !meta.truncated ? Math.min(meta.totalCount, extent) : 0)
    : Math.max(meta?.totalCount ?? 0, extent + (more ? PAGE : 0));
  const row = (i) => pages.get(Math.floor(i / PAGE))?.rows[i % PAGE];
  const onScroll = () => { const el = box.current; setRange([Math.floor(el.scrollTop / ROW), Math.ceil((el.scrollTop + el.clientHeight) / ROW) + 10]); };
  const [sortCol, sortDir] = (q.sort || "CREATED_AT:desc").split(":");
  const sortBy = (c) => setQuery({ sort: `${c}:${c === sortCol && sortDir === "desc" ? "asc" : "desc"}` });
  const open = (o) => navigate(`/taskhubs/${hub}/orchestrations/${encodeURIComponent(o.instanceId)}`);
  const onKey = (e) => {
    if (e.key === "j" || e.key === "ArrowDown") { setSel((s) => Math.min(total - 1, s + 1)); e.preventDefault(); }
    if (e.key === "k" || e.key === "ArrowUp") { setSel((s) => Math.max(0, s - 1)); e.preventDefault(); }
    if (e.key === "Enter" && row(sel)) open(row(sel));
  };
  const rows = [];
  for (let i = range[0]; i < Math.min(total, range[1]); i++) {
    const o = row(i);
    rows.push(html`<div class=${`vrow${i === sel ? " sel" : ""}`} key=${i} style=${`top:${(i + 1) * ROW}px`} data-row=${i}
      onClick=${() => o && open(o)}>
      ${o ? html`<a href=${`/taskhubs/${hub}/orchestrations/${encodeURIComponent(o.instanceId)}`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations/${encodeURIComponent(o.instanceId)}`)}>${o.instanceId}</a>
        <span>${o.name}</span><${Status} s=${o.orchestrationStatus} /><span>${fmtTime(o.createdAt)}</span><span>${fmtTime(o.lastUpdatedAt)}</span><span>${fmtTime(o.completedAt)}</span>`
        : html`<span class="muted">${pages.has(Math.floor(i / PAGE)) ? "" : "…"}</span>`}</div>`);
  }
  const t = meta?.trivia;
  return html`<div class="row"><h2>Orchestrations</h2>
      <span class="muted" data-testid="total">${meta ? `${meta.totalCount}${meta.truncated ? "+" : ""} matching` : "counting…"}</span>
      ${t && html`<span class="muted">· ${t.runningCount} running · ${t.completedCount} completed · ${t.failedCount} failed · ${t.pendingCount} pending</span>`}
      <span style="margin-left:auto" class="row">
        ${canWrite(hub) && html`<button class="primary" onClick=${() => setDialog("start")}>Start…</button>
        <button disabled=${!total} onClick=${() => setDialog("terminate")}>Terminate all…</button>
        <button disabled=${!total} onClick=${() => setDialog("purge")}>Purge all…</button>`}
        <button disabled=${!total} onClick=${() => exportQuery(hub, body, "csv")}>CSV</button>
        <button disabled=${!total} onClick=${() => exportQuery(hub, body, "jsonl")}>JSON lines</button>
      </span></div>
    <${Filters} q=${q} />
    ${err && html`<p class="err">${err}</p>`}
    <div class="vlist" ref=${box} onScroll=${onScroll} tabindex="0" onKeyDown=${onKey} style=${`--cols:${COLS.map((c) => c[2]).join(" ")}`} aria-label="orchestrations">
      <div class="vhead">${COLS.map(([c, label]) => html`<span onClick=${() => sortBy(c)} data-sort=${c}>${label}${c === sortCol ? (sortDir === "asc" ? " ▲" : " ▼") : ""}</span>`)}</div>
      <div style=${`height:${total * ROW}px`}></div>
      ${rows}
    </div>
    ${dialog === "start" && html`<${StartDialog} hub=${hub} onClose=${() => setDialog(null)} />`}
    ${(dialog === "terminate" || dialog === "purge") && html`<${BulkDialog} hub=${hub} body=${body} action=${dialog}
      onClose=${() => { setDialog(null); setGen((g) => g + 1); }} />`}`;
}
