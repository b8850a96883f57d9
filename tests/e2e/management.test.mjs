// management.test.mjs -- history, queries, purge, restart with the JS SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { dt, startDtsd, client, worker, completed, waitFor, OrchestrationStatus as S } from "./harness.mjs";

const { PurgeInstanceCriteria } = dt;

const twice = async (_ctx, n) => n * 2;
const seq = async function* mgmtSeq(ctx, n) {
  let x = n;
  for (let i = 0; i < 3; i++) x = yield ctx.callActivity(twice, x);
  return x;
};
const kid = async function* mgmtKid(ctx) { return "kid"; };
const parent = async function* mgmtParent(ctx) { return yield ctx.callSubOrchestrator(kid, null, { instanceId: `${ctx.instanceId}-kid` }); };
const waiter = async function* mgmtWaiter(ctx) { return yield ctx.waitForExternalEvent("go"); };
const threeSteps = async function* mgmtThreeSteps(ctx) {
  yield ctx.callActivity(twice, 1);
  yield ctx.createTimer(new Date(ctx.currentUtcDateTime.getTime() + 100));
  return yield ctx.callSubOrchestrator(kid, null, { instanceId: `${ctx.instanceId}-kid` });
};

let srv, c, w;
before(async () => {
  srv = await startDtsd();
  w = worker(srv, undefined, (x) => { for (const o of [seq, kid, parent, waiter, threeSteps]) x.addOrchestrator(o); x.addActivity(twice); });
  await w.start();
  c = client(srv);
});
after(async () => {
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

test("history: every step in order, event ids equal action ids", async () => {
  const id = await c.scheduleNewOrchestration(seq, 1);
  assert.equal((await completed(c, id)).serializedOutput, "8");
  const h = await c.getOrchestrationHistory(id);
  const types = h.map((e) => e.type);
  assert.equal(types[0], "OrchestratorStarted");
  assert.equal(types[1], "ExecutionStarted");
  assert.equal(types[types.length - 1], "ExecutionCompleted");
  /* execution ids as DTS makes them: 32 lowercase hex digits, no dashes */
  assert.match(h[1].orchestrationInstance.executionId, /^[0-9a-f]{32}$/);
  const scheduled = h.filter((e) => e.type === "TaskScheduled").map((e) => e.eventId);
  assert.deepEqual(scheduled, [1, 2, 3]);
  assert.equal(h.filter((e) => e.type === "TaskCompleted").length, 3);
  assert.ok(h.every((e) => e.timestamp instanceof Date));
  const ids = h.map((e) => e.eventId).filter((x) => x >= 0);
  assert.ok(ids.every((x, i) => i === 0 || x > ids[i - 1]), `event ids >= 0 strictly increase: ${ids}`);
  assert.deepEqual(await c.getOrchestrationHistory("no-such-instance"), []);
});

test("history as DTS returns it: activity, timer, sub-orchestration, no OrchestratorCompleted", async () => {
  const id = await c.scheduleNewOrchestration(threeSteps);
  assert.equal((await completed(c, id)).serializedOutput, JSON.stringify("kid"));
  const types = (await c.getOrchestrationHistory(id)).map((e) => e.type);
  assert.deepEqual(types, [
    "OrchestratorStarted", "ExecutionStarted", "TaskScheduled",
    "OrchestratorStarted", "TaskCompleted", "TimerCreated",
    "OrchestratorStarted", "TimerFired", "SubOrchestrationInstanceCreated",
    "OrchestratorStarted", "SubOrchestrationInstanceCompleted", "ExecutionCompleted",
  ]);
});

test("query by status and prefix, in pages", async () => {
  const prefix = `q-${Date.now()}-`;
  for (let i = 0; i < 7; i++) await c.scheduleNewOrchestration(seq, i, `${prefix}${i}`);
  for (let i = 0; i < 7; i++) await completed(c, `${prefix}${i}`);
  await c.scheduleNewOrchestration(waiter, undefined, `${prefix}running`);
  await c.waitForOrchestrationStart(`${prefix}running`, false, 30);
  const pages = [];
  for await (const page of c.getAllInstances({ instanceIdPrefix: prefix, statuses: [S.COMPLETED], pageSize: 3 }).asPages()) pages.push(page.values.map((s) => s.instanceId));
  assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
  assert.deepEqual(pages.flat().sort(), [0, 1, 2, 3, 4, 5, 6].map((i) => `${prefix}${i}`).sort());
  const running = [];
  for await (const s of c.getAllInstances({ instanceIdPrefix: prefix, statuses: [S.RUNNING] })) running.push(s.instanceId);
  assert.deepEqual(running, [`${prefix}running`]);
  const withIo = [];
  for await (const s of c.getAllInstances({ instanceIdPrefix: `${prefix}3`, fetchInputsAndOutputs: true })) withIo.push(s);
  assert.equal(withIo[0].serializedOutput, "24");
  await c.raiseOrchestrationEvent(`${prefix}running`, "go", 1);
  await completed(c, `${prefix}running`);
});

test("list instance ids by completion time, with key paging", async () => {
  const from = new Date();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await c.scheduleNewOrchestration(seq, i));
  for (const id of ids) await completed(c, id);
  const got = [];
  let key;
  for (;;) {
    const page = await c.listInstanceIds({ completedTimeFrom: from, runtimeStatus: [S.COMPLETED], pageSize: 2, lastInstanceKey: key });
    got.push(...page.values);
    if (!page.hasMoreResults) break;
    key = page.continuationToken;
  }
  for (const id of ids) assert.ok(got.includes(id), `missing ${id}`);
});

test("purge: by id (terminal only), recursive, by filter", async () => {
  const id = await c.scheduleNewOrchestration(seq, 1);
  await completed(c, id);
  assert.equal((await c.purgeOrchestration(id)).deletedInstanceCount, 1);
  assert.equal(await c.getOrchestrationState(id), undefined);
  assert.deepEqual(await c.getOrchestrationHistory(id), []);
  assert.equal((await c.purgeOrchestration(id)).deletedInstanceCount, 0);

  const run = await c.scheduleNewOrchestration(waiter);
  await c.waitForOrchestrationStart(run, false, 30);
  assert.equal((await c.purgeOrchestration(run)).deletedInstanceCount, 0, "running instances are not purged");
  await c.raiseOrchestrationEvent(run, "go", 0);
  await completed(c, run);

  const p = await c.scheduleNewOrchestration(parent);
  await completed(c, p);
  assert.equal((await c.purgeOrchestration(p, { recursive: true })).deletedInstanceCount, 2);
  assert.equal(await c.getOrchestrationState(`${p}-kid`), undefined);

  const t0 = new Date();
  const fresh = [];
  for (let i = 0; i < 3; i++) fresh.push(await c.scheduleNewOrchestration(seq, i));
  for (const f of fresh) await completed(c, f);
  const crit = new PurgeInstanceCriteria();
  crit.setCreatedTimeFrom(t0);
  crit.setRuntimeStatusList([S.COMPLETED]);
  assert.equal((await c.purgeOrchestration(crit)).deletedInstanceCount, 3);
  for (const f of fresh) assert.equal(await c.getOrchestrationState(f), undefined);
});

test("restart: same id, new id, and the errors", async () => {
  const id = await c.scheduleNewOrchestration(seq, 2);
  await completed(c, id);
  const first = await c.getOrchestrationState(id);
  assert.equal(await c.restartOrchestration(id, false), id);
  const again = await completed(c, id);
  assert.equal(again.serializedOutput, "16");
  assert.ok(again.createdAt >= first.createdAt);
  const other = await c.restartOrchestration(id, true);
  assert.notEqual(other, id);
  assert.equal((await completed(c, other)).serializedOutput, "16");
  await assert.rejects(c.restartOrchestration("no-such-instance", false));
  const run = await c.scheduleNewOrchestration(waiter);
  await c.waitForOrchestrationStart(run, false, 30);
  await assert.rejects(c.restartOrchestration(run, false));
  await c.raiseOrchestrationEvent(run, "go", 0);
  await completed(c, run);
});

test("rewind: a failed orchestration (failed activity and failed sub-orchestration) runs again to completion", async () => {
  // a separate worker with its own orchestrations, so `healthy` can flip
  let healthy = false;
  const shaky = async (_ctx, x) => { if (!healthy) throw new Error("not yet"); return x + 1; };
  const subOrch = async function* rwSub(ctx, x) { return yield ctx.callActivity(shaky, x); };
  const top = async function* rwTop(ctx) {
    const a = yield ctx.callActivity(shaky, 1);
    const b = yield ctx.callSubOrchestrator(subOrch, a, { instanceId: `${ctx.instanceId}-sub` });
    return b;
  };
  const topSubFirst = async function* rwTop2(ctx) {
    return yield ctx.callSubOrchestrator(subOrch, 10, { instanceId: `${ctx.instanceId}-sub` });
  };
  const own = await startDtsd(); // its own server: the file's worker must not take these
  const w2 = worker(own, undefined, (x) => { x.addOrchestrator(top); x.addOrchestrator(subOrch); x.addOrchestrator(topSubFirst); x.addActivity(shaky); });
  await w2.start();
  const c = client(own);
  try {
    const id = await c.scheduleNewOrchestration(top);
    assert.equal((await completed(c, id)).runtimeStatus, S.FAILED);
    healthy = true;
    await c.rewindInstance(id, "fixed the bug");
    const st = await completed(c, id);
    assert.equal(st.runtimeStatus, S.COMPLETED, st.failureDetails?.message);
    assert.equal(st.serializedOutput, "3");

    healthy = false;
    const id2 = await c.scheduleNewOrchestration(topSubFirst);
    assert.equal((await completed(c, id2)).runtimeStatus, S.FAILED);
    assert.equal((await c.getOrchestrationState(`${id2}-sub`)).runtimeStatus, S.FAILED);
    healthy = true;
    await c.rewindInstance(id2, "again");
    const st2 = await completed(c, id2);
    assert.equal(st2.runtimeStatus, S.COMPLETED, st2.failureDetails?.message);
    assert.equal(st2.serializedOutput, "11");
    assert.equal((await c.getOrchestrationState(`${id2}-sub`)).runtimeStatus, S.COMPLETED);

    await assert.rejects(c.rewindInstance("no-such-instance", "x"));
    await assert.rejects(c.rewindInstance(id, "completed ones cannot be rewound"));
  } finally {
    await Promise.allSettled([w2.stop(), c.stop()]);
    assert.equal((await own.stop()).code, 0, own.stderr());
  }
});
