// disk.test.mjs -- a full disk, on a small tmpfs the test mounts (needs
// root, as CI runs): writes are refused with RESOURCE_EXHAUSTED naming the
// data directory, reads keep being served, writing resumes by itself once
// space is free; dtsd never exits, and restarts on a full disk wait for
// space instead of crash-looping.  The JS SDK worker runs throughout.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { grpc, tmpDir, spawnDtsd, whenServing, startDtsd, client, worker, completed, waitFor, OrchestrationStatus as S } from "./harness.mjs";
import { str, msg, rawUnary } from "./pb.mjs";

const root = process.getuid && process.getuid() === 0;
const P = (m) => `/TaskHubSidecarService/${m}`;
const MiB = 1024 * 1024;

const greet = async (_ctx, name) => `hello ${name}`;
const hello = async function* diskHello(ctx, name) { return yield ctx.callActivity(greet, name); };

let mnt;
before(() => {
  if (!root) return;
  mnt = tmpDir("disk");
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
});
after(() => {
  if (mnt) execFileSync("umount", ["-l", mnt]);
});

const free = () => { const s = fs.statfsSync(mnt); return s.bavail * s.bsize; };

// Fills the tmpfs until `leave` bytes are free (0: until the write fails).
function fill(name, leave) {
  const fd = fs.openSync(path.join(mnt, name), "w");
  const chunk = Buffer.alloc(MiB, 7);
  try {
    for (;;) {
      const room = free() - leave;
      if (leave > 0 && room <= 0) break;
      const n = leave > 0 ? Math.min(chunk.length, room) : chunk.length;
      fs.writeSync(fd, chunk, 0, n);
    }
  } catch (e) {
    if (e.code !== "ENOSPC") throw e;
  } finally {
    fs.closeSync(fd);
  }
}

const rawClient = (srv) => new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
const startRaw = (raw, id) => rawUnary(grpc, raw, P("StartInstance"), msg(str(1, id), str(2, "diskHello")));
const getRaw = (raw, id) => rawUnary(grpc, raw, P("GetInstance"), msg(str(1, id)));

test("short of space: writes refused naming the data directory, reads served, writes resume by themselves", { skip: !root && "needs root to mount a tmpfs" }, async () => {
  const dataDir = path.join(mnt, "a");
  const srv = await startDtsd({ dataDir, args: ["--min-free-space", String(24 * MiB)] });
  const c = client(srv);
  const w = worker(srv, undefined, (x) => { x.addOrchestrator(hello); x.addActivity(greet); });
  await w.start();
  const raw = rawClient(srv);
  try {
    const before = await c.scheduleNewOrchestration(hello, "before");
    assert.equal((await completed(c, before)).serializedOutput, '"hello before"');
    fill("filler-a", 16 * MiB);
    const refused = await waitFor(async () => {
      const r = await startRaw(raw, `x-${Date.now()}`);
      return r.code === grpc.status.RESOURCE_EXHAUSTED ? r : null;
    }, "writes to be refused");
    assert.match(refused.details, new RegExp(dataDir.replace(/[/.]/g, "\\$&")));
    assert.match(refused.details, /--min-free-space/);
    // reads go on
    const got = await getRaw(raw, before);
    assert.equal(got.code, 0, JSON.stringify(got));
    assert.equal((await c.getOrchestrationState(before, true)).runtimeStatus, S.COMPLETED);
    const list = [];
    for await (const s of c.getAllInstances({ statuses: [S.COMPLETED] })) list.push(s.instanceId);
    assert.ok(list.includes(before), `queries are served: ${list}`);
    // space again: writing resumes without anybody's help
    fs.unlinkSync(path.join(mnt, "filler-a"));
    const after = await waitFor(async () => {
      try { return await c.scheduleNewOrchestration(hello, "after"); } catch { return null; }
    }, "writes to resume");
    assert.equal((await completed(c, after)).serializedOutput, '"hello after"');
  } finally {
    raw.close();
    await Promise.allSettled([w.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});

test("a write that hits a full disk: answered, reads served, the store reopens; a restart on a full disk waits for space", { skip: !root && "needs root to mount a tmpfs" }, async () => {
  const dataDir = path.join(mnt, "b");
  // no margin: LevelDB's own writes fail with ENOSPC
  let srv = await startDtsd({ dataDir, args: ["--min-free-space", "0"] });
  let c = client(srv);
  let raw = rawClient(srv);
  const ids = [];
  try {
    for (let i = 0; i < 20; i++) ids.push(await c.scheduleNewOrchestration(hello, `n${i}`));
    fill("filler-b", 0);
    const failed = await waitFor(async () => {
      const r = await rawUnary(grpc, raw, P("StartInstance"), msg(str(1, `big-${Date.now()}`), str(2, "diskHello"), str(4, "x".repeat(200000))));
      return r.code !== 0 ? r : null;
    }, "a write to fail");
    assert.equal(failed.code, grpc.status.RESOURCE_EXHAUSTED, JSON.stringify(failed));
    assert.match(failed.details, /is full/);
    for (const id of ids) assert.equal((await getRaw(raw, id)).code, 0, "reads are served");
    assert.equal(srv.child.exitCode, null, "dtsd is still running");
    // space again: the store reopens by itself and takes writes
    fs.unlinkSync(path.join(mnt, "filler-b"));
    const again = await waitFor(async () => {
      const r = await startRaw(raw, `again-${Date.now()}`);
      return r.code === 0 ? r : null;
    }, "the store to reopen and take writes");
    assert.equal(again.code, 0);
    // full once more; SIGKILL, and start again on the full disk: it waits
    // for space (or serves reads), it does not exit
    fill("filler-b", 0);
    await waitFor(async () => (await startRaw(raw, `y-${Date.now()}`)).code !== 0, "a write to fail again");
    await srv.kill();
    raw.close();
    await c.stop().catch(() => {});
    const sp = spawnDtsd({ dataDir, args: ["--min-free-space", "0"] });
    // it either waits for space (LevelDB could not recover its log) or
    // serves reads with writes refused -- it never exits
    const outcome = await Promise.race([
      sp.ready.then((port) => (port === null ? "exited" : "serving")),
      waitFor(() => /waiting for free space/.test(sp.stderr()) && "waiting", "the restart to notice the full disk", 20000),
    ]);
    assert.notEqual(outcome, "exited", `dtsd exited on a full disk: ${sp.stderr()}`);
    fs.unlinkSync(path.join(mnt, "filler-b"));
    srv = await whenServing(sp, 30000);
    c = client(srv);
    const w = worker(srv, undefined, (x) => { x.addOrchestrator(hello); x.addActivity(greet); });
    await w.start();
    for (let i = 0; i < ids.length; i++) assert.equal((await completed(c, ids[i])).serializedOutput, `"hello n${i}"`);
    await w.stop();
  } finally {
    await c.stop().catch(() => {});
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});
