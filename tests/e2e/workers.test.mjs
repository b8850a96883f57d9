// workers.test.mjs -- several workers, dead workers, task hubs, restarts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startDtsd, client, worker, completed, waitFor, tmpDir, OrchestrationStatus as S } from "./harness.mjs";
import { slowOrch, makeSlowActivity } from "./shared-orchestrations.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

test("two workers share the work and every orchestration completes once", async () => {
  const srv = await startDtsd();
  const done = new Map();
  const ran = { a: 0, b: 0 };
  const mk = (tag) => {
    // yields to the event loop once, so both workers interleave; no timed wait
    const step = async (_ctx, i) => { ran[tag]++; await new Promise((r) => setImmediate(r)); return i; };
    Object.defineProperty(step, "name", { value: "step" });
    const orch = async function* shared(ctx) {
      let sum = 0;
      for (let i = 0; i < 5; i++) sum += yield ctx.callActivity(step, i);
      if (!ctx.isReplaying) done.set(ctx.instanceId, (done.get(ctx.instanceId) || 0) + 1);
      return sum;
    };
    return (w) => { w.addOrchestrator(orch); w.addActivity(step); };
  };
  const w1 = worker(srv, undefined, mk("a"));
  const w2 = worker(srv, undefined, mk("b"));
  await w1.start();
  await w2.start();
  const c = client(srv);
  try {
    const ids = [];
    for (let i = 0; i < 40; i++) ids.push(await c.scheduleNewOrchestration("shared"));
    for (const id of ids) {
      const st = await completed(c, id);
      assert.equal(st.runtimeStatus, S.COMPLETED);
      assert.equal(st.serializedOutput, "10");
    }
    for (const id of ids) assert.equal(done.get(id), 1, `instance ${id} completed ${done.get(id)} times`);
    assert.ok(ran.a > 0 && ran.b > 0, `both workers should run activities: ${JSON.stringify(ran)}`);
  } finally {
    await Promise.allSettled([w1.stop(), w2.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("a worker killed in the middle of an activity: a new worker completes the orchestration", async () => {
  const srv = await startDtsd();
  const marker = path.join(tmpDir("marker"), "started");
  const child = spawn(process.execPath, [path.join(here, "worker-proc.mjs"), srv.endpoint, marker], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  const c = client(srv);
  let w2;
  try {
    await waitFor(() => out.includes("ready"), "the first worker to start");
    const id = await c.scheduleNewOrchestration(slowOrch, 7);
    await waitFor(() => fs.existsSync(marker), "the activity to start in the first worker");
    child.kill("SIGKILL");
    w2 = worker(srv, undefined, (w) => {
      w.addOrchestrator(slowOrch);
      w.addActivity(makeSlowActivity(async (x) => x * 6));
    });
    await w2.start();
    const st = await completed(c, id);
    assert.equal(st.runtimeStatus, S.COMPLETED);
    assert.equal(st.serializedOutput, "42");
  } finally {
    child.kill("SIGKILL");
    await Promise.allSettled([w2?.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("two task hubs cannot see each other's instances; an unknown hub is NOT_FOUND", async () => {
  const srv = await startDtsd({ hubs: "alpha,beta" });
  const echo = async function* hubEcho(ctx, x) { return x; };
  const wa = worker(srv, "alpha", (w) => w.addOrchestrator(echo));
  const ca = client(srv, "alpha"), cb = client(srv, "beta"), cx = client(srv, "nope"), cdef = client(srv);
  await wa.start();
  try {
    const id = await ca.scheduleNewOrchestration(echo, "in-alpha");
    assert.equal((await completed(ca, id)).serializedOutput, JSON.stringify("in-alpha"));
    assert.equal(await cb.getOrchestrationState(id), undefined, "beta must not see alpha's instance");
    // the same id in beta is a different instance, run only by beta's worker
    const idb = await cb.scheduleNewOrchestration(echo, "in-beta", id);
    assert.equal(idb, id);
    const betaSeen = [];
    const echoB = async function* hubEcho(ctx, x) { if (!ctx.isReplaying) betaSeen.push(ctx.instanceId); return `beta:${x}`; };
    const wb = worker(srv, "beta", (w) => w.addOrchestrator(echoB));
    await wb.start();
    assert.equal((await completed(cb, id)).serializedOutput, JSON.stringify("beta:in-beta"));
    await wb.stop();
    assert.deepEqual(betaSeen, [id]);
    assert.equal((await ca.getOrchestrationState(id, true)).serializedOutput, JSON.stringify("in-alpha"));
    await assert.rejects(cx.getOrchestrationState(id), (e) => e.code === 5 && /alpha, beta/.test(e.details || e.message));
    await assert.rejects(cdef.getOrchestrationState(id), (e) => e.code === 5, "no header means hub 'default', not configured here");
  } finally {
    await Promise.allSettled([wa.stop(), ca.stop(), cb.stop(), cx.stop(), cdef.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("DTS_USE_DYNAMIC_TASK_HUBS=true: a hub a client names is created on first use and served after a restart", async () => {
  const dataDir = tmpDir();
  const echo = async function* dynEcho(ctx, x) { return x; };
  let srv = await startDtsd({ dataDir, hubs: "alpha", env: { DTS_USE_DYNAMIC_TASK_HUBS: "true" } });
  let w = worker(srv, "made-on-use", (x) => x.addOrchestrator(echo));
  let c = client(srv, "made-on-use");
  const bad = client(srv, "not a hub name!");
  let id;
  try {
    await w.start();
    id = await c.scheduleNewOrchestration(echo, "dyn");
    assert.equal((await completed(c, id)).serializedOutput, JSON.stringify("dyn"));
    await assert.rejects(bad.getOrchestrationState("x"), (e) => e.code === 3 && /task hub/.test(e.details || e.message));
  } finally {
    await Promise.allSettled([w.stop(), c.stop(), bad.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
  // served again after a restart, its instance with it -- even with the flag off
  srv = await startDtsd({ dataDir, hubs: "alpha", env: { DTS_USE_DYNAMIC_TASK_HUBS: "false" } });
  c = client(srv, "made-on-use");
  const other = client(srv, "never-named");
  try {
    const all = [];
    for await (const st of c.getAllInstances({})) all.push(st.instanceId);
    assert.deepEqual(all, [id]);
    assert.equal((await c.getOrchestrationState(id, true)).serializedOutput, JSON.stringify("dyn"));
    await assert.rejects(other.getOrchestrationState("x"), (e) => e.code === 5, "with the flag off an unknown hub is NOT_FOUND");
  } finally {
    await Promise.allSettled([c.stop(), other.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("work-item filters with versions: an activity scheduled without a version goes to a worker filtering on its orchestration's version", async () => {
  const srv = await startDtsd();
  const verAct = async (ctx, x) => `act:${x}`;
  const verOrch = async function* verOrch(ctx, x) { return yield ctx.callActivity(verAct, x); };
  const filters = { orchestrations: [{ name: "verOrch", versions: ["2.0"] }], activities: [{ name: "verAct", versions: ["2.0"] }] };
  const w = worker(srv, undefined, (x) => { x.addOrchestrator(verOrch); x.addActivity(verAct); }, { workItemFilters: filters });
  const c = client(srv);
  try {
    await w.start();
    const id = await c.scheduleNewOrchestration(verOrch, "v", { version: "2.0" });
    const st = await completed(c, id, 20);
    assert.equal(st.serializedOutput, JSON.stringify("act:v"));
  } finally {
    await Promise.allSettled([w.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("dtsd killed (SIGKILL) and restarted mid-run: every orchestration still completes", async () => {
  const port = await freePort();
  const dataDir = path.join(tmpDir("restart"), "data");
  const args = ["--address", `127.0.0.1:${port}`];
  let srv = await startDtsd({ dataDir, args });
  srv.endpoint = `127.0.0.1:${port}`;
  let steps = 0;
  const step = async (_ctx, i) => { steps++; return i; };
  const orch = async function* survivor(ctx, n) {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      sum += yield ctx.callActivity(step, i);
      yield ctx.createTimer(new Date(ctx.currentUtcDateTime.getTime() + 200));
    }
    return sum;
  };
  const w = worker(srv, undefined, (x) => { x.addOrchestrator(orch); x.addActivity(step); });
  await w.start();
  let c = client(srv);
  const ids = [];
  try {
    for (let i = 0; i < 20; i++) ids.push(await c.scheduleNewOrchestration(orch, 6));
    // let them get going, then crash in the middle
    await waitFor(() => steps >= 30, "some progress (30 activities)");
    await srv.kill();
    await c.stop();
    srv = await startDtsd({ dataDir, args });
    srv.endpoint = `127.0.0.1:${port}`;
    c = client(srv);
    for (const id of ids) {
      const st = await completed(c, id, 90);
      assert.equal(st.runtimeStatus, S.COMPLETED, `instance ${id}`);
      assert.equal(st.serializedOutput, "15");
    }
  } finally {
    await Promise.allSettled([w.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0);
  }
});

test("a second dtsd on the same data directory refuses to start", async () => {
  const srv = await startDtsd();
  try {
    await assert.rejects(startDtsd({ dataDir: srv.dataDir }), /in use by another dtsd/);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test("a foreign directory is refused, never silently replaced", async () => {
  const dir = tmpDir("foreign");
  fs.writeFileSync(path.join(dir, "precious.txt"), "keep me");
  await assert.rejects(startDtsd({ dataDir: dir }), /not a dtsd data directory/);
  assert.equal(fs.readFileSync(path.join(dir, "precious.txt"), "utf8"), "keep me");
});

test("idle streams get HealthPings; SIGTERM ends streams with UNAVAILABLE and exits in under 5 s", async () => {
  const { grpc } = await import("./harness.mjs");
  const srv = await startDtsd({ args: ["--health-ping", "300"] });
  const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
  const items = [];
  let endErr = null;
  const stream = raw.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), new grpc.Metadata());
  stream.on("data", (b) => items.push(Buffer.from(b)));
  stream.on("error", (e) => { endErr = e; });
  try {
    // WorkItem{healthPing(4): {}} is the two bytes 0x22 0x00
    await waitFor(() => items.some((b) => b.equals(Buffer.from([0x22, 0x00]))), "a HealthPing", 10000);
    const t0 = Date.now();
    const st = await srv.stop();
    const took = Date.now() - t0;
    assert.equal(st.code, 0, srv.stderr());
    assert.ok(took < 5000, `shutdown took ${took} ms`);
    await waitFor(() => endErr, "the stream to end", 5000);
    assert.equal(endErr.code, grpc.status.UNAVAILABLE, String(endErr));
  } finally {
    raw.close();
    await srv.kill();
  }
});
