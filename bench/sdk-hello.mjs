// sdk-hello.mjs -- what one JavaScript SDK worker gets from dtsd: the
// end-to-end latency of a 3-activity orchestration at idle, and throughput
// with one worker process, plus dtsd's share of the CPU.
//
// Usage (after a build and `npm ci` in tests/e2e):
//   node bench/sdk-hello.mjs [--latency N] [--throughput N] [--concurrency C]
// Prints a table and one JSON line.  The baseline in the same run is a bare
// gRPC unary round trip (Hello) on the same channel: the floor any backend
// pays per call from this client.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const h = await import(path.join(here, "../tests/e2e/harness.mjs"));
const { startDtsd, client, worker, grpc, OrchestrationStatus } = h;

const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
const LAT_N = arg("--latency", 200), TP_N = arg("--throughput", 2000), CONC = arg("--concurrency", 200);

const hello = async (_ctx, name) => `Hello, ${name}!`;
const hello3 = async function* (ctx) {
  const out = [];
  for (const c of ["Tokyo", "Seattle", "London"]) out.push(yield ctx.callActivity(hello, c));
  return out;
};
const expected = JSON.stringify(["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"]);

function pct(xs, p) { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; }
function cpuSecs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
}
function rssMiB(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmHWM:\s+(\d+)/);
  return m ? Number(m[1]) / 1024 : NaN;
}

const srv = await startDtsd({ args: ["--log-level", "warn"] });
const w = worker(srv, undefined, (x) => { x.addOrchestrator(hello3); x.addActivity(hello); });
await w.start();
const c = client(srv);

// baseline: bare unary round trips
const raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
const rt = [];
for (let i = 0; i < 500; i++) {
  const t0 = process.hrtime.bigint();
  await new Promise((res, rej) => raw.makeUnaryRequest("/TaskHubSidecarService/Hello", (b) => b, (b) => b, Buffer.alloc(0), (e) => (e ? rej(e) : res())));
  rt.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

// latency at idle: one orchestration at a time
const lat = [];
for (let i = 0; i < LAT_N; i++) {
  const t0 = process.hrtime.bigint();
  const id = await c.scheduleNewOrchestration(hello3);
  const st = await c.waitForOrchestrationCompletion(id, true, 60);
  lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (st.runtimeStatus !== OrchestrationStatus.COMPLETED || st.serializedOutput !== expected) throw new Error(`wrong result for ${id}`);
}

// throughput: CONC orchestrations in flight, TP_N in all
const cpu0 = cpuSecs(srv.child.pid);
const t0 = Date.now();
let next = 0, done = 0;
async function lane() {
  while (next < TP_N) {
    next++;
    const id = await c.scheduleNewOrchestration(hello3);
    const st = await c.waitForOrchestrationCompletion(id, true, 120);
    if (st.runtimeStatus !== OrchestrationStatus.COMPLETED || st.serializedOutput !== expected) throw new Error(`wrong result for ${id}`);
    done++;
  }
}
await Promise.all(Array.from({ length: CONC }, lane));
const secs = (Date.now() - t0) / 1000;
const cpu = cpuSecs(srv.child.pid) - cpu0;
const rate = done / secs;

const r = {
  bench: "sdk-hello", worker: "@microsoft/durabletask-js@0.4.0 (1 process)",
  grpc_rtt_p50_ms: pct(rt, 50), latency_n: LAT_N, latency_p50_ms: pct(lat, 50), latency_p99_ms: pct(lat, 99),
  throughput_n: done, concurrency: CONC, orchestrations_per_s: rate, actions_per_s: rate * 7,
  dtsd_cpu_s_per_1000: (cpu / done) * 1000, dtsd_cpu_share: cpu / secs, dtsd_peak_rss_mib: rssMiB(srv.child.pid),
};
console.log(`bare gRPC unary round trip (baseline)   p50 ${r.grpc_rtt_p50_ms.toFixed(3)} ms`);
console.log(`hello-3 latency at idle (n=${LAT_N})        p50 ${r.latency_p50_ms.toFixed(2)} ms   p99 ${r.latency_p99_ms.toFixed(2)} ms   (${(r.latency_p50_ms / r.grpc_rtt_p50_ms).toFixed(1)}x the bare round trip; the flow needs ~9 calls)`);
console.log(`hello-3 throughput, 1 JS worker         ${rate.toFixed(0)} orchestrations/s = ${r.actions_per_s.toFixed(0)} actions/s (start 1 + 3 activities x 2)`);
console.log(`dtsd CPU                                ${r.dtsd_cpu_s_per_1000.toFixed(3)} s per 1000 orchestrations; ${(100 * r.dtsd_cpu_share).toFixed(0)}% of one core while the JS worker ran flat out`);
console.log(`dtsd peak RSS                           ${r.dtsd_peak_rss_mib.toFixed(1)} MiB`);
console.log(JSON.stringify(r));
await Promise.allSettled([w.stop(), c.stop()]);
raw.close();
await srv.stop();
