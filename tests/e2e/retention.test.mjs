// retention.test.mjs -- auto-purge: per-status retention counted from when an
// instance finished, runtime changes through dtsd.admin.Admin, persistence.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDtsd, client, worker, completed, waitFor, grpc, OrchestrationStatus as S } from "./harness.mjs";
import { bytes, int, msg, rawUnary } from "./pb.mjs";

const ok = async function* retOk(ctx) { return "fine"; };
const bad = async function* retBad(ctx) { throw new Error("nope"); };
const wait = async function* retWait(ctx) { return yield ctx.waitForExternalEvent("go"); };
const dur = (field, secs) => bytes(field, secs ? int(1, secs) : Buffer.alloc(0)); // Duration{seconds}

test("finished instances are purged after their status's retention, others are kept", async () => {
  let srv = await startDtsd({ args: ["--retention", "completed=1s", "--purge-interval", "100"] });
  const w = worker(srv, undefined, (x) => { x.addOrchestrator(ok); x.addOrchestrator(bad); x.addOrchestrator(wait); });
  await w.start();
  const c = client(srv);
  const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
  try {
    const a = await c.scheduleNewOrchestration(ok);
    const f = await c.scheduleNewOrchestration(bad);
    const r = await c.scheduleNewOrchestration(wait);
    const done = await completed(c, a);
    assert.equal(done.runtimeStatus, S.COMPLETED);
    assert.equal((await completed(c, f)).runtimeStatus, S.FAILED);
    await c.waitForOrchestrationStart(r, false, 30);
    await waitFor(async () => (await c.getOrchestrationState(a)) === undefined, "the completed instance to be purged", 15000);
    const gone = Date.now();
    assert.ok(gone - done.lastUpdatedAt.getTime() >= 1000, `purged ${gone - done.lastUpdatedAt.getTime()} ms after it finished`);
    assert.equal((await c.getOrchestrationState(f)).runtimeStatus, S.FAILED, "no policy for FAILED: kept");
    assert.equal((await c.getOrchestrationState(r)).runtimeStatus, S.RUNNING, "running instances are never purged");

    // change it at runtime: failed instances go as soon as possible
    const set = await rawUnary(grpc, raw, "/dtsd.admin.Admin/SetRetention", msg(dur(2, 1), dur(3, 0)));
    assert.equal(set.code, 0, JSON.stringify(set));
    await waitFor(async () => (await c.getOrchestrationState(f)) === undefined, "the failed instance to be purged", 15000);
    assert.equal((await c.getOrchestrationState(r)).runtimeStatus, S.RUNNING);

    // persisted: a restart without --retention keeps the policy
    raw.close();
    await Promise.allSettled([w.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0);
    srv = await startDtsd({ dataDir: srv.dataDir });
    const raw2 = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
    const got = await rawUnary(grpc, raw2, "/dtsd.admin.Admin/GetRetention", Buffer.alloc(0));
    raw2.close();
    assert.equal(got.code, 0);
    assert.ok(got.res.equals(msg(dur(2, 1), dur(3, 0))), `persisted policy: ${got.res.toString("hex")}`);
    const raw3 = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
    const bad2 = await rawUnary(grpc, raw3, "/dtsd.admin.Admin/SetRetention", msg(bytes(1, int(1, -5))));
    raw3.close();
    assert.equal(bad2.code, grpc.status.INVALID_ARGUMENT);
  } finally {
    raw.close();
    await Promise.allSettled([w.stop(), c.stop()]);
    await srv.stop();
  }
});
