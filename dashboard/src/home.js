// home.js -- every hub: counts by status, workers, live throughput and
// ready-queue depth (from the "stats" live events, one a second).
import { html, useState, useEffect, api, link, useLive, useThrottled, STATUSES } from "./util.js";

const POINTS = 60;

export function Spark({ values, label }) {
  const max = Math.max(1, ...values);
  const step = 100 / (POINTS - 1);
  const pts = values.map((v, i) => `${(i + POINTS - values.length) * step},${58 - (v / max) * 56}`);
  return html`<div><div class="row"><span class="muted">${label}</span><b>${values.length ? Math.round(values[values.length - 1]) : 0}</b>
    <span class="muted">(max ${Math.round(max)})</span></div>
    <svg class="spark" viewBox="0 0 100 60" preserveAspectRatio="none" role="img" aria-label=${label}>
      ${pts.length > 1 && html`<path d=${`M${pts.join("L")}`} vector-effect="non-scaling-stroke" />`}</svg></div>`;
}

function HubCard({ hub }) {
  const [trivia, setTrivia] = useState(null);
  const [workers, setWorkers] = useState(null);
  const [err, setErr] = useState(null);
  const [series, setSeries] = useState({ done: [], ready: [], disp: [], act: [], last: null });
  const load = () => Promise.all([
    api(hub, "POST", "/orchestrations/query", { pagination: { startIndex: 0, count: 1 }, maxCountAgeMs: 10000 }),
    api(hub, "GET", "/workers"),
  ]).then(([q, w]) => { setTrivia({ ...q.trivia, truncated: q.truncated }); setWorkers(w.workers); }, (e) => setErr(e.message));
  useEffect(() => { load(); }, [hub]);
  const reload = useThrottled(load, 30000); /* the counts are a bounded scan: at most every 30 s */
  useLive(hub, (kind, d) => {
    if (kind === "changes") { reload(); return; }
    setSeries((s) => {
      const rate = s.last ? Math.max(0, (d.completions - s.last.completions) / Math.max(0.001, (d.t - s.last.t) / 1000)) : 0;
      const keep = (arr, v) => (v >= 0 ? [...arr, v] : [...arr, arr.length ? arr[arr.length - 1] : 0]).slice(-POINTS);
      return { done: [...s.done, rate].slice(-POINTS), ready: [...s.ready, d.readyOrchestrations + d.readyActivities].slice(-POINTS),
        disp: keep(s.disp, d.dispatchP99Ms), act: keep(s.act, d.activityP50Ms), last: d };
    });
  });
  return html`<div class="card" data-hub=${hub}>
    <h3><a href=${`/taskhubs/${hub}/orchestrations`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations`)}>${hub}</a></h3>
    ${err && html`<p class="err">${err}</p>`}
    ${trivia && html`<div class="row">
      <div><div class="count">${trivia.totalCount}${trivia.truncated ? "+" : ""}</div><div class="muted">orchestrations</div></div>
      ${STATUSES.slice(0, 6).map((s) => {
        const n = trivia[`${s.toLowerCase()}Count`];
        return n !== undefined && html`<a href=${`/taskhubs/${hub}/orchestrations?status=${s}`} onClick=${(e) => link(e, `/taskhubs/${hub}/orchestrations?status=${s}`)}>
          <div class=${`count st-${s}`}>${n}</div><div class="muted">${s.toLowerCase()}</div></a>`;
      })}
    </div>`}
    ${workers && html`<p><a href=${`/taskhubs/${hub}/workers`} onClick=${(e) => link(e, `/taskhubs/${hub}/workers`)}>${workers.length} worker stream${workers.length === 1 ? "" : "s"}</a></p>`}
    <${Spark} values=${series.done} label="completions/s" />
    <${Spark} values=${series.ready} label="ready work items" />
    <${Spark} values=${series.disp} label="dispatch latency p99 (ms)" />
    <${Spark} values=${series.act} label="activity latency p50 (ms)" />
  </div>`;
}

export function Home({ names }) {
  return html`<h2>Task hubs</h2><div class="grid">${names.map((n) => html`<${HubCard} key=${n} hub=${n} />`)}</div>`;
}
