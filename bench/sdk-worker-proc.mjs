// sdk-worker-proc.mjs -- one @microsoft/durabletask-js worker process for
// bench/sdk-hello.mjs (argv: endpoint).  Prints "ready" once connected.
import path from "node:path";
import { fileURLToPath } from "node:url";
const here = path.dirname(fileURLToPath(import.meta.url));
const { TaskHubGrpcWorker, NoOpLogger } = await import(path.join(here, "../tests/e2e/harness.mjs"));
const { helloN, hello } = await import(path.join(here, "sdk-orchestrations.mjs"));
const w = new TaskHubGrpcWorker({ hostAddress: process.argv[2], logger: new NoOpLogger() });
w.addOrchestrator(helloN);
w.addActivity(hello);
await w.start();
process.stdout.write("ready\n");
