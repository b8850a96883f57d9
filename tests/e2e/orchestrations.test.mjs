// orchestrations.test.mjs -- the orchestration behaviours SDK users rely on,
// end to end: the real @microsoft/durabletask-js worker and client against a
// real dtsd (free port, fresh data directory).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { dt, startDtsd, client, worker, completed, waitFor, OrchestrationStatus as S } from "./harness.mjs";

const { whenAll, RetryPolicy, terminateOptions } = dt;

// ---- activities -------------------------------------------------------------
const hello = async (_ctx, name) => `Hello, ${name}!`;
const double = async (_ctx, n) => n * 2;
const echo = async (_ctx, x) => x;
let flakyCalls = 0;
const flaky = async (_ctx, n) => { flakyCalls++; if (flakyCalls < n) throw new Error(`flaky failure ${flakyCalls}`); return flakyCalls; };
const boom = async () => { throw new Error("activity exploded"); };

// ---- orchestrators ----------------------------------------------------------
const sequence = async function* (ctx) {
  const out = [];
  for (const c of ["Tokyo", "Seattle", "London"]) out.push(yield ctx.callActivity(hello, c));
  return out;
};
const fanOut = async function* (ctx, n) {
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(ctx.callActivity(double, i));
  const res = yield whenAll(tasks);
  return res.reduce((a, b) => a + b, 0);
};
const child = async function* (ctx, x) { return (yield ctx.callActivity(double, x)) + 1; };
const failingChild = async function* (ctx) { yield ctx.callActivity(boom); return "unreachable"; };
const parent = async function* (ctx) {
  const a = yield ctx.callSubOrchestrator(child, 5);
  let failure = null;
  try { yield ctx.callSubOrchestrator(failingChild); } catch (e) { failure = String(e.message || e); }
  return { a, failure };
};
const waitEvent = async function* (ctx) {
  const v = yield ctx.waitForExternalEvent("approve");
  return { got: v };
};
const timers = async function* (ctx) {
  const t0 = ctx.currentUtcDateTime.getTime();
  yield ctx.createTimer(new Date(t0 + 1500));
  const t1 = ctx.currentUtcDateTime.getTime();
  return { t0, t1, waited: t1 - t0 };
};
const counter = async function* (ctx, n) {
  if (n < 5) { ctx.continueAsNew(n + 1, false); return; }
  return n;
};
const customStatus = async function* (ctx) {
  ctx.setCustomStatus("step-1");
  yield ctx.waitForExternalEvent("next");
  ctx.setCustomStatus("");
  yield ctx.waitForExternalEvent("next2");
  return "done";
};
const forever = async function* (ctx) { yield ctx.waitForExternalEvent("never"); return "no"; };
const parentForever = async function* (ctx) { yield ctx.callSubOrchestrator(forever, null, { instanceId: `${ctx.instanceId}-kid` }); return "no"; };
const suspendable = async function* (ctx) { const v = yield ctx.waitForExternalEvent("go"); return v; };
const sender = async function* (ctx, target) { ctx.sendEvent(target, "ping", { from: ctx.instanceId }); return "sent"; };
const receiver = async function* (ctx) { return yield ctx.waitForExternalEvent("ping"); };
const echoOrch = async function* (ctx, x) { const r = yield ctx.callActivity(echo, x); return r; };
const retrying = async function* (ctx) {
  const policy = new RetryPolicy({ maxNumberOfAttempts: 4, firstRetryIntervalInMilliseconds: 100, backoffCoefficient: 1 });
  return yield ctx.callActivity(flaky, 3, { retry: policy });
};
const failing = async function* (ctx) { yield ctx.callActivity(boom); };

let srv, c, w;
before(async () => {
  srv = await startDtsd();
  w = worker(srv, undefined, (x) => {
    for (const o of [sequence, fanOut, child, failingChild, parent, waitEvent, timers, counter, customStatus, forever,
      parentForever, suspendable, sender, receiver, echoOrch, retrying, failing]) x.addOrchestrator(o);
    for (const a of [hello, double, echo, flaky, boom]) x.addActivity(a);
  });
  await w.start();
  c = client(srv);
});
after(async () => {
  await Promise.allSettled([w.stop(), c.stop()]);
  const st = await srv.stop();
  assert.equal(st.code, 0, `dtsd exit: ${JSON.stringify(st)} ${srv.stderr()}`);
});

test("activity sequence", async () => {
  const id = await c.scheduleNewOrchestration(sequence);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.deepEqual(JSON.parse(st.serializedOutput), ["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"]);
});

test("fan-out/fan-in of 100", async () => {
  const id = await c.scheduleNewOrchestration(fanOut, 100);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(JSON.parse(st.serializedOutput), 9900);
});

test("sub-orchestrations with results and failures", async () => {
  const id = await c.scheduleNewOrchestration(parent);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  const out = JSON.parse(st.serializedOutput);
  assert.equal(out.a, 11);
  assert.match(out.failure, /activity exploded|failed/i);
});

test("external events", async () => {
  const id = await c.scheduleNewOrchestration(waitEvent);
  await c.waitForOrchestrationStart(id, false, 30);
  await c.raiseOrchestrationEvent(id, "approve", { ok: true });
  const st = await completed(c, id);
  assert.deepEqual(JSON.parse(st.serializedOutput), { got: { ok: true } });
});

