// entities.test.mjs -- durable entities end to end with the JS SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { dt, startDtsd, client, worker, completed, waitFor, OrchestrationStatus as S } from "./harness.mjs";

const { TaskEntity, EntityInstanceId, whenAll } = dt;

class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; return this.state; }
  get() { return this.state; }
  reset() { this.state = 0; }
  // entity-to-entity: forward a signal
  forward(target) { this.context.signalEntity(new EntityInstanceId("counter", target), "add", 1); }
  // an entity that starts an orchestration
  kick(x) { return this.context.scheduleNewOrchestration("entOrchFromEntity", x); }
}

class Log extends TaskEntity {
  initializeState() { return []; }
  append(x) { this.state.push(x); }
  get() { return this.state; }
}

const callIt = async function* entCall(ctx, key) {
  const id = new EntityInstanceId("counter", key);
  yield ctx.entities.callEntity(id, "add", 5);
  return yield ctx.entities.callEntity(id, "get");
};
const fromEntity = async function* entOrchFromEntity(ctx, x) { return `started by an entity with ${x}`; };
const rmw = async function* entRmw(ctx, keys) {
  const a = new EntityInstanceId("counter", keys[0]), b = new EntityInstanceId("counter", keys[1]);
  for (let i = 0; i < 20; i++) {
    const lock = yield ctx.entities.lockEntities(a, b);
    const va = yield ctx.entities.callEntity(a, "get");
    const vb = yield ctx.entities.callEntity(b, "get");
    yield ctx.entities.callEntity(a, "reset");
    yield ctx.entities.callEntity(a, "add", va + 1);
    yield ctx.entities.callEntity(b, "reset");
    yield ctx.entities.callEntity(b, "add", vb + 1);
    lock.release();
  }
  return "ok";
};
const lockAndDie = async function* entLockDie(ctx, key) {
  yield ctx.entities.lockEntities(new EntityInstanceId("counter", key));
  throw new Error("dies holding the lock");
};

let srv, c, w;
before(async () => {
  srv = await startDtsd();
  w = worker(srv, undefined, (x) => {
    x.addNamedEntity("counter", () => new Counter());
    x.addNamedEntity("log", () => new Log());
    for (const o of [callIt, fromEntity, rmw, lockAndDie]) x.addOrchestrator(o);
  });
  await w.start();
  c = client(srv);
});
after(async () => {
  await Promise.allSettled([w.stop(), c.stop()]);
  assert.equal((await srv.stop()).code, 0, srv.stderr());
});

const state = async (name, key) => (await c.getEntity(new EntityInstanceId(name, key), true))?.state;

test("a counter signalled 1,000 times reads 1,000", async () => {
  const id = new EntityInstanceId("counter", "thousand");
  await Promise.all(Array.from({ length: 1000 }, () => c.signalEntity(id, "add", 1)));
  await waitFor(async () => (await state("counter", "thousand")) === 1000, "the counter to reach 1000");
  const md = await c.getEntity(id, false);
  assert.equal(md.includesState, false);
  assert.equal(md.backlogQueueSize, 0);
});

test("an orchestration calls an entity and uses the result", async () => {
  const oid = await c.scheduleNewOrchestration(callIt, "called");
  const st = await completed(c, oid);
  assert.equal(st.runtimeStatus, S.COMPLETED, st.failureDetails?.message);
  assert.equal(st.serializedOutput, "5");
});

test("entity-to-entity signals, and an entity that starts an orchestration", async () => {
  await c.signalEntity(new EntityInstanceId("counter", "src"), "forward", "dst");
  await waitFor(async () => (await state("counter", "dst")) === 1, "the forwarded signal");
  await c.signalEntity(new EntityInstanceId("counter", "starter"), "kick", 7);
  await waitFor(async () => {
    for await (const s of c.getAllInstances({ statuses: [S.COMPLETED] })) if (s.name === "entOrchFromEntity") return true;
    return false;
  }, "the orchestration started by the entity");
});

