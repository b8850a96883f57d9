// entities.js -- entities: list and filter, one entity's state, backlog
// and lock holder, signal, delete, clean storage.
import { html, useState, useEffect, api, useRoute, setQuery, link, navigate, fmtTime, Json, useLive, useThrottled, Dialog, canWrite } from "./util.js";

export function Entities({ hub }) {
  const { q } = useRoute();
  const [r, setR] = useState(null);
  const [err, setErr] = useState(null);
  const [msg, setMsg] = useState(null);
  const [gen, setGen] = useState(0);
  const lm = q.modified && { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 }[q.modified];
  const body = { filter: { name: q.name || undefined, key: q.key || undefined, lastModifiedAt: lm ? { start: new Date(Date.now() - lm).toISOString() } : undefined },
    pagination: { startIndex: Number(q.start || 0), count: 100 },
    sort: [{ column: q.sort || "LAST_MODIFIED_AT", direction: q.dir === "asc" ? "ASCENDING_SORT" : "DESCENDING_SORT" }] };
  useEffect(() => { api(hub, "POST", "/entities/query", body).then(setR, (e) => setErr(e.message)); }, [hub, JSON.stringify(body), gen]);
  const refresh = useThrottled(() => setGen((g) => g + 1), 2000);
  useLive(hub, (kind, d) => { if (kind === "changes" && (d.lost || (d.ids || []).some((x) => x[0] === "@"))) refresh(); });
  const clean = async () => {
    try { const c = await api(hub, "POST", "/entities/clean", { removeEmptyEntities: true, releaseOrphanedLocks: true }); setMsg(`removed ${c.emptyEntitiesRemoved} empty entities, released ${c.orphanedLocksReleased} locks`); setGen((g) => g + 1); } catch (e) { setErr(e.message); }
  };
  const start = Number(q.start || 0);
  return html`<div class="row"><h2>Entities</h2><span class="muted" data-testid="total">${r ? `${r.totalCount} matching` : ""}</span>
      ${canWrite(hub) && html`<button style="margin-left:auto" onClick=${clean}>Clean storage</button>`}</div>
    <div class="filters">
      <input type="search" placeholder="name" aria-label="entity name" value=${q.name || ""} onChange=${(e) => setQuery({ name: e.target.value, start: "" })} />
      <input type="search" placeholder="key contains" aria-label="entity key" value=${q.key || ""} onChange=${(e) => setQuery({ key: e.target.value, start: "" })} />
      <select aria-label="modified" value=${q.modified || ""} onChange=${(e) => setQuery({ modified: e.target.value, start: "" })}>
        <option value="">modified: any time</option><option value="1h">modified in the last hour</option>
        <option value="24h">in the last day</option><option value="7d">in the last week</option></select>
      <select aria-label="sort" value=${q.sort || "LAST_MODIFIED_AT"} onChange=${(e) => setQuery({ sort: e.target.value })}>
        <option value="LAST_MODIFIED_AT">last modified</option><option value="NAME">name</option><option value="KEY">key</option></select>
      <select aria-label="direction" value=${q.dir || "desc"} onChange=${(e) => setQuery({ dir: e.target.value })}><option value="desc">descending</option><option value="asc">ascending</option></select>
    </div>
    ${msg && html`<p>${msg}</p>`}${err && html`<p class="err">${err}</p>`}
    ${r && html`<table><thead><tr><th>entity</th><th>last modified</th><th>backlog</th><th>locked by</th></tr></thead><tbody>
      ${r.entities.map((e) => html`<tr key=${e.instanceId}><td><a href=${`/taskhubs/${hub}/entities/${encodeURIComponent(e.instanceId)}`}
        onClick=${(x) => link(x, `/taskhubs/${hub}/entities/${encodeURIComponent(e.instanceId)}`)}>${e.instanceId}</a></td>
        <td>${fmtTime(e.lastModifiedTime)}</td><td>${e.backlogQueueSize}</td><td>${e.lockedBy || ""}</td></tr>`)}
    </tbody></table>
    <p class="row">${start > 0 && html`<button onClick=${() => setQuery({ start: Math.max(0, start - 100) })}>previous</button>`}
      ${start + 100 < r.totalCount && html`<button onClick=${() => setQuery({ start: start + 100 })}>next</button>`}</p>`}`;
}

function SignalDialog({ hub, id, onClose }) {
  const [err, setErr] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try { await api(hub, "POST", `/entities/${encodeURIComponent(id)}/signal`, { name: f.get("name"), input: f.get("input") || undefined }); onClose(); } catch (x) { setErr(x.message); }
  };
  return html`<${Dialog} title=${`Signal ${id}`} onClose=${onClose}><form onSubmit=${submit}>
    <label>operation</label><input name="name" required /><label>input (JSON)</label><textarea name="input" rows="3"></textarea>
    ${err && html`<p class="err">${err}</p>`}
    <p class="row"><button class="primary" type="submit">Signal</button><button type="button" onClick=${onClose}>Cancel</button></p></form></${Dialog}>`;
}

export function Entity({ hub, id }) {
  const [e, setE] = useState(null);
  const [st, setSt] = useState(null);
  const [err, setErr] = useState(null);
  const [dialog, setDialog] = useState(false);
  const enc = encodeURIComponent(id);
  const load = () => {
    api(hub, "GET", `/entities/${enc}`).then(setE, (x) => setErr(x.message));
    api(hub, "GET", `/entities/${enc}/state`).then(setSt, () => {});
  };
  useEffect(load, [hub, id]);
  useLive(hub, (kind, d) => { if (kind === "changes" && (d.lost || (d.ids || []).includes(id))) load(); });
  const del = async () => {
    if (!confirm(`Delete ${id}? A worker hosting the entity runs its "delete" operation.`)) return;
    try { await api(hub, "DELETE", `/entities/${enc}`); navigate(`/taskhubs/${hub}/entities`); } catch (x) { setErr(x.message); }
  };
  return html`<p><a href=${`/taskhubs/${hub}/entities`} onClick=${(x) => link(x, `/taskhubs/${hub}/entities`)}>← entities</a></p>
    <h2>${id}</h2>${err && html`<p class="err">${err}</p>`}
    ${canWrite(hub) && html`<div class="card row"><button class="primary" onClick=${() => setDialog(true)}>Signal…</button><button class="danger" onClick=${del}>Delete…</button></div>`}
    ${e && html`<div class="card"><dl class="kv"><dt>name</dt><dd>${e.name}</dd><dt>key</dt><dd>${e.key}</dd>
      <dt>last modified</dt><dd>${fmtTime(e.lastModifiedTime)}</dd><dt>backlog</dt><dd>${e.backlogQueueSize}</dd>
      <dt>locked by</dt><dd>${e.lockedBy ? html`<a href=${`/taskhubs/${hub}/orchestrations/${encodeURIComponent(e.lockedBy)}`} onClick=${(x) => link(x, `/taskhubs/${hub}/orchestrations/${encodeURIComponent(e.lockedBy)}`)}>${e.lockedBy}</a>` : html`<span class="muted">nobody</span>`}</dd></dl></div>`}
    ${st && html`<div class="card"><b>state</b><${Json} value=${st.state} /></div>`}
    ${dialog && html`<${SignalDialog} hub=${hub} id=${id} onClose=${() => setDialog(false)} />`}`;
}
