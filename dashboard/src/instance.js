// instance.js -- one orchestration: summary, payloads, actions, and four
// linked views of its history (timeline, table, sequence, raw JSON), paged
// from the server.
import { html, useState, useEffect, useRef, useMemo, api, useRoute, setQuery, link, navigate, fmtTime, fmtDuration, Status, Json, useLive, Dialog, download, canWrite } from "./util.js";

const HPAGE = 1000;
const ROW = 28;

export const kindOf = (e) => Object.keys(e).find((k) => k !== "eventId" && k !== "timestamp");

// Pairs each scheduled step with what ended it: activities, timers and
// sub-orchestrations as spans (start, end, label, kind, failed, child).
export function spans(events) {
  const open = new Map(), out = [];
  for (const e of events) {
    const k = kindOf(e), v = e[k] || {}, t = Date.parse(e.timestamp);
    if (k === "taskScheduled") open.set(`t${e.eventId}`, out.push({ kind: "activity", label: v.name, start: t, id: e.eventId }) - 1);
    else if (k === "subOrchestrationInstanceCreated") open.set(`t${e.eventId}`, out.push({ kind: "sub", label: v.name, start: t, id: e.eventId, child: v.instanceId }) - 1);
    else if (k === "timerCreated") open.set(`m${e.eventId}`, out.push({ kind: "timer", label: `timer until ${fmtTime(v.fireAt)}`, start: t, id: e.eventId }) - 1);
    else {
      const key = k === "timerFired" ? `m${v.timerId}` : v.taskScheduledId !== undefined ? `t${v.taskScheduledId}` : null;
      if (key && open.has(key)) {
        const s = out[open.get(key)];
        s.end = t; s.endId = e.eventId; s.failed = /Failed$/.test(k); s.failure = v.failureDetails;
        open.delete(key);
      }
    }
  }
  return out;
}

function Timeline({ events, hub }) {
  const sp = useMemo(() => spans(events), [events]);
  if (!events.length) return html`<p class="muted">No history yet.</p>`;
  const t0 = Date.parse(events[0].timestamp), tEnd = Math.max(...events.map((e) => Date.parse(e.timestamp)), t0 + 1);
  const W = 1000, L = 220, H = 22, x = (t) => L + ((t - t0) / (tEnd - t0)) * (W - L - 10);
  return html`<div style="overflow:auto"><svg class="gantt" width="100%" viewBox=${`0 0 ${W} ${sp.length * H + 30}`} role="img" aria-label="timeline">
    <line class="axis" x1=${L} x2=${W - 10} y1="10" y2="10" />
    <text x=${L} y="8">${fmtTime(events[0].timestamp)}</text><text x=${W - 10} y="8" text-anchor="end">+${fmtDuration(tEnd - t0)}</text>
    ${sp.map((s, i) => {
      const y = 20 + i * H, x1 = x(s.start), x2 = s.end ? x(s.end) : x(tEnd);
      const cls = s.failed ? "bar-failed" : !s.end ? "bar-open" : `bar-${s.kind}`;
      const label = html`<text x="4" y=${y + 14}>${s.kind === "sub" ? "↳ " : ""}${s.label}</text>`;
      return html`<g key=${i} data-span=${s.kind}>
        ${s.child ? html`<a href=${`/taskhubs/${hub}/orchestrations/${encodeURIComponent(s.child)}`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations/${encodeURIComponent(s.child)}`)}>${label}</a>` : label}
        <rect class=${cls} x=${x1} y=${y + 3} width=${Math.max(2, x2 - x1)} height=${H - 8} rx="2"><title>${s.label}: ${s.end ? fmtDuration(s.end - s.start) : "not finished"}${s.failure ? ` — ${s.failure.errorMessage}` : ""}</title></rect>
        <text x=${Math.min(x2 + 4, W - 60)} y=${y + 14} class="muted">${s.end ? fmtDuration(s.end - s.start) : "…"}</text></g>`;
    })}
  </svg></div>`;
}

function detail(e) {
  const k = kindOf(e), v = e[k] || {};
  if (v.name) return v.name + (v.instanceId ? ` (${v.instanceId})` : "");
  if (v.taskScheduledId !== undefined) return `of #${v.taskScheduledId}`;
  if (k === "timerFired") return `timer #${v.timerId}`;
  if (k === "timerCreated") return `fires ${fmtTime(v.fireAt)}`;
  if (k === "executionCompleted") return (v.orchestrationStatus || "").replace("ORCHESTRATION_STATUS_", "").toLowerCase();
  return "";
}