test("FIFO per sender", async () => {
  const id = new EntityInstanceId("log", "fifo");
  for (let i = 0; i < 50; i++) await c.signalEntity(id, "append", i);
  await waitFor(async () => (await state("log", "fifo"))?.length === 50, "50 appends");
  assert.deepEqual(await state("log", "fifo"), Array.from({ length: 50 }, (_, i) => i));
});

test("10 orchestrations x 20 read-modify-write cycles over 2 locked entities lose no update", async () => {
  const ids = [];
  for (let i = 0; i < 10; i++) ids.push(await c.scheduleNewOrchestration(rmw, ["rmw-a", "rmw-b"]));
  for (const id of ids) {
    const st = await completed(c, id, 120);
    assert.equal(st.runtimeStatus, S.COMPLETED, st.failureDetails?.message);
  }
  assert.equal(await state("counter", "rmw-a"), 200);
  assert.equal(await state("counter", "rmw-b"), 200);
  const md = await c.getEntity(new EntityInstanceId("counter", "rmw-a"));
  assert.equal(md.lockedBy, undefined);
});

test("a scheduled signal is not applied early and is applied soon after its time", async () => {
  const id = new EntityInstanceId("counter", "later");
  const at = new Date(Date.now() + 2000);
  await c.signalEntity(id, "add", 3, { signalTime: at });
  assert.equal(await state("counter", "later"), undefined);
  await waitFor(async () => (await state("counter", "later")) === 3, "the scheduled signal", 15000);
  assert.ok(Date.now() >= at.getTime(), "applied early");
});

test("query paging, delete and re-create", async () => {
  for (let i = 0; i < 7; i++) await c.signalEntity(new EntityInstanceId("counter", `page-${i}`), "add", i + 1);
  await waitFor(async () => (await state("counter", "page-6")) === 7, "page entities");
  const pages = [];
  for await (const p of c.getEntities({ instanceIdStartsWith: "@counter@page-", pageSize: 3, includeState: true }).asPages())
    pages.push(p.values.map((m) => m.state));
  assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
  assert.deepEqual(pages.flat(), [1, 2, 3, 4, 5, 6, 7]);
  const id = new EntityInstanceId("counter", "page-0");
  await c.signalEntity(id, "delete");
  await waitFor(async () => (await c.getEntity(id)) === undefined, "the entity to be deleted");
  await c.signalEntity(id, "add", 10);
  await waitFor(async () => (await state("counter", "page-0")) === 10, "re-created");
});

test("an orchestration that dies holding a lock releases it; a deleted entity leaves no record behind", async () => {
  const oid = await c.scheduleNewOrchestration(lockAndDie, "orphan");
  assert.equal((await completed(c, oid)).runtimeStatus, S.FAILED);
  const id = new EntityInstanceId("counter", "orphan");
  await waitFor(async () => (await c.getEntity(id))?.lockedBy === undefined, "the lock to be released");
  await c.signalEntity(id, "add", 1);
  await waitFor(async () => (await state("counter", "orphan")) === 1, "the entity serves others again");
  await c.signalEntity(id, "delete");
  await waitFor(async () => (await c.getEntity(id)) === undefined, "deleted");
  // deleting it removed its record in the same batch, as DTS does: clean
  // storage finds no empty entity to remove, and no orphaned lock
  const res = await c.cleanEntityStorage({ removeEmptyEntities: true, releaseOrphanedLocks: true, continuationToken: undefined }, true);
  assert.equal(res.emptyEntitiesRemoved, 0, "a deleted entity left a record behind");
  assert.equal(res.orphanedLocksReleased, 0, "the finished holder's lock was already released by dtsd");
});

test("purge of an entity by its id", async () => {
  const id = new EntityInstanceId("counter", "purge-me");
  await c.signalEntity(id, "add", 1);
  await waitFor(async () => (await state("counter", "purge-me")) === 1, "created");
  assert.equal((await c.purgeOrchestration(id.toString())).deletedInstanceCount, 1);
  assert.equal(await c.getEntity(id), undefined);
});
