// workers.js -- the connected worker streams and what they hold.
import { html, useState, useEffect, api, fmtTime, useLive } from "./util.js";

export function Workers({ hub }) {
  const [w, setW] = useState(null);
  const [err, setErr] = useState(null);
  const load = () => api(hub, "GET", "/workers").then((r) => setW(r.workers), (e) => setErr(e.message));
  useEffect(() => { load(); }, [hub]);
  useLive(hub, (kind, d) => { if (kind === "stats" && w && d.streams !== w.length) load(); });
  return html`<h2>Workers</h2>${err && html`<p class="err">${err}</p>`}
    ${w && (w.length === 0 ? html`<p class="muted">No worker is connected to ${hub}.</p>` : html`<table><thead><tr><th>worker</th>
      <th>orchestrations</th><th>activities</th><th>entities</th><th>connected</th><th>last activity</th></tr></thead><tbody>
      ${w.map((x) => html`<tr key=${x.streamId}><td>${x.workerId}<div class="muted">${x.streamId}${x.userAgent ? ` · ${x.userAgent}` : ""}</div></td><td>${x.activeOrchestrationsCount} / ${x.maxOrchestrationsCount}</td>
        <td>${x.activeActivitiesCount} / ${x.maxActivitiesCount}</td><td>${x.activeEntitiesCount} / ${x.maxEntitiesCount}</td>
        <td>${fmtTime(x.connectedAt)}</td><td>${fmtTime(x.lastActivityAt)}</td></tr>`)}</tbody></table>`)}`;
}
