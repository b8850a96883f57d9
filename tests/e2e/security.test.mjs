// security.test.mjs -- docs/security.md end to end: TLS on the gRPC port
// with certificates made here by the openssl command, static tokens from
// `dtsd token`, DTS's roles with the unmodified JS SDK, revocation on SIGHUP,
// certificate reload, the audit log, the HTTP API's 401/403, protected mode
// and the allow list.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import tls from "node:tls";
import { grpc, startDtsd, tmpDir, waitFor, TaskHubGrpcClient, TaskHubGrpcWorker, NoOpLogger, OrchestrationStatus as S, DTSD_BIN } from "./harness.mjs";
import { rawUnary } from "./pb.mjs";

const dir = tmpDir("security");
const f = (n) => path.join(dir, n);
const ssl = (...args) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });

// a CA, and a server certificate for 127.0.0.1 and localhost signed by it
function makeCerts(tag) {
  if (!fs.existsSync(f("ca.pem"))) {
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"),
      "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=dtsd test CA");
  }
  fs.writeFileSync(f("san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f(`${tag}.key`),
    "-out", f(`${tag}.csr`), "-subj", `/CN=dtsd ${tag}`);
  ssl("x509", "-req", "-in", f(`${tag}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial",
    "-out", f(`${tag}.pem`), "-days", "2", "-extfile", f("san.cnf"));
}
const token = (name, ...grants) => execFileSync(DTSD_BIN, ["token", "create", "--tokens-file", f("tokens.json"), "--name", name,
  ...grants.flatMap((g) => ["--grant", g])], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();

const servers = [];
after(async () => { for (const s of servers) await s.stop(); });

function sdk(srv, tok, hub = "default") {
  const metadataGenerator = async () => {
    const md = new grpc.Metadata();
    md.set("taskhub", hub);
    if (tok) md.set("authorization", `Bearer ${tok}`);
    return md;
  };
  const credentials = grpc.credentials.createSsl(fs.readFileSync(f("ca.pem")));
  const hostAddress = `localhost:${srv.port}`;
  return { hostAddress, credentials, metadataGenerator, logger: new NoOpLogger() };
}
const hello = async function* secHello(ctx, who) { return yield ctx.callActivity(greet, who); };
const greet = async (_ctx, who) => `hello ${who}`;
function raw(srv) { return new grpc.Client(`localhost:${srv.port}`, grpc.credentials.createSsl(fs.readFileSync(f("ca.pem")))); }
function call(client, method, tok, hub = "default") {
  const md = new grpc.Metadata();
  md.set("taskhub", hub);
  if (tok) md.set("authorization", `Bearer ${tok}`);
  return new Promise((resolve) => client.makeUnaryRequest(method, (b) => b, (b) => b, Buffer.alloc(0), md, { deadline: Date.now() + 10000 },
    (err) => resolve(err ? { code: err.code, details: err.details } : { code: 0 })));
}
const Q = "/TaskHubSidecarService/QueryInstances";

test("TLS + tokens: the SDK's worker and client run an orchestration; roles, revocation, reload, audit", async () => {
  makeCerts("server");
  const admin = token("ops", "*=admin"), wtok = token("app-worker", "default=worker"),
    ctok = token("app-client", "default=contributor"), rtok = token("viewer", "default=reader");
  assert.match(admin, /^dtsd_[A-Za-z0-9_-]{43}$/);
  assert.ok(!fs.readFileSync(f("tokens.json"), "utf8").includes(admin.slice(5)), "only the hash is stored");
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--tls-cert", f("server.pem"),
    "--tls-key", f("server.key"), "--audit-log", f("audit.log"), "--task-hubs", "default,other"] });
  servers.push(srv);

  const w = new TaskHubGrpcWorker({ ...sdk(srv, wtok), shutdownTimeoutMs: 2000 });
  w.addOrchestrator(hello);
  w.addActivity(greet);
  await w.start();
  const c = new TaskHubGrpcClient(sdk(srv, ctok));
  const id = await c.scheduleNewOrchestration(hello, "tls");
  const st = await c.waitForOrchestrationCompletion(id, true, 30);
  assert.equal(st.runtimeStatus, S.COMPLETED);
  assert.equal(st.serializedOutput, '"hello tls"');

  const r = raw(srv);
  assert.equal((await call(r, Q, rtok)).code, 0, "a reader reads");
  const noTok = await call(r, Q, null);
  assert.equal(noTok.code, grpc.status.UNAUTHENTICATED);
  assert.match(noTok.details, /requires a token/);
  assert.equal((await call(r, Q, "dtsd_not-a-real-token")).code, grpc.status.UNAUTHENTICATED);
  const start = await call(r, "/TaskHubSidecarService/StartInstance", rtok);
  assert.equal(start.code, grpc.status.PERMISSION_DENIED, "a reader cannot start");
  assert.match(start.details, /needs the contributor role/);
  assert.equal((await call(r, Q, wtok)).code, grpc.status.PERMISSION_DENIED, "a worker cannot list");
  assert.equal((await call(r, Q, rtok, "other")).code, grpc.status.PERMISSION_DENIED, "the reader's grant is for default only");
  assert.equal((await call(r, Q, rtok, "no-such-hub")).code, grpc.status.PERMISSION_DENIED, "nor does it learn which hubs exist");
  assert.equal((await call(r, Q, admin, "other")).code, 0, "admin reaches every hub");
  assert.equal((await call(r, "/TaskHubSidecarService/DeleteTaskHub", ctok)).code, grpc.status.PERMISSION_DENIED);

  // revoked, and SIGHUP: the reader is refused from then on
  execFileSync(DTSD_BIN, ["token", "revoke", "--tokens-file", f("tokens.json"), "--name", "viewer"]);
  srv.child.kill("SIGHUP");
  await waitFor(async () => (await call(r, Q, rtok)).code === grpc.status.UNAUTHENTICATED, "the revoked token refused");

  // a new certificate in place of the old: new connections get it
  const serial = (pem) => new crypto.X509Certificate(pem).serialNumber;
  const peerSerial = () => new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: srv.port, ca: fs.readFileSync(f("ca.pem")), servername: "localhost", ALPNProtocols: ["h2"] },
      () => { resolve(s.getPeerCertificate().serialNumber); s.destroy(); });
    s.on("error", reject);
  });
  const before = await peerSerial();
  // the HTTP listeners serve the same certificate (HTTPS), with the same tokens
  const https = await import("node:https");
  const hget = (port, p, tok) => new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, path: p, servername: "localhost", ca: fs.readFileSync(f("ca.pem")), agent: false,
      headers: tok ? { authorization: `Bearer ${tok}` } : {} }, (res) => {
      const serial = res.socket.getPeerCertificate().serialNumber;
      let body = ""; res.on("data", (d) => { body += d; }); res.on("end", () => resolve({ status: res.statusCode, body, serial }));
    });
    req.on("error", reject);
  });
  assert.equal((await hget(srv.httpPort, "/api/v1/taskhubs")).status, 401);
  const listed = await hget(srv.httpPort, "/api/v1/taskhubs", admin);
  assert.equal(listed.status, 200);
  assert.equal(JSON.parse(listed.body).principal, "ops");
  assert.equal((await hget(srv.healthPort, "/healthz")).status, 204, "health over HTTPS too");
  await assert.rejects(fetch(`http://127.0.0.1:${srv.httpPort}/healthz`), "no plaintext on a TLS listener");
  assert.equal(before.toUpperCase(), serial(fs.readFileSync(f("server.pem"))).toUpperCase());
  makeCerts("renewed");
  fs.copyFileSync(f("renewed.key"), f("server.key"));
  fs.copyFileSync(f("renewed.pem"), f("server.pem"));
  const renewed = serial(fs.readFileSync(f("renewed.pem"))).toUpperCase();
  await waitFor(async () => (await peerSerial()).toUpperCase() === renewed, "the renewed certificate served");
  await waitFor(async () => (await hget(srv.httpPort, "/healthz")).serial.toUpperCase() === renewed, "and on HTTPS");
  assert.equal((await c.getOrchestrationState(id)).runtimeStatus, S.COMPLETED, "the old connection still works");
  fs.writeFileSync(f("server.pem"), "not a certificate\n"); // a bad file: the renewed one stays
  await waitFor(() => srv.stderr().includes("cannot be used"), "the bad file logged");
  assert.equal((await peerSerial()).toUpperCase(), renewed);

  await Promise.allSettled([w.stop(), c.stop()]);
  r.close();
  // the audit log: denials and changes, who and from where -- never a token
  const lines = fs.readFileSync(f("audit.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const deny = lines.find((l) => l.event === "deny" && l.method === "StartInstance");
  assert.equal(deny.principal, "viewer");
  assert.equal(deny.reason, "missing role");
  assert.match(deny.peer, /^ipv[46]:/);
  assert.ok(lines.some((l) => l.event === "call" && l.principal === "app-client" && l.method === "StartInstance"));
  assert.ok(lines.some((l) => l.event === "stream-open" && l.principal === "app-worker"));
  assert.ok(lines.some((l) => l.event === "reload"));
  const text = fs.readFileSync(f("audit.log"), "utf8");
  for (const t of [admin, wtok, ctok, rtok]) assert.ok(!text.includes(t.slice(5)), "no token in the audit log");
});

test("HTTP API and metrics under auth: 401 without a token, 403 without the role", async () => {
  const rtok = token("http-reader", "default=reader"), ctok = token("http-contrib", "default=contributor"),
    mtok = token("scraper", "*=reader");
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json")] });
  servers.push(srv);
  const get = (p, tok, opts = {}) => fetch(`${srv.http}${p}`, { ...opts, headers: { ...(tok ? { authorization: `Bearer ${tok}` } : {}), "content-type": "application/json", ...(opts.headers || {}) } });
  assert.equal((await get("/api/v1/taskhubs/orchestrations/query", null, { method: "POST", body: "{}" })).status, 401);
  assert.equal((await get("/api/v1/taskhubs/orchestrations/query", rtok, { method: "POST", body: "{}" })).status, 200);
  const started = await get("/api/v1/taskhubs/orchestrations", rtok, { method: "POST", body: JSON.stringify({ name: "x" }) });
  assert.equal(started.status, 403);
  assert.match((await started.json()).error.message, /contributor/);
  assert.equal((await get("/api/v1/taskhubs/orchestrations", ctok, { method: "POST", body: JSON.stringify({ name: "x" }) })).status, 201);
  const hubs = await (await get("/api/v1/taskhubs", rtok)).json();
  assert.deepEqual(hubs, { taskHubs: [{ name: "default", role: "reader" }], principal: "http-reader", authentication: true });
  assert.equal((await get("/", null)).status, 200, "the dashboard's page is public: it signs in");
  assert.equal((await get("/metrics", rtok)).status, 403, "metrics need a grant on every hub");
  const m = await (await get("/metrics", mtok)).text();
  assert.match(m, /^dtsd_auth_failures_total [1-9]/m);
  assert.match(m, /^dtsd_auth_denials_total [1-9]/m);
  assert.equal((await fetch(`${srv.health}/healthz`)).status, 204, "health needs nothing");
  const live = await fetch(`${srv.http}/api/v1/taskhubs/live?taskhub=default&access_token=${rtok}`);
  assert.equal(live.status, 200, "an event stream takes its token as an argument");
  await live.body.cancel();
});

test("protected mode without auth, emulator mode, the allow list, and TLS required for tokens", async () => {
  const ip = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  const anyAddr = ["--address", "0.0.0.0:0", "--http-address", "0.0.0.0:0"];
  const plain = (port, host) => new grpc.Client(`${host}:${port}`, grpc.credentials.createInsecure());
  const q = (client, tok) => {
    const md = new grpc.Metadata();
    if (tok) md.set("authorization", `Bearer ${tok}`);
    return new Promise((resolve) => client.makeUnaryRequest(Q, (b) => b, (b) => b, Buffer.alloc(0), md, { deadline: Date.now() + 10000 },
      (err) => resolve(err ? { code: err.code, details: err.details } : { code: 0 })));
  };
  let srv = await startDtsd({ args: anyAddr });
  servers.push(srv);
  assert.equal((await q(plain(srv.port, "127.0.0.1"))).code, 0, "loopback is served without auth");
  if (ip) {
    const far = await q(plain(srv.port, ip));
    assert.equal(far.code, grpc.status.PERMISSION_DENIED);
    assert.match(far.details, /--auth on.*--emulator-mode/);
    assert.equal((await fetch(`http://${ip}:${srv.httpPort}/api/v1/taskhubs`)).status, 403);
  }
  srv = await startDtsd({ args: [...anyAddr, "--emulator-mode"] });
  servers.push(srv);
  assert.match(srv.stderr(), /emulator mode/);
  if (ip) assert.equal((await q(plain(srv.port, ip))).code, 0, "emulator mode serves every address");
  const tok = token("plain", "*=reader");
  srv = await startDtsd({ args: [...anyAddr, "--auth", "on", "--tokens-file", f("tokens.json")] });
  servers.push(srv);
  assert.equal((await q(plain(srv.port, "127.0.0.1"), tok)).code, 0, "a token over plaintext from loopback");
  if (ip) {
    const far = await q(plain(srv.port, ip), tok);
    assert.equal(far.code, grpc.status.UNAUTHENTICATED);
    assert.match(far.details, /TLS required/);
  }
  srv = await startDtsd({ args: ["--allow", "10.255.255.254/32"] });
  servers.push(srv);
  const out = await q(plain(srv.port, "127.0.0.1"));
  assert.equal(out.code, grpc.status.PERMISSION_DENIED);
  assert.match(out.details, /allow list/);
});

test("bad security settings stop dtsd at start with the reason", async () => {
  const { spawnDtsd } = await import("./harness.mjs");
  for (const [args, want] of [
    [["--auth", "maybe"], /--auth wants none or on/],
    [["--auth", "on", "--emulator-mode"], /emulator-mode.*cannot go with --auth on/],
    [["--allow", "10.0.0.0/33"], /--allow: '10\.0\.0\.0\/33'/],
    [["--tls-cert", f("missing.pem"), "--tls-key", f("missing.key")], /cannot read .*missing\.pem/],
    [["--tls-cert", f("ca.pem"), "--tls-key", f("server.key")], /key does not belong to the certificate|no PEM/],
    [["--auth", "on", "--tokens-file", f("missing.json")], /missing\.json/],
  ]) {
    const sp = spawnDtsd({ args });
    const st = await sp.exitP;
    assert.notEqual(st.code, 0, args.join(" "));
    assert.match(sp.stderr(), want, args.join(" "));
  }
});

test("abuse limits: waits per connection, worker streams, failed-authentication back-off, header size", async () => {
  const { str } = await import("./pb.mjs");
  const good = token("limits", "*=admin");
  let srv = await startDtsd({ args: ["--max-waits-per-connection", "2", "--max-worker-streams", "1", "--max-metadata", "2048"] });
  servers.push(srv);
  const conn = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const wait = () => new Promise((resolve) => conn.makeUnaryRequest("/TaskHubSidecarService/WaitForInstanceCompletion", (b) => b, (b) => b,
    str(1, "never-started"), new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err) => resolve(err ? err.code : 0)));
  const started = await rawUnary(grpc, conn, "/TaskHubSidecarService/StartInstance", Buffer.concat([str(1, "never-started"), str(2, "nobody")]));
  assert.equal(started.code, 0);
  const w1 = wait(), w2 = wait();
  await waitFor(async () => (await wait()) === grpc.status.RESOURCE_EXHAUSTED, "a third wait on the connection refused");
  assert.equal(await w1, grpc.status.DEADLINE_EXCEEDED, "the first two kept waiting");
  await w2;
  const s1 = conn.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), new grpc.Metadata());
  s1.on("error", () => {});
  s1.on("data", () => {});
  const second = await new Promise((resolve) => {
    const s2 = conn.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), new grpc.Metadata());
    s2.on("data", () => {});
    s2.on("error", (e) => resolve(e));
  });
  assert.equal(second.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(second.details, /--max-worker-streams/);
  s1.cancel();
  const big = new grpc.Metadata();
  big.set("x-big", "y".repeat(4096));
  const tooBig = await new Promise((resolve) => conn.makeUnaryRequest("/TaskHubSidecarService/Hello", (b) => b, (b) => b, Buffer.alloc(0), big,
    { deadline: Date.now() + 5000 }, (err) => resolve(err ? err.code : 0)));
  assert.notEqual(tooBig, 0, "headers past --max-metadata are refused");
  conn.close();

  srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--auth-fail-limit", "3"] });
  servers.push(srv);
  const c2 = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const q = (tok) => call(c2, Q, tok);
  for (let i = 0; i < 3; i++) assert.equal((await q("dtsd_wrong")).code, grpc.status.UNAUTHENTICATED);
  const held = await q(good);
  assert.equal(held.code, grpc.status.RESOURCE_EXHAUSTED, "even a good token waits after the failures");
  assert.match(held.details, /try again in \d+ s/);
  await waitFor(async () => (await q(good)).code === 0, "served again after the back-off");
  c2.close();
});

