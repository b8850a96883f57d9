// dashboard.test.mjs -- the dashboard in a real browser: Debian's Chromium
// driven by playwright-core (no browser download), headless, against a
// real dtsd with a JS SDK worker.  Every page opens without console errors;
// filters go into the URL and survive a reload and Back; an action taken in
// the UI changes the instance; a live update arrives without a reload.  A
// screenshot of each page goes to DTSD_SCREENSHOTS (the build tree in CI).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { dt, startDtsd, client, worker, completed, waitFor, tmpDir, OrchestrationStatus as S } from "./harness.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const { TaskEntity, EntityInstanceId } = dt;

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.DTSD_SCREENSHOTS || tmpDir("shots");
fs.mkdirSync(SHOTS, { recursive: true });

class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; return this.state; }
}
const step = async (_ctx, x) => x + 1;
const child = async function* dashChild(ctx, x) { return yield ctx.callActivity(step, x); };
const parent = async function* dashParent(ctx) {
  const a = yield ctx.callActivity(step, 1);
  yield ctx.createTimer(new Date(ctx.currentUtcDateTime.getTime() + 50));
  return yield ctx.callSubOrchestrator(child, a, { instanceId: `${ctx.instanceId}-child` });
};
const waiter = async function* dashWaiter(ctx) { return yield ctx.waitForExternalEvent("go"); };
const failing = async function* dashFailing() { throw new Error("failed on purpose"); };

let srv, c, w, browser;
before(async () => {
  srv = await startDtsd();
  w = worker(srv, undefined, (x) => {
    for (const o of [child, parent, waiter, failing]) x.addOrchestrator(o);
    x.addActivity(step);
    x.addNamedEntity("counter", () => new Counter());
  });
  await w.start();
  c = client(srv);
  for (let i = 0; i < 3; i++) await completed(c, await c.scheduleNewOrchestration(parent, undefined, { instanceId: `dash-${i}` }));
  await completed(c, await c.scheduleNewOrchestration(failing, undefined, { instanceId: "dash-failed" }));
  await c.signalEntity(new EntityInstanceId("counter", "k1"), "add", 5);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
});
after(async () => {
  if (browser) await browser.close();
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

// A page that records console errors and failed requests.
async function open(urlPath) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${srv.http}${urlPath}`);
  return { page, errors };
}
async function shot(page, name) { await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true }); }
const here = (page) => new URL(page.url()).pathname + new URL(page.url()).search;

test("the bundle is small, compressed and cached by content", async () => {
  const res = await fetch(`${srv.http}/`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(res.status, 200);
  const htmlText = await res.text();
  const assets = [...htmlText.matchAll(/\/assets\/app-[0-9a-f]+\.(js|css)/g)].map((m) => m[0]);
  assert.equal(assets.length, 2);
  let total = Number((await fetch(`${srv.http}/`, { headers: { "accept-encoding": "gzip" } })).headers.get("content-length"));
  for (const a of assets) {
    const r = await fetch(`${srv.http}${a}`, { headers: { "accept-encoding": "gzip" }, decompress: false });
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(r.headers.get("content-encoding"), "gzip");
    total += Number(r.headers.get("content-length"));
    const again = await fetch(`${srv.http}${a}`, { headers: { "if-none-match": r.headers.get("etag") } });
    assert.equal(again.status, 304);
  }
  assert.ok(total <= 150 * 1024, `${total} bytes gzip`);
  process.stdout.write(`# dashboard transfer: ${total} bytes gzip\n`);
  assert.equal((await fetch(`${srv.http}/assets/nope.js`)).status, 404);
});

test("hub home: counts, workers, live stats", async () => {
  const { page, errors } = await open("/");
  const card = page.locator('[data-hub="default"]');
  await card.waitFor();
  // 3 parents, their 3 children and the failed one; the failed one linked by its status
  await waitFor(async () => (await card.locator(".count").first().textContent()) === "7", "seven orchestrations counted");
  assert.equal(await card.locator(".count.st-FAILED").textContent(), "1");
  assert.equal(await card.locator(".count.st-COMPLETED").textContent(), "6");
  await waitFor(async () => /1 worker stream/.test(await card.textContent()), "the worker on the home page");
  // the charts draw once two "stats" events came over the live stream
  await waitFor(async () => (await card.locator("svg.spark path").count()) === 4, "the live charts");
  await shot(page, "home");
  assert.deepEqual(errors, []);
  await page.close();
});

