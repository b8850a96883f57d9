#!/bin/sh
# bench_smoke.sh -- runs every benchmark for a moment so the harnesses keep
# working; their figures are printed, not gated.  Fails only when a
# benchmark fails (e.g. the load generator's output check).
# usage: bench_smoke.sh BUILD_DIR
# HTTP listeners on free ports (the defaults, 8081 and 8082, may be taken;
# an older dtsd ignores these variables).
export DTSD_HTTP_ADDRESS=127.0.0.1:0 DTSD_HEALTH_ADDRESS=127.0.0.1:0
set -eu
B=$1
T=$(mktemp -d)
PID=""
mkdir -p "$T/storage"
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$T"' EXIT
"$B/bench/bench_runtime" --scale 0.05
"$B/bench/bench_storage" --actors 8 --batches 20 --dir "$T/storage"
"$B/bench/bench_lookup" --records 20000 --lookups 2000
# dtsd writes its port into the pipe once it serves; a dtsd that dies first
# closes the pipe, and the read returns empty
mkfifo "$T/ready"
"$B/server/dtsd" --address 127.0.0.1:0 --ephemeral --ready-fd 3 --log-level warn 3>"$T/ready" &
PID=$!
P=""
read -r P <"$T/ready" || true
[ -n "$P" ] || { echo "dtsd did not start" >&2; exit 1; }
"$B/bench/loadgen" --target "127.0.0.1:$P" --signals 5000 --entities 1 --concurrency 64
"$B/bench/loadgen" --target "127.0.0.1:$P" --signals 5000 --entities 500 --concurrency 64
L="$B/bench/loadgen --target 127.0.0.1:$P --pid $PID"
$L --scenario hello --orchestrations 300 --concurrency 32 --streams 2
$L --scenario fanout --orchestrations 4 --fanout 200 --concurrency 2
$L --scenario timers --orchestrations 200 --concurrency 200
$L --scenario events --orchestrations 300 --concurrency 32
$L --scenario raw --signals 5000 --concurrency 32
$L --scenario mixed --orchestrations 200 --concurrency 32
$L --scenario cold --orchestrations 200 --id-prefix smoke-
kill -TERM "$PID"
wait "$PID"
PID=""
# the store at a small scale: memory, query latency, restart (million.sh)
"$(dirname "$0")/../bench/million.sh" "$B" 3000 300 os 2000
# the HTTP side at a small scale: first rows, a history page, live dashboards' cost (http.sh)
"$(dirname "$0")/../bench/http.sh" "$B" 2000 300 500