function HistoryTable({ events, total, loadMore }) {
  const { q } = useRoute();
  const type = q.type || "", failedOnly = q.failed === "1";
  const ends = useMemo(() => { // scheduled id -> the event that ended it
    const m = new Map();
    for (const e of events) { const k = kindOf(e), v = e[k] || {}; if (v.taskScheduledId !== undefined) m.set(v.taskScheduledId, e); if (k === "timerFired") m.set(v.timerId, e); }
    return m;
  }, [events]);
  const types = useMemo(() => [...new Set(events.map(kindOf))].sort(), [events]);
  const rows = useMemo(() => events.filter((e) => (!type || kindOf(e) === type) && (!failedOnly || /Failed|Terminated/.test(kindOf(e)))), [events, type, failedOnly]);
  const box = useRef();
  const [top, setTop] = useState(0);
  const jump = (id) => { const i = rows.findIndex((e) => e.eventId === Number(id) && kindOf(e) !== "orchestratorStarted"); if (i >= 0) box.current.scrollTop = i * ROW; };
  const first = Math.floor(top / ROW), last = first + 40;
  return html`<div class="filters">
      <select aria-label="event type" value=${type} onChange=${(e) => setQuery({ type: e.target.value }, false)}><option value="">every event type</option>${types.map((t) => html`<option value=${t}>${t}</option>`)}</select>
      <label><input type="checkbox" checked=${failedOnly} onChange=${(e) => setQuery({ failed: e.target.checked ? "1" : "" }, false)} /> failed only</label>
      <input type="number" placeholder="jump to event id" aria-label="jump to event id" onChange=${(e) => jump(e.target.value)} />
      <span class="muted">${events.length} of ${total} events loaded</span>
      ${events.length < total && html`<button onClick=${loadMore}>load more</button>`}
    </div>
    <div class="vlist" ref=${box} onScroll=${(e) => { setTop(e.target.scrollTop); if (e.target.scrollTop + e.target.clientHeight > rows.length * ROW - 200 && events.length < total) loadMore(); }}
      style="--cols: 70px 200px 210px 1fr 170px; --row: 28px">
      <div class="vhead"><span>id</span><span>event</span><span>time</span><span>detail</span><span>ended by</span></div>
      <div style=${`height:${rows.length * ROW}px`}></div>
      ${rows.slice(first, last).map((e, j) => {
        const i = first + j, k = kindOf(e), end = (k === "taskScheduled" || k === "subOrchestrationInstanceCreated" || k === "timerCreated") ? ends.get(e.eventId) : null;
        return html`<div class="vrow" key=${i} style=${`top:${(i + 1) * ROW}px`} data-event=${k}>
          <span>${e.eventId}</span><span class=${/Failed|Terminated/.test(k) ? "err" : ""}>${k}</span><span>${fmtTime(e.timestamp)}</span><span title=${JSON.stringify(e[k])}>${detail(e)}</span>
          <span>${end ? `${kindOf(end)}${end.eventId >= 0 ? ` #${end.eventId}` : ""} · ${fmtDuration(Date.parse(end.timestamp) - Date.parse(e.timestamp))}` : ""}</span></div>`;
      })}
    </div>`;
}

function Sequence({ events }) {
  const lines = [];
  for (const e of events) {
    const k = kindOf(e), v = e[k] || {};
    const arrow = { taskScheduled: `orchestrator ──▶ activity ${v.name}`, taskCompleted: `orchestrator ◀── activity (#${v.taskScheduledId}) done`,
      taskFailed: `orchestrator ◀─✗ activity (#${v.taskScheduledId}) failed: ${v.failureDetails?.errorMessage || ""}`,
      timerCreated: `orchestrator ──▶ timer (${fmtTime(v.fireAt)})`, timerFired: `orchestrator ◀── timer #${v.timerId} fired`,
      subOrchestrationInstanceCreated: `orchestrator ──▶ sub-orchestration ${v.name} (${v.instanceId})`,
      subOrchestrationInstanceCompleted: `orchestrator ◀── sub-orchestration (#${v.taskScheduledId}) done`,
      subOrchestrationInstanceFailed: `orchestrator ◀─✗ sub-orchestration (#${v.taskScheduledId}) failed`,
      eventRaised: `client ──▶ orchestrator: event ${v.name}`, eventSent: `orchestrator ──▶ ${v.instanceId}: event ${v.name}`,
      executionStarted: `client ──▶ orchestrator: start ${v.name}`, executionCompleted: `orchestrator: ${(v.orchestrationStatus || "").replace("ORCHESTRATION_STATUS_", "").toLowerCase()}`,
      executionTerminated: "client ──▶ orchestrator: terminate", executionSuspended: "client ──▶ orchestrator: suspend", executionResumed: "client ──▶ orchestrator: resume",
      entityOperationCalled: `orchestrator ──▶ entity ${v.targetInstanceId || ""}: call ${v.operation || ""}`,
      entityOperationSignaled: `orchestrator ──▶ entity ${v.targetInstanceId || ""}: signal ${v.operation || ""}`,
      entityOperationCompleted: "orchestrator ◀── entity: done", entityLockRequested: "orchestrator ──▶ entities: lock", entityLockGranted: "orchestrator ◀── entities: locked" }[k];
    if (arrow) lines.push(html`<div key=${lines.length}><span class="muted">${fmtTime(e.timestamp)}</span>  ${arrow}</div>`);
  }
  return html`<div class="seq">${lines.length ? lines : html`<p class="muted">No steps yet.</p>`}</div>`;
}

