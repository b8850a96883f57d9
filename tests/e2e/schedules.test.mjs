// schedules.test.mjs -- recurring orchestration starts held by dtsd
// (docs/schedules.md): the HTTP routes and the gRPC admin methods, runs
// carried out by a real JS SDK worker, exactly one start per occurrence
// across SIGKILL and restart, and clock jumps (DTSD_TEST_CLOCK_SHIFT_S
// restarts dtsd with its wall clock moved).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { grpc, startDtsd, client, worker, waitFor, OrchestrationStatus as S } from "./harness.mjs";
import { str, msg, bytes, int, rawUnary } from "./pb.mjs";

const runs = new Map(); // instance id -> times its activity ran
const note = async (ctx) => { runs.set(ctx.orchestrationId, (runs.get(ctx.orchestrationId) || 0) + 1); return "noted"; };
const tick = async function* schedTick(ctx, input) {
  const r = yield ctx.callActivity(note);
  return `${r}:${input ?? ""}`;
};

let srv, w, c;
const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function start(opts = {}) {
  srv = await startDtsd(opts);
  w = worker(srv, undefined, (x) => { x.addOrchestrator(tick); x.addActivity(note); });
  await w.start();
  c = client(srv);
  return srv;
}
async function stopAll(how = "stop") {
  await Promise.allSettled([w.stop(), c.stop()]);
  if (how === "kill") await srv.kill();
  else assert.equal((await srv.stop()).code, 0, srv.stderr());
}

