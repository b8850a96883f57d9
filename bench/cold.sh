#!/bin/sh
# cold.sh -- StartInstance of ids that do not exist, at a store of FINISHED
# finished orchestrations (default 1,000,000): every start first looks its
# id up, and in a large store that lookup used to visit a table on each
# LevelDB level.  Measured with bloom filters and a 64 MiB block cache (the
# defaults) against the baseline of neither (--bloom-bits 0 --block-cache 0),
# in the same run on the same store, and printed with their ratio.
#
# With DROP_CACHES=1 (root) the kernel's page cache is dropped before each
# run, so a lookup that visits a table really reads the disk.
#
# usage: bench/cold.sh BUILD_DIR [FINISHED] [STARTS]
set -eu
B=$1
FINISHED=${2:-1000000}
STARTS=${3:-3000}
DUR=os
T=$(mktemp -d)
PID=""
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

start_dtsd
echo "== seeding: $FINISHED finished orchestrations"
"$B/bench/loadgen" --target "127.0.0.1:$P" --scenario events --orchestrations "$FINISHED" --concurrency 500 \
  --id-prefix done- | head -1
stop_dtsd

run() { # run <label> <dtsd flags...>: prints the JSON line's p50 and p99
  label=$1
  shift
  if [ "${DROP_CACHES:-0}" = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
  start_dtsd "$@"
  "$B/bench/loadgen" --target "127.0.0.1:$P" --scenario cold --orchestrations "$STARTS" --id-prefix done- |
    tee "$T/$label" | head -1
  stop_dtsd
}
echo "== baseline: no bloom filters, LevelDB's own 8 MiB cache"
run base --bloom-bits 0 --block-cache 0
echo "== bloom filters (10 bits a key) and a 64 MiB block cache"
run bloom
p50() { sed -n 's/.*"p50_ms":\([0-9.]*\).*/\1/p' "$T/$1"; }
p99() { sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' "$T/$1"; }
echo "cold: $STARTS starts of new ids at $FINISHED stored: p50 $(p50 base) -> $(p50 bloom) ms," \
  "p99 $(p99 base) -> $(p99 bloom) ms; p50 ratio $(awk "BEGIN { printf \"%.2f\", $(p50 base) / $(p50 bloom) }")x"
echo "{\"bench\":\"cold\",\"finished\":$FINISHED,\"starts\":$STARTS,\"base_p50_ms\":$(p50 base),\"base_p99_ms\":$(p99 base)," \
  "\"bloom_p50_ms\":$(p50 bloom),\"bloom_p99_ms\":$(p99 bloom)}"
