// rawproto.test.mjs -- bad input on the wire, sent with a raw gRPC client
// (hand-encoded protobuf), and the status each one must get.  After every
// case the server must still serve.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startDtsd, grpc } from "./harness.mjs";

import { varint, bytes, str, sv, int, msg, rawUnary } from "./pb.mjs";

let srv, raw;
const P = (m) => `/TaskHubSidecarService/${m}`;

const call = (method, body, hub) => rawUnary(grpc, raw, method, body, hub);

async function stillServes() {
  const r = await call(P("Hello"), Buffer.alloc(0));
  assert.equal(r.code, 0, `server stopped serving: ${JSON.stringify(r)}`);
}

before(async () => {
  srv = await startDtsd({ args: ["--max-payload", "1000", "--max-message", "65536", "--max-nesting", "32"] });
  raw = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": -1 });
});
after(async () => {
  raw.close();
  const st = await srv.stop();
  assert.equal(st.code, 0, srv.stderr());
});

test("an id-reuse policy reusing running instances but not terminated ones: INVALID_ARGUMENT with DTS's text", async () => {
  const policy = (...statuses) => bytes(6, msg(...statuses.map((st) => int(1, st)))); // RUNNING 0, COMPLETED 1, TERMINATED 5
  const r = await call(P("StartInstance"), msg(str(1, `reuse-${Date.now()}`), str(2, "orch"), policy(0, 1)));
  assert.equal(r.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
  assert.equal(r.details, "Invalid reusable statuses: cannot exclude 'Terminated' while also allowing reuse of running instances");
  const ok = await call(P("StartInstance"), msg(str(1, `reuse-ok-${Date.now()}`), str(2, "orch"), policy(0, 5)));
  assert.equal(ok.code, 0, JSON.stringify(ok));
  await stillServes();
});

test("instance ids outside the rules are INVALID_ARGUMENT", async () => {
  for (const id of ["x".repeat(101), "@entity@key", "bad\u0001id", "tab\tid", "caf\u00e9"]) {
    const r = await call(P("StartInstance"), msg(str(1, id), str(2, "orch")));
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `id ${JSON.stringify(id)}: ${JSON.stringify(r)}`);
    assert.match(r.details, /instance id/);
  }
  const ok = await call(P("StartInstance"), msg(str(1, "x".repeat(100)), str(2, "orch")));
  assert.equal(ok.code, 0);
  await stillServes();
});

