// config.test.mjs -- dtsd's settings file (--config, docs/install.md): a
// setting in the file beats the default, DTSD_* beats the file, a flag
// beats both; a bad file stops dtsd at start with the file and line.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startDtsd, spawnDtsd, tmpDir } from "./harness.mjs";

async function hubs(srv) {
  const r = await fetch(`${srv.http}/api/v1/taskhubs`);
  return (await r.json()).taskHubs.map((h) => h.name ?? h).sort();
}

test("settings file < DTSD_* < flags; every value read as its flag would be", async () => {
  const dir = tmpDir("config");
  const file = path.join(dir, "dtsd.conf");
  fs.writeFileSync(file, "# a comment\n\ntask-hubs = fromfile,other\n  log-level=warn  \ndynamic-task-hubs = no\n");
  let srv = await startDtsd({ args: ["--config", file] });
  assert.deepEqual(await hubs(srv), ["fromfile", "other"], "the file beats the default");
  assert.equal((await srv.stop()).code, 0);
  srv = await startDtsd({ args: ["--config", file], env: { DTSD_TASK_HUBS: "fromenv" } });
  assert.deepEqual(await hubs(srv), ["fromenv"], "the variable beats the file");
  assert.equal((await srv.stop()).code, 0);
  srv = await startDtsd({ args: ["--config", file, "--task-hubs", "fromflag"], env: { DTSD_TASK_HUBS: "fromenv" } });
  assert.deepEqual(await hubs(srv), ["fromflag"], "the flag beats both");
  assert.equal((await srv.stop()).code, 0);
  srv = await startDtsd({ env: { DTSD_CONFIG: file } });
  assert.deepEqual(await hubs(srv), ["fromfile", "other"], "DTSD_CONFIG names the file too");
  assert.equal((await srv.stop()).code, 0);
});

test("a bad settings file: dtsd exits 2 naming the file and line", async () => {
  const dir = tmpDir("config");
  for (const [text, want] of [
    ["task-hubs = a\nno-such-setting = 1\n", /dtsd\.conf:2: unknown setting 'no-such-setting'/],
    ["workers = many\n", /dtsd\.conf:1 wants N from 0 to 1024, not .many./],
    ["ephemeral = perhaps\n", /dtsd\.conf:1: ephemeral is true or false/],
    ["just words\n", /dtsd\.conf:1: expected 'name = value'/],
    ["ports-fd = 3\n", /dtsd\.conf:1: unknown setting 'ports-fd'/],
  ]) {
    const file = path.join(dir, "dtsd.conf");
    fs.writeFileSync(file, text);
    const sp = spawnDtsd({ args: ["--config", file] });
    const st = await sp.exitP;
    assert.equal(st.code, 2, `${JSON.stringify(text)}: ${sp.stderr()}`);
    assert.match(sp.stderr(), want);
  }
  const sp = spawnDtsd({ args: ["--config", path.join(dir, "missing.conf")] });
  assert.equal((await sp.exitP).code, 2);
  assert.match(sp.stderr(), /cannot read the settings file .*missing\.conf/);
});
