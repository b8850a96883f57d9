// worker-proc.mjs -- a JS SDK worker in its own process, so a test can kill
// it with SIGKILL in the middle of an activity.  argv: endpoint, marker-file.
// Registers `slowOrch` (one call to `slowActivity`).  The activity writes
// the marker file and then never finishes in this process.
import fs from "node:fs";
import { TaskHubGrpcWorker, NoOpLogger } from "./harness.mjs";
import { slowOrch, makeSlowActivity } from "./shared-orchestrations.mjs";

const [endpoint, marker] = process.argv.slice(2);
const w = new TaskHubGrpcWorker({ hostAddress: endpoint, logger: new NoOpLogger() });
w.addOrchestrator(slowOrch);
w.addActivity(makeSlowActivity(async (input) => {
  fs.writeFileSync(marker, String(input));
  await new Promise(() => {}); // hang until killed
}));
await w.start();
process.stdout.write("ready\n");