const ACTIONS = {
  suspend: { label: "Suspend", event: (r) => ({ executionSuspended: { reason: r } }) },
  resume: { label: "Resume", event: (r) => ({ executionResumed: { reason: r } }) },
  terminate: { label: "Terminate", event: (r) => ({ executionTerminated: { reason: r } }), danger: true },
  rewind: { label: "Rewind", event: (r) => ({ executionRewound: { reason: r } }) },
  raise: { label: "Raise event" },
  restart: { label: "Restart" },
  purge: { label: "Purge", danger: true },
};

function ActionDialog({ hub, id, what, onClose, onDone }) {
  const [err, setErr] = useState(null);
  const a = ACTIONS[what];
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      if (what === "raise") await api(hub, "POST", `/orchestrations/${encodeURIComponent(id)}/history`, { eventRaised: { name: f.get("name"), input: f.get("input") || undefined } });
      else if (what === "restart") {
        const r = await api(hub, "POST", `/orchestrations/${encodeURIComponent(id)}/restart`, { restartWithNewInstanceId: f.get("newid") === "on" });
        onClose(); navigate(`/taskhubs/${hub}/orchestrations/${encodeURIComponent(r.instanceId)}`); return;
      } else if (what === "purge") { await api(hub, "DELETE", `/orchestrations/${encodeURIComponent(id)}`); onClose(); navigate(`/taskhubs/${hub}/orchestrations`); return; }
      else await api(hub, "POST", `/orchestrations/${encodeURIComponent(id)}/history`, a.event(f.get("reason") || ""));
      onClose(); onDone();
    } catch (x) { setErr(x.message); }
  };
  return html`<${Dialog} title=${`${a.label}: ${id}`} onClose=${onClose}><form onSubmit=${submit}>
    ${what === "raise" && html`<label>event name</label><input name="name" required /><label>data (JSON)</label><textarea name="input" rows="3"></textarea>`}
    ${what === "restart" && html`<label><input type="checkbox" name="newid" /> with a new instance id</label>`}
    ${!["raise", "restart", "purge"].includes(what) && html`<label>reason</label><input name="reason" />`}
    ${what === "purge" && html`<p>The instance and its history are deleted for good.</p>`}
    ${err && html`<p class="err">${err}</p>`}
    <p class="row"><button class=${a.danger ? "danger" : "primary"} type="submit">${a.label}</button><button type="button" onClick=${onClose}>Cancel</button></p>
  </form></${Dialog}>`;
}

