// hello.js -- a first orchestration against dtsd with the Durable Task
// JavaScript SDK (docs/getting-started.md).  An orchestrator greets three
// cities, one activity call each, in order; the client starts it, waits for
// it and prints the result.
//
//   npm install @microsoft/durabletask-js@0.4.0
//   node hello.js
//
// DTS_ENDPOINT (default localhost:8080) and DTS_TASKHUB (default "default")
// say where dtsd is.  Exit code 0 when the orchestration completed.
const { TaskHubGrpcClient, TaskHubGrpcWorker, OrchestrationStatus, NoOpLogger } = require("@microsoft/durabletask-js");
const grpc = require("@grpc/grpc-js");

const hostAddress = (process.env.DTS_ENDPOINT || "localhost:8080").replace(/^https?:\/\//, "");
const hub = process.env.DTS_TASKHUB || "default";
// every call names its task hub in the `taskhub` header, as DTS wants
const metadataGenerator = async () => {
  const md = new grpc.Metadata();
  md.set("taskhub", hub);
  return md;
};
const logger = new NoOpLogger();

// an activity: ordinary code, may do I/O
const greet = async (_ctx, city) => `Hello, ${city}!`;

// the orchestrator: a generator, replayed from its history on every step
const greetCities = async function* (ctx) {
  const greetings = [];
  for (const city of ["Tokyo", "Seattle", "London"]) greetings.push(yield ctx.callActivity(greet, city));
  return greetings;
};

async function main() {
  const worker = new TaskHubGrpcWorker({ hostAddress, metadataGenerator, logger });
  worker.addOrchestrator(greetCities);
  worker.addActivity(greet);
  await worker.start();
  const client = new TaskHubGrpcClient({ hostAddress, metadataGenerator, logger });
  const id = await client.scheduleNewOrchestration(greetCities);
  console.log(`started ${id}`);
  const state = await client.waitForOrchestrationCompletion(id, true, 60);
  console.log(`${OrchestrationStatus[state.runtimeStatus]}: ${state.serializedOutput}`);
  await client.stop();
  await worker.stop();
  return state.runtimeStatus === OrchestrationStatus.COMPLETED ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => { console.error(err); process.exit(1); });
