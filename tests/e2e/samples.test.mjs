// samples.test.mjs -- the getting-started page's JavaScript sample
// (docs/samples/hello.js) runs unchanged against a real dtsd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startDtsd } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

test("docs/samples/hello.js: the orchestration completes with the three greetings", async () => {
  const srv = await startDtsd();
  try {
    const r = await new Promise((resolve) => {
      // the sample resolves the SDK as a user's project would; here it is the tests' install
      const child = spawn(process.execPath, [path.resolve(here, "../../docs/samples/hello.js")],
        { env: { ...process.env, NODE_PATH: path.resolve(here, "node_modules"), DTS_ENDPOINT: srv.endpoint } });
      let out = "", err = "";
      child.stdout.on("data", (d) => { out += d; });
      child.stderr.on("data", (d) => { err += d; });
      child.on("close", (code) => resolve({ code, out, err }));
    });
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^started [0-9a-f-]+\n/);
    assert.match(r.out, /COMPLETED: \["Hello, Tokyo!","Hello, Seattle!","Hello, London!"\]/);
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});