test("orchestrations: rows, filters in the URL, reload and Back, sorting", async () => {
  const { page, errors } = await open("/taskhubs/default/orchestrations");
  await page.locator(".vrow a").first().waitFor();
  await waitFor(async () => (await page.locator(".vrow a").count()) === 4, "four top-level orchestrations (children hidden)");
  await shot(page, "orchestrations");
  await page.click('[data-status="FAILED"]');
  await page.waitForFunction(() => location.search.includes("status=FAILED"));
  await waitFor(async () => (await page.locator(".vrow a").allTextContents()).join() === "dash-failed", "the failed one only");
  await page.reload();
  await waitFor(async () => (await page.locator(".vrow a").allTextContents()).join() === "dash-failed", "the filter survives a reload");
  assert.equal(await page.locator('[data-status="FAILED"]').getAttribute("aria-checked"), "true");
  await page.goBack();
  await page.waitForFunction(() => !location.search.includes("status="));
  await waitFor(async () => (await page.locator(".vrow a").count()) === 4, "Back restores the unfiltered list");
  await page.selectOption('select[aria-label="completed"]', "1h");
  await page.waitForFunction(() => location.search.includes("completed=1h"));
  await waitFor(async () => (await page.locator(".vrow a").count()) === 4, "all four completed within the hour");
  await page.fill('input[aria-label="instance id starts with"]', "dash-1");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => location.search.includes("prefix=dash-1"));
  await waitFor(async () => (await page.locator(".vrow a").allTextContents()).join() === "dash-1", "the id prefix");
  await page.goBack();
  await page.waitForFunction(() => !location.search.includes("prefix="));
  await page.goBack();
  await page.waitForFunction(() => !location.search.includes("completed="));
  await page.check('text=sub-orchestrations >> input');
  await waitFor(async () => (await page.locator(".vrow a").count()) === 7, "children shown on request");
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("button:text-is('CSV')")]);
  const csv = fs.readFileSync(await dl.path(), "utf8").trim().split("\n");
  assert.equal(csv.length, 1 + 7, "the export holds what the filter shows (with sub-orchestrations)");
  await page.click('[data-sort="ORCHESTRATION_ID"]');
  await page.waitForFunction(() => location.search.includes("sort=ORCHESTRATION_ID"));
  await waitFor(async () => (await page.locator(".vrow a").first().textContent()) === "dash-failed", "sorted by id, descending");
  assert.deepEqual(errors, []);
  await page.close();
});

test("one orchestration: summary, payloads, timeline, history, sequence, raw; click through to the child", async () => {
  const { page, errors } = await open("/taskhubs/default/orchestrations/dash-0");
  await page.locator('[data-testid="instance-id"]').waitFor();
  await page.locator('[data-span="activity"]').first().waitFor();
  assert.equal(await page.locator('[data-span="timer"]').count(), 1);
  assert.equal(await page.locator('[data-span="sub"]').count(), 1);
  await shot(page, "instance-timeline");
  for (const view of ["history", "sequence", "raw"]) {
    await page.click(`[data-view="${view}"]`);
    await page.waitForFunction((v) => location.search.includes(`view=${v}`), view);
    await shot(page, `instance-${view}`);
  }
  await page.click('[data-view="history"]');
  await page.locator('[data-event="taskScheduled"]').first().waitFor();
  const sched = await page.locator('[data-event="taskScheduled"]').first().textContent();
  assert.match(sched, /taskCompleted · [\d.]+ m?s/, `scheduled paired with its completion: ${sched}`);
  await page.selectOption('select[aria-label="event type"]', "timerFired");
  await waitFor(async () => (await page.locator(".vrow").count()) === 1, "filtered to the one timerFired");
  await page.click('[data-view="timeline"]');
  await page.click('[data-span="sub"] a');
  await page.waitForFunction(() => location.pathname.endsWith("/dash-0-child"));
  await page.locator('[data-testid="instance-id"]', { hasText: "dash-0-child" }).waitFor();
  const failed = await open("/taskhubs/default/orchestrations/dash-failed");
  await failed.page.locator("text=failed on purpose").first().waitFor();
  await shot(failed.page, "instance-failed");
  assert.deepEqual([...errors, ...failed.errors], []);
  await page.close();
  await failed.page.close();
});

