// shutdown.test.mjs -- a worker that shuts down gracefully loses nothing and
// repeats nothing.  SDK workers stop by closing their GetWorkItems stream
// first and then finishing the work they hold, sending its completions after
// the stream is gone: those completions are applied (the item goes back to
// its queue with its token still valid until another stream leases it), and
// nothing runs twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { grpc, dt, startDtsd, client, worker, completed, waitFor } from "./harness.mjs";

const require = createRequire(import.meta.url);
const pb = require("@microsoft/durabletask-js/dist/proto/orchestrator_service_pb.js");
const { EntityInstanceId } = dt;

const P = (m) => `/TaskHubSidecarService/${m}`;

test("the JS worker's stop(): activities finished after the stream closed complete their orchestration, each once", async () => {
  const srv = await startDtsd();
  const c = client(srv);
  const runs = { held: 0, again: 0 };
  let release;
  const gate = new Promise((r) => { release = r; });
  const held = async (_ctx, i) => { runs.held++; await gate; return i * 10; };
  Object.defineProperty(held, "name", { value: "gated" });
  const again = async (_ctx, i) => { runs.again++; return i * 10; };
  Object.defineProperty(again, "name", { value: "gated" });
  const fan = async function* shutdownFan(ctx) {
    const r = yield dt.whenAll([0, 1, 2].map((i) => ctx.callActivity("gated", i)));
    return r.reduce((a, b) => a + b, 0);
  };
  const w1 = worker(srv, undefined, (w) => { w.addOrchestrator(fan); w.addActivity(held); }, { shutdownTimeoutMs: 10000 });
  await w1.start();
  let w2;
  try {
    const id = await c.scheduleNewOrchestration(fan);
    await waitFor(() => runs.held === 3, "the three activities to start");
    const stopping = w1.stop(); // closes its stream first, then waits for the activities
    setImmediate(release);      // ...which finish now, after the stream is gone
    await stopping;
    w2 = worker(srv, undefined, (w) => { w.addOrchestrator(fan); w.addActivity(again); });
    await w2.start();
    const st = await completed(c, id);
    assert.equal(st.serializedOutput, "30");
    assert.deepEqual(runs, { held: 3, again: 0 }, "no activity ran twice");
  } finally {
    await Promise.allSettled([w2?.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});

// Opens a raw GetWorkItems stream and collects its work items.
function openStream(raw) {
  const req = new pb.GetWorkItemsRequest();
  const items = [];
  const call = raw.makeServerStreamRequest(P("GetWorkItems"), (m) => Buffer.from(m.serializeBinary()),
    (b) => pb.WorkItem.deserializeBinary(new Uint8Array(b)), req, new grpc.Metadata(), {});
  call.on("data", (w) => items.push(w));
  call.on("error", () => {}); // cancelled by the test
  const ended = new Promise((r) => call.on("status", r));
  return { call, items, ended };
}

function unary(raw, method, msg) {
  return new Promise((resolve) => {
    raw.makeUnaryRequest(P(method), (m) => Buffer.from(m.serializeBinary()), (b) => b, msg, new grpc.Metadata(), {},
      (err) => resolve(err ? err.code : 0));
  });
}

test("orchestration and entity completions sent after the stream closed are applied, not run again", async () => {
  const srv = await startDtsd();
  const c = client(srv);
  const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
  const sdkRuns = { orch: 0, entity: 0 };
  const late = async function* lateOrch() { sdkRuns.orch++; return "from the sdk"; };
  class LateCounter extends dt.TaskEntity { add(n) { sdkRuns.entity++; this.state = (this.state ?? 0) + n; } initializeState() { return 0; } }
  let w;
  try {
    const id = await c.scheduleNewOrchestration(late);
    const ent = new EntityInstanceId("latecounter", "k");
    await c.signalEntity(ent, "add", 5);
    const s = openStream(raw);
    await waitFor(() => s.items.length >= 2, "an orchestration and an entity work item");
    s.call.cancel();
    await s.ended;
    const wo = s.items.find((x) => x.hasOrchestratorrequest());
    const we = s.items.find((x) => x.hasEntityrequestv2());
    assert.ok(wo && we, "both kinds arrived");

    // the orchestration's turn: complete it
    const done = new pb.CompleteOrchestrationAction();
    done.setOrchestrationstatus(pb.OrchestrationStatus.ORCHESTRATION_STATUS_COMPLETED);
    const out = new (require("google-protobuf/google/protobuf/wrappers_pb.js").StringValue)();
    out.setValue('"after close"');
    done.setResult(out);
    const action = new pb.OrchestratorAction();
    action.setId(1);
    action.setCompleteorchestration(done);
    const resp = new pb.OrchestratorResponse();
    resp.setInstanceid(id);
    resp.setCompletiontoken(wo.getCompletiontoken());
    resp.setActionsList([action]);
    assert.equal(await unary(raw, "CompleteOrchestratorTask", resp), 0);

    // the entity's batch: one operation, state 42
    const er = new pb.EntityBatchResult();
    const ok = new pb.OperationResultSuccess();
    const res = new pb.OperationResult();
    res.setSuccess(ok);
    er.setResultsList([res]);
    const state = new (require("google-protobuf/google/protobuf/wrappers_pb.js").StringValue)();
    state.setValue("42");
    er.setEntitystate(state);
    er.setCompletiontoken(we.getCompletiontoken());
    assert.equal(await unary(raw, "CompleteEntityTask", er), 0);

    // a real worker connects: it has nothing of these left to run
    w = worker(srv, undefined, (x) => { x.addOrchestrator(late); x.addNamedEntity("latecounter", () => new LateCounter()); });
    await w.start();
    const st = await completed(c, id);
    assert.equal(st.serializedOutput, '"after close"');
    const e = await c.getEntity(ent);
    assert.equal(e.state, 42);
    await c.signalEntity(ent, "add", 1); // the queue moved on past the applied batch
    await waitFor(async () => (await c.getEntity(ent))?.state === 43, "the next signal");
    assert.deepEqual(sdkRuns, { orch: 0, entity: 1 }, "nothing ran again");
  } finally {
    raw.close();
    await Promise.allSettled([w?.stop(), c.stop()]);
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});