export function Instance({ hub, id }) {
  const { q } = useRoute();
  const view = q.view || "timeline";
  const [o, setO] = useState(null);
  const [pl, setPl] = useState(null);
  const [hist, setHist] = useState({ events: [], total: 0 });
  const [err, setErr] = useState(null);
  const [dialog, setDialog] = useState(null);
  const busy = useRef(false);
  const enc = encodeURIComponent(id);
  const loadPage = async (start) => {
    if (busy.current) return;
    busy.current = true;
    try {
      const r = await api(hub, "GET", `/orchestrations/${enc}/executions/latest/history?startIndex=${start}&count=${HPAGE}`);
      setHist((h) => ({ events: start === 0 ? r.history : [...h.events, ...r.history], total: r.totalCount }));
    } catch (e) { if (e.status !== 404) setErr(e.message); } finally { busy.current = false; }
  };
  const load = () => {
    api(hub, "GET", `/orchestrations/${enc}`).then(setO, (e) => setErr(e.message));
    api(hub, "GET", `/orchestrations/${enc}/payloads`).then(setPl, () => {});
    loadPage(0);
  };
  useEffect(() => { setO(null); setPl(null); setErr(null); setHist({ events: [], total: 0 }); load(); }, [hub, id]);
  useLive(hub, (kind, d) => { if (kind === "changes" && (d.lost || (d.ids || []).includes(id))) load(); });
  const exportHistory = async () => {
    const r = await api(hub, "GET", `/orchestrations/${enc}/executions/latest/history?format=array`);
    download(`${id}-history.json`, "application/json", [JSON.stringify(r, null, 2)]);
  };
  if (err) return html`<p class="err">${err}</p><p><a href=${`/taskhubs/${hub}/orchestrations`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations`)}>back to the list</a></p>`;
  if (!o) return html`<p class="muted">loading…</p>`;
  return html`<p><a href=${`/taskhubs/${hub}/orchestrations`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations`)}>← orchestrations</a></p>
    <div class="row"><h2 data-testid="instance-id">${o.instanceId}</h2><${Status} s=${o.orchestrationStatus} /></div>
    <div class="card row">${canWrite(hub) && Object.keys(ACTIONS).map((k) => html`<button class=${ACTIONS[k].danger ? "danger" : ""} data-action=${k} onClick=${() => setDialog(k)}>${ACTIONS[k].label}…</button>`)}
      <button onClick=${exportHistory}>Export history</button></div>
    <div class="grid">
      <div class="card"><dl class="kv">
        <dt>name</dt><dd>${o.name}</dd><dt>version</dt><dd>${o.version || html`<span class="muted">none</span>`}</dd>
        <dt>execution</dt><dd>${o.executionId}</dd>
        <dt>created</dt><dd>${fmtTime(o.createdAt)}</dd><dt>updated</dt><dd>${fmtTime(o.lastUpdatedAt)}</dd>
        <dt>completed</dt><dd>${fmtTime(o.completedAt)}${o.completedAt && html` <span class="muted">(${fmtDuration(Date.parse(o.completedAt) - Date.parse(o.createdAt))})</span>`}</dd>
        ${o.scheduledStartAt && html`<dt>scheduled start</dt><dd>${fmtTime(o.scheduledStartAt)}</dd>`}
        ${o.parentInstanceId && html`<dt>parent</dt><dd><a href=${`/taskhubs/${hub}/orchestrations/${encodeURIComponent(o.parentInstanceId)}`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations/${encodeURIComponent(o.parentInstanceId)}`)}>${o.parentInstanceId}</a></dd>`}
        ${Object.keys(o.tags || {}).length > 0 && html`<dt>tags</dt><dd>${Object.entries(o.tags).map(([k, v]) => `${k}=${v}`).join(", ")}</dd>`}
      </dl></div>
      ${pl && html`<div class="card"><b>input</b><${Json} value=${pl.input} /></div>
        <div class="card"><b>output</b><${Json} value=${pl.output} /></div>
        ${pl.customStatus && html`<div class="card"><b>custom status</b><${Json} value=${pl.customStatus} /></div>`}
        ${pl.failureDetails && html`<div class="card"><b class="err">failure</b><${Json} value=${pl.failureDetails} raw /></div>`}`}
    </div>
    <div class="tabs">${["timeline", "history", "sequence", "raw"].map((v) => html`<button class=${view === v ? "on" : ""} data-view=${v} onClick=${() => setQuery({ view: v }, false)}>${v}</button>`)}</div>
    ${view === "timeline" && html`<${Timeline} events=${hist.events} hub=${hub} />`}
    ${view === "history" && html`<${HistoryTable} events=${hist.events} total=${hist.total} loadMore=${() => loadPage(hist.events.length)} />`}
    ${view === "sequence" && html`<${Sequence} events=${hist.events} />`}
    ${view === "raw" && html`<${Json} value=${hist.events} raw />`}
    ${dialog && html`<${ActionDialog} hub=${hub} id=${id} what=${dialog} onClose=${() => setDialog(null)} onDone=${load} />`}`;
}
