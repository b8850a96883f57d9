// http.test.mjs -- the HTTP data API (docs/http-api.md), health and
// metrics, driven with the request shapes the emulator's tools send, while
// a real JS SDK worker runs the orchestrations and entities.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { dt, grpc, startDtsd, client, worker, completed, waitFor, OrchestrationStatus as S } from "./harness.mjs";

const { TaskEntity, EntityInstanceId } = dt;

class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; return this.state; }
  get() { return this.state; }
}

const shout = async (_ctx, s) => `${s}!`;
const hello = async function* httpHello(ctx, who) {
  ctx.setCustomStatus({ stage: "greeting", who });
  return yield ctx.callActivity(shout, `hello ${who}`);
};
const waiter = async function* httpWaiter(ctx) { return yield ctx.waitForExternalEvent("go"); };
const failing = async function* httpFailing() { throw new Error("boom on purpose"); };

let srv, c, w;
const H = { "x-taskhub": "default", "content-type": "application/json" };
const api = (path) => `${srv.http}/api/v1/taskhubs${path}`;
async function call(method, path, body, headers = H) {
  const res = await fetch(api(path), { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON: left null */ }
  return { status: res.status, json, text, headers: res.headers };
}
const status = async (id) => (await call("GET", `/orchestrations/${id}`)).json?.orchestrationStatus;

before(async () => {
  srv = await startDtsd({ hubs: "default,other" });
  w = worker(srv, undefined, (x) => {
    for (const o of [hello, waiter, failing]) x.addOrchestrator(o);
    x.addActivity(shout);
    x.addNamedEntity("counter", () => new Counter());
  });
  await w.start();
  c = client(srv);
});
after(async () => {
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

test("health: /healthz 204, /readyz 200, metrics in Prometheus text", async () => {
  assert.equal((await fetch(`${srv.health}/healthz`)).status, 204);
  const ready = await fetch(`${srv.health}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal((await fetch(`${srv.health}/nope`)).status, 404);
  const m = await fetch(`${srv.health}/metrics`);
  assert.match(m.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  await m.text();
  // the worker's stream reaches dispatch a moment after w.start() returned
  const text = await waitFor(async () => {
    const t = await (await fetch(`${srv.health}/metrics`)).text();
    return /^dtsd_worker_streams\{hub="default"\} 1$/m.test(t) && t;
  }, "the worker's stream in the metrics");
  assert.match(text, /^dtsd_ready 1$/m);
  assert.match(text, /^# TYPE dtsd_work_items_dispatched_total counter$/m);
  assert.match(text, /^process_resident_memory_bytes \d+$/m);
  assert.match(text, /^dtsd_store_size_bytes \d+$/m);
  assert.equal((await fetch(`${srv.http}/metrics`)).status, 200, "metrics are on the API port too");
});

test("ping, hub list, workers", async () => {
  assert.equal((await call("GET", "/ping")).status, 204);
  const lower = await call("GET", "/ping", undefined, { "X-TaskHub": "other" });
  assert.equal(lower.status, 204);
  const missing = await call("GET", "/ping", undefined, { "x-taskhub": "nope" });
  assert.equal(missing.status, 404);
  assert.match(missing.json.error.message, /task hub 'nope' is not served/);
  const hubs = (await fetch(api(""))).status === 200 ? await (await fetch(api(""))).json() : null;
  assert.deepEqual(hubs.taskHubs.map((h) => h.name).sort(), ["default", "other"]);
  const ws = await waitFor(async () => { const r = await call("GET", "/workers"); return r.json.workers.length > 0 && r; }, "the worker");
  assert.equal(ws.status, 200);
  assert.equal(ws.json.workers.length, 1);
  const wk = ws.json.workers[0];
  assert.match(wk.workerId, /^stream-\d+$/);
  assert.equal(wk.maxActivitiesCount, 1000, "dtsd's default for a worker that asks for 0");
  for (const k of ["activeOrchestrationsCount", "maxOrchestrationsCount", "activeActivitiesCount", "activeEntitiesCount", "maxEntitiesCount"])
    assert.equal(typeof wk[k], "number", k);
  assert.equal(typeof wk.userAgent, "string");
  assert.match(wk.streamId, /^stream-\d+$/);
  assert.deepEqual((await call("GET", "/workers", undefined, { "x-taskhub": "other" })).json.workers, []);
  // a worker that names itself (workerid, x-user-agent: what the .NET and Python SDKs send)
  const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("taskhub", "other");
  md.set("workerid", "host-a,4242,beef");
  md.set("x-user-agent", "raw-test/1.0");
  const stream = raw.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), md);
  stream.on("error", () => {});
  const named = await waitFor(async () => { const r = await call("GET", "/workers", undefined, { "x-taskhub": "other" }); return r.json.workers.length === 1 && r.json.workers[0]; }, "the named worker");
  assert.equal(named.workerId, "host-a,4242,beef");
  assert.equal(named.userAgent, "raw-test/1.0");
  stream.cancel();
  raw.close();
  await waitFor(async () => (await call("GET", "/workers", undefined, { "x-taskhub": "other" })).json.workers.length === 0, "the stream gone");
});

test("start over HTTP, the SDK worker runs it; one orchestration, payloads, history", async () => {
  const st = await call("POST", "/orchestrations", { name: "httpHello", instanceId: "h-1", input: JSON.stringify("web"), tags: { team: "a" } });
  assert.equal(st.status, 201);
  assert.equal(st.json.instanceId, "h-1");
  assert.equal(st.headers.get("location"), "orchestrations/h-1");
  assert.equal((await completed(c, "h-1")).serializedOutput, JSON.stringify("hello web!"));
  const one = await call("GET", "/orchestrations/h-1");
  assert.equal(one.status, 200);
  assert.equal(one.json.orchestrationStatus, "ORCHESTRATION_STATUS_COMPLETED");
  assert.equal(one.json.name, "httpHello");
  assert.match(one.json.executionId, /^[0-9a-f]{32}$/);
  assert.deepEqual(one.json.tags, { team: "a" });
  for (const k of ["createdAt", "lastUpdatedAt", "completedAt"]) assert.ok(!Number.isNaN(Date.parse(one.json[k])), k);
  const pl = (await call("GET", "/orchestrations/h-1/payloads")).json;
  assert.equal(pl.input, JSON.stringify("web"));
  assert.equal(pl.output, JSON.stringify("hello web!"));
  assert.deepEqual(JSON.parse(pl.customStatus), { stage: "greeting", who: "web" });
  assert.equal(pl.failureDetails, null);
  const h = await call("GET", `/orchestrations/h-1/executions/${one.json.executionId}/history`);
  assert.equal(h.status, 200);
  const kinds = h.json.history.map((e) => Object.keys(e).find((k) => !["eventId", "timestamp"].includes(k)));
  assert.deepEqual(kinds, ["orchestratorStarted", "executionStarted", "taskScheduled", "orchestratorStarted", "taskCompleted", "executionCompleted"]);
  assert.equal(h.json.history[1].executionStarted.name, "httpHello");
  for (const e of h.json.history) {
    assert.equal(typeof e.eventId, "number", "eventId is there even when 0");
    assert.ok(!Number.isNaN(Date.parse(e.timestamp)));
  }
  assert.equal(h.json.history[4].taskCompleted.taskScheduledId, h.json.history[2].eventId);
  assert.equal(h.json.history[5].executionCompleted.orchestrationStatus, "ORCHESTRATION_STATUS_COMPLETED");
  assert.equal(h.json.totalCount, 6);
  const arr = await call("GET", `/orchestrations/h-1/executions/${one.json.executionId}/history?format=array`);
  assert.ok(Array.isArray(arr.json));
  assert.equal(arr.json.length, 6);
  const page = await call("GET", `/orchestrations/h-1/executions/latest/history?startIndex=2&count=2`);
  assert.equal(page.json.history.length, 2);
  assert.ok(page.json.history[0].taskScheduled);
  assert.equal(page.json.nextStartIndex, 4);
  assert.equal((await call("GET", "/orchestrations/h-1/executions/latest/history?count=0")).status, 400);
  assert.equal((await call("GET", "/orchestrations/none-such/executions/latest/history")).status, 404);
  const failed = await c.scheduleNewOrchestration(failing);
  await completed(c, failed);
  const fd = (await call("GET", `/orchestrations/${failed}/payloads`)).json.failureDetails;
  assert.match(fd.errorMessage, /boom on purpose/);
  assert.equal(typeof fd.errorType, "string");
  assert.equal(fd.isNonRetriable, false);
});

test("actions as history events: suspend, resume, raise, terminate; restart; force-terminate", async () => {
  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "h-wait" });
  await waitFor(async () => (await status("h-wait")) === "ORCHESTRATION_STATUS_RUNNING", "the waiter to run");
  assert.equal((await call("POST", "/orchestrations/h-wait/history", { executionSuspended: { reason: "hold" } })).status, 200);
  await waitFor(async () => (await status("h-wait")) === "ORCHESTRATION_STATUS_SUSPENDED", "suspended");
  assert.equal((await call("POST", "/orchestrations/h-wait/history", { executionResumed: { reason: "go on" } })).status, 200);
  await waitFor(async () => (await status("h-wait")) === "ORCHESTRATION_STATUS_RUNNING", "resumed");
  assert.equal((await call("POST", "/orchestrations/h-wait/history", { eventRaised: { name: "go", input: "42" } })).status, 200);
  assert.equal((await completed(c, "h-wait")).serializedOutput, "42");

  const rs = await call("POST", "/orchestrations/h-wait/restart", { restartWithNewInstanceId: true });
  assert.equal(rs.status, 200);
  assert.notEqual(rs.json.instanceId, "h-wait");
  await waitFor(async () => (await status(rs.json.instanceId)) === "ORCHESTRATION_STATUS_RUNNING", "the restarted waiter");
  assert.equal((await call("POST", `/orchestrations/${rs.json.instanceId}/history`, { executionTerminated: { reason: "enough" } })).status, 200);
  const t = await completed(c, rs.json.instanceId);
  assert.equal(t.runtimeStatus, S.TERMINATED);

  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "h-ft-1" });
  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "h-ft-2" });
  const ft = await call("POST", "/orchestrations/forceterminate", { InstanceIds: ["h-ft-1", "h-ft-2", "h-nope"], Reason: "cleanup" });
  assert.equal(ft.status, 200);
  assert.equal(ft.json.succeededCount, 2);
  assert.deepEqual(ft.json.failedInstanceIds.map((f) => f.instanceId), ["h-nope"]);
  assert.equal(ft.json.failedInstanceIds[0].status, 404);
  for (const id of ["h-ft-1", "h-ft-2"]) assert.equal((await completed(c, id)).runtimeStatus, S.TERMINATED);

  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "h-add" });
  const add = await call("POST", "/orchestrations/addhistoryevents", { events: { "h-add": { eventRaised: { name: "go", input: "\"x\"" } }, "h-zz": { executionSuspended: {} } } });
  assert.equal(add.json.succeededCount, 1);
  assert.deepEqual(add.json.failedInstanceIds.map((f) => f.instanceId), ["h-zz"]);
  assert.equal((await completed(c, "h-add")).serializedOutput, "\"x\"");

  const bad = await call("POST", "/orchestrations/h-add/history", { somethingElse: {} });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /executionSuspended/);
});

test("query: filters, sort, paging, counts that follow the filter, text search", async () => {
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push(await c.scheduleNewOrchestration(hello, `q${i}`, { instanceId: `qry-${i}`, tags: { batch: i % 2 ? "odd" : "even" } }));
  for (const id of ids) await completed(c, id);
  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "qry-wait" });
  await waitFor(async () => (await status("qry-wait")) === "ORCHESTRATION_STATUS_RUNNING", "qry-wait to run");
  const q = async (body) => (await call("POST", "/orchestrations/query", body)).json;

  let r = await q({ filter: { orchestrationId: { value: "QRY-" } }, pagination: { startIndex: 0, count: 100 } });
  assert.equal(r.totalCount, 7);
  assert.equal(r.trivia.completedCount, 6);
  assert.equal(r.trivia.runningCount, 1);
  r = await q({ filter: { orchestrationId: { value: "qry-" }, orchestrationStatus: { status: ["ORCHESTRATION_STATUS_COMPLETED"] } },
    sort: [{ column: "ORCHESTRATION_ID", direction: "DESCENDING_SORT" }], pagination: { startIndex: 1, count: 2 } });
  assert.equal(r.totalCount, 6, "counts follow the filter, not the page");
  assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["qry-4", "qry-3"]);
  r = await q({ filter: { orchestrationId: { value: "qry-" }, tags: { value: "batch=odd" } }, sort: [{ column: "ORCHESTRATION_ID", direction: "ASCENDING_SORT" }] });
  assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["qry-1", "qry-3", "qry-5"]);
  r = await q({ filter: { name: { value: "httpwaiter" }, orchestrationId: { value: "qry" } } });
  assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["qry-wait"]);
  r = await q({ filter: { orchestrationId: { value: "qry-" }, search: { value: "hello q4!" } } });
  assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["qry-4"], "text search finds the output");
  r = await q({ filter: { orchestrationId: { value: "qry-" }, search: { value: "\"who\":\"q2\"" } } });
  assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["qry-2"], "text search finds the custom status");
  const future = new Date(Date.now() + 3600e3).toISOString();
  r = await q({ filter: { orchestrationId: { value: "qry-" }, createdAt: { start: future } } });
  assert.equal(r.totalCount, 0);
  r = await q({ filter: { orchestrationId: { value: "qry-" }, completedAt: { start: "2000-01-01T00:00:00Z", end: future } } });
  assert.equal(r.totalCount, 6, "the running one has no completion time");
  for (const bad of [{ filter: { orchestrationStatus: { status: ["RUNNING"] } } }, { sort: [{ column: "COLOR" }] },
    { pagination: { startIndex: -1, count: 5 } }, { filter: { createdAt: { start: "yesterday" } } }]) {
    const res = await call("POST", "/orchestrations/query", bad);
    assert.equal(res.status, 400, JSON.stringify(bad));
    assert.equal(typeof res.json.error.message, "string");
  }
  // counts shared by pages that accept them a little old (maxCountAgeMs, the dashboard's): cached, else fresh
  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "cnt-0" });
  const cq = (age) => q({ filter: { orchestrationId: { value: "cnt-" } }, pagination: { startIndex: 0, count: 1 }, ...(age ? { maxCountAgeMs: age } : {}) });
  assert.equal((await cq(60000)).totalCount, 1);
  await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: "cnt-1" });
  assert.equal((await cq(60000)).totalCount, 1, "the count of a moment ago");
  assert.equal((await cq(0)).totalCount, 2, "a fresh count");
  assert.equal((await cq(60000)).totalCount, 2, "the fresh count is kept");
  await call("POST", "/orchestrations/forceterminate", { InstanceIds: ["cnt-0", "cnt-1"] });
  await call("POST", "/orchestrations/qry-wait/history", { eventRaised: { name: "go" } });
  await completed(c, "qry-wait");
});

test("metrics: work items by kind and outcome, latency histograms", async () => {
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  const val = (re) => { const m = re.exec(text); assert.ok(m, `no ${re}`); return Number(m[1]); };
  assert.ok(val(/^dtsd_work_items_total\{hub="default",kind="activity",outcome="completed"\} (\d+)$/m) >= 6);
  assert.ok(val(/^dtsd_work_items_total\{hub="default",kind="orchestrator",outcome="dispatched"\} (\d+)$/m) >= 12);
  assert.ok(val(/^dtsd_dispatch_latency_seconds_count\{hub="default"\} (\d+)$/m) >= 18);
  const inf = val(/^dtsd_work_item_seconds_bucket\{hub="default",kind="activity",le="\+Inf"\} (\d+)$/m);
  assert.equal(inf, val(/^dtsd_work_item_seconds_count\{hub="default",kind="activity"\} (\d+)$/m));
  const buckets = [...text.matchAll(/^dtsd_work_item_seconds_bucket\{hub="default",kind="activity",le="[^"]+"\} (\d+)$/gm)].map((m) => Number(m[1]));
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i] >= buckets[i - 1], "cumulative buckets");
  assert.ok(val(/^dtsd_store_commit_seconds_count (\d+)$/m) > 0);
  assert.match(text, /^# TYPE dtsd_store_commit_seconds histogram$/m);
  assert.ok(val(/^dtsd_orchestrations_started_total\{hub="default"\} (\d+)$/m) >= 8);
  assert.ok(val(/^dtsd_orchestrations_finished_total\{hub="default",status="completed"\} (\d+)$/m) >= 7);
  assert.ok(val(/^dtsd_orchestrations_finished_total\{hub="default",status="failed"\} (\d+)$/m) >= 1);
  assert.ok(val(/^dtsd_orchestrations_finished_total\{hub="default",status="terminated"\} (\d+)$/m) >= 3);
});

test("bulk jobs over a whole query: dry run, terminate, purge, cancel", async () => {
  for (let i = 0; i < 5; i++) await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: `bulk-${i}` });
  await waitFor(async () => (await call("POST", "/orchestrations/query", { filter: { orchestrationId: { value: "bulk-" }, orchestrationStatus: { status: ["ORCHESTRATION_STATUS_RUNNING"] } } })).json.totalCount === 5, "five running");
  const filter = { orchestrationId: { value: "bulk-" } };
  const dry = await call("POST", "/orchestrations/bulk", { action: "terminate", filter, dryRun: true });
  assert.equal(dry.status, 200);
  assert.equal(dry.json.count, 5);
  const job = await call("POST", "/orchestrations/bulk", { action: "terminate", filter, reason: "bulk test" });
  assert.equal(job.status, 202);
  assert.equal(job.json.total, 5);
  assert.equal(job.headers.get("location"), `jobs/${job.json.jobId}`);
  const done = await waitFor(async () => { const r = await call("GET", `/jobs/${job.json.jobId}`); return r.json.state === "done" && r.json; }, "the job done");
  assert.equal(done.done, 5);
  assert.equal(done.failedCount, 0);
  assert.equal(done.action, "terminate");
  for (let i = 0; i < 5; i++) assert.equal((await completed(c, `bulk-${i}`)).runtimeStatus, S.TERMINATED);
  const purge = await call("POST", "/orchestrations/bulk", { action: "purge", filter });
  const pdone = await waitFor(async () => { const r = await call("GET", `/jobs/${purge.json.jobId}`); return r.json.state === "done" && r.json; }, "the purge done");
  assert.equal(pdone.done, 5);
  assert.equal(pdone.failedCount, 0);
  assert.equal((await call("POST", "/orchestrations/query", { filter })).json.totalCount, 0);
  const list = await call("GET", "/jobs");
  assert.ok(list.json.jobs.some((j) => j.jobId === job.json.jobId));
  assert.deepEqual((await call("GET", "/jobs", undefined, { "x-taskhub": "other" })).json.jobs, [], "jobs are per hub");
  // a job of a few hundred, cancelled at once: it stops, or had finished
  for (let i = 0; i < 300; i++) await call("POST", "/orchestrations", { name: "httpWaiter", instanceId: `bulk-c-${i}` });
  const big = await call("POST", "/orchestrations/bulk", { action: "purge", filter: { orchestrationId: { value: "bulk-c-" } } });
  const del = await call("DELETE", `/jobs/${big.json.jobId}`);
  assert.equal(del.status, 202);
  const end = await waitFor(async () => { const r = await call("GET", `/jobs/${big.json.jobId}`); return r.json.state !== "running" && r.json; }, "the job to stop");
  assert.ok(end.state === "cancelled" ? end.done < 300 : end.done === 300, JSON.stringify(end));
  assert.equal((await call("POST", "/orchestrations/bulk", { action: "explode", filter })).status, 400);
  assert.equal((await call("GET", "/jobs/nope")).status, 404);
});

test("export: every match streamed as CSV or JSON lines", async () => {
  const q = encodeURIComponent(JSON.stringify({ filter: { orchestrationId: { value: "qry-" } } }));
  const csv = await fetch(`${srv.http}/api/v1/taskhubs/orchestrations/export?taskhub=default&format=csv&q=${q}`);
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get("content-type"), /^text\/csv/);
  assert.match(csv.headers.get("content-disposition"), /attachment/);
  const lines = (await csv.text()).trim().split("\n");
  assert.equal(lines[0], "instanceId,name,orchestrationStatus,createdAt,lastUpdatedAt,completedAt,executionId,version,parentInstanceId");
  assert.equal(lines.length, 1 + 7);
  assert.ok(lines.slice(1).every((l) => /^"qry-/.test(l)));
  const jl = await fetch(`${srv.http}/api/v1/taskhubs/orchestrations/export?format=jsonl&q=${q}`, { headers: H });
  const rows = (await jl.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 7);
  assert.deepEqual(rows.map((r) => r.instanceId), [...rows.map((r) => r.instanceId)].sort((x, y) => (x < y ? 1 : -1)), "newest first: qry-wait, then 5..0");
  assert.equal((await fetch(`${srv.http}/api/v1/taskhubs/orchestrations/export?format=xml`, { headers: H })).status, 400);
  assert.equal((await fetch(`${srv.http}/api/v1/taskhubs/orchestrations/export?q=notjson`, { headers: H })).status, 400);
});

test("purge one and many", async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await c.scheduleNewOrchestration(hello, "p", { instanceId: `prg-${i}` }));
  for (const id of ids) await completed(c, id);
  assert.equal((await call("DELETE", "/orchestrations/prg-0")).status, 200);
  assert.equal((await call("GET", "/orchestrations/prg-0")).status, 404);
  assert.equal((await call("DELETE", "/orchestrations/prg-0")).status, 404);
  const many = await call("DELETE", "/orchestrations/purge", ["prg-1", "prg-2", "prg-0"]);
  assert.equal(many.status, 200);
  assert.equal(many.json.deletedInstanceCount, 2);
  assert.deepEqual(many.json.failedInstanceIds.map((f) => f.instanceId), ["prg-0"]);
  assert.equal(await c.getOrchestrationState("prg-1"), undefined);
});

test("entities: query, one, state, delete", async () => {
  for (const k of ["a", "b", "c"]) await c.signalEntity(new EntityInstanceId("counter", `http-${k}`), "add", k.charCodeAt(0) - 96);
  const q = async (body) => (await call("POST", "/entities/query", body)).json;
  await waitFor(async () => (await q({ filter: { name: "counter" } })).totalCount === 3, "three counters");
  await waitFor(async () => (await call("GET", "/entities/@counter@http-c/state")).json?.state === "3", "http-c's state");
  let r = await q({ filter: { name: "counter", key: "http-" }, sort: [{ column: "KEY", direction: "DESCENDING_SORT" }], pagination: { startIndex: 0, count: 2 } });
  assert.equal(r.totalCount, 3);
  assert.deepEqual(r.entities.map((e) => e.instanceId), ["@counter@http-c", "@counter@http-b"]);
  assert.equal(r.entities[0].backlogQueueSize, 0);
  assert.equal(r.entities[0].lockedBy, null);
  assert.ok(!Number.isNaN(Date.parse(r.entities[0].lastModifiedTime)));
  r = await q({ filter: { excludeNameStartsWith: ["count"] } });
  assert.equal(r.totalCount, 0);
  const one = await call("GET", "/entities/@counter@http-b");
  assert.equal(one.status, 200);
  assert.equal(one.json.name, "counter");
  assert.equal(one.json.key, "http-b");
  assert.equal((await call("GET", "/entities/@counter@nope")).status, 404);
  const sig = await call("POST", "/entities/@counter@http-a/signal", { name: "add", input: "10" });
  assert.equal(sig.status, 202);
  assert.match(sig.json.requestId, /^[0-9a-f-]{36}$/);
  await waitFor(async () => (await call("GET", "/entities/@counter@http-a/state")).json?.state === "11", "the signal applied");
  const cl = await call("POST", "/entities/clean", {});
  assert.equal(cl.status, 200);
  assert.equal(typeof cl.json.emptyEntitiesRemoved, "number");
  assert.equal(typeof cl.json.orphanedLocksReleased, "number");
  const del = await call("DELETE", "/entities/@counter@http-a");
  assert.equal(del.status, 202);
  await waitFor(async () => (await call("GET", "/entities/@counter@http-a")).status === 404, "http-a deleted by the worker");
  const many = await call("DELETE", "/entities/delete", ["@counter@http-b", "@counter@http-c"]);
  assert.equal(many.json.signalledCount, 2);
  await waitFor(async () => (await q({ filter: { name: "counter" } })).totalCount === 0, "all counters deleted");
  const ops = /^dtsd_entity_operations_total\{hub="default"\} (\d+)$/m.exec(await (await fetch(`${srv.http}/metrics`)).text());
  assert.ok(Number(ops[1]) >= 7, `entity operations counted: ${ops[1]}`); // 3 adds, 1 signal, 3 deletes
});

test("live updates: server-sent events of changes (coalesced) and stats", async () => {
  const ctl = new AbortController();
  const res = await fetch(`${srv.http}/api/v1/taskhubs/live?taskhub=default`, { signal: ctl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = "";
  const events = () => text.split("\n\n").filter((b) => b.includes("event: ")).map((b) => ({
    kind: /event: (\w+)/.exec(b)[1], data: JSON.parse(/data: (.*)/.exec(b)[1]) }));
  const until = async (pred, what) => {
    const end = Date.now() + 15000;
    while (!pred(events())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${text.slice(-500)}`);
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      text += dec.decode(value);
    }
  };
  await until((ev) => ev.some((e) => e.kind === "stats"), "the first stats");
  const st = events().find((e) => e.kind === "stats").data;
  for (const k of ["t", "instances", "streams", "dispatched", "completions", "readyOrchestrations", "dispatchP50Ms", "dispatchP99Ms", "activityP50Ms"])
    assert.equal(typeof st[k], "number", k);
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await c.scheduleNewOrchestration(hello, "live", { instanceId: `live-${i}` }));
  for (const id of ids) await completed(c, id);
  await until((ev) => ids.every((id) => ev.some((e) => e.kind === "changes" && e.data.ids.includes(id))), "changes naming every instance");
  await until((ev) => ev.some((e) => e.kind === "stats" && e.data.activityP50Ms > 0 && e.data.dispatchP99Ms > 0), "a second with latencies");
  const changes = events().filter((e) => e.kind === "changes");
  assert.ok(changes.length < 5 * 4, `coalesced: ${changes.length} events for 5 instances of several steps each`);
  for (const e of changes) assert.equal(new Set(e.data.ids).size, e.data.ids.length, "each id once per event");
  await c.signalEntity(new EntityInstanceId("counter", "live-e"), "add", 1);
  await until((ev) => ev.some((e) => e.kind === "changes" && e.data.ids.includes("@counter@live-e")), "the entity's change");
  ctl.abort();
  await reader.cancel().catch(() => {});
});

