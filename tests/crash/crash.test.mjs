// crash.test.mjs -- kill -9 at random moments under load, restart on the
// same data directory, and check that nothing was lost or applied twice.
//
// Load: JS SDK worker + client running sequences, fan-outs, timers,
// sub-orchestrations and external events.  dtsd is killed with SIGKILL at
// least CRASH_KILLS times (default 20), each time after a random number of
// further activity executions, and restarted on the same port and data.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import fs from "node:fs";
import { dt, startDtsd, client, worker, waitFor, tmpDir, OrchestrationStatus as S } from "../e2e/harness.mjs";

const { whenAll } = dt;
const KILLS = Number(process.env.CRASH_KILLS || 20);

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// activity executions, counted per (instance, task) -- at least once each
const runs = new Map();
let totalRuns = 0;
const note = (ctx) => { const k = `${ctx.orchestrationId}#${ctx.taskId}`; runs.set(k, (runs.get(k) || 0) + 1); totalRuns++; };
const inc = async (ctx, n) => { note(ctx); return n + 1; };
const sq = async (ctx, n) => { note(ctx); return n * n; };

const sequence = async function* crashSeq(ctx, n) {
  let x = n;
  for (let i = 0; i < 5; i++) x = yield ctx.callActivity(inc, x);
  return x;
};
const fan = async function* crashFan(ctx, n) {
  const t = [];
  for (let i = 0; i < n; i++) t.push(ctx.callActivity(sq, i));
  return (yield whenAll(t)).reduce((a, b) => a + b, 0);
};
const timers = async function* crashTimers(ctx) {
  const t0 = ctx.currentUtcDateTime.getTime();
  for (let i = 0; i < 3; i++) yield ctx.createTimer(new Date(ctx.currentUtcDateTime.getTime() + 300));
  return ctx.currentUtcDateTime.getTime() - t0;
};
const child = async function* crashChild(ctx, n) { return yield ctx.callActivity(inc, n); };
const parent = async function* crashParent(ctx, n) {
  const a = yield ctx.callSubOrchestrator(child, n);
  const b = yield ctx.callSubOrchestrator(child, a);
  return b;
};
const events = async function* crashEvents(ctx) {
  const a = yield ctx.waitForExternalEvent("a");
  const b = yield ctx.waitForExternalEvent("b");
  return a + b;
};

