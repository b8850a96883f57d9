// main.js -- the dashboard's shell: header (hub switcher, pages, time
// display), the router over the URL, and the emulator's deep links.
import { html, render, useState, useEffect, useRoute, navigate, redirect, link, hubs, getTimeMode, setTimeMode } from "./util.js";
import { Home } from "./home.js";
import { Orchestrations } from "./orchestrations.js";
import { Instance } from "./instance.js";
import { Entities, Entity } from "./entities.js";
import { Workers } from "./workers.js";

// /subscriptions/<s>/schedulers/<e>/taskhubs/<HUB>[/orchestrations] (the
// emulator's links) open the hub's orchestrations.
function deepLink(path) {
  const m = /^\/subscriptions\/[^/]+\/schedulers\/[^/]+\/taskhubs\/([^/]+)/.exec(path);
  return m ? `/taskhubs/${m[1]}/orchestrations` : null;
}

function Header({ hub, page, names }) {
  return html`<header>
    <a class="brand" href="/" onClick=${(e) => link(e, "/")}>dtsd</a>
    <select aria-label="task hub" value=${hub || ""} onChange=${(e) => navigate(`/taskhubs/${e.target.value}/${page === "home" ? "orchestrations" : page}`)}>
      ${!hub && html`<option value="">task hub…</option>`}
      ${names.map((n) => html`<option value=${n}>${n}</option>`)}
    </select>
    ${hub && html`<nav>
      ${["orchestrations", "entities", "workers"].map((p) => html`<a href=${`/taskhubs/${hub}/${p}`} class=${page === p ? "on" : ""}
        onClick=${(e) => link(e, `/taskhubs/${hub}/${p}`)}>${p}</a>`)}
    </nav>`}
    <div class="right">
      <label class="muted" for="tm">times</label>
      <select id="tm" value=${getTimeMode()} onChange=${(e) => setTimeMode(e.target.value)}>
        <option value="local">local</option><option value="utc">UTC</option><option value="relative">relative</option>
      </select>
    </div>
  </header>`;
}

function App() {
  const { path } = useRoute();
  const [names, setNames] = useState([]);
  const [err, setErr] = useState(null);
  useEffect(() => { hubs().then(setNames, (e) => setErr(e.message)); }, []);
  const dl = deepLink(path);
  useEffect(() => { if (dl) redirect(dl); }, [dl]);
  if (dl) return null;
  const seg = path.split("/").filter(Boolean).map(decodeURIComponent);
  const hub = seg[0] === "taskhubs" ? seg[1] : null;
  const page = hub ? seg[2] || "orchestrations" : "home";
  let body;
  if (!hub) body = html`<${Home} names=${names} />`;
  else if (page === "orchestrations" && seg[3]) body = html`<${Instance} hub=${hub} id=${seg.slice(3).join("/")} />`;
  else if (page === "orchestrations") body = html`<${Orchestrations} hub=${hub} />`;
  else if (page === "entities" && seg[3]) body = html`<${Entity} hub=${hub} id=${seg.slice(3).join("/")} />`;
  else if (page === "entities") body = html`<${Entities} hub=${hub} />`;
  else if (page === "workers") body = html`<${Workers} hub=${hub} />`;
  else body = html`<p class="err">No such page: ${path}</p>`;
  return html`<${Header} hub=${hub} page=${page} names=${names} />
    <main>${err && html`<p class="err">${err}</p>`}${body}</main>`;
}

// Keyboard: "/" focuses the first search box, Escape leaves a dialog or
// goes back from an instance to its list.
window.addEventListener("keydown", (e) => {
  if (e.target.matches("input, textarea, select")) return;
  if (e.key === "/") { const f = document.querySelector("input[type=search]"); if (f) { e.preventDefault(); f.focus(); } }
  if (e.key === "Escape" && /\/orchestrations\/./.test(location.pathname)) history.back();
});

render(html`<${App} />`, document.getElementById("app"));