test("bad requests get a 4xx with a JSON error; the dashboard's routes answer", async () => {
  const cases = [
    ["POST", "/orchestrations", "{not json", 400],
    ["POST", "/orchestrations", [], 400],
    ["POST", "/orchestrations", { name: "" }, 400],
    ["POST", "/orchestrations", { name: "x", input: 5 }, 400],
    ["POST", "/orchestrations", { name: "x", tags: { big: "y".repeat(1001) } }, 400],
    ["POST", "/orchestrations", { name: "x", instanceId: "bad id with spaces\u0001" }, 400],
    ["GET", "/orchestrations/none-such", undefined, 404],
    ["PUT", "/orchestrations", {}, 404],
    ["POST", "/orchestrations/forceterminate", { InstanceIds: "x" }, 400],
    ["POST", "/schedules", {}, 400],
    ["GET", "/schedules/none-such", undefined, 404],
    ["POST", "/entities/@counter@x/signal", { input: "1" }, 400],
    ["POST", "/live", undefined, 405],
  ];
  for (const [m, p, b, want] of cases) {
    const r = await call(m, p, b);
    assert.equal(r.status, want, `${m} ${p} ${JSON.stringify(b)}: ${r.text}`);
    assert.equal(typeof r.json.error.message, "string", `${m} ${p}`);
    assert.equal(r.headers.get("content-type"), "application/json");
  }
  const big = await fetch(api("/orchestrations"), { method: "POST", headers: H, body: "x".repeat(17 << 20) });
  assert.equal(big.status, 413);
  const bigHeader = await fetch(api("/ping"), { headers: { ...H, "x-big": "y".repeat(70000) } });
  assert.equal(bigHeader.status, 431, "a header past the connection's memory");
  assert.equal((await fetch(api("/ping"), { headers: H })).status, 204, "and dtsd serves on");
  for (const p of ["/", "/subscriptions/local/schedulers/emulator/taskhubs/default/orchestrations", "/subscriptions/default/schedulers/default/taskhubs/default"]) {
    const r = await fetch(`${srv.http}${p}`);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get("content-type"), /^text\/html/);
  }
});