test(`SIGKILL ${KILLS} times under load: nothing lost, nothing applied twice`, { timeout: 600000 }, async () => {
  const port = await freePort();
  const dataDir = path.join(tmpDir("crash"), "data");
  const args = ["--address", `127.0.0.1:${port}`];
  const endpoint = `127.0.0.1:${port}`;
  let srv = await startDtsd({ dataDir, args });
  srv.endpoint = endpoint;
  const w = worker(srv, undefined, (x) => {
    for (const o of [sequence, fan, timers, child, parent, events]) x.addOrchestrator(o);
    x.addActivity(inc);
    x.addActivity(sq);
  });
  await w.start();
  let c = client(srv);

  // retries a client call across restarts
  const retry = async (fn) => {
    for (let i = 0; ; i++) {
      try { return await fn(); } catch (e) {
        if (i > 200) throw e;
        await waitFor(() => srvUp, "dtsd to be back", 30000);
      }
    }
  };
  let srvUp = true;

  const want = new Map(); // id -> expected output
  const eventIds = [];
  let n = 0;
  const startSome = async () => {
    const kinds = [
      [sequence, 10, "15"], [fan, 8, String([0, 1, 2, 3, 4, 5, 6, 7].reduce((a, i) => a + i * i, 0))],
      [timers, undefined, null], [parent, 1, "3"], [events, undefined, "5"],
    ];
    for (const [o, input, out] of kinds) {
      const id = `crash-${n++}`;
      await retry(() => c.scheduleNewOrchestration(o, input, id));
      want.set(id, out);
      if (o === events) eventIds.push(id);
    }
  };

  for (let k = 0; k < KILLS; k++) {
    const base = totalRuns;
    await startSome(); // each call adds 15 activities
    await startSome();
    for (const id of eventIds.splice(0)) { // raised at once: may land before or after the wait starts
      await retry(() => c.raiseOrchestrationEvent(id, "a", 2));
      await retry(() => c.raiseOrchestrationEvent(id, "b", 3));
    }
    // the two batches just started add 30 activities, each of which runs at
    // least once after `base`: a target up to 30 runs past it is always reached
    const target = base + 1 + Math.floor(Math.random() * 30);
    if (process.env.CRASH_DEBUG) console.log(`kill ${k}: runs ${totalRuns}, target ${target}`);
    await waitFor(() => totalRuns >= target, `${target} activity runs`, 60000);
    srvUp = false;
    await srv.kill();
    srv = await startDtsd({ dataDir, args });
    srv.endpoint = endpoint;
    srvUp = true;
  }

  // everything completes with the right output
  for (const [id, out] of want) {
    const st = await retry(() => c.waitForOrchestrationCompletion(id, true, 120));
    assert.ok(st, `instance ${id} lost`);
    assert.equal(st.runtimeStatus, S.COMPLETED, `${id}: ${st.failureDetails?.message}`);
    if (out === null) assert.ok(Number(st.serializedOutput) >= 900, `${id}: timers fired early (${st.serializedOutput} ms)`);
    else assert.equal(st.serializedOutput, out, id);
  }
  // no step applied twice; every scheduled activity ran at least once
  let scheduled = 0;
  for (const id of want.keys()) {
    const h = await c.getOrchestrationHistory(id);
    for (const type of ["TaskScheduled", "TimerCreated", "SubOrchestrationInstanceCreated"]) {
      const ids = h.filter((e) => e.type === type).map((e) => e.eventId);
      assert.equal(new Set(ids).size, ids.length, `${id}: duplicate ${type} ${ids}`);
    }
    for (const [type, field] of [["TaskCompleted", "taskScheduledId"], ["TimerFired", "timerId"], ["SubOrchestrationInstanceCompleted", "taskScheduledId"]]) {
      const ids = h.filter((e) => e.type === type).map((e) => e[field]);
      assert.equal(new Set(ids).size, ids.length, `${id}: duplicate ${type} ${ids}`);
    }
    const sched = h.filter((e) => e.type === "TaskScheduled");
    scheduled += sched.length;
    for (const e of sched) assert.ok(runs.get(`${id}#${e.eventId}`) >= 1, `${id}: activity ${e.eventId} never ran`);
    assert.equal(h.filter((e) => e.type === "ExecutionCompleted").length, 1, `${id}: one ExecutionCompleted`);
  }
  const again = [...runs.values()].filter((v) => v > 1).length;
  console.log(`crash: ${KILLS} kills, ${want.size} orchestrations, ${scheduled} activities scheduled, ${totalRuns} activity runs (${again} ran more than once: at-least-once redelivery)`);
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

test("a damaged data directory is a clear error at start, not a fresh start", async () => {
  const srv = await startDtsd();
  await srv.stop();
  // damage the MANIFEST named by CURRENT
  const manifest = fs.readFileSync(path.join(srv.dataDir, "CURRENT"), "utf8").trim();
  fs.writeFileSync(path.join(srv.dataDir, manifest), Buffer.alloc(64, 0x5a));
  await assert.rejects(startDtsd({ dataDir: srv.dataDir }), /damaged|corrupt/i);
  assert.ok(fs.existsSync(path.join(srv.dataDir, manifest)), "nothing was deleted");
});

test("SIGKILL during a signal storm: every acknowledged signal is applied exactly once", { timeout: 300000 }, async () => {
  const { TaskEntity, EntityInstanceId } = dt;
  class Log extends TaskEntity {
    initializeState() { return []; }
    append(x) { this.state.push(x); }
  }
  const port = await freePort();
  const dataDir = path.join(tmpDir("storm"), "data");
  const args = ["--address", `127.0.0.1:${port}`];
  let srv = await startDtsd({ dataDir, args });
  srv.endpoint = `127.0.0.1:${port}`;
  const w = worker(srv, undefined, (x) => x.addNamedEntity("stormlog", () => new Log()));
  await w.start();
  const c = client(srv);
  const acked = new Set();
  const N = 3000;
  let next = 0, killed = false;
  const lane = async () => {
    while (next < N) {
      const i = next++;
      try {
        await c.signalEntity(new EntityInstanceId("stormlog", `k${i % 10}`), "append", i);
        acked.add(i);
      } catch {
        // not acknowledged: may or may not have been applied, at most once
      }
      if (!killed && acked.size >= 1000) {
        killed = true;
        await srv.kill();
        srv = await startDtsd({ dataDir, args });
        srv.endpoint = `127.0.0.1:${port}`;
      }
    }
  };
  await Promise.all(Array.from({ length: 50 }, lane));
  assert.ok(killed);
  const seen = new Map();
  await waitFor(async () => {
    seen.clear();
    for (let k = 0; k < 10; k++) {
      const md = await c.getEntity(new EntityInstanceId("stormlog", `k${k}`), true).catch(() => undefined);
      for (const x of md?.state || []) seen.set(x, (seen.get(x) || 0) + 1);
    }
    return [...acked].every((x) => seen.has(x));
  }, "every acknowledged signal to be applied", 120000);
  for (const [x, n] of seen) assert.equal(n, 1, `signal ${x} applied ${n} times`);
  console.log(`storm: ${N} signals, ${acked.size} acknowledged, ${seen.size} applied, killed once mid-storm`);
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

test("SIGKILL with scheduled signals, timers and 100-character ids pending: after the restart each fires, once", { timeout: 300000 }, async () => {
  const { TaskEntity, EntityInstanceId } = dt;
  class Log extends TaskEntity {
    initializeState() { return []; }
    append(x) { this.state.push(x); }
    // entity to entity: a signal held for later, sent from an operation
    relay(x) { this.context.signalEntity(ent(x.i), "append", x.tag, { signalTime: new Date(Date.now() + 2500) }); }
  }
  const key = (i) => `${"k".repeat(88)}${String(i).padStart(2, "0")}`; // "@schedlog@" + 90 = 100 characters
  const ent = (i) => new EntityInstanceId("schedlog", key(i));
  const longId = (tag) => `${tag}-`.padEnd(100, "x"); // 100-character instance ids
  const sched = async function* crashSched(ctx, input) {
    // a signal held for later, and a durable timer, both pending at the kill
    const at = new Date(ctx.currentUtcDateTime.getTime() + 2500);
    ctx.entities.signalEntity(ent(input.i), "append", input.tag, { signalTime: at });
    yield ctx.createTimer(at);
    return input.tag;
  };
  const port = await freePort();
  const dataDir = path.join(tmpDir("sched"), "data");
  const args = ["--address", `127.0.0.1:${port}`];
  let srv = await startDtsd({ dataDir, args });
  srv.endpoint = `127.0.0.1:${port}`;
  const w = worker(srv, undefined, (x) => { x.addNamedEntity("schedlog", () => new Log()); x.addOrchestrator(sched); });
  await w.start();
  let c = client(srv);
  const want = new Map(); // entity index -> tags it must hold, once each
  const add = (i, tag) => want.set(i, [...(want.get(i) || []), tag]);
  const inOneSecond = () => new Date(Date.now() + 2500);
  const running = [], later = [];
  try {
    for (let i = 0; i < 10; i++) { // client signals for later
      await c.signalEntity(ent(i), "append", `c${i}`, { signalTime: inOneSecond() });
      add(i, `c${i}`);
    }
    for (let i = 0; i < 10; i++) { // entity operations that hold a signal to another entity for later
      await c.signalEntity(new EntityInstanceId("schedlog", `relay${i}`), "relay", { i, tag: `e${i}` });
      add(i, `e${i}`);
    }
    await waitFor(async () => { // the relays ran: their held signals are stored
      for (let i = 0; i < 10; i++) if ((await c.getEntity(new EntityInstanceId("schedlog", `relay${i}`)))?.backlogQueueSize !== 0) return false;
      return true;
    }, "the relays to run");
    for (let i = 0; i < 10; i++) { // orchestrations whose first turn holds a signal and a timer
      running.push(await c.scheduleNewOrchestration(sched, { i, tag: `o${i}` }, longId(`o${i}`)));
      add(i, `o${i}`);
    }
    for (let i = 0; i < 5; i++) { // orchestrations that start later
      later.push(await c.scheduleNewOrchestration(sched, { i, tag: `s${i}` }, longId(`s${i}`), inOneSecond()));
      add(i, `s${i}`);
    }
    for (const id of running) await c.waitForOrchestrationStart(id, false, 30); // first turns committed
    await srv.kill();
    srv = await startDtsd({ dataDir, args });
    srv.endpoint = `127.0.0.1:${port}`;
    for (const id of [...running, ...later]) {
      const st = await c.waitForOrchestrationCompletion(id, true, 60);
      assert.equal(st?.runtimeStatus, S.COMPLETED, `${id}: ${st?.failureDetails?.message}`);
    }
    await waitFor(async () => {
      for (const [i, tags] of want) {
        const got = (await c.getEntity(ent(i), true).catch(() => undefined))?.state || [];
        if (got.length < tags.length) return false;
      }
      return true;
    }, "every scheduled signal to be applied", 60000);
    for (const [i, tags] of want) {
      const got = (await c.getEntity(ent(i), true)).state;
      assert.deepEqual([...got].sort(), [...tags].sort(), `entity ${i}: each signal once`);
    }
    console.log(`scheduled: ${[...want.values()].flat().length} signals and ${running.length + later.length} timers pending at the kill, all fired once`);
  } finally {
    await Promise.allSettled([w.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});
