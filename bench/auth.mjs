// auth.mjs -- what authentication costs a call (docs/security.md): unary
// QueryInstances round trips (C in flight, plaintext on loopback) against a
// dtsd without auth (the baseline, same run), one with a static token, and
// one with a JWT (RS256, verified once and then found in the cache); and
// hello-3 orchestrations through the JS SDK with and without a token.
//
// Usage (after a build and `npm ci` in tests/e2e):
//   node bench/auth.mjs [--calls N] [--concurrency C] [--orchestrations N]
// Prints a table and one JSON line.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const h = await import(path.join(here, "../tests/e2e/harness.mjs"));
const { startDtsd, grpc, tmpDir, DTSD_BIN, TaskHubGrpcClient, TaskHubGrpcWorker, NoOpLogger } = h;
const { hello, helloN } = await import(path.join(here, "sdk-orchestrations.mjs"));

const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
const N = arg("--calls", 20000), C = arg("--concurrency", 64), ORCH = arg("--orchestrations", 1000);

const dir = tmpDir("bench-auth");
const f = (n) => path.join(dir, n);
const token = execFileSync(DTSD_BIN, ["token", "create", "--tokens-file", f("tokens.json"), "--name", "bench", "--grant", "*=admin"],
  { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
fs.writeFileSync(f("jwks.json"), JSON.stringify({ keys: [{ ...rsa.publicKey.export({ format: "jwk" }), kid: "k", use: "sig" }] }));
fs.writeFileSync(f("issuers.json"), JSON.stringify({ issuers: [{ issuer: "https://bench", jwks_file: f("jwks.json"), roles_claim: "roles" }] }));
const b64u = (x) => Buffer.from(x).toString("base64url");
const data = `${b64u(JSON.stringify({ alg: "RS256", kid: "k" }))}.${b64u(JSON.stringify({ iss: "https://bench", aud: "https://durabletask.io", sub: "bench", exp: Math.floor(Date.now() / 1000) + 3600, roles: ["admin"] }))}`;
const jwt = `${data}.${crypto.sign("sha256", Buffer.from(data), rsa.privateKey).toString("base64url")}`;

async function unary(srv, tok) {
  const c = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (tok) md.set("authorization", `Bearer ${tok}`);
  const one = () => new Promise((resolve, reject) => c.makeUnaryRequest("/TaskHubSidecarService/QueryInstances", (b) => b, (b) => b,
    Buffer.alloc(0), md, (err) => (err ? reject(err) : resolve())));
  for (let i = 0; i < 200; i++) await one(); // warm-up
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: C }, async () => { while (next++ < N) await one(); }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  c.close();
  return N / secs;
}

async function orchestrations(srv, tok) {
  const metadataGenerator = async () => { const md = new grpc.Metadata(); if (tok) md.set("authorization", `Bearer ${tok}`); return md; };
  const opts = { hostAddress: `127.0.0.1:${srv.port}`, metadataGenerator, logger: new NoOpLogger() };
  const w = new TaskHubGrpcWorker({ ...opts, shutdownTimeoutMs: 2000 });
  w.addOrchestrator(helloN);
  w.addActivity(hello);
  await w.start();
  const c = new TaskHubGrpcClient(opts);
  const t0 = process.hrtime.bigint();
  const ids = await Promise.all(Array.from({ length: ORCH }, () => c.scheduleNewOrchestration(helloN, 3)));
  await Promise.all(ids.map((id) => c.waitForOrchestrationCompletion(id, false, 120)));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await Promise.allSettled([w.stop(), c.stop()]);
  return ORCH / secs;
}

const rows = [];
for (const [name, args, tok] of [
  ["no auth (baseline)", [], null],
  ["static token", ["--auth", "on", "--tokens-file", f("tokens.json")], token],
  ["JWT (RS256, cached)", ["--auth", "on", "--jwt-issuers", f("issuers.json")], jwt],
]) {
  const srv = await startDtsd({ args: ["--log-level", "warn", ...args] });
  const calls = await unary(srv, tok);
  const orch = name.startsWith("JWT") ? NaN : await orchestrations(srv, tok);
  await srv.stop();
  rows.push({ name, calls, orch });
}
const base = rows[0];
console.log(`unary QueryInstances, ${N} calls, ${C} in flight; hello-3 x ${ORCH} through the JS SDK`);
for (const r of rows)
  console.log(`${r.name.padEnd(22)} ${r.calls.toFixed(0).padStart(7)} calls/s (${(r.calls / base.calls).toFixed(2)}x)` +
    (Number.isNaN(r.orch) ? "" : `   ${r.orch.toFixed(0).padStart(6)} hello-3/s (${(r.orch / base.orch).toFixed(2)}x)`));
console.log(JSON.stringify({ bench: "auth", calls: N, concurrency: C, rows }));