test("an action from the UI changes the instance, and the page updates live", async () => {
  const id = await c.scheduleNewOrchestration(waiter, undefined, { instanceId: "dash-wait" });
  await c.waitForOrchestrationStart(id);
  const { page, errors } = await open(`/taskhubs/default/orchestrations/${id}`);
  await page.locator(".st-RUNNING").first().waitFor();
  await page.click('[data-action="suspend"]');
  await page.fill('dialog input[name="reason"]', "from the browser");
  await page.click('dialog button[type="submit"]');
  await page.locator(".st-SUSPENDED").first().waitFor();
  assert.equal((await c.getOrchestrationState(id)).runtimeStatus, S.SUSPENDED);
  await c.resumeOrchestration(id); // outside the page: the live update shows it
  await page.locator(".st-RUNNING").first().waitFor();
  await page.click('[data-action="raise"]');
  await page.fill('dialog input[name="name"]', "go");
  await page.fill('dialog textarea[name="input"]', "42");
  await page.click('dialog button[type="submit"]');
  assert.equal((await completed(c, id)).serializedOutput, "42");
  await page.locator(".st-COMPLETED").first().waitFor(); // no reload: the change feed brought it
  await shot(page, "instance-after-actions");
  assert.deepEqual(errors, []);
  await page.close();
});

test("a bulk action from the list runs as a job on dtsd", async () => {
  for (let i = 0; i < 3; i++) await c.scheduleNewOrchestration(waiter, undefined, { instanceId: `dash-bulk-${i}` });
  const { page, errors } = await open("/taskhubs/default/orchestrations?id=dash-bulk-&status=RUNNING,PENDING");
  await waitFor(async () => (await page.locator(".vrow a").count()) === 3, "three to terminate");
  await page.click("text=Terminate all…");
  await page.locator('[data-testid="dry-run"]', { hasText: "3" }).waitFor();
  await page.click('[data-testid="bulk-start"]');
  await page.locator('[data-testid="bulk-state"]', { hasText: "done: 3 of 3" }).waitFor();
  await shot(page, "bulk-job");
  for (let i = 0; i < 3; i++) assert.equal((await completed(c, `dash-bulk-${i}`)).runtimeStatus, S.TERMINATED);
  assert.deepEqual(errors, []);
  await page.close();
});

test("the list updates live when an orchestration starts", async () => {
  const { page, errors } = await open("/taskhubs/default/orchestrations?subs=show");
  await page.locator(".vrow a").first().waitFor();
  await c.scheduleNewOrchestration(waiter, undefined, { instanceId: "dash-live-new" });
  await page.locator(".vrow a", { hasText: "dash-live-new" }).waitFor();
  await c.raiseOrchestrationEvent("dash-live-new", "go", 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test("entities, one entity, workers, the emulator's deep link", async () => {
  const { page, errors } = await open("/taskhubs/default/entities");
  await page.locator("text=@counter@k1").waitFor();
  await shot(page, "entities");
  await page.click("text=@counter@k1");
  await page.locator("text=state").first().waitFor();
  await page.locator("pre", { hasText: "5" }).waitFor();
  await shot(page, "entity");
  const wk = await open("/taskhubs/default/workers");
  await wk.page.locator("td", { hasText: /stream-\d+/ }).first().waitFor();
  await shot(wk.page, "workers");
  const dl = await open("/subscriptions/local/schedulers/emulator/taskhubs/default/orchestrations");
  await dl.page.waitForFunction(() => location.pathname === "/taskhubs/default/orchestrations");
  await dl.page.locator(".vrow a").first().waitFor();
  assert.deepEqual([...errors, ...wk.errors, ...dl.errors], []);
  for (const p of [page, wk.page, dl.page]) await p.close();
});

test("with --auth on: sign in with a token; a reader's pages are read-only; a 401 asks again", async () => {
  const dir = tmpDir("dash-auth");
  const tokens = path.join(dir, "tokens.json");
  const { execFileSync } = await import("node:child_process");
  const { DTSD_BIN } = await import("./harness.mjs");
  const mk = (name, grant) => execFileSync(DTSD_BIN, ["token", "create", "--tokens-file", tokens, "--name", name, "--grant", grant],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  const reader = mk("dash-reader", "default=reader"), contrib = mk("dash-contrib", "default=contributor");
  const sec = await startDtsd({ args: ["--auth", "on", "--tokens-file", tokens] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${sec.http}/taskhubs/default/orchestrations`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await shot(page, "signin");
    await page.getByLabel("token").fill("dtsd_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("the token is not known").waitFor();
    await page.getByLabel("token").fill(reader);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").getByText("dash-reader").waitFor();
    await page.getByText("read-only").waitFor();
    assert.equal(await page.getByRole("button", { name: "Start…" }).count(), 0, "a reader gets no actions");
    await shot(page, "signed-in-reader");
    await page.getByRole("button", { name: "sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("token").fill(contrib);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Start…" }).waitFor();
    assert.equal(await page.getByText("read-only").count(), 0);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    assert.equal((await sec.stop()).code, 0, sec.stderr());
  }
});
