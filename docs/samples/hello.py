"""hello.py -- a first orchestration against dtsd with the Durable Task
Python SDK (docs/getting-started.md).  An orchestrator greets three cities,
one activity call each, in order; the client starts it, waits for it and
prints the result.

    pip install durabletask
    python3 hello.py

DTS_ENDPOINT (default localhost:8080) and DTS_TASKHUB (default "default") say
where dtsd is.  Exit code 0 when the orchestration completed.
"""
import os
import sys

from durabletask import client, task, worker

ENDPOINT = os.getenv("DTS_ENDPOINT", "localhost:8080").removeprefix("http://")
# every call names its task hub in the `taskhub` header, as DTS wants
METADATA = [("taskhub", os.getenv("DTS_TASKHUB", "default"))]


def greet(ctx: task.ActivityContext, city: str) -> str:
    """An activity: ordinary code, may do I/O."""
    return f"Hello, {city}!"


def greet_cities(ctx: task.OrchestrationContext, _):
    """The orchestrator: a generator, replayed from its history on every step."""
    greetings = []
    for city in ["Tokyo", "Seattle", "London"]:
        greetings.append((yield ctx.call_activity(greet, input=city)))
    return greetings


with worker.TaskHubGrpcWorker(host_address=ENDPOINT, metadata=METADATA, secure_channel=False) as w:
    w.add_orchestrator(greet_cities)
    w.add_activity(greet)
    w.start()
    c = client.TaskHubGrpcClient(host_address=ENDPOINT, metadata=METADATA, secure_channel=False)
    instance_id = c.schedule_new_orchestration(greet_cities)
    print(f"started {instance_id}")
    state = c.wait_for_orchestration_completion(instance_id, timeout=60)
    print(f"{state.runtime_status.name}: {state.serialized_output}")
    sys.exit(0 if state.runtime_status == client.OrchestrationStatus.COMPLETED else 1)
