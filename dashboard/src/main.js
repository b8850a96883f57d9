// main.js -- the dashboard's shell: header (hub switcher, pages, time
// display), the router over the URL, and the emulator's deep links.
import { html, render, useState, useEffect, useRoute, navigate, redirect, link, hubs, getTimeMode, setTimeMode, getToken, setToken,
  getSession, canWrite } from "./util.js";
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
      ${getSession().authentication && html`<span class="muted" data-testid="who">${getSession().principal}
        ${hub && !canWrite(hub) && html` <span class="badge">read-only</span>`}</span>
        <button onClick=${() => setToken("")}>sign out</button>`}
      <label class="muted" for="tm">times</label>
      <select id="tm" value=${getTimeMode()} onChange=${(e) => setTimeMode(e.target.value)}>
        <option value="local">local</option><option value="utc">UTC</option><option value="relative">relative</option>
      </select>
    </div>
  </header>`;
}

// With --auth on: a token to send (docs/security.md).  Kept for this tab only.
function SignIn({ why }) {
  const [t, setT] = useState("");
  return html`<form class="card signin" onSubmit=${(e) => { e.preventDefault(); setToken(t.trim()); }}>
    <h2>Sign in</h2>
    <p class="muted">This dtsd asks for a token (made with <code>dtsd token create</code>).</p>
    ${why && html`<p class="err">${why}</p>`}
    <input type="password" aria-label="token" placeholder="dtsd_…" value=${t} onInput=${(e) => setT(e.target.value)} autofocus />
    <button class="primary" type="submit">Sign in</button></form>`;
}

function App() {
  const { path } = useRoute();
  const [names, setNames] = useState([]);
  const [err, setErr] = useState(null);
  const [signin, setSignin] = useState(null); /* null, or why a token is wanted */
  const token = getToken();
  useEffect(() => {
    hubs().then((n) => { setNames(n); setSignin(null); setErr(null); },
      (e) => (e.status === 401 ? setSignin(token ? e.message : "") : setErr(e.message)));
  }, [token]);
  if (signin !== null) return html`<main><${SignIn} why=${signin} /></main>`;
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