test("mTLS: a verified client certificate names the caller (SPIFFE id, else SAN, else CN)", async () => {
  makeCerts("server");
  const client = (tag, subj, san) => {
    const ext = f(`${tag}.cnf`);
    fs.writeFileSync(ext, san ? `subjectAltName=${san}\nextendedKeyUsage=clientAuth\n` : "extendedKeyUsage=clientAuth\n");
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f(`${tag}.key`), "-out", f(`${tag}.csr`), "-subj", subj);
    ssl("x509", "-req", "-in", f(`${tag}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f(`${tag}.pem`),
      "-days", "2", "-extfile", ext);
    return grpc.credentials.createSsl(fs.readFileSync(f("ca.pem")), fs.readFileSync(f(`${tag}.key`)), fs.readFileSync(f(`${tag}.pem`)));
  };
  const spiffe = client("c-worker", "/CN=ignored", "URI:spiffe://dtsd.test/worker");
  const alice = client("c-alice", "/CN=alice");
  const mallory = client("c-mallory", "/CN=mallory");
  const grant = (name, cert, g) => execFileSync(DTSD_BIN, ["token", "create", "--tokens-file", f("tokens.json"), "--name", name,
    "--certificate", cert, "--grant", g], { stdio: ["ignore", "pipe", "pipe"] });
  grant("cert-worker", "spiffe://dtsd.test/worker", "default=worker");
  grant("cert-alice", "alice", "default=contributor");
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--tls-cert", f("server.pem"),
    "--tls-key", f("server.key"), "--tls-client-ca", f("ca.pem"), "--tls-client-auth", "optional"] });
  servers.push(srv);
  const as = (creds) => new grpc.Client(`localhost:${srv.port}`, creds);
  const a = as(alice), wk = as(spiffe), m = as(mallory), none = raw(srv);
  assert.equal((await call(a, Q)).code, 0, "alice (CN) reads");
  assert.equal((await call(a, "/TaskHubSidecarService/Hello")).code, 0);
  assert.equal((await call(wk, Q)).code, grpc.status.PERMISSION_DENIED, "the SPIFFE id's grant is worker only");
  assert.equal((await call(wk, "/TaskHubSidecarService/Hello")).code, 0, "but it is known");
  const mal = await call(m, Q);
  assert.equal(mal.code, grpc.status.UNAUTHENTICATED);
  assert.match(mal.details, /'mallory' has no grants/);
  assert.equal((await call(none, Q)).code, grpc.status.UNAUTHENTICATED, "no certificate, no token");
  for (const x of [a, wk, m, none]) x.close();
  // HTTPS: the same certificates name the same callers
  const https = await import("node:https");
  const hget = (port, tag) => new Promise((resolve, reject) => {
    const opts = { host: "127.0.0.1", port, path: "/api/v1/taskhubs", servername: "localhost", agent: false, ca: fs.readFileSync(f("ca.pem")) };
    if (tag) Object.assign(opts, { key: fs.readFileSync(f(`${tag}.key`)), cert: fs.readFileSync(f(`${tag}.pem`)) });
    https.get(opts, (res) => { let b = ""; res.on("data", (d) => { b += d; }); res.on("end", () => resolve({ status: res.statusCode, body: b })); })
      .on("error", reject);
  });
  const hs = await hget(srv.httpPort, "c-alice");
  assert.equal(hs.status, 200, hs.body);
  assert.equal(JSON.parse(hs.body).principal, "cert-alice");
  assert.equal((await hget(srv.httpPort, null)).status, 401, "optional: no certificate, no token");
  const req = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--tls-cert", f("server.pem"),
    "--tls-key", f("server.key"), "--tls-client-ca", f("ca.pem"), "--tls-client-auth", "require"] });
  servers.push(req);
  assert.equal((await hget(req.httpPort, "c-alice")).status, 200);
  await hget(req.httpPort, null).then((r) => assert.equal(r.status, 401), () => { /* or the handshake fails: refused either way */ });
});

test("a work item is completed or abandoned only by the principal whose stream holds it", async () => {
  const { str } = await import("./pb.mjs");
  const w1 = token("lease-w1", "default=worker"), w2 = token("lease-w2", "default=worker"), cl = token("lease-client", "default=contributor");
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json")] });
  servers.push(srv);
  const conn = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const md = (tok) => { const m = new grpc.Metadata(); m.set("authorization", `Bearer ${tok}`); return m; };
  const stream = conn.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), md(w1));
  stream.on("error", () => {});
  const item = new Promise((resolve) => stream.on("data", (b) => { if (b.length > 40) resolve(b); }));
  const start = await new Promise((resolve) => conn.makeUnaryRequest("/TaskHubSidecarService/StartInstance", (b) => b, (b) => b,
    Buffer.concat([str(1, "leased-1"), str(2, "anything")]), md(cl), (err) => resolve(err ? err.code : 0)));
  assert.equal(start, 0);
  const w = await item;
  const tok = w.subarray(w.length - 33).toString();
  assert.equal(w[w.length - 35], (10 << 3) | 2, "the completion token is the item's last field");
  // a worker reads history for its own work item only
  const { int } = await import("./pb.mjs");
  const history = (t, id) => new Promise((resolve) => {
    const h = conn.makeServerStreamRequest("/TaskHubSidecarService/StreamInstanceHistory", (b) => b, (b) => b,
      Buffer.concat([str(1, id), int(3, 1)]), md(t));
    let chunks = 0;
    h.on("data", () => { chunks++; });
    h.on("error", (e) => resolve({ code: e.code, details: e.details }));
    h.on("status", (x) => { if (x.code === 0) resolve({ code: 0, chunks }); });
  });
  assert.equal((await history(w1, "leased-1")).code, 0, "the lease holder reads it (empty: its first turn)");
  assert.equal((await history(w2, "leased-1")).code, grpc.status.PERMISSION_DENIED, "not the lease holder");
  assert.equal((await history(w1, "someone-else")).code, grpc.status.PERMISSION_DENIED, "not its work item");
  const abandon = (t) => new Promise((resolve) => conn.makeUnaryRequest("/TaskHubSidecarService/AbandonTaskOrchestratorWorkItem",
    (b) => b, (b) => b, str(1, tok), md(t), (err) => resolve(err ? err : { code: 0 })));
  const other = await abandon(w2);
  assert.equal(other.code, grpc.status.PERMISSION_DENIED);
  assert.match(other.details, /leased to another principal/);
  assert.equal((await abandon(w1)).code, 0, "its own stream's principal may");
  stream.cancel();
  conn.close();
});

test("a worker stream whose token is revoked gets no new work, ends when idle, and is cut after the grace", async () => {
  const { str } = await import("./pb.mjs");
  const idleTok = token("drain-idle", "default=worker"), busyTok = token("drain-busy", "default=worker"),
    other = token("drain-other", "default=worker"), cl = token("drain-client", "default=contributor");
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--drain-grace", "1500",
    "--audit-log", f("drain-audit.log")] });
  servers.push(srv);
  const conn = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const md = (tok) => { const m = new grpc.Metadata(); m.set("authorization", `Bearer ${tok}`); return m; };
  const open = (tok) => {
    const s = conn.makeServerStreamRequest("/TaskHubSidecarService/GetWorkItems", (b) => b, (b) => b, Buffer.alloc(0), md(tok));
    const st = { items: [], end: null };
    s.on("data", (b) => { if (b.length > 40) st.items.push(b); });
    s.on("status", (x) => { st.end = st.end || { code: x.code, details: x.details }; });
    s.on("error", (e) => { st.end = st.end || { code: e.code, details: e.details }; });
    return { s, st };
  };
  const idle = open(idleTok), busy = open(busyTok);
  await waitFor(async () => (await (await fetch(`${srv.http}/api/v1/taskhubs/workers`, { headers: { authorization: `Bearer ${cl}` } })).json()).workers.length === 2, "both streams open");
  const start = () => new Promise((resolve) => conn.makeUnaryRequest("/TaskHubSidecarService/StartInstance", (b) => b, (b) => b,
    Buffer.concat([str(1, "drain-1"), str(2, "anything")]), md(cl), (err) => resolve(err ? err.code : 0)));
  // revoke the idle stream's token first: it ends cleanly (status OK) so its worker reconnects
  execFileSync(DTSD_BIN, ["token", "revoke", "--tokens-file", f("tokens.json"), "--name", "drain-idle"]);
  srv.child.kill("SIGHUP");
  await waitFor(() => idle.st.end !== null, "the idle stream ended");
  assert.equal(idle.st.end.code, grpc.status.OK);
  assert.match(idle.st.end.details, /credentials no longer hold.*reconnect/);
  // the busy stream takes an item, then loses its token: it gets nothing new, and is cut after the grace
  assert.equal(await start(), 0);
  await waitFor(() => busy.st.items.length === 1, "the busy stream holds the item");
  execFileSync(DTSD_BIN, ["token", "revoke", "--tokens-file", f("tokens.json"), "--name", "drain-busy"]);
  srv.child.kill("SIGHUP");
  await waitFor(() => fs.existsSync(f("drain-audit.log")) && fs.readFileSync(f("drain-audit.log"), "utf8").includes('"principal":"drain-busy"') &&
    fs.readFileSync(f("drain-audit.log"), "utf8").includes("stream-drain"), "the drain audited");
  assert.equal(busy.st.end, null, "still open while it holds the item");
  const next = open(other);
  await waitFor(() => busy.st.end !== null, "cut after the grace");
  assert.equal(busy.st.end.code, grpc.status.UNAUTHENTICATED);
  await waitFor(() => next.st.items.length === 1, "the item went to another worker");
  next.s.cancel();
  conn.close();
});

test("JWTs from OpenID Connect issuers: RS256 and ES256, JWKS file and URL, claims, rotation, refusals", async () => {
  const http = await import("node:http");
  const b64u = (x) => Buffer.from(x).toString("base64url");
  const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ec2 = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = (k, kid) => ({ ...k.publicKey.export({ format: "jwk" }), kid, use: "sig" });
  fs.writeFileSync(f("jwks-a.json"), JSON.stringify({ keys: [jwk(rsa, "a1")] }));
  let jwksB = { keys: [jwk(ec, "b1")] };
  const server = http.createServer((req, res) => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(jwksB)); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}/jwks`;
  fs.writeFileSync(f("issuers.json"), JSON.stringify({ issuers: [
    { issuer: "https://idp-a.test", jwks_file: f("jwks-a.json"), roles_claim: "dtsd_roles" },
    { issuer: "https://kubernetes.default.svc", jwks_url: url, audiences: ["dtsd"], refetch_min_seconds: 0 },
  ] }));
  execFileSync(DTSD_BIN, ["token", "create", "--tokens-file", f("tokens.json"), "--name", "k8s-worker",
    "--subject", "system:serviceaccount:apps:worker", "--grant", "default=worker"], { stdio: ["ignore", "pipe", "pipe"] });
  const now = Math.floor(Date.now() / 1000);
  const sign = (alg, key, kid, claims) => {
    const head = b64u(JSON.stringify({ alg, kid, typ: "JWT" })), body = b64u(JSON.stringify(claims));
    const data = `${head}.${body}`;
    const sig = alg === "RS256" ? crypto.sign("sha256", Buffer.from(data), key)
      : crypto.sign("sha256", Buffer.from(data), { key, dsaEncoding: "ieee-p1363" });
    return `${data}.${sig.toString("base64url")}`;
  };
  const a = (claims) => sign("RS256", rsa.privateKey, "a1", { iss: "https://idp-a.test", aud: "https://durabletask.io", sub: "alice", exp: now + 600, ...claims });
  const k8s = (claims, key = ec.privateKey, kid = "b1") => sign("ES256", key, kid,
    { iss: "https://kubernetes.default.svc", aud: ["dtsd", "other"], sub: "system:serviceaccount:apps:worker", exp: now + 600, nbf: now - 5, ...claims });
  const srv = await startDtsd({ args: ["--auth", "on", "--tokens-file", f("tokens.json"), "--jwt-issuers", f("issuers.json")] });
  servers.push(srv);
  const conn = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  const q = (tok, m = Q) => call(conn, m, tok);
  assert.equal((await q(a({ dtsd_roles: ["default=reader"] }))).code, 0, "RS256, roles from the claim");
  assert.equal((await q(a({ dtsd_roles: "reader" }))).code, 0, "a bare role means every hub");
  assert.equal((await q(a({}))).code, grpc.status.PERMISSION_DENIED, "verified, but no role");
  const listed = await (await fetch(`${srv.http}/api/v1/taskhubs`, { headers: { authorization: `Bearer ${a({ dtsd_roles: ["default=reader"] })}` } })).json();
  assert.deepEqual(listed.taskHubs, [{ name: "default", role: "reader" }], "a JWT's hubs and role");
  assert.equal(listed.principal, "alice");
  assert.equal((await q(k8s({}))).code, grpc.status.PERMISSION_DENIED, "ES256 from the URL: the subject's grant is worker");
  assert.equal((await q(k8s({}), "/TaskHubSidecarService/Hello")).code, 0);
  const refusals = [
    [a({ exp: now - 3600, dtsd_roles: ["*=admin"] }), /expired/],
    [a({ aud: "https://elsewhere", dtsd_roles: ["*=admin"] }), /audience/],
    [a({ iss: "https://evil.test" }), /issuer/],
    [k8s({ nbf: now + 3600 }), /not valid yet/],
    [`${b64u(JSON.stringify({ alg: "none" }))}.${b64u(JSON.stringify({ iss: "https://idp-a.test", sub: "x", exp: now + 60, aud: "https://durabletask.io", dtsd_roles: "admin" }))}.`, /algorithm/],
    [sign("RS256", rsa.privateKey, "a1", { iss: "https://idp-a.test", aud: "https://durabletask.io", sub: "x", exp: now + 60 }).replace(/\.([^.]+)\./, (m, p) => `.${p}A.`), /signature|decode/],
    [k8s({}, ec2.privateKey, "b2"), /no key/],
  ];
  for (const [tok, want] of refusals) {
    const r = await q(tok);
    assert.equal(r.code, grpc.status.UNAUTHENTICATED, String(want));
    assert.match(r.details, want);
  }
  // HS256 with the RSA public key as the secret: the classic confusion, refused by algorithm
  const pubPem = rsa.publicKey.export({ type: "spki", format: "pem" });
  const hsData = `${b64u(JSON.stringify({ alg: "HS256", kid: "a1" }))}.${b64u(JSON.stringify({ iss: "https://idp-a.test", aud: "https://durabletask.io", sub: "x", exp: now + 60, dtsd_roles: "admin" }))}`;
  const hs = `${hsData}.${crypto.createHmac("sha256", pubPem).update(hsData).digest("base64url")}`;
  assert.match((await q(hs)).details, /algorithm/);
  // SIGHUP reads the issuers file again: an issuer removed is refused from then on
  const before = JSON.parse(fs.readFileSync(f("issuers.json"), "utf8"));
  fs.writeFileSync(f("issuers.json"), JSON.stringify({ issuers: before.issuers.slice(1) }));
  srv.child.kill("SIGHUP");
  await waitFor(async () => /issuer is not one this dtsd trusts/.test((await q(a({ dtsd_roles: "reader" }))).details || ""), "idp-a dropped");
  fs.writeFileSync(f("issuers.json"), JSON.stringify(before));
  srv.child.kill("SIGHUP");
  await waitFor(async () => (await q(a({ dtsd_roles: "reader", jti: "x" }))).code === 0, "idp-a back");
  // the issuer rotates its key: an unknown key id fetches the JWKS again
  jwksB = { keys: [jwk(ec, "b1"), jwk(ec2, "b2")] };
  assert.equal((await q(k8s({}, ec2.privateKey, "b2"), "/TaskHubSidecarService/Hello")).code, 0, "the new key found");
  conn.close();
  server.close();
});