const H = { "x-taskhub": "default", "content-type": "application/json" };
async function call(method, path, body) {
  const res = await fetch(`${srv.http}/api/v1/taskhubs${path}`,
    { method, headers: H, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}
const get = async (id) => (await call("GET", `/schedules/${id}`)).json;
const instancesOf = async (prefix) => {
  const r = await call("POST", "/orchestrations/query", { filter: { orchestrationIdPrefix: prefix }, pagination: { count: 1000 } });
  return r.json.orchestrations;
};

test("HTTP: create, read, list in pages, pause, resume, delete; bad input is a 4xx", async () => {
  await start();
  cleanups.push(() => stopAll());
  const made = await call("POST", "/schedules", {
    ScheduleId: "nightly", OrchestrationName: "schedTick", Interval: "1.00:00:00",
    OrchestrationInput: "\"x\"", StartAt: "2099-01-01T00:00:00Z", EndAt: "2099-02-01T00:00:00Z",
  });
  assert.equal(made.status, 201, JSON.stringify(made.json));
  assert.equal(made.json.ScheduleId, "nightly");
  assert.equal(made.json.Interval, "1.00:00:00");
  assert.equal(made.json.Status, "Active");
  assert.equal(made.json.NextRunAt, "2099-01-01T00:00:00.000Z");
  assert.equal(made.json.RunCount, 0);
  // camelCase and an ISO 8601 interval are accepted too
  const second = await call("POST", "/schedules", { scheduleId: "hourly", orchestrationName: "schedTick", interval: "PT1H", startAt: "2099-01-01T00:00:00Z" });
  assert.equal(second.status, 201);
  assert.equal(second.json.Interval, "01:00:00");
  assert.equal((await call("POST", "/schedules", { ScheduleId: "nightly", OrchestrationName: "x", Interval: 60 })).status, 409);
  for (const bad of [
    {}, { ScheduleId: "a", Interval: 60 }, { ScheduleId: "a", OrchestrationName: "x" },
    { ScheduleId: "a", OrchestrationName: "x", Interval: 0.5 }, { ScheduleId: "a", OrchestrationName: "x", Interval: "soon" },
    { ScheduleId: "a b\u0001", OrchestrationName: "x", Interval: 60 }, { ScheduleId: "a".repeat(81), OrchestrationName: "x", Interval: 60 },
    { ScheduleId: "a", OrchestrationName: "x", Interval: 60, StartAt: "2099-01-02T00:00:00Z", EndAt: "2099-01-01T00:00:00Z" },
    { ScheduleId: "a", OrchestrationName: "x", Interval: 60, StartAt: "tomorrow" },
  ]) {
    const r = await call("POST", "/schedules", bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(typeof r.json.error.message, "string");
  }
  const p1 = await call("GET", "/schedules?pageSize=1");
  assert.deepEqual(p1.json.schedules.map((s) => s.ScheduleId), ["hourly"]);
  assert.equal(p1.json.continuationToken, "hourly");
  const p2 = await call("GET", `/schedules?pageSize=1&continuationToken=${p1.json.continuationToken}`);
  assert.deepEqual(p2.json.schedules.map((s) => s.ScheduleId), ["nightly"]);
  assert.equal(p2.json.continuationToken, null);
  const paused = await call("POST", "/schedules/nightly/pause");
  assert.equal(paused.json.Status, "Paused");
  assert.equal(paused.json.NextRunAt, null);
  const resumed = await call("POST", "/schedules/nightly/resume");
  assert.equal(resumed.json.Status, "Active");
  assert.equal(resumed.json.NextRunAt, "2099-01-01T00:00:00.000Z");
  assert.equal((await call("DELETE", "/schedules/nightly")).status, 204);
  assert.equal((await call("GET", "/schedules/nightly")).status, 404);
  assert.equal((await call("DELETE", "/schedules/nightly")).status, 404);
  assert.equal((await call("POST", "/schedules/nightly/pause")).status, 404);
  assert.equal((await call("DELETE", "/schedules/hourly")).status, 204);
});

test("gRPC admin: CreateSchedule, GetSchedule, ListSchedules; ALREADY_EXISTS, NOT_FOUND, INVALID_ARGUMENT", async () => {
  const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
  const sched = msg(str(1, "via-grpc"), str(2, "schedTick"), bytes(5, int(1, 86400)), bytes(6, int(1, 4070908800)));
  const made = await rawUnary(grpc, raw, "/dtsd.admin.Admin/CreateSchedule", sched);
  assert.equal(made.code, 0, made.details);
  assert.ok(made.res.includes(Buffer.from("via-grpc")));
  assert.equal((await rawUnary(grpc, raw, "/dtsd.admin.Admin/CreateSchedule", sched)).code, grpc.status.ALREADY_EXISTS);
  const got = await rawUnary(grpc, raw, "/dtsd.admin.Admin/GetSchedule", str(1, "via-grpc"));
  assert.equal(got.code, 0);
  assert.ok(got.res.includes(Buffer.from("schedTick")));
  const list = await rawUnary(grpc, raw, "/dtsd.admin.Admin/ListSchedules", Buffer.alloc(0));
  assert.ok(list.res.includes(Buffer.from("via-grpc")));
  assert.equal((await rawUnary(grpc, raw, "/dtsd.admin.Admin/GetSchedule", str(1, "none"))).code, grpc.status.NOT_FOUND);
  const noInterval = await rawUnary(grpc, raw, "/dtsd.admin.Admin/CreateSchedule", msg(str(1, "x"), str(2, "y")));
  assert.equal(noInterval.code, grpc.status.INVALID_ARGUMENT);
  assert.match(noInterval.details, /interval/);
  assert.equal((await rawUnary(grpc, raw, "/dtsd.admin.Admin/DeleteSchedule", str(1, "via-grpc"))).code, 0);
  assert.equal((await rawUnary(grpc, raw, "/dtsd.admin.Admin/PauseSchedule", str(1, "via-grpc"))).code, grpc.status.NOT_FOUND);
  raw.close();
});

test("every occurrence starts once and runs; a fixed instance id is reused; an ended schedule stops", async () => {
  const made = await call("POST", "/schedules", { ScheduleId: "every1", OrchestrationName: "schedTick", Interval: 1, OrchestrationInput: "\"in\"" });
  assert.equal(made.status, 201);
  await waitFor(async () => (await get("every1")).RunCount >= 3, "three runs of every1");
  await call("POST", "/schedules/every1/pause");
  const paused = await get("every1");
  const insts = await waitFor(async () => {
    const l = await instancesOf("every1-");
    return l.length === paused.RunCount && l.every((i) => i.orchestrationStatus === "ORCHESTRATION_STATUS_COMPLETED") && l;
  }, "every run of every1 completed");
  for (const i of insts) {
    assert.match(i.instanceId, /^every1-\d{8}T\d{6}Z$/);
    assert.equal(runs.get(i.instanceId), 1, `${i.instanceId} ran once`);
    const st = await c.getOrchestrationState(i.instanceId, true);
    assert.equal(st.serializedOutput, JSON.stringify("noted:in"));
  }
  assert.equal((await call("DELETE", "/schedules/every1")).status, 204);

  // a fixed id: each run replaces the finished one; an end time stops it
  const end = new Date(Date.now() + 2500).toISOString();
  await call("POST", "/schedules", { ScheduleId: "fixed", OrchestrationName: "schedTick", Interval: 1, OrchestrationInstanceId: "the-one", EndAt: end });
  const ended = await waitFor(async () => { const x = await get("fixed"); return x.Status === "Ended" && x; }, "the fixed schedule ended", 15000);
  assert.ok(ended.RunCount >= 2, `ran ${ended.RunCount} times before its end`);
  assert.equal(ended.NextRunAt, null);
  assert.equal(ended.LastRunInstanceId, "the-one");
  assert.equal((await call("POST", "/schedules/fixed/resume")).status, 409, "an ended schedule cannot resume");
  const one = await c.waitForOrchestrationCompletion("the-one", true, 30);
  assert.equal(one.runtimeStatus, S.COMPLETED);
  assert.equal((await instancesOf("the-one")).length, 1);
});

test("SIGKILL and restart: the schedule goes on where it was, no occurrence started twice", async () => {
  await call("POST", "/schedules", { ScheduleId: "crashy", OrchestrationName: "schedTick", Interval: 1 });
  const early = await waitFor(async () => {
    const l = await instancesOf("crashy-");
    return l.length >= 2 && l.every((i) => i.orchestrationStatus === "ORCHESTRATION_STATUS_COMPLETED") && l;
  }, "two completed runs before the kill");
  // their executions: an occurrence started again after the restart would replace one
  const execs = new Map();
  for (const i of early) execs.set(i.instanceId, (await call("GET", `/orchestrations/${i.instanceId}`)).json.executionId);
  await stopAll("kill");
  const dataDir = srv.dataDir;
  await start({ dataDir });
  const before = await get("crashy");
  await waitFor(async () => (await get("crashy")).RunCount >= before.RunCount + 2, "two runs after the restart");
  await call("POST", "/schedules/crashy/pause");
  const final = await get("crashy");
  await waitFor(async () => {
    const l = await instancesOf("crashy-");
    return l.length === final.RunCount && l.every((i) => i.orchestrationStatus === "ORCHESTRATION_STATUS_COMPLETED") && l;
  }, "every run of crashy completed, one instance per counted run");
  for (const [id, exec] of execs)
    assert.equal((await call("GET", `/orchestrations/${id}`)).json.executionId, exec, `${id} was not started again`);
  await call("DELETE", "/schedules/crashy");
});

test("clock jumps: forward catches up once (or waits, when asked not to); backward starts nothing early", async () => {
  await call("POST", "/schedules", { ScheduleId: "catchup", OrchestrationName: "schedTick", Interval: 2, StartImmediatelyIfLate: true });
  await call("POST", "/schedules", { ScheduleId: "nocatchup", OrchestrationName: "schedTick", Interval: 600 });
  await waitFor(async () => (await get("catchup")).RunCount >= 1 && (await get("nocatchup")).RunCount >= 1, "first runs");
  await stopAll();
  const dataDir = srv.dataDir;
  const a0 = { catchup: null, nocatchup: null };
  // an hour later: 1,800 occurrences of "catchup" missed -- it starts one at once, then every 2 s
  await start({ dataDir, env: { DTSD_TEST_CLOCK_SHIFT_S: "3600" } });
  a0.catchup = await get("catchup");
  a0.nocatchup = await get("nocatchup");
  const after1 = await waitFor(async () => { const x = await get("catchup"); return x.RunCount >= 3 && x; }, "catchup ran after the jump");
  assert.ok(after1.RunCount <= 6, `caught up once, not per missed occurrence (RunCount ${after1.RunCount})`);
  const noc = await get("nocatchup");
  assert.equal(noc.RunCount, 1, "nocatchup waits for its next occurrence instead");
  assert.ok(Date.parse(noc.NextRunAt) > Date.parse(after1.LastRunAt) - 1000);
  // back to the real clock, an hour before: the next runs are an hour away, nothing starts now
  await stopAll();
  await start({ dataDir });
  const held = await get("catchup");
  await call("POST", "/schedules", { ScheduleId: "witness", OrchestrationName: "schedTick", Interval: 1 });
  await waitFor(async () => (await get("witness")).RunCount >= 3, "the witness schedule ran three times");
  const still = await get("catchup");
  assert.equal(still.RunCount, held.RunCount, "no run while the clock is behind the next occurrence");
  assert.equal(still.NextRunAt, held.NextRunAt);
  for (const id of ["catchup", "nocatchup", "witness"]) await call("DELETE", `/schedules/${id}`);
});