test("timers fire on time, with deterministic time across replays", async () => {
  const id = await c.scheduleNewOrchestration(timers);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  const out = JSON.parse(st.serializedOutput);
  assert.ok(out.waited >= 1500, `timer fired early: ${out.waited} ms`);
  assert.ok(out.waited < 10000, `timer fired late: ${out.waited} ms`);
});

test("continue-as-new several times", async () => {
  const id = await c.scheduleNewOrchestration(counter, 0);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(JSON.parse(st.serializedOutput), 5);
});

test("custom status, including the empty string", async () => {
  const id = await c.scheduleNewOrchestration(customStatus);
  await waitFor(async () => (await c.getOrchestrationState(id, true))?.serializedCustomStatus === JSON.stringify("step-1"), "custom status step-1");
  await c.raiseOrchestrationEvent(id, "next", null);
  await waitFor(async () => (await c.getOrchestrationState(id, true))?.serializedCustomStatus === JSON.stringify(""), "custom status \"\"");
  await c.raiseOrchestrationEvent(id, "next2", null);
  const st = await completed(c, id);
  assert.equal(st.serializedOutput, JSON.stringify("done"));
});

test("terminate, and recursive terminate", async () => {
  const a = await c.scheduleNewOrchestration(forever);
  await c.waitForOrchestrationStart(a, false, 30);
  await c.terminateOrchestration(a, "stopped");
  let st = await completed(c, a);
  assert.equal(st.runtimeStatus, S.TERMINATED);
  assert.equal(st.serializedOutput, JSON.stringify("stopped"));

  const p = await c.scheduleNewOrchestration(parentForever);
  await waitFor(async () => (await c.getOrchestrationState(`${p}-kid`))?.runtimeStatus === S.RUNNING, "child running");
  await c.terminateOrchestration(p, terminateOptions({ recursive: true, output: "all" }));
  st = await completed(c, p);
  assert.equal(st.runtimeStatus, S.TERMINATED);
  const kid = await completed(c, `${p}-kid`);
  assert.equal(kid.runtimeStatus, S.TERMINATED);
});

test("suspend and resume", async () => {
  const id = await c.scheduleNewOrchestration(suspendable);
  await c.waitForOrchestrationStart(id, false, 30);
  await c.suspendOrchestration(id);
  await waitFor(async () => (await c.getOrchestrationState(id))?.runtimeStatus === S.SUSPENDED, "SUSPENDED");
  await c.raiseOrchestrationEvent(id, "go", 42);
  // the event is buffered while suspended
  const mid = await c.getOrchestrationState(id);
  assert.equal(mid.runtimeStatus, S.SUSPENDED);
  await c.resumeOrchestration(id);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(st.serializedOutput, "42");
});

test("orchestration-to-orchestration events", async () => {
  const r = await c.scheduleNewOrchestration(receiver);
  await c.waitForOrchestrationStart(r, false, 30);
  const s = await c.scheduleNewOrchestration(sender, r);
  assert.equal((await completed(c, s)).runtimeStatus, S.COMPLETED);
  const st = await completed(c, r);
  assert.deepEqual(JSON.parse(st.serializedOutput), { from: s });
});

test("scheduled start stays PENDING until its time", async () => {
  const at = new Date(Date.now() + 2000);
  const id = await c.scheduleNewOrchestration(sequence, undefined, { startAt: at });
  const early = await c.getOrchestrationState(id);
  assert.equal(early.runtimeStatus, S.PENDING);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.ok(Date.now() >= at.getTime(), "completed before its start time");
});

test("instance id reuse: running is ALREADY_EXISTS, finished is replaced", async () => {
  const id = `reuse-${Date.now()}`;
  await c.scheduleNewOrchestration(forever, undefined, id);
  await assert.rejects(c.scheduleNewOrchestration(forever, undefined, id), (e) => e.code === 6 || /exist/i.test(String(e.message)));
  await c.terminateOrchestration(id, null);
  await completed(c, id);
  await c.scheduleNewOrchestration(echoOrch, "second", id);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(st.serializedOutput, JSON.stringify("second"));
});

test("falsy payloads come back unchanged", async () => {
  for (const v of [0, "", false, null]) {
    const id = await c.scheduleNewOrchestration(echoOrch, v);
    const st = await completed(c, id);
    assert.equal(st.runtimeStatus, S.COMPLETED, `for ${JSON.stringify(v)}`);
    assert.equal(st.serializedOutput, JSON.stringify(v), `for ${JSON.stringify(v)}`);
    assert.equal(st.serializedInput, JSON.stringify(v));
  }
});

test("a 1 MB payload", async () => {
  const big = "x".repeat(1 << 20);
  const id = await c.scheduleNewOrchestration(echoOrch, big);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(JSON.parse(st.serializedOutput).length, 1 << 20);
});

test("retry policies retry failed activities", async () => {
  flakyCalls = 0;
  const id = await c.scheduleNewOrchestration(retrying);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(JSON.parse(st.serializedOutput), 3);
});

test("a failing orchestration reports FAILED with details", async () => {
  const id = await c.scheduleNewOrchestration(failing);
  const st = await completed(c, id);
  assert.equal(st.runtimeStatus, S.FAILED);
  assert.match(st.failureDetails.message, /activity exploded/);
});

test("unknown instances: exists=false and NOT_FOUND", async () => {
  assert.equal(await c.getOrchestrationState("no-such-instance"), undefined);
  await assert.rejects(c.raiseOrchestrationEvent("no-such-instance", "x", 1), (e) => e.code === 5);
});
