// dtsctl.test.mjs -- the dtsctl binary against a real dtsd with a JS SDK
// worker: every command, table and JSON output, the connection settings,
// exit codes, --help everywhere, and the bash completion script.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { dt, startDtsd, client, worker, waitFor, OrchestrationStatus as S } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.DTSCTL_BIN || path.resolve(here, "../../build/tools/dtsctl/dtsctl");
const { TaskEntity } = dt;

class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; return this.state; }
}
let flaky = 0;
const greet = async (_ctx, who) => `hello ${who}`;
const shaky = async () => { if (flaky++ === 0) throw new Error("first try fails"); return "fine"; };
const hello = async function* ctlHello(ctx, who) { return yield ctx.callActivity(greet, who); };
const waiter = async function* ctlWaiter(ctx) { return yield ctx.waitForExternalEvent("go"); };
const rewound = async function* ctlShaky(ctx) { return yield ctx.callActivity(shaky); };

let srv, w, c;
before(async () => {
  srv = await startDtsd({ hubs: "default,other" });
  w = worker(srv, undefined, (x) => {
    for (const o of [hello, waiter, rewound]) x.addOrchestrator(o);
    x.addActivity(greet);
    x.addActivity(shaky);
    x.addNamedEntity("counter", () => new Counter());
  });
  await w.start();
  c = client(srv);
});
after(async () => {
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

// Runs dtsctl (without blocking: the SDK worker runs in this process);
// env defaults to pointing it at the test's dtsd.
function ctl(args, env = { DTSD_ENDPOINT: srv.endpoint }) {
  return new Promise((resolve) => {
    const san = Object.fromEntries(["ASAN_OPTIONS", "UBSAN_OPTIONS"].filter((k) => process.env[k]).map((k) => [k, process.env[k]]));
    const child = spawn(BIN, args, { env: { PATH: process.env.PATH, ...san, ...env } });
    let out = "", err = "";
    child.stdout.on("data", (d) => { out += d; });
    child.stderr.on("data", (d) => { err += d; });
    child.on("close", (code) => resolve({ code, out, err }));
  });
}
const ok = async (args) => {
  const r = await ctl(args);
  assert.equal(r.code, 0, `dtsctl ${args.join(" ")}: ${r.err}`);
  return r.out;
};
const json = async (args) => JSON.parse(await ok([...args, "-o", "json"]));

test("hubs: list, create, delete (with --yes); the connection string picks endpoint and hub", async () => {
  assert.deepEqual((await ok(["hubs", "list"])).trim().split("\n"), ["default", "other"]);
  await ok(["hubs", "create", "made"]);
  assert.deepEqual(await json(["hubs", "list"]), ["default", "other", "made"]);
  assert.equal((await ctl(["hubs", "delete", "made"])).code, 2, "delete without --yes is refused");
  await ok(["hubs", "delete", "made", "--yes"]);
  assert.deepEqual(await json(["hubs", "list"]), ["default", "other"]);
  const cs = await ctl(["instances", "list", "-o", "json"],
    { DTS_CONNECTION_STRING: `Endpoint=http://${srv.endpoint};Authentication=None;TaskHub=other` });
  assert.equal(cs.code, 0, cs.err);
  assert.deepEqual(JSON.parse(cs.out), []);
  const bad = await ctl(["instances", "list"], { DTS_CONNECTION_STRING: `Endpoint=http://${srv.endpoint};TaskHub=nope` });
  assert.equal(bad.code, 3, "an unknown hub is not found");
  assert.match(bad.err, /task hub 'nope' not found/);
});

test("start --wait, show, instances list with filters, history as table and JSON", async () => {
  const shown = await ok(["start", "ctlHello", "--id", "ctl-1", "--input", '"dtsctl"', "--tag", "team=ops", "--wait"]);
  assert.match(shown, /Status:\s+COMPLETED/);
  assert.match(shown, /Output:\s+"hello dtsctl"/);
  const id2 = (await ok(["start", "ctlHello", "--input", '"two"'])).trim();
  assert.match(id2, /^[0-9a-f-]{32,36}$/);
  const st = await json(["show", "ctl-1"]);
  assert.equal(st.orchestrationStatus, "ORCHESTRATION_STATUS_COMPLETED");
  assert.deepEqual(st.tags, { team: "ops" });
  const list = await json(["instances", "list", "--prefix", "ctl-", "--status", "completed"]);
  assert.deepEqual(list.map((i) => i.instanceId), ["ctl-1"]);
  const table = (await ok(["instances", "list", "-n", "1"])).trim().split("\n");
  assert.equal(table.length, 2, "a header and one row");
  assert.match(table[0], /^INSTANCE ID\s+NAME\s+STATUS\s+CREATED\s+LAST UPDATED$/);
  const hist = await json(["history", "ctl-1"]);
  const kinds = hist.map((e) => Object.keys(e).find((k) => k !== "eventId" && k !== "timestamp"));
  assert.deepEqual(kinds, ["orchestratorStarted", "executionStarted", "taskScheduled", "orchestratorStarted", "taskCompleted", "executionCompleted"]);
  const ht = await ok(["history", "ctl-1"]);
  assert.match(ht, /taskScheduled\s+greet/);
  assert.equal((await ctl(["show", "no-such"])).code, 3);
  assert.equal((await ctl(["history", "no-such"])).code, 3);
});

test("raise, suspend, resume, terminate, restart, rewind", async () => {
  await ok(["start", "ctlWaiter", "--id", "ctl-w"]);
  await waitFor(async () => (await json(["show", "ctl-w"])).orchestrationStatus === "ORCHESTRATION_STATUS_RUNNING", "ctl-w running");
  await ok(["suspend", "ctl-w", "--reason", "hold on"]);
  await waitFor(async () => (await json(["show", "ctl-w"])).orchestrationStatus === "ORCHESTRATION_STATUS_SUSPENDED", "ctl-w suspended");
  await ok(["resume", "ctl-w"]);
  await ok(["raise", "ctl-w", "go", "--data", '{"n":1}']);
  const done = await c.waitForOrchestrationCompletion("ctl-w", true, 30);
  assert.equal(done.runtimeStatus, S.COMPLETED);
  assert.equal(done.serializedOutput, '{"n":1}');

  await ok(["start", "ctlWaiter", "--id", "ctl-t"]);
  await ok(["terminate", "ctl-t", "--reason", "no longer needed"]);
  const t = await c.waitForOrchestrationCompletion("ctl-t", true, 30);
  assert.equal(t.runtimeStatus, S.TERMINATED);
  assert.equal(t.serializedOutput, '"no longer needed"');
  const again = (await ok(["restart", "ctl-1", "--new-id"])).trim();
  assert.notEqual(again, "ctl-1");
  assert.equal((await c.waitForOrchestrationCompletion(again, true, 30)).runtimeStatus, S.COMPLETED);

  await ok(["start", "ctlShaky", "--id", "ctl-r"]);
  assert.equal((await c.waitForOrchestrationCompletion("ctl-r", true, 30)).runtimeStatus, S.FAILED);
  await ok(["rewind", "ctl-r", "--reason", "fixed"]);
  const r = await waitFor(async () => { const s = await c.getOrchestrationState("ctl-r", true); return s.runtimeStatus === S.COMPLETED && s; }, "ctl-r completed after the rewind");
  assert.equal(r.serializedOutput, '"fine"');
  assert.equal((await ctl(["raise", "no-such", "go"])).code, 3);
});

test("purge: one, and by filter with a dry-run count; only finished statuses", async () => {
  const out = await ok(["purge", "ctl-t"]);
  assert.match(out, /purged 1 instance/);
  assert.equal((await ctl(["purge", "ctl-t"])).code, 3, "nothing left to purge");
  assert.equal((await ctl(["purge", "--status", "running", "--yes"])).code, 2);
  assert.equal((await ctl(["purge", "--status", "completed"])).code, 2, "by filter needs --yes or --dry-run");
  const completed = (await json(["instances", "list", "--status", "completed", "--all"])).length;
  assert.ok(completed >= 4);
  assert.deepEqual(await json(["purge", "--status", "completed", "--dry-run"]), { matching: completed });
  assert.deepEqual(await json(["purge", "--status", "completed", "--yes"]), { matching: completed, purged: completed });
  assert.deepEqual(await json(["instances", "list", "--status", "completed"]), []);
});

test("entities: signal, list, show, clean", async () => {
  await ok(["entities", "signal", "@counter@a", "add", "--input", "5"]);
  await ok(["entities", "signal", "@counter@a", "add", "--input", "2"]);
  const e = await waitFor(async () => { const r = await ctl(["entities", "show", "@counter@a", "-o", "json"]); return r.code === 0 && JSON.parse(r.out).serializedState === "7" && JSON.parse(r.out); }, "the counter at 7");
  assert.equal(e.instanceId, "@counter@a");
  const list = await json(["entities", "list", "--state"]);
  assert.deepEqual(list.map((x) => [x.instanceId, x.serializedState]), [["@counter@a", "7"]]);
  assert.match(await ok(["entities", "list"]), /^ENTITY ID\s+LAST MODIFIED\s+BACKLOG\s+LOCKED BY\n@counter@a/);
  assert.deepEqual(await json(["entities", "clean"]), { emptyEntitiesRemoved: 0, orphanedLocksReleased: 0 });
  assert.equal((await ctl(["entities", "show", "@counter@none"])).code, 3);
  assert.equal((await ctl(["entities", "signal", "not-an-entity", "add"])).code, 1, "INVALID_ARGUMENT is a refusal");
});

test("schedules and retention", async () => {
  const made = await json(["schedules", "create", "ctl-s", "--orchestration", "ctlHello", "--interval", "1s", "--input", '"sched"']);
  assert.equal(made.scheduleId, "ctl-s");
  assert.equal(made.interval, "1s");
  await waitFor(async () => (await json(["schedules", "show", "ctl-s"])).runCount >= 2, "two runs of ctl-s");
  assert.equal((await json(["schedules", "pause", "ctl-s"])).status, "SCHEDULE_STATUS_PAUSED");
  assert.match(await ok(["schedules", "list"]), /^SCHEDULE ID\s+ORCHESTRATION\s+EVERY\s+STATUS.*\nctl-s\s+ctlHello\s+1s\s+PAUSED/);
  assert.equal((await json(["schedules", "resume", "ctl-s"])).status, "SCHEDULE_STATUS_ACTIVE");
  assert.equal((await ctl(["schedules", "create", "ctl-s", "--orchestration", "x", "--interval", "1m"])).code, 5, "the id is taken");
  assert.equal((await ctl(["schedules", "create", "ctl-x", "--orchestration", "x"])).code, 2, "--interval is required");
  await ok(["schedules", "delete", "ctl-s"]);
  assert.equal((await ctl(["schedules", "show", "ctl-s"])).code, 3);
  const runs = await json(["instances", "list", "--prefix", "ctl-s-"]);
  assert.ok(runs.length >= 2);

  assert.deepEqual(await json(["retention", "set", "default=30d,failed=90d"]), { defaultRetention: "2592000s", failed: "7776000s" });
  assert.match(await ok(["retention", "get"]), /default\s+30d\n.*\nfailed\s+90d/s);
  assert.equal((await ctl(["retention", "set", "sometimes=1d"])).code, 2);
  await ok(["retention", "set", "default=keep"]);
});

test("exit codes, --help on every command, and bash completion", async () => {
  assert.equal((await ctl([])).code, 2);
  assert.equal((await ctl(["frobnicate"])).code, 2);
  assert.equal((await ctl(["instances", "list", "--bogus"])).code, 2);
  assert.equal((await ctl(["start"])).code, 2);
  assert.equal((await ctl(["-o", "yaml", "hubs", "list"])).code, 2);
  const down = await ctl(["hubs", "list", "--timeout", "2"], { DTSD_ENDPOINT: "127.0.0.1:1" });
  assert.equal(down.code, 4, down.err);
  assert.match(down.err, /UNAVAILABLE|DEADLINE_EXCEEDED/);
  assert.match(await ok(["--version"]), /^dtsctl \d+\.\d+\.\d+/);
  for (const cmd of [[], ["hubs"], ["instances", "list"], ["show"], ["history"], ["start"], ["raise"], ["suspend"], ["resume"],
    ["terminate"], ["restart"], ["rewind"], ["purge"], ["entities"], ["schedules"], ["retention"]]) {
    const r = await ctl([...cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd.join(" ")} --help`);
    assert.match(r.out, /^usage: dtsctl/, `${cmd.join(" ")} --help`);
  }
  const script = await ok(["completion", "bash"]);
  const complete = (line) => {
    const words = line.split(" ");
    const r = spawnSync("bash", ["-c", `${script}\nCOMP_WORDS=(${words.map((x) => `'${x}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _dtsctl; echo "\${COMPREPLY[@]}"`], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split(/\s+/);
  };
  assert.deepEqual(complete("dtsctl sch"), ["schedules"]);
  assert.deepEqual(complete("dtsctl schedules p"), ["pause"]);
  assert.deepEqual(complete("dtsctl instances list --status fa"), ["failed"]);
  assert.ok(complete("dtsctl start x --").includes("--wait"));
});