test("newest first at scale: right rows past the scan bound, early stop without counts", async () => {
  const small = await startDtsd({ args: ["--http-max-scan", "100", "--max-page", "50", "--scan-budget", "100"] });
  const sc = client(small);
  try {
    for (let i = 0; i < 160; i++) await sc.scheduleNewOrchestration("nobody-runs-this", undefined, { instanceId: `nf-${String(i).padStart(3, "0")}` });
    const q = async (body) => (await fetch(`${small.http}/api/v1/taskhubs/orchestrations/query`, { method: "POST", body: JSON.stringify(body) })).json();
    let r = await q({ pagination: { startIndex: 0, count: 5 } });
    assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["nf-159", "nf-158", "nf-157", "nf-156", "nf-155"], "the newest, though only 100 were looked at");
    assert.equal(r.truncated, true);
    assert.equal(r.scanned, 100);
    r = await q({ pagination: { startIndex: 5, count: 3 }, fetchTotalCount: false });
    assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["nf-154", "nf-153", "nf-152"]);
    assert.ok(r.scanned <= 50, `stopped once the page was full: ${r.scanned} looked at`);
    r = await q({ pagination: { startIndex: 0, count: 3 }, sort: [{ column: "CREATED_AT", direction: "ASCENDING_SORT" }], fetchTotalCount: false });
    assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["nf-000", "nf-001", "nf-002"]);
    r = await q({ pagination: { startIndex: 0, count: 2 }, filter: { orchestrationStatus: { status: ["ORCHESTRATION_STATUS_PENDING"] } } });
    assert.deepEqual(r.orchestrations.map((o) => o.instanceId), ["nf-159", "nf-158"], "newest first within a status too");
    // the instances-by-status gauge: counted through CountInstances, 100 index entries a call
    const m = await (await fetch(`${small.http}/metrics`)).text();
    assert.match(m, /^dtsd_instances\{hub="default",status="pending"\} 160$/m);
    assert.match(m, /^dtsd_instances\{hub="default",status="completed"\} 0$/m);
    assert.match(m, /^dtsd_instances_count_age_seconds\{hub="default"\} [\d.]+$/m);
  } finally {
    await sc.stop();
    assert.equal((await small.stop()).code, 0, small.stderr());
  }
});

test("dynamic task hubs: a hub named by the HTTP API is created on first use", async () => {
  const dyn = await startDtsd({ args: ["--dynamic-task-hubs"] });
  try {
    const r = await fetch(`${dyn.http}/api/v1/taskhubs/ping`, { headers: { "x-taskhub": "made-by-http" } });
    assert.equal(r.status, 204);
    const hubs = await (await fetch(`${dyn.http}/api/v1/taskhubs`)).json();
    assert.ok(hubs.taskHubs.some((h) => h.name === "made-by-http"));
    const bad = await fetch(`${dyn.http}/api/v1/taskhubs/ping`, { headers: { "x-taskhub": "bad name!" } });
    assert.equal(bad.status, 400);
  } finally {
    assert.equal((await dyn.stop()).code, 0, dyn.stderr());
  }
});
