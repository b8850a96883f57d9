// harness.mjs -- starts a real dtsd for a test (free port, fresh data
// directory) and builds SDK clients and workers against it.
//
// DTSD_BIN names the binary (ctest sets it); otherwise the normal build's.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
export const dt = require("@microsoft/durabletask-js");
export const grpc = require("@grpc/grpc-js");
export const { TaskHubGrpcClient, TaskHubGrpcWorker, OrchestrationStatus, NoOpLogger } = dt;

export const DTSD_BIN = process.env.DTSD_BIN || path.resolve(here, "../../build/server/dtsd");

// Polls `fn` until it returns a truthy value or the deadline passes.
export async function waitFor(fn, what, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function tmpDir(tag = "e2e") {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dtsd-${tag}-`));
}

// Spawns dtsd without waiting for it: {child, dataDir, ready (a promise of
// {grpc, http, health} ports, or null when dtsd exits first), stderr(), exited()}.
export function spawnDtsd(opts = {}) {
  const dataDir = opts.dataDir || path.join(tmpDir(), "data");
  const args = ["--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0",
    "--data-dir", dataDir, "--ports-fd", "3", "--log-level",
    process.env.DTSD_LOG_LEVEL || "warn", ...(opts.hubs ? ["--task-hubs", opts.hubs] : []), ...(opts.args || [])];
  // fd 3 is a pipe: dtsd writes "GRPC HTTP HEALTH" ports there once it serves, then closes it
  const child = spawn(DTSD_BIN, args, { stdio: ["ignore", "inherit", "pipe", "pipe"], env: { ...process.env, ...(opts.env || {}) } });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; if (process.env.DTSD_VERBOSE) process.stderr.write(d); });
  let exited = null;
  const exitP = new Promise((resolve) => child.on("exit", (code, sig) => { exited = { code, sig }; resolve(exited); }));
  const closedP = new Promise((resolve) => child.on("close", resolve)); // exited, stderr read to the end
  let readyText = "";
  child.stdio[3].on("data", (d) => { readyText += d; });
  const ready = new Promise((resolve) => child.stdio[3].on("close", async () => {
    const m = /^(\d+) (\d+) (\d+)\n$/.exec(readyText);
    if (m) resolve({ grpc: Number(m[1]), http: Number(m[2]), health: Number(m[3]) });
    else { await closedP; resolve(null); } // it closed the pipe without a port: it exited
  }));
  return { child, dataDir, ready, exitP, stderr: () => stderr, exited: () => exited };
}

// Wraps a spawned dtsd that serves on `port`.
function served(sp, ports) {
  const { child, dataDir, exitP } = sp;
  const port = ports.grpc;
  return {
    port, dataDir, endpoint: `127.0.0.1:${port}`, child,
    httpPort: ports.http, healthPort: ports.health,
    http: `http://127.0.0.1:${ports.http}`, health: `http://127.0.0.1:${ports.health}`,
    stderr: sp.stderr,
    // Graceful stop; resolves with the exit status.  A stop that does not end
    // in exit code 0 prints dtsd's last words so the failure explains itself.
    async stop() {
      if (!sp.exited()) child.kill("SIGTERM");
      const st = await exitP;
      if (st.code !== 0) process.stderr.write(`dtsd did not exit cleanly (${JSON.stringify(st)}); its stderr ends:\n${sp.stderr().slice(-4000)}\n`);
      return st;
    },
    async kill() { if (!sp.exited()) child.kill("SIGKILL"); return exitP; },
  };
}

// Waits for a spawned dtsd to serve (up to timeoutMs).
export async function whenServing(sp, timeoutMs = 20000) {
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve("late"), timeoutMs); });
  const port = await Promise.race([sp.ready, late]);
  clearTimeout(timer);
  if (port === "late") {
    sp.child.kill("SIGKILL");
    throw new Error(`timed out waiting for dtsd to start: ${sp.stderr()}`);
  }
  if (port === null) throw new Error(`dtsd exited at start (${JSON.stringify(sp.exited())}): ${sp.stderr()}`);
  return served(sp, port);
}

// Starts dtsd; resolves once it serves.  opts: {dataDir, hubs, args, env}
export async function startDtsd(opts = {}) {
  return whenServing(spawnDtsd(opts));
}

export function metadataFor(hub) {
  if (!hub) return undefined;
  return async () => { const md = new grpc.Metadata(); md.set("taskhub", hub); return md; };
}

export function client(srv, hub) {
  return new TaskHubGrpcClient({ hostAddress: srv.endpoint, metadataGenerator: metadataFor(hub), logger: new NoOpLogger() });
}

export function worker(srv, hub, register, extra = {}) {
  const w = new TaskHubGrpcWorker({ hostAddress: srv.endpoint, metadataGenerator: metadataFor(hub), logger: new NoOpLogger(), shutdownTimeoutMs: 2000, ...extra });
  register(w);
  return w;
}

export async function completed(c, id, timeoutSec = 60) {
  const st = await c.waitForOrchestrationCompletion(id, true, timeoutSec);
  if (!st) throw new Error(`instance ${id} not found`);
  return st;
}