test("an empty id gets a generated one", async () => {
  const r = await call(P("StartInstance"), msg(str(2, "orch")));
  assert.equal(r.code, 0);
  // CreateInstanceResponse{instanceId(1)}: 0x0a, length 36, a v4 UUID
  assert.equal(r.res[0], 0x0a);
  assert.match(r.res.subarray(2).toString(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test("a payload over the limit is INVALID_ARGUMENT naming the limit and its flag", async () => {
  const r = await call(P("StartInstance"), msg(str(1, "big-input"), str(2, "orch"), sv(4, "y".repeat(2000))));
  assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.details, /1000 bytes/);
  assert.match(r.details, /--max-payload/);
  await stillServes();
});

test("malformed protobuf is INVALID_ARGUMENT", async () => {
  for (const body of [Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x10, 0x41]), Buffer.from([0x0b])]) {
    const r = await call(P("StartInstance"), body);
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
    assert.match(r.details, /malformed|nests/);
  }
  await stillServes();
});

test("TaskFailureDetails nested 10,000 deep is INVALID_ARGUMENT, checked before decoding", async () => {
  let fd = msg(str(1, "E"), str(2, "innermost"));
  for (let i = 0; i < 10000; i++) fd = bytes(4, fd); // about 40 KB, under the size limit
  const body = msg(str(1, "some-id"), bytes(4, fd), str(5, "a1-1"));
  const r = await call(P("CompleteActivityTask"), body);
  assert.equal(r.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
  assert.match(r.details, /deeper than 32/);
  await stillServes();
});

test("a message over the size limit is RESOURCE_EXHAUSTED", async () => {
  const r = await call(P("RaiseEvent"), msg(str(1, "any"), str(2, "e"), sv(3, "z".repeat(100000))));
  assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED, JSON.stringify(r));
  await stillServes();
});

test("an unknown task hub is NOT_FOUND naming the configured hubs", async () => {
  const r = await call(P("GetInstance"), msg(str(1, "x")), "elsewhere");
  assert.equal(r.code, grpc.status.NOT_FOUND);
  assert.match(r.details, /elsewhere/);
  assert.match(r.details, /default/);
  await stillServes();
});

test("unknown methods are UNIMPLEMENTED, not a hang", async () => {
  for (const m of [P("NoSuchMethod"), "/some.Other/Method"]) {
    const r = await call(m, Buffer.alloc(0));
    assert.equal(r.code, grpc.status.UNIMPLEMENTED, `${m}: ${JSON.stringify(r)}`);
  }
  await stillServes();
});

test("stale and duplicate completion tokens change nothing and still get OK", async () => {
  const r1 = await call(P("CompleteActivityTask"), msg(str(1, "nobody"), str(5, "a00000000-999")));
  assert.equal(r1.code, 0);
  const r2 = await call(P("CompleteOrchestratorTask"), msg(str(1, "nobody"), str(4, "o00000000-999")));
  assert.equal(r2.code, 0);
  const r3 = await call(P("AbandonTaskOrchestratorWorkItem"), msg(str(1, "o-junk")));
  assert.equal(r3.code, 0);
  await stillServes();
});

test("a purge batch over 500 ids is INVALID_ARGUMENT", async () => {
  const ids = Array.from({ length: 501 }, (_, i) => str(1, `id-${i}`));
  const r = await call(P("PurgeInstances"), bytes(4, msg(...ids)));
  assert.equal(r.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
  assert.match(r.details, /500/);
  await stillServes();
});

test("SkipGracefulOrchestrationTerminations terminates at once and lists the rest", async () => {
  assert.equal((await call(P("StartInstance"), msg(str(1, "skip-me"), str(2, "orch")))).code, 0);
  const r = await call(P("SkipGracefulOrchestrationTerminations"), msg(bytes(1, msg(str(1, "skip-me"), str(1, "not-there"))), sv(2, "forced")));
  assert.equal(r.code, 0, JSON.stringify(r));
  assert.ok(r.res.includes(Buffer.from("not-there")) && !r.res.includes(Buffer.from("skip-me")));
  const g = await call(P("GetInstance"), msg(str(1, "skip-me"), varint(0x10), varint(1)));
  assert.equal(g.code, 0);
  // OrchestrationState.orchestrationStatus(4) = TERMINATED(5): bytes 0x20 0x05 inside field 2
  assert.ok(g.res.includes(Buffer.from([0x20, 0x05])), "status TERMINATED");
  await stillServes();
});

test("CreateTaskHub and DeleteTaskHub at runtime, persisted across restarts", async () => {
  const { startDtsd: start } = await import("./harness.mjs");
  let own = await start();
  let cl = new grpc.Client(own.endpoint, grpc.credentials.createInsecure());
  const rpc = (m, body, hub) => rawUnary(grpc, cl, P(m), body, hub);
  const restart = async () => {
    cl.close();
    assert.equal((await own.stop()).code, 0, own.stderr());
    own = await start({ dataDir: own.dataDir });
    cl = new grpc.Client(own.endpoint, grpc.credentials.createInsecure());
  };
  const exists = async (hub, id) => {
    const r = await rpc("GetInstance", msg(str(1, id)), hub);
    return r.code === 0 ? r.res.length > 0 && r.res[0] === 0x08 && r.res[1] === 0x01 : r.code;
  };
  try {
    assert.equal((await rpc("GetInstance", msg(str(1, "x")), "fresh")).code, grpc.status.NOT_FOUND);
    assert.equal((await rpc("CreateTaskHub", Buffer.alloc(0), "fresh")).code, 0);
    assert.equal((await rpc("StartInstance", msg(str(1, "in-fresh"), str(2, "orch")), "fresh")).code, 0);
    assert.equal(await exists("fresh", "in-fresh"), true);
    assert.equal(await exists("default", "in-fresh"), false);
    await restart();
    assert.equal(await exists("fresh", "in-fresh"), true, "a created hub and its data survive a restart");
    assert.equal((await rpc("CreateTaskHub", Buffer.alloc(0), "fresh")).code, 0, "creating an existing hub is fine");
    assert.equal(await exists("fresh", "in-fresh"), true);
    assert.equal((await rpc("CreateTaskHub", msg(Buffer.from([0x08, 0x01])), "fresh")).code, 0); // recreateIfExists
    assert.equal(await exists("fresh", "in-fresh"), false, "recreate empties the hub");
    assert.equal((await rpc("StartInstance", msg(str(1, "again"), str(2, "orch")), "fresh")).code, 0);
    assert.equal((await rpc("DeleteTaskHub", Buffer.alloc(0), "fresh")).code, 0);
    assert.equal(await exists("fresh", "again"), grpc.status.NOT_FOUND, "a deleted hub is not served");
    await restart();
    assert.equal(await exists("fresh", "again"), grpc.status.NOT_FOUND, "and stays deleted after a restart");
    assert.equal((await rpc("CreateTaskHub", Buffer.alloc(0), "bad name!")).code, grpc.status.INVALID_ARGUMENT);
  } finally {
    cl.close();
    assert.equal((await own.stop()).code, 0, own.stderr());
  }
});

test("a NUL byte in an id, a name or a payload is INVALID_ARGUMENT naming the field, never cut short", async () => {
  const cases = [
    [msg(str(1, "nul\u0000id"), str(2, "orch")), /instance_id/],
    [msg(str(1, "nul-name"), str(2, "or\u0000ch")), /name/],
    [msg(str(1, "nul-input"), str(2, "orch"), sv(4, "{\"a\":\"\u0000\"}")), /input/],
  ];
  for (const [body, field] of cases) {
    const r = await call(P("StartInstance"), body);
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
    assert.match(r.details, /NUL/);
    assert.match(r.details, field);
  }
  const g = await call(P("GetInstance"), msg(str(1, "nul")));
  assert.equal(g.code, 0);
  assert.equal(g.res.length, 0, "nothing was created under a truncated id");
  const ev = await call(P("RaiseEvent"), msg(str(1, "x"), str(2, "ev\u0000ent")));
  assert.equal(ev.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(ev));
  await stillServes();
});

test("DeleteTaskHub and CreateTaskHub of one name sent back to back: a fresh, empty hub, still served after a restart", async () => {
  const { startDtsd: start } = await import("./harness.mjs");
  let own = await start();
  let cl = new grpc.Client(own.endpoint, grpc.credentials.createInsecure());
  const rpc = (m, body, hub) => rawUnary(grpc, cl, P(m), body, hub);
  const exists = async (hub, id) => {
    const r = await rpc("GetInstance", msg(str(1, id)), hub);
    return r.code === 0 ? r.res.length > 0 : r.code;
  };
  try {
    assert.equal((await rpc("CreateTaskHub", Buffer.alloc(0), "reborn")).code, 0);
    // enough data that the old hub's wipe takes a while
    for (let i = 0; i < 4000; i += 200)
      await Promise.all(Array.from({ length: 200 }, (_, j) => rpc("StartInstance", msg(str(1, `old-${i + j}`), str(2, "orch")), "reborn")));
    const deleting = rpc("DeleteTaskHub", Buffer.alloc(0), "reborn");
    await waitForNotServed(() => exists("reborn", "old-0"));
    assert.equal((await rpc("CreateTaskHub", Buffer.alloc(0), "reborn")).code, 0);
    assert.equal((await rpc("StartInstance", msg(str(1, "new"), str(2, "orch")), "reborn")).code, 0);
    assert.equal((await deleting).code, 0);
    assert.equal(await exists("reborn", "new"), true);
    assert.equal(await exists("reborn", "old-1"), false, "the new hub is empty of the old one's data");
    cl.close();
    assert.equal((await own.stop()).code, 0, own.stderr());
    own = await start({ dataDir: own.dataDir });
    cl = new grpc.Client(own.endpoint, grpc.credentials.createInsecure());
    assert.equal(await exists("reborn", "new"), true, "the new hub is served after a restart");
    assert.equal(await exists("reborn", "old-2"), false);
  } finally {
    cl.close();
    assert.equal((await own.stop()).code, 0, own.stderr());
  }
});

// Waits until the hub stops being served (the bridge took the deletion).
async function waitForNotServed(probe) {
  for (let i = 0; i < 5000; i++) {
    if ((await probe()) === grpc.status.NOT_FOUND) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error("the deleted hub is still served");
}
