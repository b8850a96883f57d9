// sdk-entities.mjs -- entity throughput and call latency with the JavaScript
// SDK as the worker (one process), against a fresh dtsd.
//
//   node bench/sdk-entities.mjs [--signals N] [--concurrency C]
//
// Prints: signals/s accepted and applied for one hot entity and spread over
// 10,000 entities, the entity operations dtsd put in each work item (its
// batching), and the p50/p99 of an orchestration that makes one entity call
// beside one that makes none (the baseline, same run).
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const h = await import(path.join(here, "../tests/e2e/harness.mjs"));
const { dt, startDtsd, client, worker, waitFor, OrchestrationStatus } = h;
const { TaskEntity, EntityInstanceId } = dt;

const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
const N = arg("--signals", 20000), CONC = arg("--concurrency", 256), LAT = arg("--latency", 200);

let batches = 0, ops = 0;
class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; ops++; }
  get() { return this.state; }
}
const callOnce = async function* benchCall(ctx) { return yield ctx.entities.callEntity(new EntityInstanceId("bctr", "lat"), "get"); };
const nothing = async function* benchNothing(ctx) { return 0; };
function pct(xs, p) { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; }

const srv = await startDtsd({ args: ["--log-level", "warn"] });
const w = worker(srv, undefined, (x) => {
  x.addNamedEntity("bctr", () => { batches++; return new Counter(); }); // the factory runs once per batch
  x.addOrchestrator(callOnce);
  x.addOrchestrator(nothing);
});
await w.start();
const c = client(srv);

async function storm(keyOf) {
  let next = 0;
  batches = 0; ops = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < N) { const i = next++; await c.signalEntity(new EntityInstanceId("bctr", keyOf(i)), "add", 1); }
  }));
  const accepted = N / ((Date.now() - t0) / 1000);
  await waitFor(() => ops >= N, "all signals applied", 300000);
  const applied = N / ((Date.now() - t0) / 1000);
  return { accepted, applied, per_batch: ops / batches };
}

const hot = await storm(() => "hot");
const spread = await storm((i) => `k${i % 10000}`);
const lat = [], base = [];
for (let i = 0; i < LAT; i++) {
  for (const [orch, xs] of [[callOnce, lat], [nothing, base]]) {
    const t0 = process.hrtime.bigint();
    const id = await c.scheduleNewOrchestration(orch);
    const st = await c.waitForOrchestrationCompletion(id, true, 60);
    if (st.runtimeStatus !== OrchestrationStatus.COMPLETED) throw new Error(`${id} failed`);
    xs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
const r = {
  bench: "sdk-entities", worker: "@microsoft/durabletask-js@0.4.0 (1 process)", signals: N, concurrency: CONC,
  hot_accepted_per_s: hot.accepted, hot_applied_per_s: hot.applied, hot_ops_per_batch: hot.per_batch,
  spread_accepted_per_s: spread.accepted, spread_applied_per_s: spread.applied, spread_ops_per_batch: spread.per_batch,
  call_orch_p50_ms: pct(lat, 50), call_orch_p99_ms: pct(lat, 99), base_orch_p50_ms: pct(base, 50), base_orch_p99_ms: pct(base, 99),
};
console.log(`one hot entity        ${hot.applied.toFixed(0)} signals/s applied (${hot.accepted.toFixed(0)}/s accepted), ${hot.per_batch.toFixed(1)} operations per work item`);
console.log(`10,000 entities       ${spread.applied.toFixed(0)} signals/s applied (${spread.accepted.toFixed(0)}/s accepted), ${spread.per_batch.toFixed(1)} operations per work item`);
console.log(`orchestration + 1 entity call   p50 ${r.call_orch_p50_ms.toFixed(2)} ms  p99 ${r.call_orch_p99_ms.toFixed(2)} ms`);
console.log(`orchestration, no call (base)   p50 ${r.base_orch_p50_ms.toFixed(2)} ms  p99 ${r.base_orch_p99_ms.toFixed(2)} ms  -> the call adds ~${(r.call_orch_p50_ms - r.base_orch_p50_ms).toFixed(2)} ms at p50`);
console.log(JSON.stringify(r));
await Promise.allSettled([w.stop(), c.stop()]);
await srv.stop();
