// sdk-hello.mjs -- what JavaScript SDK workers get from dtsd: the end-to-end
// latency of a 3-activity orchestration at idle, throughput of hello-3 with
// one worker (in this process), and of hello-5 with one and with two worker
// processes, plus dtsd's share of the CPU.
//
// Usage (after a build and `npm ci` in tests/e2e):
//   node bench/sdk-hello.mjs [--latency N] [--throughput N] [--concurrency C]
// Prints a table and one JSON line.  The baseline in the same run is a bare
// gRPC unary round trip (Hello) on the same channel: the floor any backend
// pays per call from this client.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const h = await import(path.join(here, "../tests/e2e/harness.mjs"));
const { startDtsd, client, worker, grpc, waitFor, OrchestrationStatus } = h;

const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
const LAT_N = arg("--latency", 200), TP_N = arg("--throughput", 2000), CONC = arg("--concurrency", 200);

const { hello, helloN, CITIES } = await import(path.join(here, "sdk-orchestrations.mjs"));
const hello3 = helloN; // called with n = 3
const expected = JSON.stringify(CITIES.slice(0, 3).map((c) => `Hello, ${c}!`));
const expected5 = JSON.stringify(CITIES.map((c) => `Hello, ${c}!`));

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
const w = worker(srv, undefined, (x) => { x.addOrchestrator(helloN); x.addActivity(hello); });
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
  const id = await c.scheduleNewOrchestration(hello3, 3);
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
    const id = await c.scheduleNewOrchestration(hello3, 3);
    const st = await c.waitForOrchestrationCompletion(id, true, 120);
    if (st.runtimeStatus !== OrchestrationStatus.COMPLETED || st.serializedOutput !== expected) throw new Error(`wrong result for ${id}`);
    done++;
  }
}
await Promise.all(Array.from({ length: CONC }, lane));
const secs = (Date.now() - t0) / 1000;
const cpu = cpuSecs(srv.child.pid) - cpu0;
const rate = done / secs;

// hello-5 with worker processes (1, then 2): the in-process worker stops first
await w.stop();
async function hello5With(nproc) {
  const kids = [];
  for (let i = 0; i < nproc; i++) {
    const k = spawn(process.execPath, [path.join(here, "sdk-worker-proc.mjs"), srv.endpoint], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    k.stdout.on("data", (d) => { out += d; });
    kids.push(k);
    await waitFor(() => out.includes("ready"), "a worker process");
  }
  let next = 0, done5 = 0;
  const t5 = Date.now();
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < TP_N) {
      next++;
      const id = await c.scheduleNewOrchestration(helloN, 5);
      const st = await c.waitForOrchestrationCompletion(id, true, 120);
      if (st.runtimeStatus !== OrchestrationStatus.COMPLETED || st.serializedOutput !== expected5) throw new Error(`wrong result for ${id}`);
      done5++;
    }
  }));
  const rate5 = done5 / ((Date.now() - t5) / 1000);
  for (const k of kids) k.kill("SIGTERM");
  return rate5;
}
const h5one = await hello5With(1);
const h5two = await hello5With(2);

const r = {
  bench: "sdk-hello",
  hello5_1proc_orch_per_s: h5one, hello5_2proc_orch_per_s: h5two, worker: "@microsoft/durabletask-js@0.4.0 (1 process)",
  grpc_rtt_p50_ms: pct(rt, 50), latency_n: LAT_N, latency_p50_ms: pct(lat, 50), latency_p99_ms: pct(lat, 99),
  throughput_n: done, concurrency: CONC, orchestrations_per_s: rate, actions_per_s: rate * 7,
  dtsd_cpu_s_per_1000: (cpu / done) * 1000, dtsd_cpu_share: cpu / secs, dtsd_peak_rss_mib: rssMiB(srv.child.pid),
};
console.log(`bare gRPC unary round trip (baseline)   p50 ${r.grpc_rtt_p50_ms.toFixed(3)} ms`);
console.log(`hello-3 latency at idle (n=${LAT_N})        p50 ${r.latency_p50_ms.toFixed(2)} ms   p99 ${r.latency_p99_ms.toFixed(2)} ms   (${(r.latency_p50_ms / r.grpc_rtt_p50_ms).toFixed(1)}x the bare round trip; the flow needs ~9 calls)`);
console.log(`hello-3 throughput, 1 JS worker         ${rate.toFixed(0)} orchestrations/s = ${r.actions_per_s.toFixed(0)} actions/s (start 1 + 3 activities x 2)`);
console.log(`dtsd CPU                                ${r.dtsd_cpu_s_per_1000.toFixed(3)} s per 1000 orchestrations; ${(100 * r.dtsd_cpu_share).toFixed(0)}% of one core while the JS worker ran flat out`);
console.log(`hello-5, 1 worker process          ${h5one.toFixed(0)} orchestrations/s = ${(h5one * 11).toFixed(0)} actions/s`);
console.log(`hello-5, 2 worker processes        ${h5two.toFixed(0)} orchestrations/s = ${(h5two * 11).toFixed(0)} actions/s`);
console.log(`dtsd peak RSS                           ${r.dtsd_peak_rss_mib.toFixed(1)} MiB`);
console.log(JSON.stringify(r));
await Promise.allSettled([c.stop()]);
raw.close();
await srv.stop();
